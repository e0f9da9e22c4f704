"""The search index finds exactly the records a scan of `records` with the search's rules would,
follows the records the engine appends after it was built (read from `records` until the
service's background upkeep adds them; a search adds them itself only when far behind), and
forgets purged records."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from engine.governance import search, search_index
from engine.governance.policy import DEFAULT_POLICY
from engine.governance.retention import _purge
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import (
    AMELIA,
    OLIVER,
    act,
    add_staff,
    child_of,
    governed_master,
    ingest,
    update,
)

# Children that share some of the probes' fields but not others.
HARRY = OLIVER | {"first_name": "HARRY"}  # Oliver's twin
NEIGHBOUR = OLIVER | {"first_name": "OLIVIA", "surname": "QUILL", "date_of_birth": "2011-05-05"}
COUSIN = OLIVER | {"postcode": "LS6 9ZZ", "date_of_birth": "2009-11-30"}
PROBES = [
    search.SearchProbe(first_name="OLIVER", surname="QUARTERMAINE", date_of_birth="2009-03-01"),
    search.SearchProbe(date_of_birth="2009-03-01"),
    search.SearchProbe(surname="QUARTERMAINE", postcode="LS6 7QQ"),
    search.SearchProbe(first_name="OLIVIA", surname="QUILL", postcode="LS6 2AB"),
    search.SearchProbe(first_name="OLIVER", surname="QUARTERMAINE", postcode="LS6 2AB",
                       date_of_birth="2009-11-30"),
    search.SearchProbe(first_name="AMELIA", surname="FOTHERINGHAM"),
]


@pytest.fixture
def con(tmp_path: Path, model: CompiledModel) -> duckdb.DuckDBPyConnection:
    con = governed_master(tmp_path / "m.duckdb")
    ingest(con, model, [
        update("gro", "oliver", source_key="R1", **OLIVER),
        update("nhs", "oliver", source_key="9434765919", **OLIVER | {"first_name": "OLLIE",
                                                                     "first_name_std": "OLIVER"}),
        update("gro", "harry", source_key="R2", **HARRY),
        update("gro", "neighbour", source_key="R3", **NEIGHBOUR),
        update("gro", "cousin", source_key="R4", **COUSIN),
        update("gro", "amelia", source_key="R5", **AMELIA),
    ])
    return con


def candidates(con: duckdb.DuckDBPyConnection, model: CompiledModel,
               probe: search.SearchProbe) -> set[str]:
    """The unique ids of the records the indexed lookup finds for `probe`."""
    search.prepare_search_index(con, model)
    rules = search.searchable_rules(probe, model.blocking_rules)
    con.register("search_probe", search.pa.Table.from_pylist(
        [probe.row("search:full"), probe.row("search:restricted")]))
    try:
        search._find_candidates(con, model, probe, rules, rules, 10**9)
        return {uid for (uid,) in con.execute("SELECT unique_id FROM search_candidates")
                .fetchall()}
    finally:
        con.execute("DROP TABLE IF EXISTS search_candidates")
        con.unregister("search_probe")


def scanned(con: duckdb.DuckDBPyConnection, model: CompiledModel,
            probe: search.SearchProbe) -> set[str]:
    """The unique ids of the records of `records` that any of the probe's rules joins: the
    rules as filters over the whole table."""
    rules = search.searchable_rules(probe, model.blocking_rules)
    filters = " OR ".join(search._filter(rule) for rule in rules)
    values = probe.row("search:full")
    names = set(search._PARAMETER.findall(filters))
    return {uid for (uid,) in con.execute(
        f"SELECT unique_id FROM records r WHERE {filters}", {n: values[n] for n in names}
    ).fetchall()}


def test_the_index_finds_exactly_the_records_a_scan_with_the_rules_finds(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    for probe in PROBES:
        assert candidates(con, model, probe) == scanned(con, model, probe), probe
    assert candidates(con, model, PROBES[1]) == {"gro:oliver", "nhs:oliver", "gro:harry"}


def test_records_appended_after_the_index_was_built_are_found(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    probe = search.SearchProbe(first_name="SOPHIE", surname="QUIRK", date_of_birth="2012-12-12")
    assert candidates(con, model, probe) == set()
    ingest(con, model, [update("dwp", "sophie", source_key="C9", first_name="SOPHIE",
                               surname="QUIRK", date_of_birth="2012-12-12")])
    assert candidates(con, model, probe) == {"dwp:sophie"} == scanned(con, model, probe)


def test_a_search_reads_records_not_yet_indexed_without_writing_the_index(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    search.prepare_search_index(con, model)
    before = indexed(con)
    ingest(con, model, [
        update("dwp", "sophie", source_key="C9", first_name="SOPHIE", surname="QUIRK",
               date_of_birth="2009-03-01", postcode="LS6 7QQ"),
        update("nhs", "olivia2", source_key="9434765920", **NEIGHBOUR),
    ])
    for probe in PROBES:
        assert candidates(con, model, probe) == scanned(con, model, probe), probe
    assert "dwp:sophie" in candidates(con, model, PROBES[1])
    assert indexed(con) == before  # the search added nothing: the tail was read from records


def test_a_search_far_behind_adds_the_new_records_to_the_index_first(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, monkeypatch: pytest.MonkeyPatch
):
    search.prepare_search_index(con, model)
    monkeypatch.setattr(search_index, "MAX_UNINDEXED_RECORDS", 1)
    ingest(con, model, [update("dwp", f"c{i}", source_key=f"C{i}", first_name="SOPHIE",
                               surname="QUIRK", date_of_birth="2012-12-12") for i in range(2)])
    probe = search.SearchProbe(first_name="SOPHIE", surname="QUIRK", date_of_birth="2012-12-12")
    assert candidates(con, model, probe) == {"dwp:c0", "dwp:c1"}
    assert indexed(con)[0] == newest_record(con)


def test_an_index_built_before_it_said_how_far_it_goes_is_kept_and_followed(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    search.prepare_search_index(con, model)
    rows = con.execute("SELECT count(*) FROM search_index").fetchall()
    con.execute("ALTER TABLE search_index_meta DROP COLUMN indexed_up_to")
    search.prepare_search_index(con, model)
    assert con.execute("SELECT count(*) FROM search_index").fetchall() == rows  # not rebuilt
    assert indexed(con)[0] == newest_record(con)
    for probe in PROBES:
        assert candidates(con, model, probe) == scanned(con, model, probe), probe


def test_the_upkeep_adds_new_records_while_people_search_and_rests_otherwise(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    from engine.governance.service import SearchIndexUpkeep

    upkeep = SearchIndexUpkeep(con, model, every_s=0.02, idle_after_s=60)
    try:
        wait_until(lambda: indexed(con)[0] == newest_record(con))  # as the engine starts
        ingest(con, model, [update("dwp", "quiet", source_key="Q1", first_name="SOPHIE",
                                   surname="QUIRK", date_of_birth="2012-12-12")])
        time.sleep(0.2)
        assert indexed(con)[0] < newest_record(con)  # nobody searched: no upkeep
        upkeep.searched()
        wait_until(lambda: indexed(con)[0] == newest_record(con))
        ingest(con, model, [update("dwp", "busy", source_key="Q2", first_name="SOPHIE",
                                   surname="QUIRK", date_of_birth="2012-12-12")])
        wait_until(lambda: indexed(con)[0] == newest_record(con))
    finally:
        upkeep.stop()
    probe = search.SearchProbe(first_name="SOPHIE", surname="QUIRK", date_of_birth="2012-12-12")
    assert candidates(con, model, probe) == {"dwp:quiet", "dwp:busy"}


def test_a_failed_upkeep_is_tried_again_though_nobody_searches(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, capsys: pytest.CaptureFixture
):
    from engine.governance.service import SearchIndexUpkeep

    con.execute("DROP INDEX records_by_number")  # DuckDB alters no indexed table
    con.execute("ALTER TABLE records RENAME COLUMN postcode TO postcode_elsewhere")
    upkeep = SearchIndexUpkeep(con, model, every_s=0.5, idle_after_s=60)
    try:
        reported = []

        def upkeep_failed() -> bool:
            reported.append(capsys.readouterr().err)
            return "search index upkeep failed" in "".join(reported)

        wait_until(upkeep_failed)
        assert "trying again in 0.5 s" in "".join(reported)
        con.execute("ALTER TABLE records RENAME COLUMN postcode_elsewhere TO postcode")
        wait_until(lambda: indexed(con)[0] == newest_record(con))
    finally:
        upkeep.stop()


def test_a_long_unsorted_tail_is_sorted_into_the_index(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    rules = search.index_rules(model.blocking_rules)
    search_index.ensure_search_index(con, model, rules)
    sorted_rows = con.execute("SELECT sorted_rows FROM search_index_meta").fetchall()[0][0]
    ingest(con, model, [update("dwp", f"c{i}", source_key=f"C{i}", first_name="SOPHIE",
                               surname=f"QUIRK{i}", date_of_birth="2012-12-12")
                        for i in range(4)])
    search_index.ensure_search_index(con, model, rules)
    keys = con.execute("SELECT search_key FROM search_index").fetchall()
    assert con.execute("SELECT sorted_rows FROM search_index_meta").fetchall()[0][0] > sorted_rows
    assert keys == sorted(keys)


def test_a_search_index_built_for_other_rules_is_rebuilt(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    search_index.ensure_search_index(con, model, ["l.date_of_birth = r.date_of_birth"])
    assert candidates(con, model, PROBES[0]) == scanned(con, model, PROBES[0])


def test_purged_records_leave_the_search_index(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    candidates(con, model, PROBES[0])
    amelia = con.execute("SELECT child_id FROM links WHERE record_id = 'amelia'").fetchall()
    deleted = _purge(con, [amelia[0][0]])
    assert deleted["search_index"] > 0
    assert candidates(con, model, PROBES[-1]) == set()
    assert con.execute("SELECT count(*) FROM search_index WHERE surname = 'FOTHERINGHAM'"
                       ).fetchall() == [(0,)]


def test_the_engine_prepares_the_index_as_its_service_starts(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, tmp_path: Path
):
    from engine.governance.service import start_service

    records = con.execute("SELECT count(*) FROM records").fetchall()
    handle = start_service(con, tmp_path / "m.duckdb", model)
    try:
        indexed, deadline = None, time.monotonic() + 30
        while indexed != records and time.monotonic() < deadline:
            time.sleep(0.05)
            # not built yet (DuckDB may then take the name for this module: InvalidInput)
            with contextlib.suppress(duckdb.CatalogException, duckdb.InvalidInputException):
                indexed = con.cursor().execute(
                    f"SELECT count(DISTINCT record_no) FROM {search_index.TABLE}").fetchall()
    finally:
        handle.stop()
    assert indexed == records


def test_the_search_profile_times_every_query_of_real_searches(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, tmp_path: Path
):
    from benchmarks.search_profile import profile

    search.prepare_search_index(con, model)
    con.close()
    result = profile(tmp_path / "m.duckdb", probes=3, warm_up=0)
    assert result["searches"] == 3
    assert result["search_cpu_ms"]["p50"] > 0
    assert any(query.startswith("CREATE OR REPLACE TEMP TABLE search_candidates")
               for query in result["query_cpu_ms"])
    # the children's rows found as the engine's service finds them (its ChildRows catch up
    # first), or as a page on the file does
    scanned = profile(tmp_path / "m.duckdb", probes=3, warm_up=0, scan_children=True)
    assert result["query_cpu_ms"].keys() != scanned["query_cpu_ms"].keys()


# ---------------------------------------------------------------- children's rows by key


def test_children_rewritten_new_or_merged_after_their_rows_were_loaded_are_found_as_they_are(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    rows = search_index.ChildRows.loaded(con)
    add_staff(con, model)
    ingest(con, model, [  # Oliver's row written anew (a GP practice now), Sophie new
        update("census", "oliver", source_key="U1", upn="U1", school_urn="100234", **OLIVER),
        update("dwp", "sophie", source_key="C9", first_name="SOPHIE", surname="QUIRK",
               date_of_birth="2009-03-01", postcode="LS6 7QQ"),
    ])
    harry, cousin = (child_of(con, "gro", name) for name in ("harry", "cousin"))
    act(con, model, "merge", "dana", "one child after all", child_id=harry,
        other_child_id=cousin)
    by_scan = [hits(con, model, probe) for probe in PROBES]
    search_index.use_child_rows([con], rows)
    try:
        by_rows = [hits(con, model, probe) for probe in PROBES]
    finally:
        search_index.use_child_rows([con], None)
    assert by_rows == by_scan
    shown = {hit["child_id"]: hit for hit in by_rows[1]}  # born 2009-03-01
    assert shown[child_of(con, "gro", "oliver")]["upn"] == "U1"
    assert child_of(con, "dwp", "sophie") in shown
    assert len({harry, cousin} & set(shown)) == 1  # the survivor only


def test_an_entry_naming_another_childs_row_or_a_deleted_row_never_shows_a_wrong_child(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    rows = search_index.ChildRows.loaded(con)
    oliver, harry = (child_of(con, "gro", name) for name in ("oliver", "harry"))
    amelia = child_of(con, "gro", "amelia")
    by_scan = [hits(con, model, probe) for probe in PROBES]
    # a 32-bit key Oliver shares with Amelia and Harry (their rows), and a row deleted since
    keys, numbers = con.execute("""
        SELECT list(hash(o.child_id)), list(c.row_no) FROM children c, children o
        WHERE o.child_id = $oliver AND c.child_id IN ($amelia, $harry)
        """, {"oliver": oliver, "amelia": amelia, "harry": harry}).fetchall()[0]
    rows._index.add(np.array([*keys, keys[0]], np.uint64),
                    np.array([*numbers, 10**6], np.uint32))
    search_index.use_child_rows([con], rows)
    try:
        assert [hits(con, model, probe) for probe in PROBES] == by_scan
    finally:
        search_index.use_child_rows([con], None)


def test_the_engines_service_finds_childrens_rows_by_key_until_it_stops(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, tmp_path: Path
):
    from engine.governance.service import start_service

    handle = start_service(con, tmp_path / "m.duckdb", model)
    cursors = list(handle._server.cursors.queue)
    try:
        assert all(search_index.child_rows_of(cursor) is not None for cursor in cursors)
    finally:
        handle.stop()
    assert all(search_index.child_rows_of(cursor) is None for cursor in cursors)


def hits(con: duckdb.DuckDBPyConnection, model: CompiledModel,
         probe: search.SearchProbe) -> list[dict]:
    """A data manager's hits for `probe` (everything shown), in a transaction as an act runs."""
    search.prepare_search_index(con, model)
    con.begin()
    try:
        return search.search_children(con, model, probe, search.viewer_for("data_manager"), 10,
                                      DEFAULT_POLICY)
    finally:
        con.commit()


def indexed(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(the index's indexed_up_to, its rows), as a fresh cursor sees them ((-1, 0): none yet)."""
    cursor = con.cursor()
    if not cursor.execute("SELECT count(*) FROM duckdb_tables() "
                          "WHERE table_name = 'search_index_meta'").fetchall()[0][0]:
        return -1, 0
    return cursor.execute(
        "SELECT (SELECT indexed_up_to FROM search_index_meta), count(*) FROM search_index"
    ).fetchall()[0]


def newest_record(con: duckdb.DuckDBPyConnection) -> int:
    return con.cursor().execute("SELECT max(record_no) FROM records").fetchall()[0][0]


def wait_until(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)
