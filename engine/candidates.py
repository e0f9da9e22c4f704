"""SQL for the candidate and scoring stages of a micro-batch (built once per model, run per batch).

Candidates come from the **blocking index** `blocking_keys(block_key, record_no)`: for every record
in the record index and every blocking rule of the model whose key expressions are all non-null,
`block_key = hash(rule number, the rule's key values)`. Two records share a key exactly when the
rule would join them, bar a hash collision, which only adds a pair for the model to score. The
batch's keys are looked up in a copy of the index held in memory (engine.key_index, keys compared
on their upper 32 bits; the batch's own keys with each other on the same bits), so a batch reads
only its candidates' rows instead of the index's name, date and postcode columns once per rule.

Tables the resolver provides per batch: `batch_new` (the batch's records not resolved by xref,
canonical columns + `unique_id`) and the master's `records` (the record index, + `child_id`,
`record_no`).
"""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pyarrow as pa

from engine.config import ScoringConfig
from engine.key_index import KEY_BITS, KeyIndex
from engine.record_values import RecordValues
from linkage_models.scoring import CompiledModel


class CandidateFinder:
    """Makes `pairs(unique_id_l, unique_id_r)` — each new record of `batch_new` with the indexed
    records and the other new records it shares a blocking key with (within the batch each
    pair once) — and `right_records`, the records on the right of those pairs (the columns
    the model scores, `child_id` NULL for a new record).

    The batch's keys are looked up in the blocking index held in memory (engine.key_index),
    which catches up first with the rows `blocking_keys` gained since (the records the xref
    fast path indexed a moment ago included). With `hold_values` (following) the candidates'
    values of `HELD_VALUES` come from memory too (engine.record_values), the others from
    `records`."""

    def __init__(self, model: CompiledModel, hold_values: bool = False) -> None:
        self.index = KeyIndex("blocking_keys", "block_key")
        held = [c for c in HELD_VALUES if c in model.scored_columns] if hold_values else []
        self.values = RecordValues(held) if held else None
        self._batch_keys_sql = ("CREATE OR REPLACE TEMP TABLE batch_keys AS "
                                + blocking_keys_sql(model, "batch_new", "unique_id"))
        indexed = ", ".join(f"v.{c}" if c in held else f"r.{c}" for c in model.scored_columns)
        held_values = "JOIN held_values v USING (record_no)" if held else ""
        self._right_records_sql = f"""
            CREATE OR REPLACE TEMP TABLE right_records AS
            SELECT r.record_no, r.child_id, {indexed} FROM records r {held_values}
            WHERE r.record_no IN (SELECT record_no FROM index_pairs)
            UNION ALL
            SELECT NULL::BIGINT, NULL::VARCHAR, {scored_columns_sql(model, "b")} FROM batch_new b
        """
        # within the batch on the bits the index holds, so that a pair is found (or not) alike
        # whether its two records arrive in one batch or two
        self._pairs_sql = f"""
            CREATE OR REPLACE TEMP TABLE pairs AS
            SELECT p.unique_id_l, r.unique_id AS unique_id_r
            FROM index_pairs p JOIN right_records r USING (record_no)
            UNION
            SELECT l.unique_id, r.unique_id
            FROM batch_keys l JOIN batch_keys r
              ON l.block_key >> {64 - KEY_BITS} = r.block_key >> {64 - KEY_BITS}
            WHERE l.unique_id < r.unique_id
        """

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read the blocking index (and the records' values, if held) from the master."""
        self.index.load(con)
        if self.values is not None:
            self.values.load(con)

    def find(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(self._batch_keys_sql)
        self.index.catch_up(con)
        keys = con.sql("SELECT unique_id, block_key FROM batch_keys").to_arrow_table()
        which, record_numbers = self.index.find(keys.column("block_key").to_numpy())
        con.register("index_hits", pa.table({
            "unique_id_l": keys.column("unique_id").take(which),
            "record_no": pa.array(record_numbers, pa.int64()),
        }))
        # a stale entry (a purged record) finds no row of `records` below, so adds no pair
        con.execute("CREATE OR REPLACE TEMP TABLE index_pairs AS "
                    "SELECT DISTINCT unique_id_l, record_no FROM index_hits")
        con.unregister("index_hits")
        self._read_right_records(con, record_numbers)
        con.execute(self._pairs_sql)

    def _read_right_records(self, con: duckdb.DuckDBPyConnection, record_numbers: np.ndarray
                            ) -> None:
        if self.values is None:
            con.execute(self._right_records_sql)
            return
        self.values.catch_up(con)
        con.register("held_values", self.values.rows_of(record_numbers))
        con.execute(self._right_records_sql)
        con.unregister("held_values")


# The scored columns whose values a following engine holds in memory: those whose many distinct
# values cost most to read from scattered `records` rows. DuckDB stores text as DICT_FSST and
# decodes a block's whole dictionary (up to ~60,000 values) for each block a scan touches,
# however few of its rows are wanted, so a column's cost follows its distinct values: for 430
# scattered rows of a 1M-children master, over the 6.8 ms the scan of `record_no` costs, postcode
# 27 ms, source_key 13, nhs_number 3.8, date_of_birth and parent_forenames 2.5, middle_names 1.9,
# surname 1.5, each other model column 0-0.6 (unique_id 1.9, but held it would take 180 MB;
# 2026-12-04). They cut a batch of 200 of the follow session's lines from 279 to 239 ms, as much
# as holding all fifteen model columns. The candidates are read for scoring alone, which no
# level of the model's reads `source_key` for (a blocking rule's column), so it is neither held
# nor read (it was, until 2026-12-05: 137 MB). These six take ~190 MB at 1M children with their
# record numbers, ~2 GB at 11M.
HELD_VALUES = ("postcode", "nhs_number", "date_of_birth", "parent_forenames", "middle_names",
               "surname")


def scored_columns_sql(model: CompiledModel, alias: str) -> str:
    """The columns a record needs for scoring, of table alias `alias`, comma separated."""
    return ", ".join(f"{alias}.{name}" for name in model.scored_columns)


def index_records_sqls(model: CompiledModel, placed: str, indexed: str = "indexed"
                       ) -> list[str]:
    """Statements adding the records of table `placed` (canonical columns, `unique_id`,
    `child_id`) to the record index and their keys to the blocking index; the first makes
    table `indexed`, the records with their new `record_no`."""
    return [
        f"CREATE OR REPLACE TEMP TABLE {indexed} AS "
        f"SELECT nextval('record_no_seq') AS record_no, * FROM {placed}",
        f"INSERT INTO records BY NAME SELECT * FROM {indexed}",
        "INSERT INTO blocking_keys " + blocking_keys_sql(model, indexed, "record_no"),
    ]


def ensure_blocking_index(con: duckdb.DuckDBPyConnection, model: CompiledModel) -> None:
    """Rebuild the blocking index from the record index if it was built for other blocking rules
    (another model) or another DuckDB (whose `hash` may differ); a no-op otherwise. Run in the
    caller's transaction."""
    signature = _index_signature(model)
    current = con.execute(
        "SELECT value FROM master_meta WHERE key = 'blocking_index'"
    ).fetchall()
    if current == [(signature,)]:
        return
    con.execute("DELETE FROM blocking_keys")
    con.execute("INSERT INTO blocking_keys " + blocking_keys_sql(model, "records", "record_no"))
    con.execute(
        "INSERT OR REPLACE INTO master_meta VALUES ('blocking_index', ?)", [signature]
    )


def blocking_keys_sql(model: CompiledModel, table: str, id_column: str) -> str:
    """`(block_key, <id_column>)` of every row of `table` for every blocking rule whose key
    expressions are all non-null (SQL's `=` never joins on NULL)."""
    selects = []
    for number, expressions in enumerate(model.blocking_keys):
        present = " AND ".join(f"({e}) IS NOT NULL" for e in expressions)
        selects.append(
            f"SELECT hash({number}, {', '.join(expressions)}) AS block_key, {id_column} "
            f"FROM {table} WHERE {present}"
        )
    return "\nUNION ALL\n".join(selects)


def _index_signature(model: CompiledModel) -> str:
    text = repr((model.blocking_keys, duckdb.__version__))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_term_frequencies_sql(
    model: CompiledModel, table: str, min_values: int = ScoringConfig.tf_min_values
) -> str:
    """`table`'s rows with one `tf_<col>` column per tf-adjusted column: the value's share of all
    non-null values seen so far (as Splink's term-frequency tables give).

    Until a column has `min_values` values the share is NULL, which Splink's SQL reads as "no
    adjustment": in a young master every name looks common (one JONES in two records is 50%)."""
    if not model.tf_columns:
        return f"SELECT * FROM {table}"
    return (f"WITH tf_shares AS ({term_frequency_shares_sql(model, table, min_values)}) "
            + with_shares_sql(model, table, "tf_shares"))


def term_frequency_shares_sql(
    model: CompiledModel, table: str, min_values: int = ScoringConfig.tf_min_values
) -> str:
    """`(column_name, value, share)` for the values of `table`'s tf-adjusted columns seen so
    far (`with_term_frequencies_sql`), to join to `table`, or to any table whose values it holds
    (`with_shares_sql`). `term_frequencies` is read twice, for the totals and for the values
    `table` holds, however many columns: each read is a scan (~2 ms at a million children), and
    a join or a scalar sum per column read it six times for the model's two columns."""
    wanted = " UNION ALL ".join(
        f"SELECT '{column}' AS column_name, {column} AS value FROM {table}"
        for column in model.tf_columns)
    return f"""
    WITH tf_total AS (SELECT column_name, sum(n) AS n FROM term_frequencies GROUP BY column_name)
    SELECT f.column_name, f.value,
           CASE WHEN t.n >= {min_values} THEN f.n / t.n::DOUBLE END AS share
    FROM term_frequencies f JOIN tf_total t USING (column_name)
    SEMI JOIN ({wanted}) w ON w.column_name = f.column_name AND w.value = f.value"""


def with_shares_sql(model: CompiledModel, table: str, shares: str) -> str:
    """`table`'s rows with their `tf_<col>` columns from `shares`, a table or CTE made by
    `term_frequency_shares_sql` over values including `table`'s."""
    if not model.tf_columns:
        return f"SELECT * FROM {table}"
    joins = " ".join(
        f"LEFT JOIN {shares} tf{i} ON tf{i}.column_name = '{column}' "
        f"AND tf{i}.value = t.{column}"
        for i, column in enumerate(model.tf_columns))
    shared = ", ".join(f"tf{i}.share AS tf_{column}"
                       for i, column in enumerate(model.tf_columns))
    return f"SELECT t.*, {shared} FROM {table} t {joins}"


# Adds table `batch_tf_counts` `(column_name, value, n)` to the term-frequency counts.
ADD_TERM_FREQUENCIES_SQL = """
    INSERT INTO term_frequencies SELECT column_name, value, n FROM batch_tf_counts
    ON CONFLICT (column_name, value) DO UPDATE SET n = term_frequencies.n + excluded.n
"""


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
