"""Model input records: canonical updates as the linkage model reads them (SQL over DuckDB).

The model's records are the canonical update columns plus `unique_id` (`feed:record_id`) and,
for scoring, one `tf_<column>` per term-frequency column: the value's share of the non-null
values of that column, as Splink's term-frequency tables give it.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from linkage_models.settings import UNIQUE_ID


def model_records_sql(source: str) -> str:
    """SQL selecting the canonical columns of table `source` plus the model's `unique_id`."""
    return f"SELECT *, feed || ':' || record_id AS {UNIQUE_ID} FROM {source}"


def with_term_frequencies_sql(source: str, tf_columns: Sequence[str]) -> str:
    """SQL selecting table `source` plus `tf_<col>` for each tf column (null where col is)."""
    tf_expressions = [
        f"CASE WHEN {col} IS NULL THEN NULL ELSE "
        f"CAST(count(*) OVER (PARTITION BY {col}) AS DOUBLE) / count({col}) OVER () "
        f"END AS tf_{col}"
        for col in tf_columns
    ]
    return f"SELECT *, {', '.join(tf_expressions)} FROM {source}"


def register_model_records(
    con: duckdb.DuckDBPyConnection,
    updates: pa.Table | duckdb.DuckDBPyRelation,
    name: str,
    tf_columns: Sequence[str] = (),
) -> str:
    """Materialise canonical `updates` as model records (with tf columns) in table `name`."""
    source = f"{name}__updates"
    if isinstance(updates, duckdb.DuckDBPyRelation):  # may belong to another connection
        updates = updates.to_arrow_table()
    con.register(source, updates)
    try:
        records = model_records_sql(source)
        if tf_columns:
            records = with_term_frequencies_sql(f"({records})", tf_columns)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS {records}")
    finally:
        con.unregister(source)
    return name
