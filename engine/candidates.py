"""SQL for the candidate and scoring stages of a micro-batch (built once per model, run per batch).

Tables the resolver provides per batch: `batch_new` (the batch's records not resolved by xref,
canonical columns + `unique_id`) and the master's `records` (the record index, + `child_id`).
"""

from __future__ import annotations

from engine.config import ScoringConfig
from linkage_models.scoring import CompiledModel


def candidate_pairs_sql(model: CompiledModel) -> str:
    """Pairs (unique_id_l new record, unique_id_r existing or other new record) found by any of
    the model's prediction blocking rules; within the batch each pair appears once."""
    against_index = [
        f"SELECT l.unique_id AS unique_id_l, r.unique_id AS unique_id_r "
        f"FROM batch_new l JOIN records r ON {rule}"
        for rule in model.blocking_rules
    ]
    within_batch = [
        f"SELECT l.unique_id AS unique_id_l, r.unique_id AS unique_id_r "
        f"FROM batch_new l JOIN batch_new r ON ({rule}) AND l.unique_id < r.unique_id"
        for rule in model.blocking_rules
    ]
    return "\nUNION\n".join(against_index + within_batch)


def with_term_frequencies_sql(
    model: CompiledModel, table: str, min_values: int = ScoringConfig.tf_min_values
) -> str:
    """`table`'s rows with one `tf_<col>` column per tf-adjusted column: the value's share of all
    non-null values seen so far (as Splink's term-frequency tables give).

    Until a column has `min_values` values the share is NULL, which Splink's SQL reads as "no
    adjustment": in a young master every name looks common (one JONES in two records is 50%)."""
    joins, columns = [], []
    for i, column in enumerate(model.tf_columns):
        total = f"(SELECT sum(n) FROM term_frequencies WHERE column_name = '{column}')"
        joins.append(
            f"LEFT JOIN term_frequencies tf{i} "
            f"ON tf{i}.column_name = '{column}' AND tf{i}.value = t.{column}"
        )
        columns.append(
            f"CASE WHEN {total} >= {min_values} THEN tf{i}.n / {total}::DOUBLE END "
            f"AS tf_{column}"
        )
    select = ", ".join(["t.*", *columns])
    return f"SELECT {select} FROM {table} t {' '.join(joins)}"


def count_term_frequencies_sql(model: CompiledModel, table: str) -> str:
    """Add the values of `table` to the term-frequency counts."""
    counts = "\nUNION ALL\n".join(
        f"SELECT '{column}' AS column_name, {column} AS value, count(*) AS n "
        f"FROM {table} WHERE {column} IS NOT NULL GROUP BY {column}"
        for column in model.tf_columns
    )
    return f"""
    INSERT INTO term_frequencies {counts}
    ON CONFLICT (column_name, value) DO UPDATE SET n = term_frequencies.n + excluded.n
    """
