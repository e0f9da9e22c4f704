"""Reading what a decision must see from the master: a neighbourhood, and the support lookup.

A neighbourhood is seeded by children (table `hood_seeds(child_id)`: those a batch's new records
scored against or share a source key with, or those a person acts on) and grows by redo: the open
review items (provisional children) holding a record that scored against a record of a seed
child, the children of records a person must-linked to one of theirs, and then every child a
record of a provisional child in it scored against (an open item is decided again only beside
all the children it was a candidate for). It holds every
record of those children, the batch's new records (table `batch_new`, if any), the stored scored
pairs among them, and the people's constraints among them (engine.resolution.graph).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from engine.candidates import scored_columns_sql, with_shares_sql, with_term_frequencies_sql
from engine.record_locator import RecordEnds, RecordLocator, ends_of, records_of
from engine.resolution.graph import SETTLED, Neighbourhood, Pair, Record
from engine.resolution.prior import WEIGHT_SHIFT, shifted_probability_sql
from engine.term_frequencies import HeldTermFrequencies
from linkage_models.scoring import CompiledModel

NEW_RECORDS = "batch_new"


def read_neighbourhood(con: duckdb.DuckDBPyConnection, with_new: bool, redo: bool = True,
                       locator: RecordLocator | None = None) -> Neighbourhood:
    """The neighbourhood of the seed children in `hood_seeds` (and of `batch_new`'s records);
    `redo=False` leaves out the open review items next to them (DecisionConfig.redo). Records
    are read through `locator` (engine.record_locator) if given."""
    if locator:
        locator.catch_up(con)  # the records the batch indexed by xref a moment ago included
    # the seed children's records, read once for both the redo and the neighbourhood
    seeds = records_of(locator, con, "child_id", "SELECT child_id FROM hood_seeds", "hood_seed_nos")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE seed_records AS
        SELECT {_HOOD_COLUMNS} FROM {seeds} r WHERE child_id IN (SELECT child_id FROM hood_seeds)
    """)
    seed_ends = ends_of(locator, con, "SELECT unique_id FROM seed_records", "seed")
    _add_seed_children_and_must_linked(con, locator, seed_ends.constraints)
    if redo:
        _add_open_items_and_their_candidates(con, locator, seed_ends.pairs)
    new_part = f"""
        UNION ALL
        SELECT unique_id, NULL, feed, source_key, event_time || unique_id, NULL
        FROM {NEW_RECORDS}
    """ if with_new else ""
    others = """SELECT child_id FROM hood_children
                WHERE child_id NOT IN (SELECT child_id FROM hood_seeds)"""
    hood = records_of(locator, con, "child_id", others, "hood_nos")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE hood_records AS
        SELECT r.unique_id, r.child_id, r.feed, r.source_key, r.ord,
               CASE WHEN q.feed IS NULL THEN '{SETTLED}' ELSE 'review' END AS decision
        FROM (
            SELECT * FROM seed_records
            UNION ALL
            SELECT {_HOOD_COLUMNS} FROM {hood} r WHERE r.child_id IN ({others})
        ) r
        LEFT JOIN (SELECT feed, record_id FROM review_queue WHERE resolved_at IS NULL) q
          USING (feed, record_id)
        {new_part}
    """)
    # `execute`, not `sql`: DuckDB 2.0.1's `sql(...)` binds a statement once more before it
    # runs it (~0.8 ms a fetch, four a batch)
    rows = con.execute("SELECT * FROM hood_records").fetchall()
    records = {
        uid: Record(uid, child, feed, key, order, decision)
        for uid, child, feed, key, order, decision in rows
    }
    hood_ends = ends_of(locator, con, "SELECT unique_id FROM hood_records", "hood")
    pairs = con.execute(f"""
        SELECT uid_a, uid_b, probability FROM {hood_ends.pairs}
        WHERE uid_a IN (SELECT unique_id FROM hood_records)
          AND uid_b IN (SELECT unique_id FROM hood_records)
    """).fetchall()
    constraints = _constraints_among_hood_records(con, hood_ends)
    return Neighbourhood(
        records,
        [Pair(a, b, p) for a, b, p in pairs],
        [(a, b) for kind, a, b in constraints if kind == "must"],
        [(a, b) for kind, a, b in constraints if kind == "cannot"],
    )


def _add_seed_children_and_must_linked(con: duckdb.DuckDBPyConnection,
                                       locator: RecordLocator | None,
                                       seed_constraints: str | None) -> None:
    """Table `hood_children`: the seed children and the children of the records a person
    must-linked to one of theirs (`seed_constraints`: the constraints that may have a seed
    record on either side; None: none has, as in most batches)."""
    if seed_constraints is None:
        con.execute("CREATE OR REPLACE TEMP TABLE hood_children AS "
                    "SELECT DISTINCT child_id FROM hood_seeds")
        return
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE must_links AS
        SELECT other FROM ({_paired_with_sql(
            "seed_records", f"(SELECT * FROM {seed_constraints} WHERE kind = 'must')")})
    """)
    linked = records_of(locator, con, "unique_id", "SELECT other FROM must_links", "must_nos")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE hood_children AS
        SELECT child_id FROM hood_seeds
        UNION
        SELECT r.child_id FROM must_links m JOIN {linked} r ON r.unique_id = m.other
    """)


def _constraints_among_hood_records(con: duckdb.DuckDBPyConnection,
                                    hood_ends: RecordEnds) -> list[tuple[str, str, str]]:
    """`(kind, uid_a, uid_b)` of people's constraints between two records of the
    neighbourhood."""
    if hood_ends.constraints is None:
        return []
    return con.execute(f"""
        SELECT kind, uid_a, uid_b FROM {hood_ends.constraints}
        WHERE uid_a IN (SELECT unique_id FROM hood_records)
          AND uid_b IN (SELECT unique_id FROM hood_records)
    """).fetchall()


def _add_open_items_and_their_candidates(con: duckdb.DuckDBPyConnection,
                                         locator: RecordLocator | None,
                                         seed_pairs: str) -> None:
    """Redo: the open review items (provisional children) whose queued record scored against a
    seed child's record, then every child such a record scored against — an open item is decided
    again only beside all the children it was a candidate for.

    Driven by the seed records and the few items they reach, each joined with `scored_pairs`
    (DuckDB probes a large table cheaply with a small hash table, and filters its scan by the
    small side's values); never by all the open items at once."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE open_items AS
        SELECT feed || ':' || record_id AS uid, child_id FROM review_queue
        WHERE resolved_at IS NULL
    """)
    seed_pairs = _kept_pairs(con, locator, seed_pairs, "seed_pairs")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE next_items AS
        SELECT DISTINCT o.child_id FROM open_items o
        JOIN ({_paired_with_sql("seed_records", seed_pairs)}) p ON p.other = o.uid
    """)
    near = con.execute("""
        CREATE OR REPLACE TEMP TABLE open_item_records AS
        SELECT uid AS unique_id, child_id FROM open_items
        WHERE child_id IN (SELECT child_id FROM next_items)
           OR child_id IN (SELECT child_id FROM hood_children)
    """).fetchall()[0][0]
    if not near:  # no open item is next to the seeds (most batches): ~7 ms of statements less
        return
    item_ends = ends_of(locator, con, "SELECT unique_id FROM open_item_records", "item")
    item_pairs = _kept_pairs(con, locator, item_ends.pairs, "item_pairs")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE open_pairs AS
        SELECT i.child_id AS item_child, p.other
        FROM ({_paired_with_sql("open_item_records", item_pairs)}) p
        JOIN open_item_records i ON i.unique_id = p.unique_id
    """)
    others = records_of(locator, con, "unique_id", "SELECT other FROM open_pairs", "other_nos")
    con.execute(f"""
        INSERT INTO hood_children
        SELECT DISTINCT child_id FROM (
            SELECT child_id FROM next_items
            UNION ALL
            SELECT item_child FROM open_pairs
            UNION ALL
            SELECT r.child_id FROM open_pairs p JOIN {others} r ON r.unique_id = p.other
        ) WHERE child_id NOT IN (SELECT child_id FROM hood_children)
    """)


def _kept_pairs(con: duckdb.DuckDBPyConnection, locator: RecordLocator | None, pairs: str,
                name: str) -> str:
    """The stored pairs `pairs` (`ends_of(...).pairs`) kept in table `name` when the locator
    narrowed them, so that they are read from `scored_pairs` once, not once by each side of
    `_paired_with_sql` (for 8,000 pairs of a 1M-children master 160 -> 95 ms); without a
    locator, the whole of `scored_pairs` as it is."""
    if locator is None:
        return pairs
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT uid_a, uid_b FROM {pairs}")
    return name


def _paired_with_sql(records: str, pairs: str) -> str:
    """`(unique_id, other)`: each record of `records` (a table with `unique_id`) with every
    record it is paired with in `pairs` (`uid_a`, `uid_b`: `scored_pairs` or a part of it
    holding those pairs, or people's constraints)."""
    return f"""
        SELECT s.unique_id, p.uid_b AS other FROM {pairs} p
        JOIN {records} s ON p.uid_a = s.unique_id
        UNION ALL
        SELECT s.unique_id, p.uid_a FROM {pairs} p
        JOIN {records} s ON p.uid_b = s.unique_id
    """


class SupportLookup:
    """Whether two groups of records have some pair scoring at least the merge-support threshold,
    all pairs compared (engine.resolution.graph rule 3), for many queries in one SQL pass."""

    def __init__(self, con: duckdb.DuckDBPyConnection, model: CompiledModel, threshold: float,
                 tf_min_values: int, with_new: bool, locator: RecordLocator | None = None,
                 held_tf: HeldTermFrequencies | None = None) -> None:
        """`held_tf`: a following engine's term frequencies, to look the shares up in
        (engine.term_frequencies) rather than read `term_frequencies` whole."""
        self.con = con
        self.locator = locator
        self.model = model
        self.threshold = threshold
        self.with_new = with_new
        self._tf_sql = with_term_frequencies_sql(model, "support_records", tf_min_values)
        self.held_tf = held_tf
        self._held_tf_sql = with_shares_sql(model, "support_records", "support_tf_shares")
        self._score_sql = model.score_sql("support_tf", "support_tf", "support_pairs",
                                          weights_only=True)
        self.weight_shift = 0.0  # the population prior's (engine.resolution.prior), per batch

    def __call__(self, queries: list[tuple[list[str], list[str]]]) -> list[bool]:
        con = self.con
        con.register("support_sides", pa.table({
            "query": [q for q, (left, right) in enumerate(queries) for _ in left + right],
            "side": [s for left, right in queries for s in [0] * len(left) + [1] * len(right)],
            "unique_id": [uid for left, right in queries for uid in left + right],
        }))
        columns = scored_columns_sql(self.model, "r")
        new_part = f"""
            UNION ALL SELECT {columns} FROM {NEW_RECORDS} r
            WHERE r.unique_id IN (SELECT unique_id FROM support_sides)
        """ if self.with_new else ""
        indexed = records_of(self.locator, con, "unique_id",
                             "SELECT unique_id FROM support_sides", "support_nos")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE support_records AS
            SELECT {columns} FROM {indexed} r
            WHERE r.unique_id IN (SELECT unique_id FROM support_sides)
            {new_part}
        """)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE support_queries AS SELECT * FROM support_sides
        """)
        con.unregister("support_sides")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE support_pairs AS
            SELECT DISTINCT l.unique_id AS unique_id_l, r.unique_id AS unique_id_r
            FROM support_queries l JOIN support_queries r
              ON l.query = r.query AND l.side = 0 AND r.side = 1
        """)
        if self.held_tf is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE support_tf AS {self._tf_sql}")
        else:
            con.register("support_tf_shares", self.held_tf.shares(con, "support_records"))
            con.execute(f"CREATE OR REPLACE TEMP TABLE support_tf AS {self._held_tf_sql}")
            con.unregister("support_tf_shares")
        supported = {row[0] for row in con.execute(f"""
            SELECT DISTINCT l.query
            FROM ({self._score_sql}) s
            JOIN support_queries l ON l.unique_id = s.unique_id_l AND l.side = 0
            JOIN support_queries r ON r.unique_id = s.unique_id_r AND r.side = 1
                                  AND r.query = l.query
            WHERE {shifted_probability_sql("s.match_weight")} >= {self.threshold}
        """, {WEIGHT_SHIFT: self.weight_shift}).fetchall()}
        return [q in supported for q in range(len(queries))]


# What the neighbourhood holds of a record (`ord`: its order among a child's records).
_HOOD_COLUMNS = ("r.unique_id, r.child_id, r.feed, r.record_id, r.source_key, "
                 "r.event_time || r.unique_id AS ord")


HOOD_TABLES = (
    "hood_seeds", "seed_records", "must_links", "hood_children", "open_items", "open_pairs",
    "next_items", "open_item_records", "hood_records", "hood_seed_nos", "must_nos", "other_nos",
    "hood_nos", "support_nos", "seed_pair_nos", "item_pair_nos", "hood_pair_nos", "seed_pairs",
    "item_pairs", "seed_constraint_nos", "hood_constraint_nos", "item_constraint_nos",
    "support_records", "support_queries", "support_pairs", "support_tf",
)
