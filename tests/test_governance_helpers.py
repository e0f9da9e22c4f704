"""Shared arrangements for the governance tests (no tests here): a real master file holding
children resolved by the real engine from canonical updates, accredited users, and the
governance CLI verbs on a parser of our own."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from engine.config import EngineConfig
from engine.errors import UsageError
from engine.governance.acts import Outcome, Request, perform
from engine.governance.cli import register_governance_verbs
from engine.governance.schema import create_governance_tables
from engine.master_store import open_master
from engine.resolver import Resolver
from linkage_models.scoring import CompiledModel
from streams.canonical import Update

TODAY = dt.date.today()
NEXT_YEAR = (TODAY + dt.timedelta(days=365)).isoformat()
EVENTS = {"gro": "birth", "dwp": "new_claim", "nhs": "registration", "census": "census"}


def governed_master(path: Path) -> duckdb.DuckDBPyConnection:
    """A new master file with the governance tables."""
    con = open_master(path)
    create_governance_tables(con)
    return con


def update(feed: str, record_id: str, **fields: str) -> Update:
    """A canonical update of `feed` (event and time defaulted); `first_name_std` follows
    `first_name` unless given."""
    fields.setdefault("first_name_std", fields.get("first_name"))
    fields.setdefault("event_time", "2010-01-04T09:00:00Z")
    return Update(feed, record_id, fields.pop("event", EVENTS[feed]), **fields)


def ingest(con: duckdb.DuckDBPyConnection, model: CompiledModel, updates: list[Update]) -> None:
    """Resolve `updates` into the master as one micro-batch, with the engine's resolver."""
    Resolver(con, model, EngineConfig()).resolve(updates)


def child_of(con: duckdb.DuckDBPyConnection, feed: str, record_id: str) -> str:
    return con.execute(
        "SELECT child_id FROM links WHERE feed = ? AND record_id = ?", [feed, record_id]
    ).fetchall()[0][0]


def act(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, act_name: str, actor: str | None,
    reason: str | None = None, /, **args: Any,
) -> Outcome:
    """Perform one governance act on `con`, as the CLI would ask for it."""
    return perform(con, Request(act_name, actor, reason, args), lambda: model)


def add_staff(con: duckdb.DuckDBPyConnection, model: CompiledModel) -> None:
    """Users `root` (admin, the bootstrap), `pat` (practitioner), `dana` (data manager)."""
    act(con, model, "users.add", None, name="root", role="admin", organisation="DfE",
        accredited_until=NEXT_YEAR)
    for name, role in (("pat", "practitioner"), ("dana", "data_manager")):
        act(con, model, "users.add", "root", name=name, role=role, organisation="Leeds CC",
            accredited_until=NEXT_YEAR)


def search(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, user: str = "pat", **probe: Any
) -> list[dict]:
    """The hits of a search by `user` (name, dob, postcode, limit as keywords)."""
    args = {"name": None, "dob": None, "postcode": None, "limit": None, "brief": None} | probe
    return act(con, model, "search", user, "safeguarding enquiry", **args).result


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run a governance verb as `contactpoint` would: (exit status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="contactpoint")
    register_governance_verbs(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
    except UsageError as err:
        print(f"contactpoint {args.verb}: {err}", file=sys.stderr)
        status = 2
    captured = capsys.readouterr()
    return status, captured.out, captured.err


OLIVER = dict(first_name="OLIVER", surname="QUARTERMAINE", sex="M", date_of_birth="2009-03-01",
              address_line1="1 HIGH STREET", town="LEEDS", postcode="LS6 2AB")
AMELIA = dict(first_name="AMELIA", surname="FOTHERINGHAM", sex="F", date_of_birth="2008-07-14",
              address_line1="2 LOW ROAD", town="YORK", postcode="YO1 7HH")
