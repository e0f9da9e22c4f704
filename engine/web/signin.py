"""Signing in and out: the password, then a TOTP code (or, the first time, enrolling the token
from a QR code drawn on the server), then a fresh session; signing out ends it."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs, urlparse

import segno
from flask import Blueprint, Response, g, make_response, redirect, request, url_for

from engine.governance.credentials import WRONG_CREDENTIALS
from engine.governance.errors import GovernanceError, MasterUnavailable
from engine.web.context import LOGIN_COOKIE, SESSION_COOKIE, page, perform, state
from engine.web.sessions import AWAITING_ENROLMENT, WebSession

blueprint = Blueprint("signin", __name__)


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    if g.session is not None and g.session.signed_in:
        return redirect(url_for("practitioner.home"))
    if request.method == "GET":
        return _login_form()
    sent, expected = request.form.get("csrf_token", ""), request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(sent, expected):
        return _login_form("This form has expired: please try again.", 400)
    name = request.form.get("name", "").strip()
    try:
        outcome = perform("signin.password", actor=name,
                          password=request.form.get("password", ""))
    except MasterUnavailable:
        raise
    except GovernanceError:  # a malformed user name: say no more than for a wrong one
        return _login_form(WRONG_CREDENTIALS, 401)
    if not outcome.result["passed"]:
        return _login_form(outcome.result["problem"], 401)
    pending = state().sessions.start_sign_in(name, outcome.result["next"],
                                             outcome.result.get("totp_uri"))
    return _with_session(redirect(url_for("signin.code")), pending)


@blueprint.route("/login/code", methods=["GET", "POST"])
def code() -> Response | tuple[str, int]:
    pending = g.session
    if pending is None or pending.signed_in:
        return redirect(url_for("signin.login"))
    if request.method == "GET":
        return _code_form(pending)
    if not pending.csrf_matches(request.form.get("csrf_token")):
        return _code_form(pending, "This form has expired: please try again.", 400)
    try:
        outcome = perform("signin.code", actor=pending.user, code=request.form.get("code", ""))
    except GovernanceError as err:
        return _code_form(pending, str(err), 400)
    if not outcome.result["passed"]:
        if "locked" in outcome.result["problem"]:
            state().sessions.end(pending.token)
            return _login_form(outcome.result["problem"], 401)
        return _code_form(pending, outcome.result["problem"], 401)
    signed_in = state().sessions.sign_in(pending, outcome.result["user"]["role"])
    return _with_session(redirect(url_for("practitioner.home")), signed_in)


@blueprint.route("/logout", methods=["POST"])
def logout() -> Response | tuple[str, int]:
    state().sessions.end(g.session.token)
    return signed_out("You have signed out.")


def signed_out(message: str) -> Response:
    """The sign-in page with `message`, the session cookie cleared."""
    response = _login_form(message, 200 if message.startswith("You have") else 403)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _login_form(problem: str | None = None, status: int = 200) -> Response:
    # one token per browser until it signs in: a second tab (or the browser fetching a
    # favicon through /login) must not invalidate the form already shown
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    body, status = page("login.html", status, title="Sign in", problem=problem, login_token=token)
    response = make_response(body, status)
    response.set_cookie(LOGIN_COOKIE, token, **_cookie_options())
    return response


def _code_form(pending: WebSession, problem: str | None = None,
               status: int = 200) -> tuple[str, int]:
    enrolling = pending.stage == AWAITING_ENROLMENT and pending.enrol_uri is not None
    qr_svg = secret = None
    if enrolling:
        qr_svg = segno.make(pending.enrol_uri, error="m").svg_inline(
            omitsize=True, title="QR code to add ContactPoint to your authenticator app")
        secret = parse_qs(urlparse(pending.enrol_uri).query)["secret"][0]
    return page("code.html", status, title="Enrol your token" if enrolling else "Enter your code",
                problem=problem, enrolling=enrolling, qr_svg=qr_svg, secret=secret,
                pending=pending)


def _with_session(response: Response, session: WebSession) -> Response:
    response.set_cookie(SESSION_COOKIE, session.token, **_cookie_options())
    response.delete_cookie(LOGIN_COOKIE)
    return response


def _cookie_options() -> dict:
    return {"httponly": True, "samesite": "Strict", "path": "/",
            "secure": state().settings.secure_cookies}
