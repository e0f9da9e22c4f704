"""The xref map a following engine holds (engine.xref_map) names every key's child and counts each
child's keys exactly as `xref` does, after the engine's new keys and moves, people's acts, a
batch that rolled back and a purge; and a master resolved with it is the master resolved
without it, row for row."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

import engine.xref_map as xref_map
from engine.config import EngineConfig
from engine.master_store import MasterStoreError, configure_store, open_master
from engine.record_locator import RecordLocator
from engine.resolution.changes import ChangeWriter
from engine.resolver import Resolver
from engine.stewardship import Steward
from engine.xref_map import key_columns_sql, pack_child_ids, unpack_child_ids
from linkage_models.scoring import CompiledModel
from streams.canonical import Update
from streams.generator import generate
from streams.snapshot import read_updates
from tests.test_governance_helpers import act, add_staff, governed_master, update


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> list[Update]:
    out = tmp_path_factory.mktemp("generated")
    generate(children=60, seed=5, out=out)
    return [Update(**u) for u in read_updates(out / "feeds").updates.to_pylist()]


def assert_map_is_xref(con: duckdb.DuckDBPyConnection, locator: RecordLocator) -> None:
    """The map, caught up as a batch starts, holds every row of `xref` with its child, each
    child's count of keys, and no other key."""
    locator.begin_batch(con)
    held = locator.xref_children
    rows = con.execute(f"SELECT {key_columns_sql()} FROM xref").fetchnumpy()
    found, children = held.children_of(rows["hi"], rows["lo"])
    assert found.all()
    assert unpack_child_ids(children) == unpack_child_ids(rows["child"])
    counts = dict(con.execute("SELECT child_id, count(*) FROM xref GROUP BY child_id").fetchall())
    assert dict(zip(counts, held.key_counts(pack_child_ids(list(counts))), strict=True)) == counts
    absent = con.execute("SELECT md5_number_upper('nhs:never'), md5_number_lower('nhs:never')")
    hi, lo = absent.fetchall()[0]
    assert not held.children_of(np.array([hi], np.uint64), np.array([lo], np.uint64))[0].any()


def fragment_joined() -> list[list[Update]]:
    """Two batches: a nameless school return founds a child of its UPN alone beside an NHS
    registration; the next return of that UPN names the child, and the engine moves the NHS
    record (and its key) to the UPN's child."""
    sarah = dict(sex="F", date_of_birth="2005-09-04", upn="U1", source_key="U1")
    return [
        [update("nhs", "n1", source_key="9434765919", nhs_number="9434765919",
                first_name="SARAH", surname="WARRENDER", sex="F", date_of_birth="2005-09-04",
                postcode="SW6 5XX"),
         update("census", "c1", postcode="LS6 2AB", **sarah)],
        [update("census", "c2", first_name="SARAH", surname="WARRENDER", postcode="SW6 5XX",
                event_time="2014-01-04T09:00:00Z", **sarah)],
    ]


