"""The web application (`contactpoint serve`): server-rendered pages for practitioners, data
managers and admins, with sign-in by password and TOTP code.

The server never holds the master: every page's work is one governance act (`acts.perform`),
sent to the running engine's socket when `run --follow` holds the master, otherwise performed
on the file, which the server opens for that page's acts and closes again. So the same pages
work with or without a running engine, and every check and audit entry is the CLI's.

The guard, before every view: `GET /healthz` and the sign-in pages are open; every other route
needs a signed-in session (pages redirect to /login, `/api/` routes answer 401), a POST needs
the session's CSRF token, and the user's accreditation is checked again (`session.check`: a
revoked or expired user is signed out at their next request).
"""

from __future__ import annotations

import json

from flask import Flask, Response, g, redirect, request, url_for

from engine.governance.errors import AccessRefused, MasterUnavailable
from engine.web import account, admin, practitioner, signin, stewardship
from engine.web.context import (
    SESSION_COOKIE,
    WebSettings,
    WebState,
    close_master_file,
    page,
    perform,
    state,
)

OPEN_ENDPOINTS = frozenset({"healthz", "signin.login", "signin.code"})
MAX_REQUEST_BYTES = 64 * 1024  # an uploaded audit head is the largest thing anyone sends
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(settings: WebSettings) -> Flask:
    """The Flask application serving the master `settings.db_path`."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.extensions["contactpoint"] = WebState(settings)
    app.before_request(_guard)
    app.after_request(_security_headers)
    app.teardown_request(close_master_file)
    app.add_url_rule("/healthz", "healthz", _healthz)
    app.register_error_handler(MasterUnavailable, _unavailable)
    for blueprint in (signin.blueprint, practitioner.blueprint, stewardship.blueprint,
                      admin.blueprint, account.blueprint):
        app.register_blueprint(blueprint)
    return app


def _healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


def _guard() -> Response | tuple[str, int] | None:
    web = state()
    g.session = web.sessions.find(request.cookies.get(SESSION_COOKIE))
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if g.session is None or not g.session.signed_in:
        if request.path.startswith("/api/"):
            return Response(json.dumps({"error": "sign in first"}), 401,
                            mimetype="application/json")
        return redirect(url_for("signin.login"))
    if request.method == "POST" and not g.session.csrf_matches(request.form.get("csrf_token")):
        return page("problem.html", 400, title="Form expired",
                    problem="This form has expired or did not come from this site. "
                            "Go back, reload the page and try again.")
    try:
        g.user = perform("session.check").result
    except AccessRefused as refused:
        web.sessions.end(g.session.token)
        g.session = None
        return signin.signed_out(str(refused))
    return None


def _unavailable(err: MasterUnavailable) -> tuple[str, int]:
    return page("problem.html", 503, title="Try again in a moment",
                problem=f"The index cannot be reached just now ({err}). Nothing was done.")


def _security_headers(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    return response
