"""Record pairs by blocking rules (SQL conditions over aliases l, r): the candidate pairs of a
model's prediction rules, and how many pairs a rule finds."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb


def blocked_pairs_sql(records: str, rules: Sequence[str]) -> str:
    """SQL: distinct (unique_id_l, unique_id_r), unique_id_l < unique_id_r, of the records
    of table `records` that agree on at least one rule (each run as its own equi-join)."""
    joins = [
        f"SELECT l.unique_id AS unique_id_l, r.unique_id AS unique_id_r "
        f"FROM {records} l JOIN {records} r ON {rule} WHERE l.unique_id < r.unique_id"
        for rule in rules
    ]
    return "\nUNION\n".join(joins)


def register_blocked_pairs(
    con: duckdb.DuckDBPyConnection, records: str, rules: Sequence[str], name: str
) -> str:
    """Materialise the blocked pairs of table `records` as temp table `name`."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {blocked_pairs_sql(records, rules)}")
    return name


def count_blocked_pairs(
    con: duckdb.DuckDBPyConnection, records: str, rules: Sequence[str]
) -> int:
    """Distinct record pairs of table `records` that satisfy at least one of `rules` (each
    run as its own join, so equi-join rules stay hash joins)."""
    return con.execute(
        f"SELECT count(*) FROM ({blocked_pairs_sql(records, rules)})"
    ).fetchall()[0][0]
