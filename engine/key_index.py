"""A key -> row number index held in memory, so that a batch finds what it needs by key.

DuckDB has no cheap point lookup: without an index, finding one key reads a whole column; an ART
index makes the lookup cheap but DuckDB writes the whole index again at every checkpoint (1.7-4.3 s
per commit at 7.7M keys); a table sorted by key lets a join prune blocks by their min/max, but
only for a handful of keys, and appends undo the order. So each batch's lookups by key (its
candidates in the blocking index; through engine.record_locator its records seen before, a
child's records, a record's stored pairs, a child's row) are binary searches in numpy arrays
sorted by key, here; the batch then reads those rows by their number.

The master stays the truth: an index is built from it when the engine starts and catches up, at
each batch, with the rows the master gained since (numbered above the highest it holds; numbers
come from a sequence, so new rows always have higher ones). It is never written back. A row
deleted from the master (retention's purge) may linger here: a lookup can then name a number the
master no longer has, which finds no row, so a stale entry never changes a result; a row the
master holds is never missed.

Entries live in sorted chunks, each covering a range of keys (so that adding keys copies chunks
of bounded size, not the whole index), plus a small sorted tail of recent entries that is merged
into the chunks when it grows past `TAIL_ENTRIES`. A large chunk holds its keys packed
(`_Packed`): 16 bits a key and a bucket table, ~2.1 bytes a key where a sorted array takes 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

# Recent entries are merged into the chunks when there are this many (a merge copies every
# chunk once: ~0.3 s at 60M entries, so one per ~125,000 records at 8 keys a record).
TAIL_ENTRIES = 1_000_000
# A chunk is split in two when it holds more than this many entries.
CHUNK_ENTRIES = 4_000_000
_FETCH_ROWS = 1_000_000
# A key is held as the upper 32 bits of the 64-bit hash it is given (KEY_BITS): 4 bytes a row, not
# 8, ~250 MB less at 1M children. A lookup may then also find rows of another key (at 1M children
# about 1 in 70 lookups of the blocking index, 1 in 560 of the others): every caller filters by
# the value itself, or (the blocking index) scores the extra pair, which decides nothing.
KEY_BITS = 32
_KEY = np.uint32
_NO = np.uint32  # a record number stays below 2**32
_KEY_SPACE = 1 << KEY_BITS
# A chunk of at least this many entries is packed (`_Packed`); a smaller one's bucket table
# could outweigh what packing saves.
PACKED_ENTRIES = 1 << 20
# A packed chunk's buckets hold about this many entries each: a look-up compares every entry
# of its key's bucket, and the bucket table costs 4 bytes a bucket.
_BUCKET_ENTRIES = 32
_LOW_BITS = 16
_LOW = np.uint16
# A packed chunk's look-up compares up to this many entries in one pass, else it unpacks
_COMPARED_AT_ONCE = 1 << 18


class KeyIndexError(RuntimeError):
    """The master holds a record number this index cannot (2**32 records and more)."""


@dataclass
class _Sorted:
    keys: np.ndarray
    nos: np.ndarray

    @classmethod
    def empty(cls) -> _Sorted:
        return cls(np.empty(0, _KEY), np.empty(0, _NO))

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index into `keys`, record_no) of every entry whose key is one of `keys`."""
        low = np.searchsorted(self.keys, keys, "left")
        counts = np.searchsorted(self.keys, keys, "right") - low
        total = int(counts.sum())
        if not total:
            return np.empty(0, np.int64), np.empty(0, _NO)
        which = np.repeat(np.arange(len(keys)), counts)
        starts = np.repeat(low - (np.cumsum(counts) - counts), counts)
        return which, self.nos[starts + np.arange(total)]

    def merged(self, keys: np.ndarray, nos: np.ndarray) -> _Sorted:
        """This run with the sorted entries `keys`, `nos` added in key order."""
        at = np.searchsorted(self.keys, keys, "right")
        return _Sorted(np.insert(self.keys, at, keys), np.insert(self.nos, at, nos))

    def unpacked(self) -> _Sorted:
        """Itself, a sorted run already."""
        return self


