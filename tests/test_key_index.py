"""The in-memory key index finds exactly the master's rows for a key, across chunk splits, tail
merges and catch-ups; a false hit (a stale or colliding key) never drops a new record; the record
locator built on it finds every record of a child, every stored pair of a record and every
child's current row, after moves and people's acts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import engine.key_index as key_index
import engine.record_locator as record_locator
from engine.config import EngineConfig
from engine.key_index import KEY_BITS, KeyIndex
from engine.master_store import open_master
from engine.record_locator import RecordLocator
from engine.resolver import Resolver
from engine.stewardship import Steward
from linkage_models.scoring import CompiledModel
from streams.canonical import Update
from streams.generator import generate
from streams.snapshot import read_updates


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and tail small enough that a few thousand keys split and merge them often, and
    that most chunks are packed."""
    monkeypatch.setattr(key_index, "TAIL_ENTRIES", 300)
    monkeypatch.setattr(key_index, "CHUNK_ENTRIES", 700)
    monkeypatch.setattr(key_index, "PACKED_ENTRIES", 400)


def _table(con: duckdb.DuckDBPyConnection, keys: np.ndarray, first_no: int) -> None:
    con.register("rows", pa.table({"k": keys, "record_no": np.arange(first_no,
                                                                      first_no + len(keys))}))
    con.execute("INSERT INTO keyed SELECT * FROM rows")
    con.unregister("rows")


def _expected(con: duckdb.DuckDBPyConnection, asked: np.ndarray) -> list[tuple[int, int]]:
    """What a scan finds, comparing keys on the bits the index holds."""
    rows = con.execute(f"SELECT k >> {64 - KEY_BITS}, record_no FROM keyed").fetchall()
    by_key: dict[int, list[int]] = {}
    for key, number in rows:
        by_key.setdefault(key, []).append(number)
    return sorted((i, n) for i, key in enumerate(asked.tolist())
                  for n in by_key.get(key >> (64 - KEY_BITS), []))


def _found(index: KeyIndex, asked: np.ndarray) -> list[tuple[int, int]]:
    which, numbers = index.find(asked)
    return sorted(zip(which.tolist(), numbers.tolist(), strict=True))


@pytest.mark.parametrize("compared_at_once", [1 << 18, 0], ids=["compared", "unpacked"])
def test_finds_every_row_of_a_key_through_splits_merges_and_catch_ups(
    small_chunks: None, compared_at_once: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(key_index, "_COMPARED_AT_ONCE", compared_at_once)
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 2**64 - 1, 6000, dtype=np.uint64)
    keys[100:1500] = keys[0]  # one key with more rows than a chunk may hold
    keys[2000:2100] = 2**64 - 1  # the largest key there is
    con = duckdb.connect()
    con.execute("CREATE TABLE keyed (k UBIGINT, record_no BIGINT)")
    _table(con, keys[:2500], 0)
    index = KeyIndex("keyed", "k")
    index.load(con)
    for start in range(2500, 6000, 250):  # batches appended by a writer, caught up with
        _table(con, keys[start:start + 250], start)
        index.catch_up(con)
    assert len(index) == 6000 and index.up_to == 5999
    assert len(index._chunks) > 3, "the test must split chunks"
    kinds = {type(chunk).__name__ for chunk in index._chunks}
    assert kinds == {"_Packed", "_Sorted"}, "the test must hold packed and sorted chunks"
    absent_or_edge = np.array([2**64 - 1, 0, 12345], np.uint64)
    asked = np.concatenate([keys[rng.integers(0, 6000, 400)], keys[:1], absent_or_edge])
    assert _found(index, asked) == _expected(con, asked)


def test_catch_up_reads_only_rows_numbered_above_what_it_holds():
    con = duckdb.connect()
    con.execute("CREATE TABLE keyed (k UBIGINT, record_no BIGINT)")
    five, six = 5 << 40, 6 << 40
    _table(con, np.array([five, six], np.uint64), 0)
    index = KeyIndex("keyed", "k")
    index.catch_up(con)
    con.execute(f"INSERT INTO keyed VALUES ({five}, 1)")  # below what it holds: never done
    _table(con, np.array([five], np.uint64), 2)
    index.catch_up(con)
    assert _found(index, np.array([five], np.uint64)) == [(0, 0), (0, 2)]


