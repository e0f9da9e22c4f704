"""The stewardship verbs of `contactpoint` (DESIGN.md "Stewardship verbs"): review list|resolve,
link, unlink, merge, split. Each takes --db, --user (an accredited data manager), --reason and
--json, and is performed as one audited act (engine.governance.stewardship_acts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from engine.governance.acts import Request
from engine.governance.cli import Handler, _group, _leaf, _perform


def register_stewardship_verbs(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    review = _group(verbs, "review", "the review queue: list, resolve (data managers)")
    listing = _steward_verb(review, "list", "open review items with their candidates",
                            "The records waiting for a person, oldest first: why each was "
                            "queued and the children it could belong to.", _review_list,
                            default_db, reason_required=False)
    listing.add_argument("--limit", type=int, default=100, help="items at most (100)")
    resolve = _steward_verb(review, "resolve", "settle a review item",
                            "Settle ITEM: --link CHILD puts its record in CHILD (must-link); "
                            "--new confirms it as a child of its own (cannot-link with every "
                            "candidate).", _review_resolve, default_db)
    resolve.add_argument("item", type=int, metavar="ITEM", help="the item_id")
    choice = resolve.add_mutually_exclusive_group(required=True)
    choice.add_argument("--link", metavar="CHILD", help="the child the record belongs to")
    choice.add_argument("--new", action="store_true", help="the record is a child of its own")
    link = _steward_verb(verbs, "link", "move a record to a child (data managers)",
                         "Move FEED:RECORD_ID to CHILD: a must-link every later batch keeps; "
                         "the record cannot return to the child it leaves.", _link, default_db)
    link.add_argument("record", metavar="FEED:RECORD_ID")
    link.add_argument("child", metavar="CHILD")
    unlink = _steward_verb(verbs, "unlink", "make a record a child of its own (data managers)",
                           "FEED:RECORD_ID leaves its child and becomes a child of its own "
                           "(cannot-link with the child's other records); the child's golden "
                           "record is rebuilt without it.", _unlink, default_db)
    unlink.add_argument("record", metavar="FEED:RECORD_ID")
    merge = _steward_verb(verbs, "merge", "make one child of two (data managers)",
                          "One child of CHILD and CHILD (must-link). The survivor is the child "
                          "with more records (then the earlier founding record); the other id "
                          "keeps resolving to it, and a shield survives.", _merge, default_db)
    merge.add_argument("children", nargs=2, metavar="CHILD")
    split = _steward_verb(verbs, "split", "split records off a child (data managers)",
                          "The listed records of CHILD become a new child (cannot-link with "
                          "the rest); both children's golden records are rebuilt.", _split,
                          default_db)
    split.add_argument("child", metavar="CHILD")
    split.add_argument("--records", required=True, metavar="FEED:ID[,FEED:ID…]")


def _steward_verb(group: argparse._SubParsersAction, name: str, help_text: str,
                  description: str, handler: Handler, default_db: Path,
                  reason_required: bool = True) -> argparse.ArgumentParser:
    parser = _leaf(group, name, help_text, description, handler, default_db)
    parser.add_argument("--user", required=True, help="the data manager (accredited)")
    parser.add_argument("--reason", required=reason_required, help="why (audited)")
    return parser


def _review_list(args: argparse.Namespace) -> int:
    request = Request("review.list", args.user, args.reason, {"limit": args.limit})
    return _perform(args, request, _items_table)


def _review_resolve(args: argparse.Namespace) -> int:
    request = Request("review.resolve", args.user, args.reason,
                      {"item_id": args.item, "link": args.link, "new": args.new})
    return _perform(args, request, _child_text)


def _link(args: argparse.Namespace) -> int:
    request = Request("link", args.user, args.reason,
                      {"record": args.record, "child_id": args.child})
    return _perform(args, request, _child_text)


def _unlink(args: argparse.Namespace) -> int:
    return _perform(args, Request("unlink", args.user, args.reason, {"record": args.record}),
                    _child_text)


def _merge(args: argparse.Namespace) -> int:
    first, second = args.children
    request = Request("merge", args.user, args.reason,
                      {"child_id": first, "other_child_id": second})
    return _perform(args, request, _child_text)


def _split(args: argparse.Namespace) -> int:
    request = Request("split", args.user, args.reason,
                      {"child_id": args.child, "records": args.records})
    return _perform(args, request, _child_text)


def _child_text(result: dict) -> str:
    return f"done: child {result['child_id']}"


def _items_table(items: list[dict]) -> Table | str:
    if not items:
        return "no open review items"
    table = Table(show_header=True, header_style="bold")
    for column in ("item", "record", "provisional child", "why", "candidates"):
        table.add_column(column)
    for item in items:
        candidates = ", ".join(
            f"{c['child_id']} ({c['match_probability']:.3f})" for c in item["candidates"]
        )
        table.add_row(str(item["item_id"]), f"{item['feed']}:{item['record_id']}",
                      item["child_id"], item["reason"].split(":")[0], candidates or "-")
    return table
