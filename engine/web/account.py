"""The signed-in user's own account: changing their password (every role)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from engine.governance.errors import GovernanceError
from engine.governance.policy import DEFAULT_POLICY
from engine.web import signin
from engine.web.context import page, perform, session, state

blueprint = Blueprint("account", __name__, url_prefix="/account")
TITLE = "Change your password"


@blueprint.route("/password", methods=["GET", "POST"])
def password() -> Response | tuple[str, int]:
    if request.method == "GET":
        return _form()
    form = request.form
    new = form.get("new_password", "")
    if new != form.get("new_password_again", ""):  # a typing slip: no act, nothing counted
        return _form("the two new passwords differ: type the same one twice", 400)
    try:
        outcome = perform("users.password", current_password=form.get("current_password", ""),
                          new_password=new)
    except GovernanceError as err:
        return _form(str(err), 400)
    problem = outcome.result.get("problem")
    if problem and "locked" in problem:  # guessing from a signed-in session: sign it out too
        state().sessions.end(session().token)
        return signin.signed_out(problem)
    if problem:
        return _form(problem, 400)
    ended = state().sessions.end_others(session())
    signed_out = f" Your {ended} other session(s) were signed out." if ended else ""
    return _form(done=f"Your password is changed.{signed_out} Your token stays the same.")


def _form(problem: str | None = None, status: int = 200, done: str | None = None
          ) -> tuple[str, int]:
    return page("account_password.html", status, title=TITLE, problem=problem, done=done,
                min_chars=DEFAULT_POLICY.min_password_chars)
