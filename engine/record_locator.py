"""Where a batch's records are in `records`: the rows of given children, or of given record ids,
their stored pairs in `scored_pairs` and people's `constraints` on them, found by key
(engine.key_index) instead of by scanning the whole record index, the whole graph or every
decision people made.

DuckDB filters `records` on `child_id` or `unique_id` by reading that column for all 7.7M rows
of a 1M-children master (and, for wide rows, much more); a filter on `record_no`, the order the
rows were appended in, reads only the blocks that hold the wanted numbers (for up to 50
numbers; beyond, `record_no` whole, and still only the wanted rows' vectors of the other
columns). So `records_of` returns `records` narrowed to the record numbers the in-memory
indexes give for the wanted keys, and the caller keeps its own filter on `child_id` or
`unique_id`, which drops any stale entry. A few rows of a large master are read through DuckDB's
index on `record_no` instead (`_looked_up`), which reads only the wanted rows' values;
`ends_of` likewise narrows `scored_pairs` by `pair_no` to the pairs of given record ids, and
people's `constraints` by `constraint_no` to theirs (constraints grow with people's work, not
with the master, but a batch should not read them all either), and
`rows_of_children` `children` by `row_no` to the rows of given children (a child's row is written
anew, with a new number, at every change: an old number finds no row), and `xref_of` `xref` by
`xref_no` to the rows of given `(feed, source_key)` keys (a row keeps its number when its child
changes).

The index by child follows moves as well as new records: every time a record is placed (new,
moved by a redo, a merge or a person's act) a row is appended to `decision_history`, whose `seq`
only grows, and every write to the master holds the engine's write lock, so the rows above the
highest `seq` read are exactly the moves since. A record moved away stays listed under its old
child as well until the engine restarts; the caller's filter drops it.

A following engine also holds `xref` whole (`xref_children`, engine.xref_map), whose answers are
used unchecked: it learns of people's acts from the same `decision_history` rows (their records'
keys are read again), of a purge from `xref`'s row count (`begin_batch`), and is read again
after a batch rolled back (`forget_uncommitted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa

from engine.key_index import KeyIndex, catch_up_all
from engine.xref_map import XREF_KEY, XrefMap, check_children, key_columns_sql

Column = Literal["child_id", "unique_id"]


class RecordLocator:
    """The record numbers of `records` by `unique_id` and by `child_id`, the pair numbers of
    `scored_pairs` and the constraint numbers of `constraints` by either record's `unique_id`,
    the row numbers of `children` by `child_id`,
    the row numbers of `xref` by `feed:source_key` (each key part of a hash of the value,
    engine.key_index, so an entry may also name another row: the caller's filter decides)."""

    def __init__(self, hold_xref: bool = False) -> None:
        """With `hold_xref`, `xref_children` holds `xref` whole (engine.xref_map)."""
        self.by_uid = KeyIndex("records", "hash(unique_id)")
        self.by_child = KeyIndex("records", "hash(child_id)")
        self.pairs = KeyIndex(_PAIR_ENDS, "hash(uid)", number="pair_no")
        self.constraints = KeyIndex(_CONSTRAINT_ENDS, "hash(uid)", number="constraint_no")
        self.children = KeyIndex("children", "hash(child_id)", number="row_no")
        self.xref = KeyIndex("xref", f"hash({XREF_KEY})", number="xref_no")
        self.xref_children = XrefMap() if hold_xref else None
        self._xref_children_stale = False
        self._placed_up_to = -1  # the highest decision_history.seq read

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read every row (in the caller's transaction, so that `records` and
        `decision_history` are read at one moment)."""
        self.by_uid.load(con)
        self.by_child.load(con)
        self.pairs.load(con)
        self.constraints.load(con)
        self.children.load(con)
        self.xref.load(con)
        if self.xref_children is not None:
            self.xref_children.load(con)
        self._placed_up_to = con.execute(
            "SELECT coalesce(max(seq), -1) FROM decision_history").fetchall()[0][0]

    def begin_batch(self, con: duckdb.DuckDBPyConnection) -> None:
        """Catch up at the start of a batch, when people's acts may have written since the last
        (a purge deletes `xref` rows: the xref map is then loaded again)."""
        self.catch_up(con)
        held = self.xref_children
        if held is None:
            return
        # only a batch's start needs the map's new rows: its look-ups happen there, and the
        # moves written later in the batch reach it through `learn_xref_moves`
        held.add_rows(con.execute(held.rows_since_sql()).fetchnumpy())
        if self._xref_children_stale or held.behind(con):
            held.load(con)
            self._xref_children_stale = False

    def forget_uncommitted(self) -> None:
        """A batch rolled back: the xref map may hold what it wrote (loaded again at the next
        batch). The key indexes' stale entries change no result."""
        self._xref_children_stale = True

    def catch_up(self, con: duckdb.DuckDBPyConnection) -> None:
        """Add the records appended and the records placed since the last catch-up."""
        indexed_before = self.by_uid.up_to
        # by_child: a new record with its child of now
        catch_up_all(con, [self.by_uid, self.by_child, self.pairs, self.constraints,
                           self.children, self.xref])
        placed = con.execute(f"""
            SELECT seq, hash(feed || ':' || record_id) AS uid_key, hash(child_id) AS child_key,
                   decided_by NOT IN {ENGINE_DECIDERS} AS by_people
            FROM decision_history WHERE seq > {self._placed_up_to}
        """).fetchnumpy()
        if not len(placed["seq"]):
            return
        if self.xref_children is not None and placed["by_people"].any():
            self._read_keys_placed_by_people(con)
        self._placed_up_to = int(placed["seq"].max())
        which, numbers = self.by_uid.find(placed["uid_key"])
        moved = numbers <= indexed_before  # the others were read above with their child
        self.by_child.add(np.asarray(placed["child_key"])[which[moved]], numbers[moved])

    def _read_keys_placed_by_people(self, con: duckdb.DuckDBPyConnection) -> None:
        """The xref map learns the children of the keys of the records people placed since the
        last catch-up (their change writer moved those keys' rows without it)."""
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE placed_by_people AS
            SELECT DISTINCT feed || ':' || record_id AS unique_id FROM decision_history
            WHERE seq > {self._placed_up_to} AND decided_by NOT IN {ENGINE_DECIDERS}
        """)
        held = self.records_of(con, "unique_id", "SELECT unique_id FROM placed_by_people",
                               "placed_by_people_nos")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE placed_keys AS
            SELECT DISTINCT feed, source_key FROM {held} r
            WHERE unique_id IN (SELECT unique_id FROM placed_by_people)
              AND source_key IS NOT NULL
        """)
        rows = self.xref_of(con, f"SELECT {XREF_KEY} FROM placed_keys", "placed_key_nos")
        self.learn_xref_moves(con, f"{rows} x JOIN placed_keys k USING (feed, source_key)")

    def learn_xref_moves(self, con: duckdb.DuckDBPyConnection, moved: str) -> None:
        """The xref map (if held) learns the children of the keys of `moved`, a FROM item with
        columns `feed`, `source_key` and `child_id`: `xref` rows moved since it read them."""
        if self.xref_children is None:
            return
        rows = con.execute(f"SELECT {key_columns_sql()} FROM {moved}").fetchnumpy()
        if len(rows["hi"]):
            check_children(rows["child"])
            self.xref_children.set_children(rows["hi"], rows["lo"], rows["child"])

    def records_of(self, con: duckdb.DuckDBPyConnection, column: Column, values: str,
                   name: str) -> str:
        """A FROM item: `records` narrowed to the rows whose `column` may be one of the values
        of the query `values` (a superset: keep the filter on `column`); `name`: the temporary
        table that holds their numbers if they are too many to write into the FROM item."""
        index = self.by_child if column == "child_id" else self.by_uid
        numbers = self._find(con, index, values)
        if 0 < len(numbers) <= len(index) // _ROWS_PER_INDEX_LOOKUP:
            return _looked_up(name, numbers)
        return _narrowed(con, "records", "record_no", name, numbers)

    def ends_of(self, con: duckdb.DuckDBPyConnection, values: str, name: str) -> RecordEnds:
        """The stored pairs and people's constraints that may have one of the record ids of the
        query `values` on either side (keep the filter on `uid_a`/`uid_b`), from one reading of
        their keys; `name`: the prefix of the tables holding too many numbers."""
        keys = self._keys(con, values)
        pairs = _narrowed(con, "scored_pairs", "pair_no", f"{name}_pair_nos",
                          self.pairs.find(keys)[1])
        numbers = self.constraints.find(keys)[1]
        constraints = _narrowed(con, "constraints", "constraint_no",
                                f"{name}_constraint_nos", numbers) if len(numbers) else None
        return RecordEnds(pairs, constraints)

    def rows_of_children(self, con: duckdb.DuckDBPyConnection, values: str, name: str) -> str:
        """A FROM item: `children` narrowed to the rows that may be of one of the child ids of
        the query `values` (keep the filter on `child_id`)."""
        self.children.catch_up(con)
        return _narrowed(con, "children", "row_no", name,
                         self._find(con, self.children, values))

    def xref_of(self, con: duckdb.DuckDBPyConnection, values: str, name: str) -> str:
        """A FROM item: `xref` narrowed to the rows whose key (`XREF_KEY`) may be one of the
        values of the query `values` (keep the filter on `feed` and `source_key`)."""
        return _narrowed(con, "xref", "xref_no", name, self._find(con, self.xref, values))

    @classmethod
    def _find(cls, con: duckdb.DuckDBPyConnection, index: KeyIndex, values: str) -> np.ndarray:
        return index.find(cls._keys(con, values))[1]

    @staticmethod
    def _keys(con: duckdb.DuckDBPyConnection, values: str) -> np.ndarray:
        return con.execute(f"SELECT DISTINCT hash(v) AS key FROM ({values}) t(v)"
                           ).fetchnumpy()["key"]


