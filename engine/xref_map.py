"""`xref` held in memory while following: each `(feed, source_key)` key's child, and how many keys
each child holds, so that a batch finds its known keys and its lone keys (engine.resolver's xref
fast path) without reading `xref`.

Reading a few hundred scattered `xref` rows from DuckDB decompresses most of the table's vectors
(~55 ms a busy batch at 1M children, and the lone-key check as much again); a lookup here is a
binary search. The key indexes (engine.key_index) hold 32-bit hashes and let the caller check each
hit against its row; this map's answer is used as it is (a record goes to the key's child
unscored), so a key is held whole: as the two 64-bit halves of its MD5, which no two keys share in
practice (the chance that any lookup at all finds another key's entry is about 1e-20). A child id
is `C` and 16 hex digits (engine.resolution.graph.new_child_id), held as the number they spell.

The master stays the truth; the map must never be behind it, since a stale entry would send a
record unscored to a child that no longer holds its key. The owner (engine.record_locator) keeps
it in step with every writer of `xref`:

- the engine's new keys: the rows numbered above the highest held (`rows_since_sql`);
- the engine's moves: the rows its change writer has just moved (`set_children`);
- people's acts, whose change writer has no map: the keys of the records they placed (read from
  `decision_history` at the next batch), read again;
- retention's purge, which deletes rows: the master's row count differs from the rows held, and
  the map is loaded again; as it is after a batch that rolled back.
"""

from __future__ import annotations

import duckdb
import numpy as np

from engine.master_store import scalar

# An xref row's key, as SQL over its columns (or a batch record's).
XREF_KEY = "feed || ':' || source_key"
# The key and the child of an `xref` row (or of a query with the same columns), as SQL.
_COLUMNS = (f"md5_number_upper({XREF_KEY}) AS hi, md5_number_lower({XREF_KEY}) AS lo, "
            "CASE WHEN regexp_full_match(child_id, 'C[0-9A-F]{16}') "
            "THEN ('0x' || substr(child_id, 2))::UBIGINT END AS child")
# Keys added since the arrays were last rebuilt are held in a dict, and children's key counts
# changed since as changes, until either holds this many (a rebuild sorts every key: ~1 s at
# 1M children).
RECENT_KEYS = 200_000


class XrefMapError(RuntimeError):
    """The master holds a child id this map cannot hold (not `C` and 16 hex digits)."""


def key_columns_sql() -> str:
    """`hi, lo, child` of each row of a query with columns `feed`, `source_key`, `child_id`."""
    return _COLUMNS


def lookup_columns_sql() -> str:
    """`hi, lo` of each row of a query with columns `feed` and `source_key`."""
    return f"md5_number_upper({XREF_KEY}) AS hi, md5_number_lower({XREF_KEY}) AS lo"


