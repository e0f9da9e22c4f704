"""Accredited sources: the four national feeds are registered from the start; only an admin
registers another, and the feed reader can ask which feeds are registered."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from engine.governance.errors import AccessRefused, GovernanceError
from engine.governance.schema import create_governance_tables
from engine.governance.sources import registered_feeds
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import act, add_staff, governed_master, run_cli


@pytest.fixture
def con(tmp_path: Path, model: CompiledModel) -> duckdb.DuckDBPyConnection:
    con = governed_master(tmp_path / "m.duckdb")
    add_staff(con, model)
    return con


def test_the_four_national_feeds_are_registered_once(con: duckdb.DuckDBPyConnection):
    create_governance_tables(con)  # idempotent
    assert registered_feeds(con) == ("census", "dwp", "gro", "nhs")


def test_an_admin_registers_a_feed_and_it_is_audited(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    row = act(con, model, "sources.register", "root", "pilot", feed="la_social_care").result
    assert (row["feed"], row["registered_by"]) == ("la_social_care", "root")
    assert "la_social_care" in registered_feeds(con)
    assert con.execute("SELECT act, query FROM audit_log ORDER BY seq DESC LIMIT 1"
                       ).fetchall() == [("sources.register", '{"feed":"la_social_care"}')]


@pytest.mark.parametrize("user", ["pat", "dana"])
def test_only_an_admin_registers_a_feed(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, user: str
):
    with pytest.raises(AccessRefused, match="this act needs the admin role"):
        act(con, model, "sources.register", user, None, feed="la_social_care")
    assert registered_feeds(con) == ("census", "dwp", "gro", "nhs")


@pytest.mark.parametrize("feed", ["GRO2", "../gro", "a b", "x" * 33, "1abc", "gro'; --", ""])
def test_a_feed_name_must_be_a_plain_folder_name(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, feed: str
):
    with pytest.raises(GovernanceError, match="feed name is 1-32 lower-case|feed is required"):
        act(con, model, "sources.register", "root", None, feed=feed)


def test_registering_a_feed_twice_is_refused(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    with pytest.raises(GovernanceError, match="feed 'gro' is already registered"):
        act(con, model, "sources.register", "root", None, feed="gro")


def test_cli_sources_list_and_register(tmp_path: Path, model: CompiledModel,
                                       capsys: pytest.CaptureFixture):
    db = tmp_path / "m.duckdb"
    con = governed_master(db)
    add_staff(con, model)
    con.close()
    status, out, _ = run_cli(["sources", "register", "pilot_feed", "--by", "root",
                              "--db", str(db)], capsys)
    assert (status, out) == (0, "registered feed pilot_feed\n")
    status, out, _ = run_cli(["sources", "list", "--json", "--db", str(db)], capsys)
    assert [row["feed"] for row in json.loads(out)] == ["census", "dwp", "gro", "nhs",
                                                         "pilot_feed"]