def master_rows(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {
        "links": con.execute("SELECT feed, record_id, child_id, decision, match_probability "
                             "FROM links ORDER BY ALL").fetchall(),
        "xref": con.execute("SELECT feed, source_key, child_id FROM xref ORDER BY ALL").fetchall(),
        "children": con.execute("SELECT * EXCLUDE (created_at, updated_at, row_no) "
                                "FROM children ORDER BY child_id").fetchall(),
    }


def test_the_xref_map_follows_the_engines_keys_and_moves_and_peoples_acts(
    tmp_path: Path, model: CompiledModel, population: list[Update],
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(xref_map, "RECENT_KEYS", 50)  # new keys merged into the arrays often
    con = open_master(tmp_path / "held.duckdb")
    configure_store(con, EngineConfig().store, following=True)  # planned as following is
    resolver = Resolver(con, model, EngineConfig(), following=True)
    batches = [*fragment_joined(), *(population[start:start + 30]
                                     for start in range(0, len(population), 30))]
    for batch in batches[:-1]:
        resolver.resolve(batch)
        assert_map_is_xref(con, resolver._locator)
    assert con.execute("SELECT count(*) FROM decision_history WHERE decided_by = 'redo'"
                       ).fetchall()[0][0] > 0, "the test must have the engine move records"
    child, records = con.execute("""
        SELECT child_id, list(unique_id ORDER BY unique_id) FROM records
        WHERE source_key IS NOT NULL GROUP BY child_id HAVING count(*) >= 2
        ORDER BY child_id LIMIT 1
    """).fetchall()[0]
    Steward(con, model, EngineConfig(), "user:jo").split(child, records[:1])  # no map
    resolver.resolve(batches[-1])
    assert_map_is_xref(con, resolver._locator)

    unheld = open_master(tmp_path / "unheld.duckdb")
    without = Resolver(unheld, model, EngineConfig())
    for batch in batches[:-1]:
        without.resolve(batch)
    Steward(unheld, model, EngineConfig(), "user:jo").split(child, records[:1])
    without.resolve(batches[-1])
    assert master_rows(con) == master_rows(unheld)


def test_after_a_batch_rolled_back_the_xref_map_is_read_again(
    tmp_path: Path, model: CompiledModel, monkeypatch: pytest.MonkeyPatch
):
    con = open_master(tmp_path / "m.duckdb")
    resolver = Resolver(con, model, EngineConfig(), following=True)
    first, joining = fragment_joined()
    resolver.resolve(first)
    apply = ChangeWriter._write_review_items

    def fail_after_the_moves(self, con: duckdb.DuckDBPyConnection, *args) -> None:
        apply(self, con, *args)
        raise duckdb.IOException("disk full")  # the map has learned this batch's moves

    monkeypatch.setattr(ChangeWriter, "_write_review_items", fail_after_the_moves)
    with pytest.raises(MasterStoreError):
        resolver.resolve(joining)
    monkeypatch.undo()
    assert_map_is_xref(con, resolver._locator)
    resolver.resolve(joining)
    assert_map_is_xref(con, resolver._locator)


def test_a_key_whose_child_was_purged_is_not_sent_to_that_child(
    tmp_path: Path, model: CompiledModel
):
    con = governed_master(tmp_path / "m.duckdb")
    resolver = Resolver(con, model, EngineConfig(), following=True)
    born_2000 = dict(first_name="ADA", surname="ZWEIG", sex="F", date_of_birth="2000-01-01",
                     postcode="LS6 2AB")
    resolver.resolve([update("gro", "adult", source_key="R1", **born_2000),
                      update("nhs", "adult", source_key="9434765919", nhs_number="9434765919",
                             **born_2000)])  # a child of two keys: neither is lone
    resolver.resolve([update("gro", "young", source_key="R4", first_name="YUSUF",
                             surname="YOUNGER", sex="M", date_of_birth="2015-03-03",
                             postcode="BS1 4DJ")])
    purged = con.execute("SELECT child_id FROM xref WHERE source_key = 'R1'").fetchall()[0][0]
    assert resolver._locator.xref_children.key_counts(pack_child_ids([purged])) == [2]
    assert con.execute("SELECT count(*) FROM xref WHERE child_id = ?",
                       [purged]).fetchall() == [(2,)]
    add_staff(con, model)
    act(con, model, "retention", "root", "annual review", as_of="2019-01-01", apply=True)
    act(con, model, "retention", "root", "annual review", as_of="2025-01-01", apply=True)
    assert con.execute("SELECT count(*) FROM xref WHERE source_key = 'R1'").fetchall() == [(0,)]
    resolver.resolve([update("gro", "adult-again", source_key="R1", **born_2000)])
    child = con.execute("SELECT child_id FROM links WHERE record_id = 'adult-again'"
                        ).fetchall()[0][0]
    assert child != purged
    assert con.execute("SELECT count(*) FROM children WHERE child_id = ?",
                       [child]).fetchall() == [(1,)]
    assert_map_is_xref(con, resolver._locator)
