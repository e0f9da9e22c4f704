"""`contactpoint serve`: the web application on a WSGI server (waitress)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import UsageError

DEFAULT_PORT = 8080
SERVER_THREADS = 8


def register_web_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds: serve."""
    from engine.cli import DEFAULT_DB  # engine.cli imports this module: look it up when called

    serve = verbs.add_parser(
        "serve", help="the web application",
        description="Serve the web application for the master: practitioners search and view "
        "children, admins manage users, sources, retention and the audit log. Works while "
        "`run --follow` holds the master (through its socket) and without it (opening the file "
        "for each request). GET /healthz answers without a session; every other page needs "
        "one. Put a TLS proxy in front of it for use beyond this machine.")
    serve.set_defaults(handler=_serve)
    serve.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"master file ({DEFAULT_DB})")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port ({DEFAULT_PORT})")
    serve.add_argument("--model", type=Path, help="model JSON for searches when the engine is "
                       "not running (default: the shipped model)")
    serve.add_argument("--secure-cookies", action="store_true",
                       help="send cookies over HTTPS only (behind a TLS proxy)")


def _serve(args: argparse.Namespace) -> int:
    import waitress

    from engine.web.app import create_app
    from engine.web.context import WebSettings

    if not args.db.exists():
        raise UsageError(f"no master at {args.db}: run `contactpoint run` first")
    if not 0 < args.port < 65536:
        raise UsageError("--port must be between 1 and 65535")
    app = create_app(WebSettings(args.db, args.model, secure_cookies=args.secure_cookies))
    print(f"ContactPoint for {args.db} on http://{args.host}:{args.port}/ (Ctrl-C stops)",
          file=sys.stderr)
    waitress.serve(app, host=args.host, port=args.port, threads=SERVER_THREADS,
                   ident="ContactPoint", clear_untrusted_proxy_headers=True)
    return 0