@dataclass
class _Packed:
    """A chunk's sorted entries with their keys packed: the chunk's keys, from `lower`, fall
    in buckets of 2**shift consecutive keys; `starts[b]` is where bucket b's entries begin
    (`starts[-1]` the chunk's length), and `lows` holds each entry's key less its bucket's
    first key (under 2**16), sorted within its bucket."""

    lower: int
    shift: int
    starts: np.ndarray
    lows: np.ndarray
    nos: np.ndarray

    @classmethod
    def of(cls, lower: int, upper: int, run: _Sorted) -> _Packed:
        """`run`, whose keys lie in [lower, upper), packed."""
        span = upper - lower
        wide = int(np.log2(span * _BUCKET_ENTRIES / max(len(run.keys), 1)))
        shift = min(max(wide, 0), _LOW_BITS)
        offsets = run.keys - _KEY(lower)  # within the chunk's range: no wrap-around
        buckets = ((span - 1) >> shift) + 1
        starts = np.zeros(buckets + 1, np.uint32)
        np.cumsum(np.bincount(offsets >> _KEY(shift), minlength=buckets), out=starts[1:])
        lows = (offsets & _KEY((1 << shift) - 1)).astype(_LOW)
        return cls(lower, shift, starts, lows, run.nos)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As `_Sorted.find`, for `keys` in this chunk's range. A few keys' buckets are
        compared whole, in one pass; for many keys (a bulk load's batch) the chunk is
        unpacked and searched, so as not to hold every entry of every bucket asked for."""
        offsets = keys.astype(np.int64) - self.lower
        buckets = offsets >> self.shift
        first = self.starts[buckets].astype(np.int64)
        sizes = self.starts[buckets + 1].astype(np.int64) - first
        if int(sizes.sum()) > _COMPARED_AT_ONCE:
            return self.unpacked().find(keys)
        which = np.repeat(np.arange(len(keys)), sizes)
        at = np.repeat(first - (np.cumsum(sizes) - sizes), sizes) + np.arange(len(which))
        hit = self.lows[at] == (offsets & ((1 << self.shift) - 1))[which]
        return which[hit], self.nos[at[hit]]

    def merged(self, keys: np.ndarray, nos: np.ndarray) -> _Packed:
        """This chunk with the sorted entries `keys` (in its range), `nos` added in key
        order, packed as it is."""
        if not len(keys):  # nothing to add: kept as it is, not unpacked and copied
            return self
        into = np.searchsorted(self.unpacked().keys, keys, "right")
        offsets = keys - _KEY(self.lower)
        added = np.searchsorted(offsets >> _KEY(self.shift), np.arange(len(self.starts)))
        lows = (offsets & _KEY((1 << self.shift) - 1)).astype(_LOW)
        return _Packed(self.lower, self.shift, self.starts + added.astype(np.uint32),
                       np.insert(self.lows, into, lows), np.insert(self.nos, into, nos))

    def unpacked(self) -> _Sorted:
        """The entries as a sorted run (to search many keys, add entries or split)."""
        keys = np.repeat(np.arange(len(self.starts) - 1, dtype=_KEY), np.diff(self.starts))
        keys <<= _KEY(self.shift)
        keys += self.lows
        keys += _KEY(self.lower)
        return _Sorted(keys, self.nos)


class KeyIndex:
    """key -> number for every row of a master table (or query), the key being the SQL
    expression `key` over that row (e.g. `block_key`, `hash(unique_id)`) and the number its
    column `number`, which only grows as rows are appended (e.g. `record_no`)."""

    def __init__(self, table: str, key: str, number: str = "record_no") -> None:
        self._select = f"SELECT ({key})::UBIGINT AS key, {number} AS record_no FROM {table}"
        self._number = number
        self._reset()

    def _reset(self) -> None:
        self._bounds = np.zeros(1, _KEY)  # chunk i holds keys in [bounds[i], bounds[i + 1])
        self._chunks: list[_Sorted | _Packed] = [_Sorted.empty()]
        self._tail = _Sorted.empty()
        self.up_to = -1  # the highest record_no held

    def __len__(self) -> int:
        return sum(len(c.nos) for c in self._chunks) + len(self._tail.keys)

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Hold every row of the master (replacing what was held), read in key order."""
        self._reset()
        rows = con.execute(f"SELECT count(*) FROM ({self._select})").fetchall()[0][0]
        keys, nos = np.empty(rows, _KEY), np.empty(rows, _NO)
        filled = 0
        for batch in con.sql(f"{self._select} ORDER BY key").to_arrow_reader(_FETCH_ROWS):
            end = filled + batch.num_rows
            keys[filled:end] = narrow_keys(batch.column(0).to_numpy())
            nos[filled:end] = _record_numbers(batch.column(1).to_numpy())
            filled = end
        if rows:
            self._set_chunks([(0, _Sorted(keys, nos))])

    def catch_up(self, con: duckdb.DuckDBPyConnection) -> None:
        """Add the master's rows numbered above the highest held (those its writers appended
        since; the constant bound lets DuckDB skip the blocks before them)."""
        catch_up_all(con, [self])

    def since_sql(self) -> str:
        """`(key, record_no)` of the master's rows numbered above the highest held."""
        return f"{self._select} WHERE {self._number} > {self.up_to}"

    def add(self, keys: np.ndarray, nos: np.ndarray) -> None:
        """Hold `nos` under `keys` (64-bit hashes)."""
        if not len(keys):
            return
        keys = narrow_keys(keys)
        order = np.argsort(keys, kind="stable")
        self._tail = self._tail.merged(keys[order], nos[order])
        self.up_to = max(self.up_to, int(nos.max()))
        if len(self._tail.keys) >= TAIL_ENTRIES:
            self._merge_tail()

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index into `keys`, record_no) of every entry whose key is one of `keys` (64-bit
        hashes, compared on their upper KEY_BITS bits)."""
        narrowed = narrow_keys(keys)
        order = np.argsort(narrowed)  # binary searches for keys in order reuse the cache
        asked = narrowed[order]
        found = [self._tail.find(asked)]
        edges = np.searchsorted(asked, self._bounds, "left")
        for start, end, chunk in zip(edges, [*edges[1:], len(asked)], self._chunks, strict=True):
            if end > start:
                which, nos = chunk.find(asked[start:end])
                found.append((which + start, nos))
        which = np.concatenate([w for w, _ in found])
        return order[which], np.concatenate([n for _, n in found])

    def _merge_tail(self) -> None:
        tail, self._tail = self._tail, _Sorted.empty()
        chunk_of = np.searchsorted(self._bounds, tail.keys, "right") - 1
        edges = np.searchsorted(chunk_of, np.arange(len(self._chunks) + 1))
        self._set_chunks([
            (int(lower), chunk.merged(tail.keys[start:end], tail.nos[start:end]))
            for lower, chunk, start, end
            in zip(self._bounds, self._chunks, edges[:-1], edges[1:], strict=True)
        ])

    def _set_chunks(self, chunks: list[tuple[int, _Sorted | _Packed]]) -> None:
        """`(lower bound, chunk)` in key order, each chunk split until it holds at most
        CHUNK_ENTRIES entries, and packed if it holds PACKED_ENTRIES or more."""
        parts = [part for lower, chunk in chunks for part in _parts(lower, chunk)]
        uppers = [lower for lower, _ in parts[1:]] + [_KEY_SPACE]
        self._bounds = np.array([lower for lower, _ in parts], _KEY)
        self._chunks = [_Packed.of(lower, upper, chunk)
                        if isinstance(chunk, _Sorted) and len(chunk.keys) >= PACKED_ENTRIES
                        else chunk for (lower, chunk), upper in zip(parts, uppers, strict=True)]
        held = [int(c.nos.max()) for c in self._chunks if len(c.nos)]
        self.up_to = max([self.up_to, *held])


def catch_up_all(con: duckdb.DuckDBPyConnection, indexes: list[KeyIndex]) -> None:
    """Catch every index up, in one query (each statement costs DuckDB ~1 ms to plan)."""
    parts = " UNION ALL ".join(f"SELECT {i} AS part, * FROM ({index.since_sql()})"
                               for i, index in enumerate(indexes))
    rows = con.execute(parts).fetchnumpy()
    for i, index in enumerate(indexes):
        mine = rows["part"] == i
        if mine.any():
            index.add(rows["key"][mine], _record_numbers(rows["record_no"][mine]))


def narrow_keys(keys: np.ndarray) -> np.ndarray:
    """The upper KEY_BITS bits of 64-bit hashes, as held."""
    return (np.asarray(keys, np.uint64) >> np.uint64(64 - KEY_BITS)).astype(_KEY)


def _record_numbers(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if len(values) and int(values.max()) > np.iinfo(_NO).max:
        raise KeyIndexError(f"record_no {int(values.max())} is beyond the key index's range")
    return values.astype(_NO)


def _parts(lower: int, chunk: _Sorted | _Packed) -> list[tuple[int, _Sorted | _Packed]]:
    """The chunk as it is, if packed and small enough, else split (`_split`)."""
    if isinstance(chunk, _Packed) and len(chunk.nos) <= CHUNK_ENTRIES:
        return [(lower, chunk)]
    return _split(lower, chunk.unpacked())


def _split(lower: int, chunk: _Sorted) -> list[tuple[int, _Sorted]]:
    """The chunk as `(lower bound, part)`s of at most CHUNK_ENTRIES entries (more only where one
    key has that many); all entries of one key stay in one part."""
    if len(chunk.keys) <= CHUNK_ENTRIES:
        return [(lower, chunk)]
    middle_key = chunk.keys[len(chunk.keys) // 2]
    middle = int(np.searchsorted(chunk.keys, middle_key, "left"))
    if middle == 0:  # the first key fills the first half: split after it instead
        middle = int(np.searchsorted(chunk.keys, middle_key, "right"))
        if middle == len(chunk.keys):
            return [(lower, chunk)]
    return [*_split(lower, _Sorted(chunk.keys[:middle], chunk.nos[:middle])),
            *_split(int(chunk.keys[middle]), _Sorted(chunk.keys[middle:], chunk.nos[middle:]))]
