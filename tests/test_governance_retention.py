"""Retention: archive at 18 (25 for a consenting care leaver) or a year after death, purge six
years after archiving; a dry run changes nothing; archived children leave practitioners' view."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from engine.governance.errors import AccessRefused, GovernanceError
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import (
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

BORN_2000 = dict(sex="F", date_of_birth="2000-01-01", postcode="LS6 2AB")



@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, model: CompiledModel) -> Path:
    """Adult (born 2000), care leaver (born 2000, consented), deceased (died 2015-06-01),
    young (born 2015) and a child with no date of birth."""
    path = tmp_path_factory.mktemp("retention") / "m.duckdb"
    con = governed_master(path)
    ingest(con, model, [
        update("gro", "adult", source_key="R1", first_name="ADA", surname="ZWEIG",
               nhs_number="9434765919", **BORN_2000),
        update("gro", "leaver", source_key="R2", first_name="CARA", surname="LEAVESLEY",
               **BORN_2000),
        update("gro", "deceased", source_key="R3", first_name="DAN", surname="DORMER",
               sex="M", date_of_birth="2010-02-02", postcode="M1 1AE"),
        update("gro", "young", source_key="R4", first_name="YUSUF", surname="YOUNGER",
               sex="M", date_of_birth="2015-03-03", postcode="BS1 4DJ"),
        update("dwp", "nodob", source_key="D5", first_name="NELL", surname="NODATE", sex="F",
               postcode="YO1 7HH"),
    ])
    ingest(con, model, [update("gro", "death", event="death", first_name="DAN",
                               surname="DORMER", sex="M", date_of_birth="2010-02-02",
                               date_of_death="2015-06-01", postcode="M1 1AE")])
    con.execute("UPDATE children SET care_leaver_consent = true WHERE child_id = ?",
                [child_of(con, "gro", "leaver")])
    add_staff(con, model)
    con.close()
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(template, tmp_path / "m.duckdb"))


@pytest.fixture
def con(db: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db))


def ids(con: duckdb.DuckDBPyConnection, *names: str) -> list[str]:
    feeds = {"nodob": "dwp"}
    return [child_of(con, feeds.get(name, "gro"), name) for name in names]


def retention(con, model, as_of: str, apply: bool = False) -> dict:
    return act(con, model, "retention", "root", "annual review", as_of=as_of, apply=apply).result


def count(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> int:
    return con.execute(sql, params or []).fetchall()[0][0]


def test_a_dry_run_reports_what_is_due_and_changes_nothing(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    adult, deceased = ids(con, "adult", "deceased")
    report = retention(con, model, "2019-01-01")
    assert report["archive"] == [
        {"child_id": deceased, "rule": "1 year(s) after death", "due": "2016-06-01"},
        {"child_id": adult, "rule": "age 18", "due": "2018-01-01"},
    ]
    assert (report["purge"], report["undetermined"], report["applied"]) == ([], 1, False)
    assert count(con, "SELECT count(*) FROM children WHERE archived_on IS NOT NULL") == 0


def test_apply_archives_at_18_after_death_and_at_25_for_a_care_leaver(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    adult, leaver, deceased, young = ids(con, "adult", "leaver", "deceased", "young")
    retention(con, model, "2019-01-01", apply=True)
    archived = dict(con.execute(
        "SELECT child_id, archived_on::VARCHAR FROM children WHERE archived_on IS NOT NULL"
    ).fetchall())
    assert archived == {adult: "2019-01-01", deceased: "2019-01-01"}
    report = retention(con, model, "2024-12-31", apply=True)
    assert report["archive"] == []
    report = retention(con, model, "2025-01-01", apply=True)
    assert report["archive"] == [{"child_id": leaver, "rule": "age 25 (care leaver)",
                                  "due": "2025-01-01"}]
    assert young not in retention(con, model, "2025-01-01")["archive"]


def test_archived_children_leave_a_practitioners_search(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    probe = {"name": "Ada Zweig", "dob": "2000-01-01"}
    assert [hit["child_id"] for hit in search(con, model, **probe)] == ids(con, "adult")
    retention(con, model, "2019-01-01", apply=True)
    assert search(con, model, **probe) == []
    assert search(con, model, "dana", **probe)[0]["archived_on"] == "2019-01-01"


def test_purge_six_years_after_archiving_deletes_the_child_everywhere(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    adult, deceased = ids(con, "adult", "deceased")
    retention(con, model, "2019-01-01", apply=True)
    assert retention(con, model, "2024-12-31")["purge"] == []
    report = retention(con, model, "2025-01-01", apply=True)
    assert [row["child_id"] for row in report["purge"]] == [adult, deceased]
    assert report["deleted_rows"] == {"blocking_keys": 24, "records": 3, "links": 3, "xref": 2,
                                      "review_queue": 0, "merges": 0, "children": 2,
                                      "scored_pairs": 1, "constraints": 0,
                                      "decision_history": 3}
    assert count(con, "SELECT count(*) FROM blocking_keys "
                      "WHERE record_no NOT IN (SELECT record_no FROM records)") == 0
    for table in ("children", "records", "links", "xref"):
        assert count(con, f"SELECT count(*) FROM {table} WHERE child_id IN (?, ?)",
                     [adult, deceased]) == 0
    assert count(con, "SELECT count(*) FROM term_frequencies WHERE value IN "
                      "('ZWEIG', 'DORMER', 'ADA', 'DAN')") == 0
    assert count(con, "SELECT count(*) FROM children") == 3


def test_purge_takes_the_children_merged_into_the_purged_one(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    adult, young = ids(con, "adult", "young")
    con.execute("UPDATE children SET status = 'merged', merged_into = ? WHERE child_id = ?",
                [adult, young])
    retention(con, model, "2019-01-01", apply=True)
    retention(con, model, "2025-01-01", apply=True)
    assert count(con, "SELECT count(*) FROM children WHERE child_id IN (?, ?)",
                 [adult, young]) == 0


def test_apply_with_a_future_date_or_by_a_non_admin_is_refused(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    future = TODAY.replace(year=TODAY.year + 1).isoformat()
    with pytest.raises(GovernanceError, match="--apply takes an --as-of date no later than"):
        retention(con, model, future, apply=True)
    assert retention(con, model, future)["applied"] is False
    with pytest.raises(AccessRefused, match="this act needs the admin role"):
        act(con, model, "retention", "dana", None, as_of="2019-01-01", apply=True)


def test_retention_is_audited_with_the_children_it_touched(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    retention(con, model, "2019-01-01", apply=True)
    query, child_ids = con.execute(
        "SELECT query, child_ids FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()[0]
    assert json.loads(query) == {"as_of": "2019-01-01", "apply": True}
    assert json.loads(child_ids) == ids(con, "deceased", "adult")


def test_cli_retention_dry_run(db: Path, capsys: pytest.CaptureFixture):
    status, out, _ = run_cli(["retention", "--as-of", "2019-01-01", "--user", "root",
                              "--db", str(db)], capsys)
    assert status == 0
    assert out.splitlines()[:2] == [
        "retention as of 2019-01-01 (dry run: --apply to do it):",
        "  would archive 2 children, would purge 0; 1 without a usable date of birth kept "
        "for review",
    ]
