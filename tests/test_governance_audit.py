"""The audit log: every search and act is chained by hash; `audit verify` names the first entry
that was edited or deleted and exits 1, and 0 while the chain is intact."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from engine.governance.audit import GENESIS_HASH, redact_personal_data, verify_chain
from engine.governance.policy import DEFAULT_POLICY
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import (
    OLIVER,
    TODAY,
    act,
    add_staff,
    child_of,
    governed_master,
    ingest,
    run_cli,
    search,
    update,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, model: CompiledModel) -> Path:
    """A master with one child, three users and five audit entries (3 adds, 2 searches)."""
    path = tmp_path_factory.mktemp("audit") / "m.duckdb"
    con = governed_master(path)
    ingest(con, model, [update("gro", "g1", **OLIVER)])
    add_staff(con, model)
    search(con, model, name="Oliver Quartermaine", dob="2009-03-01")
    search(con, model, dob="1999-01-01")
    con.close()
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template master, for one test to tamper with."""
    return Path(shutil.copy(template, tmp_path / "m.duckdb"))


def entry_hash(con: duckdb.DuckDBPyConnection, seq: int, prev_hash: str) -> str:
    """sha256(prev_hash + canonical JSON of the entry), as the audit log's contract says."""
    at, user, role, name, reason, query, child_ids = con.execute(
        """SELECT strftime("at" AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%f') || '+00:00',
                  "user", role, act, reason, query, child_ids FROM audit_log WHERE seq = ?""",
        [seq]).fetchall()[0]
    entry = {"seq": seq, "at": at, "user": user, "role": role, "act": name, "reason": reason,
             "query": json.loads(query), "child_ids": json.loads(child_ids)}
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def tamper(db: Path, sql: str) -> None:
    con = duckdb.connect(str(db))
    con.execute(sql)
    con.close()


def test_a_search_is_audited_with_user_role_reason_query_and_children(
    db: Path, model: CompiledModel
):
    con = duckdb.connect(str(db))
    user, role, name, reason, query, personal, child_ids = con.execute(
        'SELECT "user", role, act, reason, query, personal, child_ids FROM audit_log '
        "WHERE seq = 4"
    ).fetchall()[0]
    assert (user, role, name, reason) == ("pat", "practitioner", "search", "safeguarding enquiry")
    personal = json.loads(personal)
    assert {field: kept["value"] for field, kept in personal.items()} == {
        "name": "Oliver Quartermaine", "dob": "2009-03-01"}
    query = json.loads(query)
    assert query == {"name": commitment(personal["name"]), "dob": commitment(personal["dob"]),
                     "postcode": None, "limit": None, "brief": None}
    assert json.loads(child_ids) == [child_of(con, "gro", "g1")]


def commitment(kept: dict) -> str:
    """What the hashed query holds in place of a personal value: sha256 of salt + value."""
    return "sha256:" + hashlib.sha256((kept["salt"] + kept["value"]).encode()).hexdigest()


def test_probes_are_dropped_after_the_retention_period_and_the_chain_still_verifies(
    db: Path, model: CompiledModel
):
    con = duckdb.connect(str(db))
    later = (TODAY + dt.timedelta(days=DEFAULT_POLICY.audit_personal_data_days + 1)).isoformat()
    dry_run = act(con, model, "retention", "root", None, as_of=later, apply=False).result
    assert dry_run["audit_entries_redacted"] == 2  # the two searches
    assert redact_personal_data(con, dt.datetime.now(dt.UTC), apply=True) == 2
    query, personal = con.execute("SELECT query, personal FROM audit_log WHERE seq = 4"
                                  ).fetchall()[0]
    assert personal is None and json.loads(query)["name"].startswith("sha256:")
    assert verify_chain(con).intact


def test_an_edited_probe_breaks_the_chain_while_it_is_kept(
    db: Path, capsys: pytest.CaptureFixture
):
    tamper(db, """UPDATE audit_log SET personal = json_merge_patch(personal,
                  '{"dob": {"value": "2009-03-02"}}') WHERE seq = 4""")
    status, out, _ = run_cli(["audit", "verify", "--db", str(db)], capsys)
    assert status == 1 and out.startswith("audit log BROKEN: entry 4 was edited")


