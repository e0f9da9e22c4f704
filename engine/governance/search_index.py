"""The search index: the record index's scoring columns copied and clustered by search key, so
a search reads the few blocks that hold its candidates instead of scanning `records`.

`search_index(search_key, record_no, <the model's record columns>)` holds one row per record and
index rule whose key expressions are all non-null, `search_key = hash(rule number, key values)`
(as the engine's blocking index, `engine.candidates.blocking_keys_sql`), stored in key order.
DuckDB keeps the smallest and largest value of every block of a column, so `search_key = K`
reads only the blocks whose range holds K: the cost of a lookup follows the number of records
with that key, not the size of the master. (DuckDB fetches scattered rows slowly, an ART index
included: 1,700 rows of a 7.7M-row `records` cost 80-400 ms; the same rows side by side, ~10 ms.)

The engine never writes this table (its batches pay nothing for it): a search first adds the
records the engine appended since (`record_no` above the index's largest, an unsorted tail) and
sorts the whole index again when that tail has grown to a quarter of the sorted part. A record's
canonical columns never change, so rows stay true; a record's child is read from `records` for
the few candidates a search keeps. Retention deletes the purged records' rows.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import lru_cache

import duckdb
from splink.internals.blocking import BlockingRule

from linkage_models.scoring import CompiledModel, equi_join_key

TABLE = "search_index"
# One upkeep at a time in a process (the engine's service serves searches on several cursors);
# its own lock, so that other acts (a sign-in) never wait for a build.
_UPKEEP = threading.Lock()
_META = "search_index_meta"  # (signature, sorted_rows): what the index was built for
# An unsorted tail longer than this share of the sorted part is merged in by sorting again.
RESORT_TAIL_SHARE = 0.25


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
    built = _built_for(con)
    if built is None or built[0] != signature:
        _build(con, model, rules, signature)
        return
    indexed_up_to, newest = con.execute(
        f"SELECT (SELECT coalesce(max(record_no), -1) FROM {TABLE}), "
        "(SELECT coalesce(max(record_no), -1) FROM records)"
    ).fetchall()[0]
    if newest <= indexed_up_to:
        return
    # a constant bound, so that each rule's scan of `records` reads only the blocks of the tail
    con.execute(f"INSERT INTO {TABLE} BY NAME "
                + _index_rows_sql(model, rules, f"records WHERE record_no > {indexed_up_to}"))
    rows = con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
    if rows - built[1] > RESORT_TAIL_SHARE * max(built[1], 1):
        _build(con, model, rules, signature)


def lookup_sql(rule_filters: dict[int, tuple[int, str]]) -> str:
    """The index rows `r` with key K for rule n that also pass that rule's filter (so a hash
    collision finds nothing), for each `n: (K, filter)` of `rule_filters`: one `search_key = K`
    lookup per rule, so that each reads only its own blocks; `rule_no` says which rule found
    the row. K is a key `probe_keys_sql` computed (an integer, written as a constant so that
    DuckDB prunes blocks by it)."""
    return "\nUNION ALL\n".join(
        f"SELECT {number} AS rule_no, r.* FROM {TABLE} r "
        f"WHERE r.search_key = {int(key)}::UBIGINT AND {rule_filter}"
        for number, (key, rule_filter) in rule_filters.items()
    )


def probe_keys_sql(rules: Sequence[str], rule_numbers: Sequence[int], probe: str) -> str:
    """One row: `key_<n>` = the search key of `probe` for rule n, for each of `rule_numbers`."""
    keys = [
        f"hash({number}, {', '.join(_key_expressions(rules[number]))}) AS key_{number}"
        for number in rule_numbers
    ]
    return f"SELECT {', '.join(keys)} FROM {probe}"


def forget_records(con: duckdb.DuckDBPyConnection, record_numbers: str) -> int | None:
    """Delete the index rows of the records whose `record_no` the query `record_numbers`
    selects (retention's purge: the rows hold names and dates); rows deleted, None if there
    is no index yet."""
    if _built_for(con) is None:
        return None
    return con.execute(
        f"DELETE FROM {TABLE} WHERE record_no IN ({record_numbers})"
    ).fetchall()[0][0]


def _build(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, rules: Sequence[str], signature: str
) -> None:
    con.execute(f"""
        CREATE OR REPLACE TABLE {TABLE} AS
        SELECT * FROM ({_index_rows_sql(model, rules, 'records')}) ORDER BY search_key
    """)
    rows = con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
    con.execute(f"CREATE OR REPLACE TABLE {_META} (signature VARCHAR, sorted_rows BIGINT)")
    con.execute(f"INSERT INTO {_META} VALUES (?, ?)", [signature, rows])


def _built_for(con: duckdb.DuckDBPyConnection) -> tuple[str, int] | None:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [_META]
    ).fetchall()[0][0]
    if not exists:
        return None
    rows = con.execute(f"SELECT signature, sorted_rows FROM {_META}").fetchall()
    return rows[0] if rows else None


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
