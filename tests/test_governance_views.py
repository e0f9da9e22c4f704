"""`explain` and `evaluate` are views of children: they need an accredited user and a reason,
follow shielding like a search, and are audited; `audit verify --head` catches the newest
entries deleted after a head was exported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from engine.governance.search import CONTACT_DATA_MANAGER
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
    update,
)

HARRY = OLIVER | {"first_name": "HARRY"}  # Oliver's twin: Oliver is a candidate for his record


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, model: CompiledModel) -> Path:
    """Oliver (shielded) and his twin Harry, Amelia; root, pat and dana."""
    path = tmp_path_factory.mktemp("views") / "m.duckdb"
    con = governed_master(path)
    ingest(con, model, [update("gro", "oliver", source_key="R1", **OLIVER),
                        update("gro", "harry", source_key="R2", **HARRY),
                        update("gro", "amelia", source_key="R3", **AMELIA)])
    add_staff(con, model)
    act(con, model, "shield", "dana", "risk", child_id=child_of(con, "gro", "oliver"),
        unshield=False)
    con.close()
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(template, tmp_path / "m.duckdb"))


def last_audit(db: Path) -> tuple:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute('SELECT "user", act, reason, query, child_ids FROM audit_log '
                           "ORDER BY seq DESC LIMIT 1").fetchall()[0]
    finally:
        con.close()


def explain(db: Path, record: str, user: str, capsys: pytest.CaptureFixture) -> tuple:
    return run_cli(["explain", record, "--db", str(db), "--user", user, "--reason",
                    "why was this linked", "--json"], capsys)


def test_explain_needs_a_user_and_a_reason(db: Path):
    with pytest.raises(SystemExit):
        run_cli(["explain", "gro:harry", "--db", str(db)], None)


def test_explain_is_audited_with_the_children_it_shows(db: Path, capsys: pytest.CaptureFixture):
    status, out, _ = explain(db, "gro:amelia", "pat", capsys)
    assert status == 0 and json.loads(out)["text"].startswith("gro:amelia: new -> child ")
    user, name, reason, query, child_ids = last_audit(db)
    assert (user, name, reason) == ("pat", "explain", "why was this linked")
    assert json.loads(query)["record"] == "gro:amelia"
    con = duckdb.connect(str(db), read_only=True)
    assert json.loads(child_ids)[0] == child_of(con, "gro", "amelia")


def test_a_practitioner_is_refused_the_record_of_a_shielded_child(
    db: Path, capsys: pytest.CaptureFixture
):
    status, _, err = explain(db, "gro:oliver", "pat", capsys)
    assert status == 2 and CONTACT_DATA_MANAGER in err
    user, name, _, query, _ = last_audit(db)
    assert (user, name) == ("pat", "explain") and "refused" in json.loads(query)
    assert explain(db, "gro:oliver", "dana", capsys)[0] == 0


def test_a_shielded_candidate_is_left_out_of_a_practitioners_explanation(
    db: Path, capsys: pytest.CaptureFixture
):
    con = duckdb.connect(str(db), read_only=True)
    oliver = child_of(con, "gro", "oliver")
    con.close()
    _, manager_view, _ = explain(db, "gro:harry", "dana", capsys)
    assert oliver in json.loads(manager_view)["text"]
    assert "waterfall against gro:oliver" in json.loads(manager_view)["text"]
    _, practitioner_view, _ = explain(db, "gro:harry", "pat", capsys)
    text = json.loads(practitioner_view)["text"]
    assert oliver not in text and "waterfall" not in text and "OLIVER" not in text


def test_evaluate_is_a_data_managers_audited_act(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    truth = tmp_path / "truth.csv"
    truth.write_text("feed,record_id,person_id\ngro,oliver,1\ngro,harry,2\ngro,amelia,3\n")
    argv = ["evaluate", "--db", str(db), "--truth", str(truth), "--reason", "model check",
            "--json"]
    status, out, _ = run_cli([*argv, "--user", "dana"], capsys)
    assert status == 0 and json.loads(out)["true_children"] == 3
    assert last_audit(db)[:3] == ("dana", "evaluate", "model check")
    status, _, err = run_cli([*argv, "--user", "pat"], capsys)
    assert status == 2 and "needs the data_manager role" in err


def test_verify_against_an_exported_head_catches_deleted_newest_entries(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    head = tmp_path / "head.json"
    assert run_cli(["audit", "head", "--db", str(db), "--user", "root", "--out", str(head)],
                   capsys)[0] == 0
    exported = json.loads(head.read_text())
    verify = ["audit", "verify", "--db", str(db), "--head", str(head)]
    assert run_cli(verify, capsys)[0] == 0
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM audit_log WHERE seq >= ?", [exported["head_seq"] - 1])
    con.close()
    assert run_cli(["audit", "verify", "--db", str(db)], capsys)[0] == 0  # looks whole alone
    status, out, _ = run_cli(verify, capsys)
    assert status == 1
    assert out.startswith(f"audit log BROKEN: entries {exported['head_seq'] - 1} to "
                          f"{exported['head_seq']} are missing")
