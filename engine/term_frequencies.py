"""Term frequencies held in memory while following, so that a batch looks its values' shares up
by value instead of reading `term_frequencies` whole (its totals, then its values). The shares of
700 values cost ~3 ms held, whatever the table holds; read from it, 5.6 ms at 70,000 counted
values (1M children), 21.9 ms at 700,000, and the counted values grow with the names and the
misspellings a master has seen. At 1M children the two cost about the same a batch (counting a
batch's values in Python takes back what the look-up saves: docs/scale.md, midmorning of
2026-12-04).

`term_frequencies` stays the store: a batch's counts (`count`) are added to it in the batch's
transaction, and the held counts take them at once. They are read again after a rollback, or when
someone else may have changed the table (a purge lowers counts: engine.governance.retention),
which the resolver learns from `MasterPopulation.begin_batch`. The shares are those
`term_frequency_shares_sql` gives, to the last bit: a value's count over its column's total, as
doubles, NULL until the column has `min_values` values.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

_SHARES_SCHEMA = pa.schema(
    [("column_name", pa.string()), ("value", pa.string()), ("share", pa.float64())])
_COUNTS_SCHEMA = pa.schema(
    [("column_name", pa.string()), ("value", pa.string()), ("n", pa.int64())])


class HeldTermFrequencies:
    """The counts of `term_frequencies` for the model's tf columns `columns`."""

    def __init__(self, columns: list[str], min_values: int) -> None:
        self.columns = columns
        self.min_values = min_values
        self._counts: dict[str, dict[str, int]] | None = None  # None: to be read
        self._totals: dict[str, int] = {}

    def shares(self, con: duckdb.DuckDBPyConnection, table: str) -> pa.Table:
        """`(column_name, value, share)` for the distinct values of `table`'s tf columns that
        have been seen, as `term_frequency_shares_sql` gives them."""
        counts = self._held(con)
        wanted = " UNION ".join(
            f"SELECT '{column}' AS column_name, {column} AS value FROM {table} "
            f"WHERE {column} IS NOT NULL" for column in self.columns)
        names, values, shares = [], [], []
        for column, value in con.execute(wanted).fetchall():
            n = counts[column].get(value)
            if n is None:
                continue
            total = self._totals[column]
            names.append(column)
            values.append(value)
            shares.append(n / total if total >= self.min_values else None)
        return pa.table([names, values, shares], schema=_SHARES_SCHEMA)

    def count(self, con: duckdb.DuckDBPyConnection, table: str) -> pa.Table:
        """`(column_name, value, n)`: how often each value of `table`'s tf columns comes, to be
        added to `term_frequencies` in the caller's transaction; the held counts take them."""
        rows = con.sql(f"SELECT {', '.join(self.columns)} FROM {table}").to_arrow_table()
        names, values, ns = [], [], []
        for column in self.columns:
            counted = pc.value_counts(rows[column].drop_null())
            names += [column] * len(counted)
            values += counted.field("values").to_pylist()
            ns += counted.field("counts").to_pylist()
        if self._counts is not None:  # else read, with these, when next needed
            for column, value, n in zip(names, values, ns, strict=True):
                held = self._counts[column]
                held[value] = held.get(value, 0) + n
                self._totals[column] += n
        return pa.table([names, values, ns], schema=_COUNTS_SCHEMA)

    def forget(self) -> None:
        """Read the counts again when next needed."""
        self._counts = None

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read the counts if they are not held (~0.1 s at 1M children: a following engine
        does it before its first line)."""
        if self._counts is not None:
            return
        self._counts = {column: {} for column in self.columns}
        rows = con.execute("SELECT column_name, value, n FROM term_frequencies "
                           "WHERE column_name IN (SELECT unnest(?::VARCHAR[]))",
                           [self.columns]).fetchall()
        for column, value, n in rows:
            self._counts[column][value] = n
        self._totals = {column: sum(held.values()) for column, held in self._counts.items()}

    def _held(self, con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
        self.load(con)
        return self._counts
