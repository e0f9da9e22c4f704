"""Shielding: only a data manager shields or unshields, and the resolver's safety rule leaves no
unshielded duplicate of a shielded child (new children and merge survivors are shielded until a
data manager reviews them)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from engine.governance.errors import AccessRefused, GovernanceError
from engine.governance.search import CONTACT_DATA_MANAGER
from engine.resolution.changes import SAFETY_RULE
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import (
    AMELIA,
    OLIVER,
    act,
    add_staff,
    child_of,
    governed_master,
    ingest,
    run_cli,
    search,
    update,
)

# Oliver at a new address with his birthday a day out: scores in the review band against him
OLIVER_DOUBTFUL = OLIVER | {"date_of_birth": "2009-03-02", "postcode": "M1 1AE"}




@pytest.fixture
def con(tmp_path: Path, model: CompiledModel) -> duckdb.DuckDBPyConnection:
    """A master holding Oliver (shielded by the data manager) and Amelia."""
    con = governed_master(tmp_path / "m.duckdb")
    ingest(con, model, [update("gro", "oliver", source_key="R1", nhs_number="9434765919",
                               **OLIVER),
                        update("gro", "amelia", source_key="R2", **AMELIA)])
    add_staff(con, model)
    act(con, model, "shield", "dana", "child protection plan", child_id=oliver(con))
    return con


def oliver(con: duckdb.DuckDBPyConnection) -> str:
    return child_of(con, "gro", "oliver")


def shielding(con: duckdb.DuckDBPyConnection, child_id: str) -> tuple:
    return con.execute(
        "SELECT shielded, shielded_by FROM children WHERE child_id = ?", [child_id]
    ).fetchall()[0]


def test_a_data_manager_shields_and_unshields_a_child(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    assert shielding(con, oliver(con)) == (True, "dana")
    outcome = act(con, model, "shield", "dana", "plan ended", child_id=oliver(con),
                  unshield=True)
    assert outcome.result == {"child_id": oliver(con), "shielded": False, "was_shielded": True}
    assert shielding(con, oliver(con)) == (False, None)


@pytest.mark.parametrize("user", ["pat", "root"])
def test_only_a_data_manager_may_shield(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, user: str
):
    with pytest.raises(AccessRefused, match="this act needs the data_manager role"):
        act(con, model, "shield", user, "worried", child_id=child_of(con, "gro", "amelia"))
    assert shielding(con, child_of(con, "gro", "amelia")) == (False, None)


def test_shielding_an_unknown_or_merged_child_is_refused(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    with pytest.raises(GovernanceError, match="no child 'C0' in the master"):
        act(con, model, "shield", "dana", "risk", child_id="C0")
    with pytest.raises(GovernanceError, match="a child ID is 1-64 letters"):
        act(con, model, "shield", "dana", "risk", child_id="C1' OR '1'='1")
    amelia = child_of(con, "gro", "amelia")
    con.execute("UPDATE children SET status = 'merged', merged_into = 'C9' WHERE child_id = ?",
                [amelia])
    with pytest.raises(GovernanceError, match="was merged into C9: act on that one"):
        act(con, model, "shield", "dana", "risk", child_id=amelia)


def test_shield_needs_a_reason_and_is_audited(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    with pytest.raises(GovernanceError, match="a reason is required"):
        act(con, model, "shield", "dana", "  \x00 ", child_id=oliver(con))
    entry = con.execute('SELECT "user", act, reason, child_ids FROM audit_log '
                        "WHERE act = 'shield'").fetchall()
    assert entry == [("dana", "shield", "child protection plan", f'["{oliver(con)}"]')]


def test_cli_shield_and_unshield(tmp_path: Path, model: CompiledModel,
                                 capsys: pytest.CaptureFixture):
    db = tmp_path / "m.duckdb"
    con = governed_master(db)
    ingest(con, model, [update("gro", "oliver", **OLIVER)])
    add_staff(con, model)
    child = oliver(con)
    con.close()
    verb = ["shield", child, "--user", "dana", "--reason", "risk", "--db", str(db)]
    assert run_cli(verb, capsys)[:2] == (0, f"child {child} is now shielded\n")
    assert run_cli([*verb, "--unshield"], capsys)[:2] == (0, f"child {child} is now not "
                                                              "shielded\n")
    status, _, err = run_cli([*verb[:3], "pat", *verb[4:]], capsys)
    assert (status, err) == (2, "contactpoint shield: user 'pat' is a practitioner; this act "
                                "needs the data_manager role\n")


# ---------------------------------------------------------------- the safety rule (engine)


def test_a_feed_update_scoring_in_review_band_against_a_shielded_child_makes_a_shielded_child(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    ingest(con, model, [update("dwp", "claim", source_key="D1", **OLIVER_DOUBTFUL,
                               event_time="2010-06-01T09:00:00Z")])
    decision, child = con.execute(
        "SELECT decision, child_id FROM links WHERE feed = 'dwp'").fetchall()[0]
    assert decision == "review"
    assert child != oliver(con)
    assert shielding(con, child) == (True, SAFETY_RULE)
    hits = search(con, model, name="Oliver Quartermaine", dob="2009-03-02", postcode="M1 1AE")
    assert hits and all(hit["contact"] == CONTACT_DATA_MANAGER for hit in hits)


def test_an_unrelated_new_child_is_not_shielded(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    ingest(con, model, [update("dwp", "claim", source_key="D1", first_name="ZARA",
                               surname="ABERNETHY", sex="F", date_of_birth="2007-05-05",
                               postcode="BS1 4DJ")])
    assert shielding(con, child_of(con, "dwp", "claim")) == (False, None)


def test_a_record_linking_to_a_shielded_child_stays_behind_the_shield(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    ingest(con, model, [update("nhs", "reg", source_key="9434765919", nhs_number="9434765919",
                               gp_practice_code="B86001",
                               **OLIVER | {"postcode": "M1 1AE", "address_line1": "9 NEW RD"})])
    assert child_of(con, "nhs", "reg") == oliver(con)
    hit = search(con, model, name="Oliver Quartermaine", dob="2009-03-01")[0]
    assert "M1 1AE" not in hit.values() and hit["contact"] == CONTACT_DATA_MANAGER
