"""The search index: the record index's scoring columns copied and clustered by search key, so
a search reads the few blocks that hold its candidates instead of scanning `records`.

`search_index(search_key, record_no, <the model's record columns>)` holds one row per record and
index rule whose key expressions are all non-null, `search_key = hash(rule number, key values)`
(as the engine's blocking index, `engine.candidates.blocking_keys_sql`), stored in key order.
DuckDB keeps the smallest and largest value of every block of a column, so `search_key = K`
reads only the blocks whose range holds K: the cost of a lookup follows the number of records
with that key, not the size of the master. (DuckDB fetches scattered rows slowly, an ART index
included: 1,700 rows of a 7.7M-row `records` cost 80-400 ms; the same rows side by side, ~10 ms.)

The engine never writes this table (its batches pay nothing for it), and a search does not
either: the engine's governance service keeps it up to date in the background while people
search (`ensure_search_index`: it adds the records appended since as an unsorted tail and sorts
the whole index again when that tail has grown to a quarter of the sorted part), and a search
reads the few records appended since the last upkeep (`record_no` above `indexed_up_to`) from
`records` itself, by the same rules (`lookup_sql`). Only a tail longer than
`MAX_UNINDEXED_RECORDS` (no upkeep ran: a master searched without its engine after a run) is
added by the search itself (`catch_up_if_far_behind`). A record's canonical columns never
change, so rows stay true; a record's child is read from `records` for the few candidates a
search keeps. Retention deletes the purged records' rows.

The kept records' children's rows: the engine's service holds where each child's row is
(`ChildRows`, in memory, like the engine's own look-ups by key), so that its searches read
them by `row_no` instead of scanning `children.child_id`; a search on a master file opened for
one page has none and scans that column.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import duckdb
import numpy as np
from splink.internals.blocking import BlockingRule

from engine.key_index import KeyIndex
from linkage_models.scoring import CompiledModel, equi_join_key

TABLE = "search_index"
# One upkeep at a time in a process (the engine's service serves searches on several cursors);
# its own lock, so that other acts (a sign-in) never wait for a build.
_UPKEEP = threading.Lock()
# (signature, sorted_rows, indexed_up_to): what the index was built for, how many of its rows
# are sorted, and the largest record_no it holds
_META = "search_index_meta"
# An unsorted tail longer than this share of the sorted part is merged in by sorting again.
RESORT_TAIL_SHARE = 0.25
# Records a search reads from `records` itself rather than first adding them to the index
# (~500 updates/s for seconds between upkeeps; a longer tail is added by the search).
MAX_UNINDEXED_RECORDS = 20_000


@dataclass(frozen=True)
class IndexState:
    """What the index holds: its signature, its sorted rows, and the largest record_no in it."""

    signature: str
    sorted_rows: int
    indexed_up_to: int


@contextmanager
def upkeep_paused() -> Iterator[None]:
    """No upkeep of the index meanwhile (it writes in a transaction of its own, beside which a
    checkpoint, as a backup makes, fails)."""
    with _UPKEEP:
        yield


def ensure_search_index(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, rules: Sequence[str]
) -> None:
    """Make the index cover every record of `records` for `rules` (the index rules, numbered by
    position): build it if it is missing or was built for other rules, columns or DuckDB, add
    the records appended since, and sort it again when the unsorted tail has grown too long.
    In a transaction of its own (`con` must not be in one), one upkeep at a time."""
    with _UPKEEP:  # up to the commit: the next upkeep must see this one's rows
        con.begin()
        try:
            _bring_up_to_date(con, model, rules)
            con.commit()
        except BaseException:
            con.rollback()
            raise


def _bring_up_to_date(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, rules: Sequence[str]
) -> None:
    signature = _signature(model, rules)
    _add_indexed_up_to(con)
    built = index_state(con)
    if built is None or built.signature != signature:
        _build(con, model, rules, signature)
        return
    newest = con.execute("SELECT coalesce(max(record_no), -1) FROM records "
                         f"WHERE record_no > {built.indexed_up_to}").fetchall()[0][0]
    if newest <= built.indexed_up_to:
        return
    # a constant bound, so that each rule's scan of `records` reads only the blocks of the tail
    con.execute(f"INSERT INTO {TABLE} BY NAME " + _index_rows_sql(
        model, rules, f"records WHERE record_no BETWEEN {built.indexed_up_to + 1} AND {newest}"))
    con.execute(f"UPDATE {_META} SET indexed_up_to = ?", [newest])
    rows = con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
    if rows - built.sorted_rows > RESORT_TAIL_SHARE * max(built.sorted_rows, 1):
        _build(con, model, rules, signature)


def catch_up_if_far_behind(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, rules: Sequence[str]
) -> None:
    """Before a search (not in a transaction): build the index if there is none for `rules`, or
    bring it up to date if more than MAX_UNINDEXED_RECORDS records were appended since its last
    upkeep; otherwise (nearly always while the engine's service keeps it) two small reads."""
    try:
        signature, indexed_up_to = con.execute(
            f"SELECT signature, indexed_up_to FROM {_META}").fetchall()[0]
    except (duckdb.CatalogException, duckdb.BinderException):  # none, or from before the column
        signature = indexed_up_to = None
    if signature == _signature(model, rules):
        unindexed = con.execute(
            f"SELECT count(*) FROM records WHERE record_no > {indexed_up_to}").fetchall()[0][0]
        if unindexed <= MAX_UNINDEXED_RECORDS:
            return
    ensure_search_index(con, model, rules)


def indexed_up_to_sql() -> str:
    """A scalar subquery: the largest record_no the index holds (larger ones are read from
    `records` by `lookup_sql`)."""
    return f"(SELECT indexed_up_to FROM {_META})"


def lookup_sql(
    model: CompiledModel, rule_filters: dict[int, tuple[int, str]], indexed_up_to: int
) -> str:
    """`rule_no`, `record_no` and the model's columns of each record `r` with key K for rule n
    that passes that rule's filter (so a hash collision finds nothing), for each
    `n: (K, filter)` of `rule_filters`: one `search_key = K` lookup in the index per rule, so
    that each reads only its own blocks, and the records above `indexed_up_to` (not in the
    index yet) read from `records` by the filters. K is a key `probe_keys_sql` computed (an
    integer, written as a constant so that DuckDB prunes blocks by it)."""
    columns = ", ".join(f"r.{column}" for column in model.record_columns)
    indexed = [
        f"SELECT {number} AS rule_no, r.record_no, {columns} FROM {TABLE} r "
        f"WHERE r.search_key = {int(key)}::UBIGINT AND {rule_filter}"
        for number, (key, rule_filter) in rule_filters.items()
    ]
    filters = " OR ".join(f"({rule_filter})" for _, rule_filter in rule_filters.values())
    # one read of the tail for all rules: which rule found a record is asked of its row again
    unindexed = [
        f"SELECT {number} AS rule_no, * FROM unindexed r WHERE {rule_filter}"
        for number, (_, rule_filter) in rule_filters.items()
    ]
    return (
        f"WITH unindexed AS MATERIALIZED (SELECT r.record_no, {columns} FROM records r "
        f"WHERE r.record_no > {int(indexed_up_to)} AND ({filters}))\n"
        + "\nUNION ALL\n".join((*indexed, *unindexed))
    )


def probe_keys_sql(
    rules: Sequence[str], rule_numbers: Sequence[int], probe: str, *extra: str
) -> str:
    """One row: `key_<n>` = the search key of `probe` for rule n, for each of `rule_numbers`,
    then the `extra` expressions."""
    keys = [
        f"hash({number}, {', '.join(_key_expressions(rules[number]))}) AS key_{number}"
        for number in rule_numbers
    ]
    return f"SELECT {', '.join((*keys, *extra))} FROM {probe}"


def forget_records(con: duckdb.DuckDBPyConnection, record_numbers: str) -> int | None:
    """Delete the index rows of the records whose `record_no` the query `record_numbers`
    selects (retention's purge: the rows hold names and dates); rows deleted, None if there
    is no index yet."""
    if index_state(con) is None:
        return None
    return con.execute(
        f"DELETE FROM {TABLE} WHERE record_no IN ({record_numbers})"
    ).fetchall()[0][0]


def _build(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, rules: Sequence[str], signature: str
) -> None:
    # a constant bound: the rows of the records this transaction sees, whatever comes after
    newest = con.execute("SELECT coalesce(max(record_no), -1) FROM records").fetchall()[0][0]
    con.execute(f"""
        CREATE OR REPLACE TABLE {TABLE} AS
        SELECT * FROM ({_index_rows_sql(model, rules, f'records WHERE record_no <= {newest}')})
        ORDER BY search_key
    """)
    rows = con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
    con.execute(f"CREATE OR REPLACE TABLE {_META} "
                "(signature VARCHAR, sorted_rows BIGINT, indexed_up_to BIGINT)")
    con.execute(f"INSERT INTO {_META} VALUES (?, ?, ?)", [signature, rows, newest])


def index_state(con: duckdb.DuckDBPyConnection) -> IndexState | None:
    """What the index holds, as this transaction sees it; None if there is none yet."""
    if not _meta_columns(con):
        return None
    rows = con.execute(f"SELECT signature, sorted_rows, indexed_up_to FROM {_META}").fetchall()
    return IndexState(*rows[0]) if rows else None


def _add_indexed_up_to(con: duckdb.DuckDBPyConnection) -> None:
    """Give the meta table of an index built before it said how far it goes that column."""
    columns = _meta_columns(con)
    if columns and "indexed_up_to" not in columns:
        con.execute(f"ALTER TABLE {_META} ADD COLUMN indexed_up_to BIGINT")
        con.execute(f"UPDATE {_META} SET indexed_up_to = "
                    f"(SELECT coalesce(max(record_no), -1) FROM {TABLE})")


def _meta_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in con.execute(
        "SELECT column_name FROM duckdb_columns() "
        "WHERE table_name = ? AND database_name = current_database()", [_META]).fetchall()}