@dataclass(frozen=True)
class RecordEnds:
    """FROM items of the stored pairs (`scored_pairs` or a part of it) and of people's
    constraints (`constraints` or a part of it; None: none has one of the records asked for)
    that may have one of some records on either side."""

    pairs: str
    constraints: str | None


# `decision_history.decided_by` of the engine's own placements (engine.resolution.changes.
# Provenance); the others are people's acts.
ENGINE_DECIDERS = "('engine', 'redo')"

# The temporary tables a catch-up may create (dropped with the batch's).
LOCATOR_TABLES = ("placed_by_people", "placed_by_people_nos", "placed_keys", "placed_key_nos")

# Each pair, and each constraint, under both of its records' ids.
_PAIR_ENDS = ("(SELECT uid_a AS uid, pair_no FROM scored_pairs "
              "UNION ALL SELECT uid_b, pair_no FROM scored_pairs) pair_ends")
_CONSTRAINT_ENDS = ("(SELECT uid_a AS uid, constraint_no FROM constraints "
                    "UNION ALL SELECT uid_b, constraint_no FROM constraints) constraint_ends")


def _narrowed(con: duckdb.DuckDBPyConnection, table: str, column: str, name: str,
              numbers: np.ndarray) -> str:
    """A FROM item: the rows of `table` whose `column` is one of `numbers`. Up to
    `_NUMBERS_INLINE` numbers are written into it as one text constant (a statement less than
    keeping them in a table, ~1 ms, for each of a following batch's ~10 look-ups, and read the
    same way: a semi-join whose build side's range filters the scan); more are kept in
    temporary table `name`. No numbers give a FROM item DuckDB knows is empty without reading
    `table`: a join with an empty table of numbers still reads the first vectors of every
    column it wants (a moved batch's records of rebuilt children, with none rebuilt: 6 ms),
    and most batches look up no neighbourhood records, must-links or review items."""
    if not len(numbers):
        return f"(SELECT * FROM {table} WHERE false)"
    numbers = numbers.astype(np.int64)
    if len(numbers) <= _NUMBERS_INLINE:
        listed = ",".join(map(str, numbers.tolist()))
        wanted = f"SELECT unnest(string_split('{listed}', ',')::BIGINT[])"
    else:
        con.register(f"{name}_arrow", pa.table({column: numbers}))
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
        con.unregister(f"{name}_arrow")
        wanted = f"SELECT {column} FROM {name}"
    return f"(SELECT * FROM {table} WHERE {column} IN ({wanted}))"


