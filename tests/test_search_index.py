"""The search index finds exactly the records a scan of `records` with the search's rules would,
follows the records the engine appends after it was built, and forgets purged records."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import duckdb
import pytest

from engine.governance import search, search_index
from engine.governance.retention import _purge
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import AMELIA, OLIVER, governed_master, ingest, update

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
            with contextlib.suppress(duckdb.CatalogException):  # not built yet
                indexed = con.cursor().execute(
                    f"SELECT count(DISTINCT record_no) FROM {search_index.TABLE}").fetchall()
    finally:
        handle.stop()
    assert indexed == records
