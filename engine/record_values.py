"""Values of some record columns (engine.candidates.HELD_VALUES), held in memory while
following, so that a batch's candidates are scored without reading those values from `records`.

A busy batch of the follow session has a few hundred to a few thousand candidates scattered over
`records`: DuckDB decodes the whole dictionary of every block of a text column such a read
touches, so the columns of many distinct values cost most (430 rows of a 1M-children master: the
postcode 27 ms, the source key 13 ms, of the model columns' ~41 ms beside it). So those values
are held here, by `record_no`, and a batch reads the others from the master, which also drops a
record the master no longer holds (a purged one).

A record's values never change once it is indexed (a move changes its `child_id` only, read from
the master each time), so the values only grow: at each catch-up, with the records numbered
above the highest held. Numbers come from a sequence, never handed out twice in one process, so
the values of a record of a batch that rolled back are never asked for again.

Values are held in segments of up to `LOAD_ROWS` records, by record number (4 bytes each), each
column dictionary-encoded (16-bit codes where a segment has fewer than 32,768 distinct values):
the seven columns held take ~330 MB at 1M children (the record numbers 31 MB, the postcodes
~35 MB). Recent records wait as plain text until `SEGMENT_ROWS` have come, then join the last
segment while it has room. Few, large segments keep a batch's look-up to a few calls a column
(2,000-3,000 numbers at 1M children: 2 ms, where segments of 100,000 records took 6 ms) and
share a dictionary over more records (the postcodes took 85 MB then).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

# The records of a segment (at most, bar the last batch read when loading), and how many recent
# records wait as plain text before they are encoded into the last segment.
LOAD_ROWS = 1_000_000
SEGMENT_ROWS = 100_000


@dataclass(frozen=True)
class _Segment:
    record_nos: np.ndarray  # sorted
    values: pa.Table

    def decoded(self) -> pa.Table:
        """The segment's rows as plain text, `record_no` first."""
        columns = [pa.array(self.record_nos, pa.int64())]
        columns += [_decoded(column) for column in self.values.columns]
        return pa.Table.from_arrays(columns, ["record_no", *self.values.column_names])

    def take(self, wanted: np.ndarray) -> pa.Table:
        """Rows for those of the sorted numbers `wanted` this segment holds, `record_no` first."""
        at = np.searchsorted(self.record_nos, wanted.astype(self.record_nos.dtype))
        held = at < len(self.record_nos)
        held[held] = self.record_nos[at[held]] == wanted[held]
        rows = self.values.take(pa.array(at[held]))
        columns = [pa.array(wanted[held], pa.int64())]
        columns += [_decoded(rows.column(i)) for i in range(rows.num_columns)]
        return pa.Table.from_arrays(columns, ["record_no", *rows.column_names])


class RecordValues:
    """`columns` of `records`, by `record_no`, for every record of the master."""

    def __init__(self, columns: list[str]) -> None:
        self._select = f"SELECT record_no, {', '.join(columns)} FROM records"
        self._schema = pa.schema([("record_no", pa.int64()), *((c, pa.string()) for c in columns)])
        self._segments: list[_Segment] = []
        self._recent: list[pa.Table] = []
        self.up_to = -1  # the highest record_no held

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Hold every record of the master (replacing what was held)."""
        self._segments, self._recent, self.up_to = [], [], -1
        # in the order stored (sorting 7.7M rows in DuckDB first would take ~1.5 GB): each
        # segment is sorted by itself
        reader = con.sql(self._select).to_arrow_reader(LOAD_ROWS)
        batches: list[pa.RecordBatch] = []
        for batch in reader:
            batches.append(batch)
            if sum(b.num_rows for b in batches) >= LOAD_ROWS:
                self._add_segment(pa.Table.from_batches(batches))
                batches = []
        if batches:
            self._add_segment(pa.Table.from_batches(batches))

    def catch_up(self, con: duckdb.DuckDBPyConnection) -> None:
        """Add the records numbered above the highest held."""
        new = con.sql(f"{self._select} WHERE record_no > {self.up_to}").to_arrow_table()
        if not new.num_rows:
            return
        new = new.sort_by("record_no")
        self._recent.append(new)
        self.up_to = max(self.up_to, int(new.column("record_no")[-1].as_py()))
        if sum(t.num_rows for t in self._recent) >= SEGMENT_ROWS:
            recent, self._recent = pa.concat_tables(self._recent), []
            if self._segments and len(self._segments[-1].record_nos) < LOAD_ROWS:
                recent = pa.concat_tables([self._segments.pop().decoded(), recent])
            self._add_segment(recent)

    def rows_of(self, record_nos: np.ndarray) -> pa.Table:
        """`record_no` and the columns of those of `record_nos` held."""
        wanted = np.unique(np.asarray(record_nos, np.int64))
        segments = list(self._segments)
        if self._recent:
            recent = pa.concat_tables(self._recent)
            segments.append(_Segment(recent.column("record_no").to_numpy(),
                                     recent.drop_columns("record_no")))
        return pa.concat_tables([self._schema.empty_table(), *(
            s.take(wanted) for s in segments if _holds_any(s.record_nos, wanted))])

    def _add_segment(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        rows = rows.sort_by("record_no")
        numbers = rows.column("record_no").to_numpy().astype(np.uint32)  # below 2**32: key_index
        values = rows.drop_columns("record_no")
        self._segments.append(_Segment(numbers, pa.table(
            {name: _encoded(values.column(name)) for name in values.column_names})))
        self.up_to = max(self.up_to, int(numbers[-1]))


def _holds_any(record_nos: np.ndarray, wanted: np.ndarray) -> bool:
    """Whether a wanted number (sorted) lies within the sorted `record_nos`' range."""
    first = np.searchsorted(wanted, record_nos[0])
    return bool(first < len(wanted) and wanted[first] <= record_nos[-1])


def _encoded(column: pa.ChunkedArray) -> pa.Array:
    """A text column as a dictionary, with 16-bit codes where few enough values."""
    encoded = column.combine_chunks().dictionary_encode()
    if len(encoded.dictionary) < 2**15:
        return encoded.cast(pa.dictionary(pa.int16(), encoded.type.value_type))
    return encoded


def _decoded(column: pa.ChunkedArray) -> pa.Array:
    column = column.combine_chunks()
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
