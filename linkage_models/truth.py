"""Synthetic truth (`truth.csv`: feed, record_id, person_id, bad_kind) as DuckDB tables.

Rows with an empty person_id or a non-empty bad_kind are bad lines: never part of pairwise
figures. Pair counts are set-based: a group of n records holds n·(n−1)/2 pairs.
"""

from __future__ import annotations

from pathlib import Path

import duckdb


def register_truth(con: duckdb.DuckDBPyConnection, truth_csv: Path, name: str = "truth") -> str:
    """Create temp table `name(feed, record_id, unique_id, person_id)` of the good truth rows."""
    raw = con.read_csv(str(truth_csv), header=True, all_varchar=True)
    bad_kind = "coalesce(bad_kind, '') = ''" if "bad_kind" in raw.columns else "true"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        SELECT feed, record_id, feed || ':' || record_id AS unique_id, person_id
        FROM read_csv(?, header = true, all_varchar = true)
        WHERE coalesce(person_id, '') <> '' AND {bad_kind}
        """,
        [str(truth_csv)],
    )
    return name


def count_pairs(con: duckdb.DuckDBPyConnection, table: str, group: str) -> int:
    """The number of record pairs of `table` that share the `group` columns."""
    return con.execute(
        f"SELECT coalesce(sum(n * (n - 1) / 2), 0)::BIGINT FROM "
        f"(SELECT count(*) AS n FROM {table} GROUP BY {group})"
    ).fetchall()[0][0]