def test_each_hash_chains_the_previous_one(db: Path):
    rows = duckdb.connect(str(db)).execute(
        "SELECT prev_hash, hash FROM audit_log ORDER BY seq").fetchall()
    assert rows[0][0] == GENESIS_HASH
    assert [prev for prev, _ in rows[1:]] == [h for _, h in rows[:-1]]


def test_each_hash_is_sha256_of_the_previous_hash_and_the_canonical_entry(db: Path):
    con = duckdb.connect(str(db))
    for seq in range(1, 6):
        prev_hash, stored = con.execute(
            "SELECT prev_hash, hash FROM audit_log WHERE seq = ?", [seq]).fetchall()[0]
        assert stored == entry_hash(con, seq, prev_hash)


def test_an_intact_chain_verifies_with_exit_0(db: Path, capsys: pytest.CaptureFixture):
    status, out, _ = run_cli(["audit", "verify", "--db", str(db)], capsys)
    assert status == 0
    assert out.startswith("audit log intact: 5 entries; head: entry 5 ")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ("UPDATE audit_log SET reason = 'routine' WHERE seq = 4", "entry 4 was edited"),
        ("UPDATE audit_log SET child_ids = '[]' WHERE seq = 4", "entry 4 was edited"),
        ("""UPDATE audit_log SET "at" = "at" + INTERVAL 1 SECOND WHERE seq = 2""",
         "entry 2 was edited"),
        ("UPDATE audit_log SET query = '{\"name\": \"x\"}' WHERE seq = 5", "entry 5 was edited"),
        ("DELETE FROM audit_log WHERE seq = 3", "entry 3 is missing"),
        ("DELETE FROM audit_log WHERE seq = 1", "entry 1 is missing"),
    ],
)
def test_an_edited_or_deleted_entry_is_named_with_exit_1(
    db: Path, capsys: pytest.CaptureFixture, edit: str, problem: str
):
    tamper(db, edit)
    status, out, _ = run_cli(["audit", "verify", "--db", str(db)], capsys)
    assert status == 1
    assert out.startswith(f"audit log BROKEN: {problem}")


def test_an_edit_with_its_own_hash_recomputed_is_caught_by_the_next_entry(db: Path):
    con = duckdb.connect(str(db))
    con.execute("UPDATE audit_log SET reason = 'routine' WHERE seq = 2")
    prev_hash = con.execute("SELECT prev_hash FROM audit_log WHERE seq = 2").fetchall()[0][0]
    con.execute("UPDATE audit_log SET hash = ? WHERE seq = 2",
                [entry_hash(con, 2, prev_hash)])
    report = verify_chain(con)
    assert report.problem == "entry 2 was edited (entry 3 no longer chains to it)"
    assert report.first_bad_seq == 2


def test_a_deleted_entry_with_later_ones_renumbered_is_caught(db: Path):
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM audit_log WHERE seq = 3")
    con.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")
    report = verify_chain(con)
    assert report.problem == "entry 3 was edited"
    assert report.entries == 2


def test_verify_json_reports_the_head_to_keep_elsewhere(db: Path, capsys: pytest.CaptureFixture):
    status, out, _ = run_cli(["audit", "verify", "--json", "--db", str(db)], capsys)
    report = json.loads(out)
    head = duckdb.connect(str(db)).execute(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()[0]
    assert (status, report["intact"], report["entries"]) == (0, True, 5)
    assert (report["head_seq"], report["head_hash"]) == head


def test_administrative_acts_are_audited(db: Path, model: CompiledModel):
    con = duckdb.connect(str(db))
    act(con, model, "sources.register", "root", "pilot", feed="la_social_care")
    act(con, model, "retention", "root", None, as_of="2010-01-01", apply=False)
    acts = con.execute('SELECT act, "user", reason FROM audit_log ORDER BY seq').fetchall()
    assert acts[-2:] == [("sources.register", "root", "pilot"), ("retention", "root", None)]
    assert verify_chain(con).intact
