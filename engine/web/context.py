"""What every page uses: the server's settings and sessions, the acting user, performing an act
on the master (through the running engine's socket, or on the file), and the role check."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

from flask import current_app, g, render_template

from engine.governance.acts import Outcome, Request
from engine.governance.client import MasterFile, dispatch
from engine.web.sessions import SessionStore, SessionTimes, WebSession

SESSION_COOKIE = "cp_session"
LOGIN_COOKIE = "cp_login"  # the sign-in form's CSRF token (double-submitted: cookie and form)


@dataclass(frozen=True)
class WebSettings:
    """How `contactpoint serve` runs: the master, the model for a search when no engine runs,
    session times, and whether cookies are only sent over HTTPS (behind a TLS proxy)."""

    db_path: Path
    model_path: Path | None = None
    times: SessionTimes = field(default_factory=SessionTimes)
    secure_cookies: bool = False


class WebState:
    """The server's state: settings, sessions, and the lock that lets one thread at a time open
    the master file when no engine holds it (DuckDB's writers in one process must take turns)."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.sessions = SessionStore(settings.times)
        self.file_lock = threading.Lock()


def state() -> WebState:
    return current_app.extensions["contactpoint"]


def session() -> WebSession:
    """The signed-in session of this request (the guard let it through)."""
    return g.session


def perform(act: str, reason: str | None = None, *, actor: str | None = None,
            **args: Any) -> Outcome:
    """Perform `act` as the signed-in user (or `actor`); GovernanceError if refused. When no
    engine serves the master, the request's acts share one opening of the file."""
    web = state()
    request = Request(act, actor or session().user, reason, args)
    if "master_file" not in g:
        g.master_file = MasterFile(web.settings.db_path, web.settings.model_path, web.file_lock)
    return dispatch(web.settings.db_path, request, master_file=g.master_file)


def close_master_file(_error: BaseException | None = None) -> None:
    """At the end of a request: close the master file if its acts opened it."""
    master_file = g.pop("master_file", None)
    if master_file is not None:
        master_file.close()


def for_roles(*roles: str) -> Callable:
    """A view only users of `roles` may open (others get 403); the acts check it again."""
    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if g.user["role"] not in roles:
                return page("problem.html", 403, title="Not for your role",
                            problem="This page is not part of your role.")
            return view(*args, **kwargs)
        return checked
    return decorate


def page(template: str, status: int = 200, **values: Any) -> tuple[str, int]:
    """A rendered page with the signed-in user and CSRF token available to the template."""
    current = getattr(g, "session", None)
    return render_template(
        template, user=getattr(g, "user", None),
        csrf_token=current.csrf if current is not None else None, **values,
    ), status