def test_a_false_hit_in_the_seen_index_never_drops_a_new_record(
    tmp_path: Path, model: CompiledModel
):
    generate(children=30, seed=11, out=tmp_path)
    updates = read_updates(tmp_path / "feeds").updates.to_pylist()
    con = open_master(tmp_path / "master.duckdb")
    resolver = Resolver(con, model, EngineConfig())
    first, last = [Update(**u) for u in updates[:-1]], Update(**updates[-1])
    resolver.resolve(first)
    uid = f"{last.feed}:{last.record_id}"
    key = con.execute("SELECT hash(?::VARCHAR)", [uid]).fetchall()[0][0]
    other_record = con.execute("SELECT min(record_no) FROM records").fetchall()[0][0]
    resolver._locator.by_uid.add(np.array([key], np.uint64), np.array([other_record], np.uint32))
    outcome = resolver.resolve([last])
    assert outcome.updates == 1
    assert con.execute("SELECT count(*) FROM links WHERE feed = ? AND record_id = ?",
                       [last.feed, last.record_id]).fetchall() == [(1,)]
    assert resolver.resolve([last]).duplicates == 1


def _located(con: duckdb.DuckDBPyConnection, locator: RecordLocator,
             column: str) -> set[tuple[str, str]]:
    """(unique_id, child_id) of the records found by asking for each value of `column` alone."""
    found = set()
    for (value,) in con.execute(f"SELECT DISTINCT {column} FROM records").fetchall():
        source = locator.records_of(con, column, f"SELECT '{value}'", "located")
        found |= set(con.execute(
            f"SELECT unique_id, child_id FROM {source} r WHERE {column} = ?", [value]
        ).fetchall())
    return found



