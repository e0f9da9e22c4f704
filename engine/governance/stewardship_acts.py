"""The stewardship acts (data managers correct the index), as governance acts: each is checked,
authorised (an accredited data manager), performed by engine.stewardship in the act's
transaction, and audited with the children it touched. Two of them only read, for the data
manager's pages: the review queue with its evidence (`review.list --details`) and a child's
history of decisions (`child.history`)."""

from __future__ import annotations

import json

import duckdb

from engine.config import EngineConfig
from engine.governance.acts import READ, Act, Argument, Context, Outcome
from engine.governance.errors import GovernanceError
from engine.governance.record_views import explain_for
from engine.governance.search import child_view, viewer_for
from engine.stewardship import Steward, StewardshipError, resolve_child_id

_DATA_MANAGER = frozenset({"data_manager"})
_RECORD = Argument(str, required=True, max_chars=200)
_CHILD = Argument(str, required=True, max_chars=64)
# What a data manager compares a queued record and its candidate children on.
BASICS = ("first_name", "surname", "sex", "date_of_birth", "postcode", "school_urn",
          "gp_practice_code", "nhs_number")


def _steward(ctx: Context) -> Steward:
    return Steward(ctx.con, ctx.model(), EngineConfig(), f"user:{ctx.actor.name}", ctx.reason)


def _acting(act):
    """Run a stewardship act, turning its refusal into the governance one-line error."""
    def run(ctx: Context) -> Outcome:
        try:
            return act(ctx)
        except StewardshipError as err:
            raise GovernanceError(str(err)) from None
    return run


def _review_list(ctx: Context) -> Outcome:
    items = _steward(ctx).review_items(ctx.args["limit"] or 100)
    if ctx.args["details"]:
        items = [_with_evidence(ctx, item) for item in items]
    children = {item["child_id"] for item in items}
    if ctx.args["details"]:
        children |= {c["child_id"] for item in items for c in item["candidates"]}
    return Outcome(items, sorted(children))


def _with_evidence(ctx: Context, item: dict) -> dict:
    """A review item with its record's basics, each candidate child's golden basics, and the
    waterfall of the record against the best record of any other child, scored now."""
    record = f"{item['feed']}:{item['record_id']}"
    explained = explain_for(ctx.con, ctx.model(), record, viewer_for(ctx.actor.role))
    best = explained.candidates[0] if explained.candidates and explained.steps else None
    return item | {
        "record": _record_basics(ctx.con, record),
        "candidates": [c | {"basics": _child_basics(ctx.con, c["child_id"])}
                       for c in item["candidates"]],
        "waterfall": {
            "child_id": best.child_id, "record": best.record,
            "match_probability": best.match_probability,
            "steps": [{"name": s.name, "label": s.label, "value_l": s.value_l,
                       "value_r": s.value_r, "match_weight": s.match_weight,
                       "cumulative_weight": s.cumulative_weight} for s in explained.steps],
        } if best else None,
    }


def _record_basics(con: duckdb.DuckDBPyConnection, record: str) -> dict:
    row = con.execute(f"SELECT {', '.join(BASICS)} FROM records WHERE unique_id = ?",
                      [record]).fetchone()
    return dict(zip(BASICS, row or (None,) * len(BASICS), strict=True))


def _child_basics(con: duckdb.DuckDBPyConnection, child_id: str) -> dict:
    """The golden basics of `child_id` (a merged-away id: its survivor's); only the id and
    `gone` once retention has deleted the child."""
    try:
        survivor = resolve_child_id(con, child_id)
    except StewardshipError:
        return {"child_id": child_id, "gone": True}
    row = con.execute(f"SELECT child_id, shielded, {', '.join(BASICS)} FROM children "
                      "WHERE child_id = ?", [survivor]).fetchone()
    return dict(zip(("child_id", "shielded", *BASICS), row, strict=True))


