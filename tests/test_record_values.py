"""The records' values a following engine holds (engine.record_values) are exactly the master's,
for any record numbers asked, across load segments, recent records and the segments built from
them, both code widths and NULLs; a number the master never held finds nothing."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import engine.record_values as record_values
from engine.record_values import RecordValues

COLUMNS = ["first_name", "postcode", "sex"]


def add_records(con: duckdb.DuckDBPyConnection, first: int, count: int) -> None:
    """`count` records numbered from `first`, stored out of order, every third skipped (numbers
    have gaps); many first names (32-bit codes in a big segment), few sexes, some NULL
    postcodes."""
    con.execute(f"""
        INSERT INTO records
        SELECT n, 'name' || (n * 7919 % 60000),
               CASE WHEN n % 5 = 0 THEN NULL ELSE 'LS' || (n % 90) END,
               CASE WHEN n % 2 = 0 THEN 'F' ELSE 'M' END
        FROM range({first}, {first + count}) t(n) WHERE n % 3 <> 0 ORDER BY hash(n)
    """)


def truth(con: duckdb.DuckDBPyConnection, numbers: np.ndarray) -> list[tuple]:
    return con.execute(f"SELECT record_no, {', '.join(COLUMNS)} FROM records "
                       "WHERE record_no IN (SELECT unnest(?::BIGINT[])) ORDER BY record_no",
                       [numbers.tolist()]).fetchall()


def held(values: RecordValues, numbers: np.ndarray) -> list[tuple]:
    rows = values.rows_of(numbers).sort_by("record_no").to_pylist()
    return [tuple(row[c] for c in ["record_no", *COLUMNS]) for row in rows]


def test_held_values_are_the_masters_across_segments_and_recent_records(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(record_values, "LOAD_ROWS", 60_000)
    monkeypatch.setattr(record_values, "SEGMENT_ROWS", 700)
    con = duckdb.connect()
    con.execute("CREATE TABLE records (record_no BIGINT, first_name VARCHAR, postcode VARCHAR, "
                "sex VARCHAR)")
    add_records(con, 0, 120_000)  # two load segments, their first names 32-bit coded
    values = RecordValues(COLUMNS)
    values.load(con)
    rng = np.random.default_rng(4)
    for first in range(120_000, 123_000, 300):  # recent records, then segments of them
        add_records(con, first, 300)
        values.catch_up(con)
        asked = rng.integers(0, first + 400, 500)  # some never held, some not yet written
        assert held(values, asked) == truth(con, asked)
    assert values.up_to == 122_999
    widths = {s.values.column(c).type.index_type for s in values._segments for c in COLUMNS}
    assert widths == {pa.int16(), pa.int32()}
    assert held(values, np.array([3, 6, 10**9])) == []