class XrefMap:
    """key (`hi`, `lo`: the halves of its MD5) -> child (as a number), for every row of `xref`."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self._hi = np.empty(0, np.uint64)  # sorted by (hi, lo)
        self._lo = np.empty(0, np.uint64)
        self._child = np.empty(0, np.uint64)
        self._recent: dict[tuple[int, int], int] = {}
        self._children_sorted = np.empty(0, np.uint64)  # every key's child, sorted
        self._count_change: dict[int, int] = {}  # child -> keys gained since the sort
        self.up_to = -1  # the highest xref_no held
        self.rows = 0

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Hold every row of `xref` (replacing what was held)."""
        self._clear()
        rows = con.execute(f"SELECT {_COLUMNS}, xref_no FROM xref").fetchnumpy()
        check_children(rows["child"])
        self._rebuild(rows["hi"], rows["lo"], np.asarray(rows["child"], np.uint64))
        self.rows = len(self._hi)
        if self.rows:
            self.up_to = int(rows["xref_no"].max())

    def rows_since_sql(self) -> str:
        """The rows numbered above the highest held (`add_rows` takes them)."""
        return f"SELECT {_COLUMNS}, xref_no FROM xref WHERE xref_no > {self.up_to}"

    def add_rows(self, rows: dict[str, np.ndarray]) -> None:
        """Hold the new rows `rows` (of `rows_since_sql`)."""
        if not len(rows["hi"]):
            return
        check_children(rows["child"])
        self.set_children(rows["hi"], rows["lo"], np.asarray(rows["child"], np.uint64))
        self.rows += len(rows["hi"])
        self.up_to = max(self.up_to, int(rows["xref_no"].max()))

    def behind(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Whether `xref` lost rows the map holds (a purge): after the new rows are added, the
        master's row count is the rows held unless some were deleted."""
        return scalar(con, "SELECT count(*) FROM xref") != self.rows

    def set_children(self, hi: np.ndarray, lo: np.ndarray, child: np.ndarray) -> None:
        """Key (`hi`, `lo`) i names `child[i]` now (a key not held yet is added; when its row is
        read as a new row later, that row replaces it)."""
        found, at = self._positions(hi, lo)
        for i in np.flatnonzero(found):
            self._count(int(self._child[at[i]]), -1)
            self._child[at[i]] = child[i]
        for i in np.flatnonzero(~found):
            key = (int(hi[i]), int(lo[i]))
            previous = self._recent.get(key)
            if previous is not None:
                self._count(previous, -1)
            self._recent[key] = int(child[i])
        gaining, gained = np.unique(np.asarray(child, np.uint64), return_counts=True)
        for c, n in zip(gaining.tolist(), gained.tolist(), strict=True):
            self._count(c, n)
        if max(len(self._recent), len(self._count_change)) >= RECENT_KEYS:
            self._merge_recent()

    def children_of(self, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whether key i is held, its child) for the keys (`hi`, `lo`)."""
        found, at = self._positions(hi, lo)
        child = np.zeros(len(found), np.uint64)
        child[found] = self._child[at[found]]
        for i in np.flatnonzero(~found):
            recent = self._recent.get((int(hi[i]), int(lo[i])))
            if recent is not None:
                found[i], child[i] = True, recent
        return found, child

    def key_counts(self, children: np.ndarray) -> np.ndarray:
        """How many keys name each of `children` (numbers)."""
        children = np.asarray(children, np.uint64)
        counts = (np.searchsorted(self._children_sorted, children, "right")
                  - np.searchsorted(self._children_sorted, children, "left"))
        return counts + np.array([self._count_change.get(int(c), 0) for c in children],
                                 dtype=counts.dtype)

    def _positions(self, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whether key i is in the arrays, its index there)."""
        hi, lo = np.asarray(hi, np.uint64), np.asarray(lo, np.uint64)
        start = np.searchsorted(self._hi, hi, "left")
        end = np.searchsorted(self._hi, hi, "right")
        one = end - start == 1  # almost every key held: one entry with its upper half
        found = np.zeros(len(hi), bool)
        found[one] = self._lo[start[one]] == lo[one]
        at = start.copy()
        for i in np.flatnonzero(end - start > 1):
            match = np.flatnonzero(self._lo[start[i]:end[i]] == lo[i])
            if len(match):
                found[i], at[i] = True, start[i] + match[0]
        return found, at

    def _count(self, child: int, change: int) -> None:
        self._count_change[child] = self._count_change.get(child, 0) + change

    def _merge_recent(self) -> None:
        recent = np.array([(*key, child) for key, child in self._recent.items()],
                          np.uint64).reshape(-1, 3)
        self._rebuild(np.concatenate([self._hi, recent[:, 0]]),
                      np.concatenate([self._lo, recent[:, 1]]),
                      np.concatenate([self._child, recent[:, 2]]))

    def _rebuild(self, hi: np.ndarray, lo: np.ndarray, child: np.ndarray) -> None:
        order = np.lexsort((lo, hi))
        self._hi, self._lo, self._child = hi[order], lo[order], child[order]
        self._recent = {}
        self._children_sorted = np.sort(self._child)
        self._count_change = {}


def pack_child_ids(child_ids: list[str]) -> np.ndarray:
    """Child ids (`C` and 16 hex digits) as the numbers the map holds."""
    return np.array([int(c[1:], 16) for c in child_ids], np.uint64)


def unpack_child_ids(children: np.ndarray) -> list[str]:
    """The child ids of numbers the map holds."""
    return [f"C{int(c):016X}" for c in children]


def check_children(children: np.ndarray) -> None:
    """Raise XrefMapError if one of `children` is a child id the map cannot hold (DuckDB gives
    a column with NULLs as a masked array)."""
    if np.ma.is_masked(children):
        raise XrefMapError("a child id in xref is not C and 16 hex digits: "
                           "the xref map cannot hold it")
