"""The stewardship acts (data managers correct the index), as governance acts: each is checked,
authorised (an accredited data manager), performed by engine.stewardship in the act's
transaction, and audited with the children it touched."""

from __future__ import annotations

from engine.config import EngineConfig
from engine.governance.acts import Act, Argument, Context, Outcome
from engine.governance.errors import GovernanceError
from engine.stewardship import Steward, StewardshipError

_DATA_MANAGER = frozenset({"data_manager"})
_RECORD = Argument(str, required=True, max_chars=200)
_CHILD = Argument(str, required=True, max_chars=64)


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
    return Outcome(items, sorted({item["child_id"] for item in items}))


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
    Act("review.list", _DATA_MANAGER, {"limit": Argument(int)}, _acting(_review_list)),
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