def _looked_up(name: str, numbers: np.ndarray) -> str:
    """A FROM item: the rows of `records` whose number is one of `numbers`, each found through
    the index on `record_no` (engine.master_store) instead of a scan. DuckDB takes the index
    only for a list of constants that is the scan's one filter, so the rows are read in a
    materialized CTE: the caller's filters would otherwise be pushed into that scan."""
    listed = ",".join(map(str, numbers.astype(np.int64).tolist()))
    return (f"(WITH {name}_rows AS MATERIALIZED (SELECT * FROM records WHERE record_no IN "
            f"({listed})) SELECT * FROM {name}_rows)")


# A read of `records` by number goes through the index while it wants at most one row in this
# many. A scan decodes each wanted row's vector (2,048 rows) of every column it reads, the
# index each wanted row's values one by one: at 1M children (7.7M records) the index reads 300
# records' neighbourhood columns in 33 ms against 63, 500 in 55 against 71, 1,000 in 99
# against 90 (their folded columns: 1,000 in 110 against 173 ms). One in 16,384 is ~470 rows
# there, ~47 at 100,000 children, and always below DuckDB's own limit for an index scan
# (`index_scan_max_count`, 2,048 rows).
_ROWS_PER_INDEX_LOOKUP = 16384


# Up to this many numbers are written into the statement that reads their rows (a following
# batch's look-ups find a few hundred); more (a bulk load's tens of thousands) are kept in a
# table, from an Arrow table (as a list in SQL, 500,000 numbers cost 0.4 s to convert).
_NUMBERS_INLINE = 1000


def ends_of(locator: RecordLocator | None, con: duckdb.DuckDBPyConnection,
            values: str, name: str) -> RecordEnds:
    """`locator.ends_of(...)`, or the whole of `scored_pairs` and `constraints` where there is
    no locator."""
    return locator.ends_of(con, values, name) if locator else RecordEnds("scored_pairs",
                                                                         "constraints")


def records_of(locator: RecordLocator | None, con: duckdb.DuckDBPyConnection,
               column: Column, values: str, name: str) -> str:
    """`locator.records_of(...)`, or the whole of `records` where there is no locator (a
    person's act on a master no engine serves)."""
    return locator.records_of(con, column, values, name) if locator else "records"


def rows_of_children(locator: RecordLocator | None, con: duckdb.DuckDBPyConnection,
                     values: str, name: str) -> str:
    """`locator.rows_of_children(...)`, or the whole of `children` where there is no
    locator."""
    return locator.rows_of_children(con, values, name) if locator else "children"


def xref_of(locator: RecordLocator | None, con: duckdb.DuckDBPyConnection,
            values: str, name: str) -> str:
    """`locator.xref_of(...)`, or the whole of `xref` where there is no locator."""
    return locator.xref_of(con, values, name) if locator else "xref"