def _read_records_by_number(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the locator read rows by number as a master of another size would: `in a table` as
    a bulk load's look-ups of more than a thousand rows are, `through the index` on
    `records.record_no` as a following 1M master's few hundred are (a test master is far too
    small for that: one wanted row in 16,384)."""
    if how == "in a table":
        monkeypatch.setattr(record_locator, "_NUMBERS_INLINE", 0)
    elif how == "through the index":
        monkeypatch.setattr(record_locator, "_ROWS_PER_INDEX_LOOKUP", 1)


@pytest.mark.parametrize("numbers", ["inline", "in a table", "through the index"])
def test_a_child_the_engine_emptied_is_marked_merged_into_the_child_that_took_its_records(
    tmp_path: Path, model: CompiledModel, numbers: str, monkeypatch: pytest.MonkeyPatch
):
    """The merged children's rows are found by number (the locator): each child left without
    records is marked merged into the one its merge names, and no other child is."""
    _read_records_by_number(numbers, monkeypatch)
    generate(children=300, seed=7, out=tmp_path)
    updates = [Update(**u) for u in read_updates(tmp_path / "feeds").updates.to_pylist()]
    con = open_master(tmp_path / "master.duckdb")
    resolver = Resolver(con, model, EngineConfig(), following=True)
    for start in range(0, len(updates), 30):  # small batches: redo merges children
        resolver.resolve(updates[start:start + 30])
    merges = con.execute("SELECT merged_child_id, into_child_id FROM merges "
                         "WHERE decided_by = 'engine' ORDER BY 1").fetchall()
    assert merges, "the test must have the engine merge children"
    assert con.execute("SELECT child_id, merged_into FROM children WHERE status = 'merged' "
                       "ORDER BY 1").fetchall() == merges
    assert con.execute("""
        SELECT count(*) FROM children c WHERE status <> 'merged'
          AND child_id NOT IN (SELECT child_id FROM records)
    """).fetchall() == [(0,)]

@pytest.mark.parametrize("numbers", ["inline", "in a table", "through the index"])
def test_the_record_locator_follows_new_records_moves_and_peoples_acts(
    tmp_path: Path, model: CompiledModel, numbers: str, monkeypatch: pytest.MonkeyPatch
):
    _read_records_by_number(numbers, monkeypatch)
    generate(children=60, seed=5, out=tmp_path)
    updates = [Update(**u) for u in read_updates(tmp_path / "feeds").updates.to_pylist()]
    con = open_master(tmp_path / "master.duckdb")
    resolver = Resolver(con, model, EngineConfig())
    for start in range(0, len(updates) - 20, 40):  # small batches: redo moves records
        resolver.resolve(updates[start:start + 40])
    child, records = con.execute("""
        SELECT child_id, list(unique_id ORDER BY unique_id) FROM records
        GROUP BY child_id HAVING count(*) >= 2 ORDER BY child_id LIMIT 1
    """).fetchall()[0]
    Steward(con, model, EngineConfig(), "user:jo").split(child, records[:1])  # no locator
    resolver.resolve(updates[-20:])
    locator = resolver._locator
    locator.catch_up(con)
    truth = set(con.execute("SELECT unique_id, child_id FROM records").fetchall())
    moved = con.execute("SELECT count(*) FROM decision_history WHERE decided_by <> 'engine'")
    assert moved.fetchall()[0][0] > 0, "the test must move records"
    assert _located(con, locator, "child_id") == truth
    assert _located(con, locator, "unique_id") == truth
    pairs: set[tuple[str, str]] = set()
    constraints: set[tuple[str, str, str]] = set()
    for unique_id, _ in truth:
        ends = locator.ends_of(con, f"SELECT '{unique_id}'", "located")
        pairs |= set(con.execute(f"SELECT uid_a, uid_b FROM {ends.pairs} p "
                                 "WHERE ? IN (uid_a, uid_b)", [unique_id]).fetchall())
        if ends.constraints is not None:
            constraints |= set(con.execute(
                f"SELECT kind, uid_a, uid_b FROM {ends.constraints} c WHERE ? IN (uid_a, uid_b)",
                [unique_id]).fetchall())
    assert pairs == set(con.execute("SELECT uid_a, uid_b FROM scored_pairs").fetchall())
    assert constraints, "the test must hold people's constraints"
    assert constraints == set(con.execute("SELECT kind, uid_a, uid_b FROM constraints").fetchall())
    rows = set()
    for (child_id,) in con.execute("SELECT child_id FROM children").fetchall():
        source = locator.rows_of_children(con, f"SELECT '{child_id}'", "located")
        rows |= set(con.execute(f"SELECT child_id, row_no FROM {source} c WHERE child_id = ?",
                                [child_id]).fetchall())
    assert rows == set(con.execute("SELECT child_id, row_no FROM children").fetchall())


def test_records_are_read_by_number_through_an_index_a_master_gains_when_opened(
    tmp_path: Path, model: CompiledModel, monkeypatch: pytest.MonkeyPatch
):
    """A master opened for writing has the index on `records.record_no` (one made before it
    gains it), and the locator's read of a few records by number is DuckDB's index scan, not a
    scan of the table, with the caller's own filter beside it."""
    generate(children=40, seed=3, out=tmp_path)
    updates = [Update(**u) for u in read_updates(tmp_path / "feeds").updates.to_pylist()]
    path = tmp_path / "master.duckdb"
    con = open_master(path)
    Resolver(con, model, EngineConfig()).resolve(updates)
    con.execute("DROP INDEX records_by_number")  # as a master of before the index
    con.close()
    con = open_master(path)
    assert con.execute("SELECT expressions FROM duckdb_indexes() "
                       "WHERE table_name = 'records'").fetchall() == [("[record_no]",)]
    _read_records_by_number("through the index", monkeypatch)
    locator = RecordLocator()
    locator.load(con)
    child = con.execute("SELECT min(child_id) FROM records").fetchall()[0][0]
    held = locator.records_of(con, "child_id", f"SELECT '{child}'", "wanted")
    query = f"SELECT unique_id FROM {held} r WHERE child_id = '{child}'"
    plan = con.execute(f"EXPLAIN ANALYZE {query}").fetchall()[0][1]
    assert "Index Scan" in plan and "Sequential Scan" not in plan
    assert sorted(con.execute(query).fetchall()) == sorted(con.execute(
        "SELECT unique_id FROM records WHERE child_id = ?", [child]).fetchall())
