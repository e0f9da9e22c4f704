"""The searcher's pages (practitioners and data managers): search with a reason, results, and a
child's page with the ContactPoint basics and contacts. Each search and each child page is an
audited act; a shielded child shows only what the role may see."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, redirect, request, url_for

from engine.governance.errors import AccessRefused, GovernanceError
from engine.web.context import for_roles, page, perform, session, state

blueprint = Blueprint("practitioner", __name__)
SEARCHERS = ("practitioner", "data_manager")
FEED_NAMES = {"gro": "Births (GRO)", "dwp": "Child Benefit (DWP)", "nhs": "NHS",
              "census": "School census"}


@blueprint.route("/")
def home() -> Response:
    if g.user["role"] == "admin":
        return redirect(url_for("admin.users"))
    return redirect(url_for("practitioner.search"))


@blueprint.route("/search", methods=["GET", "POST"])
@for_roles(*SEARCHERS)
def search() -> tuple[str, int]:
    probe = {field: request.form.get(field, "").strip() for field in ("name", "dob", "postcode")}
    reason = request.form.get("reason", "").strip()
    if request.method == "GET":
        return page("search.html", title="Find a child", probe=probe, reason=reason)
    try:
        hits = perform("search", reason, brief=True,
                       **{k: v or None for k, v in probe.items()}).result
    except AccessRefused as refused:
        return page("problem.html", 403, title="Refused", problem=str(refused))
    except GovernanceError as err:
        return page("search.html", 400, title="Find a child", probe=probe, reason=reason,
                    problem=str(err))
    return page("search.html", title="Search results", probe=probe, reason=reason, hits=hits)


@blueprint.route("/child", methods=["POST"])
@for_roles(*SEARCHERS)
def child() -> tuple[str, int]:
    reason = request.form.get("reason", "").strip()
    try:
        view = perform("child.view", reason, child_id=request.form.get("child_id", "")).result
    except AccessRefused as refused:
        return page("problem.html", 403, title="Refused", problem=str(refused))
    except GovernanceError as err:
        return page("problem.html", 400, title="Child not shown", problem=str(err))
    name = " ".join(filter(None, (view.get("first_name"), view.get("surname")))) or "Child"
    return page("child.html", title=name.title(), child=view, reason=reason,
                feed_names=FEED_NAMES)


@blueprint.route("/api/session")
def session_info() -> Response:
    current = session()
    return jsonify(user=current.user, role=g.user["role"],
                   seconds_left=state().sessions.seconds_left(current))