def _child_history(ctx: Context) -> Outcome:
    """A child (a merged-away id: its survivor) with its records, every decision on any
    record it holds or once held (so a record split off shows where it went), and the
    children merged into it."""
    child_id = resolve_child_id(ctx.con, ctx.args["child_id"])
    view = child_view(ctx.con, child_id, viewer_for(ctx.actor.role))
    decisions = ctx.con.execute("""
        SELECT seq, feed || ':' || record_id, child_id, decision, match_probability,
               candidates, model_version, decided_by, decided_at
        FROM decision_history
        WHERE feed || ':' || record_id IN (
            SELECT feed || ':' || record_id FROM links WHERE child_id = $child
            UNION SELECT feed || ':' || record_id FROM decision_history
            WHERE child_id = $child)
        ORDER BY seq
    """, {"child": child_id}).fetchall()
    records = ctx.con.execute(f"""
        SELECT l.feed || ':' || l.record_id, l.decision, l.match_probability,
               {', '.join('r.' + name for name in BASICS)}
        FROM links l JOIN records r ON r.unique_id = l.feed || ':' || l.record_id
        WHERE l.child_id = ? ORDER BY r.event_time, r.unique_id
    """, [child_id]).fetchall()
    merges = ctx.con.execute("""
        SELECT merged_child_id, decided_by, merged_at FROM merges
        WHERE into_child_id = ? ORDER BY merged_at, merged_child_id
    """, [child_id]).fetchall()
    names = ("seq", "record", "child_id", "decision", "match_probability", "candidates",
             "model_version", "decided_by", "decided_at")
    history = {
        "child": view,
        "records": [dict(zip(("record", "decision", "match_probability", *BASICS), row,
                             strict=True)) for row in records],
        "decisions": [
            dict(zip(names, row, strict=True)) | {
                "candidates": json.loads(row[5] or "[]"), "decided_at": row[8].isoformat()}
            for row in decisions],
        "merged_in": [{"child_id": merged, "decided_by": by, "merged_at": at.isoformat()}
                      for merged, by, at in merges],
    }
    return Outcome(history, [child_id])


def _review_resolve(ctx: Context) -> Outcome:
    link, new = ctx.args["link"], bool(ctx.args["new"])
    if (link is None) == (not new):
        raise GovernanceError("give one of --link CHILD or --new")
    child = _steward(ctx).resolve_review(ctx.args["item_id"], link)
    return Outcome({"child_id": child}, [child])


def _link(ctx: Context) -> Outcome:
    child = _steward(ctx).link(ctx.args["record"], ctx.args["child_id"])
    return Outcome({"child_id": child}, [child])


def _unlink(ctx: Context) -> Outcome:
    child = _steward(ctx).unlink(ctx.args["record"])
    return Outcome({"child_id": child}, [child])


def _merge(ctx: Context) -> Outcome:
    child = _steward(ctx).merge(ctx.args["child_id"], ctx.args["other_child_id"])
    return Outcome({"child_id": child}, [child, ctx.args["child_id"], ctx.args["other_child_id"]])


def _split(ctx: Context) -> Outcome:
    records = [r.strip() for r in ctx.args["records"].split(",") if r.strip()]
    child = _steward(ctx).split(ctx.args["child_id"], records)
    return Outcome({"child_id": child}, [child, ctx.args["child_id"]])


STEWARDSHIP_ACTS = (
    Act("review.list", _DATA_MANAGER, {"limit": Argument(int), "details": Argument(bool)},
        _acting(_review_list), effect=READ),
    Act("child.history", _DATA_MANAGER, {"child_id": _CHILD}, _acting(_child_history),
        effect=READ),
    Act("review.resolve", _DATA_MANAGER, {
        "item_id": Argument(int, required=True), "link": Argument(str, max_chars=64),
        "new": Argument(bool),
    }, _acting(_review_resolve), needs_reason=True),
    Act("link", _DATA_MANAGER, {"record": _RECORD, "child_id": _CHILD}, _acting(_link),
        needs_reason=True),
    Act("unlink", _DATA_MANAGER, {"record": _RECORD}, _acting(_unlink), needs_reason=True),
    Act("merge", _DATA_MANAGER, {"child_id": _CHILD, "other_child_id": _CHILD},
        _acting(_merge), needs_reason=True),
    Act("split", _DATA_MANAGER, {
        "child_id": _CHILD, "records": Argument(str, required=True, max_chars=4000),
    }, _acting(_split), needs_reason=True),
)
