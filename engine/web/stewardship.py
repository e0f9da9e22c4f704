"""The data manager's pages: the review queue (each open item with its candidates side by side
and the match waterfall, settled with a reason) and a child's stewardship page (records, history
of decisions, unlink, split, merge, link, shield). Every page and form is one audited act of
engine.governance.stewardship_acts (or `shield`); a refusal shows its one line."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, request

from engine.governance.errors import GovernanceError
from engine.web.context import for_roles, page, perform

blueprint = Blueprint("stewardship", __name__)
REVIEW_PAGE_ITEMS = 20  # the oldest items, each with its evidence scored now


@blueprint.route("/review")
@for_roles("data_manager")
def review() -> tuple[str, int]:
    return _review_page()


@blueprint.route("/review/<int:item_id>", methods=["POST"])
@for_roles("data_manager")
def settle(item_id: int) -> tuple[str, int]:
    choice = request.form.get("settle", "")
    link = choice.removeprefix("link:") if choice.startswith("link:") else None
    try:
        if link is None and choice != "new":
            raise GovernanceError("choose the child this record belongs to, or a child of its own")
        child = perform("review.resolve", _reason(), item_id=item_id, link=link,
                        new=True if link is None else None).result["child_id"]
    except GovernanceError as err:
        return _review_page(problem=str(err), status=400)
    settled = f"joined child {child}" if link else f"is child {child}, a child of its own"
    return _review_page(done=f"Review item {item_id} settled: the record {settled}.")


@blueprint.route("/children/<child_id>/manage")
@for_roles("data_manager")
def manage(child_id: str) -> tuple[str, int]:
    return _manage_page(child_id)


@blueprint.route("/children/<child_id>/<action>", methods=["POST"])
@for_roles("data_manager")
def correct(child_id: str, action: str) -> tuple[str, int]:
    if action not in _CORRECTIONS:
        return page("problem.html", 404, title="Not found", problem="No such action.")
    try:
        done, other = _CORRECTIONS[action](child_id)
    except GovernanceError as err:
        return _manage_page(child_id, problem=str(err), status=400)
    return _manage_page(child_id, done=done, other=other)


def _reason() -> str | None:
    return request.form.get("reason", "").strip() or None


# A correction returns what was done and the other child it made or touched (None: none).
Done = tuple[str, str | None]


def _unlink(child_id: str) -> Done:
    record = request.form.get("record", "")
    child = perform("unlink", _reason(), record=record).result["child_id"]
    return f"Unlinked {record}: it is now child {child}.", child


def _split(child_id: str) -> Done:
    records = request.form.getlist("record")
    if not records:
        raise GovernanceError("tick the records that belong to another child")
    child = perform("split", _reason(), child_id=child_id,
                    records=",".join(records)).result["child_id"]
    return f"Split {', '.join(records)} into a new child {child}.", child


def _merge(child_id: str) -> Done:
    other = request.form.get("other_child_id", "").strip()
    child = perform("merge", _reason(), child_id=child_id,
                    other_child_id=other).result["child_id"]
    return f"Merged {child_id} and {other}: they are child {child}.", None


def _link(child_id: str) -> Done:
    record = request.form.get("record", "").strip()
    perform("link", _reason(), record=record, child_id=child_id)
    return f"Linked {record} to this child.", None


def _shielding(unshield: bool) -> Callable[[str], Done]:
    def act(child_id: str) -> Done:
        shielded = perform("shield", _reason(), child_id=child_id,
                           unshield=unshield).result["shielded"]
        return ("Shielded: practitioners now see only the name, sex and date of birth."
                if shielded else "The shield is removed."), None
    return act


_CORRECTIONS: dict[str, Callable[[str], Done]] = {
    "unlink": _unlink, "split": _split, "merge": _merge, "link": _link,
    "shield": _shielding(False), "unshield": _shielding(True),
}


def _review_page(problem: str | None = None, done: str | None = None,
                 status: int | None = None) -> tuple[str, int]:
    items = perform("review.list", limit=REVIEW_PAGE_ITEMS, details=True).result
    return page("review.html", status or (400 if problem else 200), title="Review queue",
                items=items, problem=problem, done=done, shown_at_most=REVIEW_PAGE_ITEMS)


def _manage_page(child_id: str, problem: str | None = None, done: str | None = None,
                 other: str | None = None, status: int | None = None) -> tuple[str, int]:
    try:
        history = perform("child.history", child_id=child_id).result
    except GovernanceError as err:
        return page("problem.html", 404, title="Child not shown", problem=problem or str(err))
    child = history["child"]
    name = " ".join(filter(None, (child.get("first_name"), child.get("surname")))) or "Child"
    return page("manage.html", status or (400 if problem else 200),
                title=f"Manage {name.title()}", history=history, child=child,
                asked_for=child_id, other=other, problem=problem, done=done)