def _index_rows_sql(model: CompiledModel, rules: Sequence[str], records: str) -> str:
    """The index rows of `records` (a table, or a table and a WHERE clause)."""
    columns = ", ".join(model.record_columns)
    selects = []
    for number, rule in enumerate(rules):
        expressions = _key_expressions(rule)
        present = " AND ".join(f"({e}) IS NOT NULL" for e in expressions)
        selects.append(
            f"SELECT hash({number}, {', '.join(expressions)}) AS search_key, record_no, "
            f"{columns} FROM (SELECT * FROM {records}) WHERE {present}"
        )
    return "\nUNION ALL\n".join(selects)


@lru_cache(maxsize=64)
def _key_expressions(rule: str) -> tuple[str, ...]:
    return equi_join_key(BlockingRule(rule, "duckdb"))  # parsing SQL: ~10 ms


def _signature(model: CompiledModel, rules: Sequence[str]) -> str:
    text = repr((tuple(rules), sorted(model.record_columns), duckdb.__version__))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ChildRows:
    """Where each child's row of `children` is, for the searches of the process that holds the
    master (the engine's service): `hash(child_id)` -> `row_no` in memory (engine.key_index),
    so that a search reads its children's rows by `row_no` instead of scanning the `child_id`
    column (a million strings at 1M children).

    A child's row is written anew with a higher `row_no` at every change, and only under the
    engine's write lock, so the rows numbered above the highest held are exactly those written
    since: each lookup first adds them, in the searcher's own transaction. An entry may name a
    row deleted since, or (a 32-bit key) another child's row: the caller filters the rows by
    `child_id`. Load it before any search's transaction begins (`start_service` does), so that
    no search sees a row deleted before it was loaded."""

    def __init__(self) -> None:
        self._index = KeyIndex("children", "hash(child_id)", number="row_no")
        self._lock = threading.Lock()  # the service's searches share it

    @classmethod
    def loaded(cls, con: duckdb.DuckDBPyConnection) -> ChildRows:
        """Every row of `children`, read on a cursor of `con` in one transaction."""
        rows = cls()
        cursor = con.cursor()
        try:
            cursor.begin()
            rows._index.load(cursor)
            cursor.commit()
        finally:
            cursor.close()
        return rows

    def row_numbers(self, con: duckdb.DuckDBPyConnection, child_keys: np.ndarray) -> np.ndarray:
        """The `row_no`s that may be the rows of the children whose `hash(child_id)` are
        `child_keys` (a superset: filter by `child_id`), after adding the rows written since
        the last lookup as `con`'s transaction sees them."""
        with self._lock:
            self._index.catch_up(con)
            return self._index.find(child_keys)[1]


# The ChildRows of each cursor the engine's service serves searches on (`use_child_rows`).
_CHILD_ROWS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, ChildRows] = (
    weakref.WeakKeyDictionary())


def use_child_rows(cursors: Iterable[duckdb.DuckDBPyConnection], rows: ChildRows | None) -> None:
    """Let searches on `cursors` find children's rows through `rows` (None: by scanning
    `child_id` again, as on a master file opened for one page)."""
    for cursor in cursors:
        if rows is None:
            _CHILD_ROWS.pop(cursor, None)
        else:
            _CHILD_ROWS[cursor] = rows


def child_rows_of(con: duckdb.DuckDBPyConnection) -> ChildRows | None:
    """The ChildRows searches on `con` use, if any."""
    return _CHILD_ROWS.get(con)
