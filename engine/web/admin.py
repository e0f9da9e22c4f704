"""The admin's pages: users (add, revoke, renew accreditation, reset sign-in), accredited
sources, a retention dry run, the audit chain's check and the export of its head."""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint, Response, request

from engine.governance.errors import GovernanceError
from engine.governance.users import ROLES
from engine.web.context import for_roles, page, perform

blueprint = Blueprint("admin", __name__, url_prefix="/admin")


@blueprint.route("/users")
@for_roles("admin")
def users() -> tuple[str, int]:
    return _users_page()


@blueprint.route("/users/<action>", methods=["POST"])
@for_roles("admin")
def user_act(action: str) -> tuple[str, int]:
    form = request.form
    reason = form.get("reason", "").strip() or None
    acts = {
        "add": lambda: perform(
            "users.add", reason, name=form.get("name", "").strip(), role=form.get("role", ""),
            organisation=form.get("organisation", "").strip(),
            accredited_until=form.get("accredited_until", ""), password=form.get("password")),
        "revoke": lambda: perform("users.revoke", reason, name=form.get("name", "")),
        "renew": lambda: perform("users.renew", reason, name=form.get("name", ""),
                                 accredited_until=form.get("accredited_until", "")),
        "reset": lambda: perform("users.reset", reason, name=form.get("name", ""),
                                 password=form.get("password", "")),
    }
    if action not in acts:
        return page("problem.html", 404, title="Not found", problem="No such action.")
    try:
        done = acts[action]().result
    except GovernanceError as err:
        return _users_page(problem=str(err), status=400)
    return _users_page(done=_done_message(action, done))


@blueprint.route("/sources", methods=["GET", "POST"])
@for_roles("admin")
def sources() -> tuple[str, int]:
    problem = done = None
    if request.method == "POST":
        try:
            feed = perform("sources.register", request.form.get("reason", "").strip() or None,
                           feed=request.form.get("feed", "").strip()).result
            done = f"Registered the feed {feed['feed']}."
        except GovernanceError as err:
            problem = str(err)
    rows = perform("sources.list").result
    return page("admin_sources.html", 400 if problem else 200, title="Accredited sources",
                sources=rows, problem=problem, done=done)


@blueprint.route("/retention", methods=["GET", "POST"])
@for_roles("admin")
def retention() -> tuple[str, int]:
    as_of = request.form.get("as_of") or dt.date.today().isoformat()
    if request.method == "GET":
        return page("admin_retention.html", title="Retention", as_of=as_of)
    try:
        report = perform("retention", request.form.get("reason", "").strip() or None,
                         as_of=as_of, apply=False).result
    except GovernanceError as err:
        return page("admin_retention.html", 400, title="Retention", as_of=as_of,
                    problem=str(err))
    return page("admin_retention.html", title="Retention", as_of=as_of, report=report)


@blueprint.route("/audit", methods=["GET", "POST"])
@for_roles("admin")
def audit() -> tuple[str, int]:
    exported, problem = {"head_seq": None, "head_hash": None}, None
    upload = request.files.get("head")
    if request.method == "POST" and upload is not None:
        try:
            head = json.loads(upload.read(4096))
            exported = {"head_seq": int(head["head_seq"]), "head_hash": str(head["head_hash"])}
        except (ValueError, KeyError, TypeError):
            problem = "That file is not an exported audit head."
    report = perform("audit.verify", **exported).result
    return page("admin_audit.html", 400 if problem else 200, title="Audit log", report=report,
                checked_against=exported["head_seq"], problem=problem)


@blueprint.route("/audit/head", methods=["POST"])
@for_roles("admin")
def audit_head() -> Response | tuple[str, int]:
    try:
        head = perform("audit.head", request.form.get("reason", "").strip() or None).result
    except GovernanceError as err:
        return page("problem.html", 409, title="Not exported", problem=str(err))
    name = f"contactpoint-audit-head-{head['head_seq']}.json"
    return Response(json.dumps(head, indent=2) + "\n", mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _users_page(problem: str | None = None, done: str | None = None,
                status: int | None = None) -> tuple[str, int]:
    today = dt.date.today()
    return page("admin_users.html", status or (400 if problem else 200), title="Users",
                users=perform("users.list").result, roles=ROLES, problem=problem, done=done,
                today=today.isoformat(),
                renew_until=(today + dt.timedelta(days=3 * 365)).isoformat())


def _done_message(action: str, user: dict) -> str:
    return {
        "add": f"Added {user['name']} ({user['role']}). At their first sign-in they enrol "
               "their token from the QR code shown.",
        "revoke": f"Revoked {user['name']}: they are signed out at their next request.",
        "renew": f"Renewed {user['name']}: accredited until {user['accredited_until']}.",
        "reset": f"Reset {user['name']}: new password; they enrol a new token at their next "
                 "sign-in.",
    }[action]
