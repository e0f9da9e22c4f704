"""Applying a change set to the master, in the caller's transaction.

Placements of new records add them to the record index, `links` and `xref`; placements of
existing records move them (records, links, xref) or change their decision. Every placement is
appended to `decision_history` with its evidence. Review items open for `review` placements and
close (with the decision and who made it) for records that leave review. Children that lost all
their records are `merged` into the child that took most of them (`merges` says by whom); children
that lost some are rebuilt from the records they hold; every child that received records folds
them in (engine.survivorship). Last, the safety rule shields what the change put next to a
shielded child (see `shield_by_safety_rule`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from engine.candidates import index_records_sqls
from engine.config import EngineConfig
from engine.record_locator import (
    XREF_KEY,
    RecordLocator,
    records_of,
    rows_of_children,
    xref_of,
)
from engine.resolution.graph import ChangeSet, Neighbourhood
from engine.survivorship import FOLDED_COLUMNS, GoldenFold
from linkage_models.scoring import CompiledModel

SAFETY_RULE = "safety rule"

_PLACEMENT_SCHEMA = pa.schema([
    ("unique_id", pa.string()), ("feed", pa.string()), ("record_id", pa.string()),
    ("child_id", pa.string()), ("previous_child_id", pa.string()), ("decision", pa.string()),
    ("match_probability", pa.float64()), ("candidates", pa.string()), ("reason", pa.string()),
    ("is_new", pa.bool_()),
])


@dataclass(frozen=True)
class Provenance:
    """Who made a change set and with what: `decided_by` is engine, redo or user:NAME."""

    decided_by: str
    model_version: str
    batch_id: int | None = None

    @property
    def redone_by(self) -> str:
        """Who changed an existing record's decision: a batch's change is a redo."""
        return "redo" if self.decided_by == "engine" else self.decided_by


class ChangeWriter:
    """Applies change sets with statements built once per configuration."""

    def __init__(self, model: CompiledModel, config: EngineConfig,
                 locator: RecordLocator | None = None) -> None:
        """`locator` (engine.record_locator), if given, finds the records the golden fold
        reads again by key."""
        self.config = config
        self.locator = locator
        self._index_sqls = index_records_sqls(model, "new_records")
        # by whether records moved (then table `rebuilt` lists the children that lost some)
        self._golden_folds = {
            rebuilt: GoldenFold(config.survivorship, "placed", "rebuilt" if rebuilt else None)
            for rebuilt in (True, False)
        }

    def apply(
        self, con: duckdb.DuckDBPyConnection, changes: ChangeSet, hood: Neighbourhood,
        by: Provenance, known: str | None = None,
    ) -> None:
        """Write `changes` (and the fast-path records of table `known`, already indexed: with
        their `record_no`). A batch
        passes `known` and has its tables `batch_new`, `batch_xref` and `scored_edges` (the
        last two only if it placed a record); a person's act has none of them. Only the
        statements with something to write run: a batch's fixed cost is mostly DuckDB planning
        them (docs/scale.md)."""
        placed = _Placed.of(changes, hood, batch=known is not None)
        if placed.any:
            con.register("placed_arrow", _placements_to_arrow(changes, hood))
            con.execute("CREATE OR REPLACE TEMP TABLE placed_now AS SELECT * FROM placed_arrow")
            con.unregister("placed_arrow")
        if placed.new:
            self._index_new_records(con)
        self._write_links(con, by, known, placed)
        if placed.moved:
            con.execute("CREATE OR REPLACE TEMP TABLE moved_now AS "
                        "SELECT * FROM placed_now WHERE NOT is_new")
            self._move_existing_records(con, by)
        if placed.any:
            self._write_review_items(con, by, changes, placed)
        if changes.merged:
            self._write_merges(con, changes, by)
        self._fold_golden_records(con, changes, known, placed)
        if changes.merged:
            self._mark_merged(con)
        if placed.any:  # a record only joining its key's child is next to nothing new
            shield_by_safety_rule(con, self.config.decision.review_threshold,
                                  scored=bool(known), locator=self.locator)

    def _index_new_records(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE new_records AS
            SELECT p.child_id, b.* FROM batch_new b JOIN placed_now p USING (unique_id)
            WHERE p.is_new
        """)
        for statement in self._index_sqls:
            con.execute(statement)

    def _write_links(self, con: duckdb.DuckDBPyConnection, by: Provenance,
                     known: str | None, placed: _Placed) -> None:
        decided = [f"SELECT feed, record_id, child_id, 'link' AS decision, NULL::DOUBLE AS "
                   f"match_probability, NULL AS candidates, true AS is_new FROM {known}"
                   ] if known else []
        if placed.any:
            decided.insert(0, "SELECT feed, record_id, child_id, decision, match_probability, "
                              "candidates, is_new FROM placed_now")
        if not decided:
            return
        if placed.new:  # table `indexed`: the new records with their numbers, a moment ago
            con.execute("""
                INSERT INTO links
                SELECT p.feed, p.record_id, p.child_id, p.decision, p.match_probability, ?,
                       now(), ?, i.record_no
                FROM placed_now p JOIN indexed i USING (unique_id) WHERE p.is_new
            """, [by.model_version, by.batch_id])
        if known:
            con.execute(f"""
                INSERT INTO links
                SELECT feed, record_id, child_id, 'link', NULL, ?, now(), ?, record_no
                FROM {known}
            """, [by.model_version, by.batch_id])
        con.execute(f"""
            INSERT INTO decision_history (feed, record_id, child_id, decision, match_probability,
                                          candidates, model_version, decided_by, batch_id,
                                          decided_at)
            SELECT feed, record_id, child_id, decision, match_probability, candidates::JSON,
                   ?, CASE WHEN is_new THEN ? ELSE ? END, ?, now()
            FROM ({" UNION ALL ".join(decided)})
        """, [by.model_version, by.decided_by, by.redone_by, by.batch_id])
        if placed.new:  # only a batch places new records; keys it found in xref are there already
            con.execute("""
                INSERT INTO xref (feed, source_key, child_id)
                SELECT DISTINCT ON (feed, source_key) feed, source_key, child_id
                FROM new_records n
                WHERE source_key IS NOT NULL AND unique_id NOT IN (
                    SELECT unique_id FROM batch_xref)
                ORDER BY feed, source_key, event_time, unique_id
            """)

    def _move_existing_records(self, con: duckdb.DuckDBPyConnection, by: Provenance) -> None:
        """Move the records of `moved_now` in `records`, `links` and `xref`, each row found by
        its number: an `UPDATE` joined on a text key reads that key for every row of the table
        (40 moves on a 1M-children master: 70-210 ms a table; by number 10-20 ms). Table
        `moved_rows`: the moved records' rows as they were, with their new child, and the
        columns the golden fold reads (read once, here, for the fold as well)."""
        if self.locator:
            self.locator.catch_up(con)  # this change's placements, in decision_history
        moved = records_of(self.locator, con, "unique_id",
                           "SELECT unique_id FROM moved_now", "moved_nos")
        folded = ", ".join(f"r.{name}" for name in FOLDED_COLUMNS if name != "child_id")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE moved_rows AS
            SELECT r.record_no, r.source_key, {folded}, r.child_id AS previous_child_id,
                   m.child_id, m.decision, m.match_probability
            FROM {moved} r JOIN moved_now m USING (unique_id)
        """)
        con.execute("""
            UPDATE records SET child_id = m.child_id FROM moved_rows m
            WHERE records.record_no = m.record_no AND m.previous_child_id <> m.child_id
        """)
        con.execute("""
            UPDATE links SET child_id = m.child_id, decision = m.decision,
                             match_probability = m.match_probability, model_version = ?,
                             decided_at = now(), batch_id = ?
            FROM moved_rows m WHERE links.record_no = m.record_no
        """, [by.model_version, by.batch_id])
        self._move_xref(con)

    def _move_xref(self, con: duckdb.DuckDBPyConnection) -> None:
        """Each key of the moved records names the child of its earliest moved record."""
        keyed = "FROM moved_rows WHERE source_key IS NOT NULL"
        rows = xref_of(self.locator, con, f"SELECT {XREF_KEY} {keyed}", "moved_xref_nos")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE moved_xref AS
            SELECT x.xref_no, k.feed, k.source_key, k.child_id FROM {rows} x
            JOIN (SELECT DISTINCT ON (feed, source_key) feed, source_key, child_id {keyed}
                  ORDER BY feed, source_key, event_time, unique_id) k
              ON x.feed = k.feed AND x.source_key = k.source_key
        """)
        con.execute("""
            UPDATE xref SET child_id = k.child_id FROM moved_xref k
            WHERE xref.xref_no = k.xref_no
        """)
        if self.locator:
            self.locator.learn_xref_moves(con, "moved_xref")

    def _write_review_items(self, con: duckdb.DuckDBPyConnection, by: Provenance,
                            changes: ChangeSet, placed: _Placed) -> None:
        """Queue the records placed for review, and settle the open items of the records
        placed otherwise. Each statement runs only if it can write (~2 ms each, every batch):
        only a record the master held before (moved, or decided again) can have an open item."""
        if any(p.decision == "review" for p in changes.placements):
            self._queue_for_review(con)
        if placed.moved:
            self._settle_review_items(con, by)

    @staticmethod
    def _queue_for_review(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("""
            INSERT INTO review_queue (feed, record_id, reason, child_id, candidates, queued_at)
            SELECT feed, record_id, reason, child_id, candidates::JSON, now()
            FROM placed_now WHERE decision = 'review'
            ON CONFLICT (feed, record_id) DO UPDATE SET
                reason = excluded.reason, child_id = excluded.child_id,
                candidates = excluded.candidates, queued_at = excluded.queued_at,
                resolved_at = NULL, resolution = NULL, resolved_by = NULL
        """)

    @staticmethod
    def _settle_review_items(con: duckdb.DuckDBPyConnection, by: Provenance) -> None:
        con.execute("""
            UPDATE review_queue SET resolved_at = now(), resolution = p.decision,
                                    child_id = p.child_id, resolved_by = ?
            FROM placed_now p
            WHERE review_queue.feed = p.feed AND review_queue.record_id = p.record_id
              AND p.decision <> 'review' AND review_queue.resolved_at IS NULL
        """, [by.redone_by])

    def _write_merges(self, con: duckdb.DuckDBPyConnection, changes: ChangeSet,
                      by: Provenance) -> None:
        con.register("merges_arrow", pa.table(
            {"merged_child_id": list(changes.merged),
             "into_child_id": list(changes.merged.values())},
            schema=pa.schema([("merged_child_id", pa.string()), ("into_child_id", pa.string())]),
        ))
        con.execute("CREATE OR REPLACE TEMP TABLE merges_now AS SELECT * FROM merges_arrow")
        con.unregister("merges_arrow")
        con.execute("""
            INSERT INTO merges
            SELECT merged_child_id, into_child_id, ?, ?, now() FROM merges_now
            ON CONFLICT (merged_child_id) DO UPDATE SET into_child_id = excluded.into_child_id,
                decided_by = excluded.decided_by, batch_id = excluded.batch_id,
                merged_at = excluded.merged_at
        """, [by.decided_by, by.batch_id])

    def _mark_merged(self, con: duckdb.DuckDBPyConnection) -> None:
        """The children of `merges_now` merged: their rows found by number if a locator is
        given (reading every child id took a batch at 1M children ~5 ms)."""
        by_number = ""
        if self.locator:
            rows = self.locator.rows_of_children(con, "SELECT merged_child_id FROM merges_now",
                                                 "merged_child_rows")
            by_number = f"AND children.row_no IN (SELECT row_no FROM {rows})"
        con.execute(f"""
            UPDATE children SET status = 'merged', merged_into = m.into_child_id,
                                updated_at = now()
            FROM merges_now m WHERE children.child_id = m.merged_child_id {by_number}
        """)

    def _fold_golden_records(self, con: duckdb.DuckDBPyConnection, changes: ChangeSet,
                             known: str | None, placed: _Placed) -> None:
        """Fold the records placed (new, known, moved; every record of a child rebuilt) into
        their children's rows."""
        parts = ["SELECT * FROM new_records"] if placed.new else []
        if known:
            parts.append(f"SELECT * EXCLUDE (record_no) FROM {known}")
        if placed.moved:  # only a move can leave a child with fewer records
            con.register("rebuilt_arrow", pa.table(
                {"child_id": sorted(changes.shrunk)},
                schema=pa.schema([("child_id", pa.string())])))
            con.execute("CREATE OR REPLACE TEMP TABLE rebuilt AS SELECT * FROM rebuilt_arrow")
            con.unregister("rebuilt_arrow")
            parts.extend(self._moved_and_rebuilt_records_sqls(con))
        if not parts:
            return
        records = con.execute("CREATE OR REPLACE TEMP TABLE placed AS "
                              + "\nUNION ALL BY NAME\n".join(parts)).fetchall()[0][0]
        rows = rows_of_children(self.locator, con, "SELECT DISTINCT child_id FROM placed",
                                "placed_child_rows")
        self._golden_folds[placed.moved].run(con, records, rows)

    def _moved_and_rebuilt_records_sqls(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """The records moved to a child not rebuilt, and every record of a rebuilt child (whose
        golden record is recomputed from them all): run after `_move_existing_records`."""
        rebuilt = records_of(self.locator, con, "child_id",
                             "SELECT child_id FROM rebuilt", "rebuilt_nos")
        # only the columns the fold reads: the others of scattered rows cost most to read (a
        # record id or a source key is in no other record, so DuckDB decodes a block for each)
        columns = ", ".join(f"r.{name}" for name in FOLDED_COLUMNS)
        # The moved records from `moved_rows` (read there with the columns the fold reads, under
        # their new children), the rebuilt children's from `records` (which hold their new
        # children by now): a record moved to a rebuilt child is in the second part only.
        return [
            f"""
            SELECT {columns} FROM moved_rows r
            WHERE r.child_id NOT IN (SELECT child_id FROM rebuilt)
            """,
            f"""
            SELECT {columns} FROM {rebuilt} r
            WHERE r.child_id IN (SELECT child_id FROM rebuilt)
            """,
        ]


def shield_by_safety_rule(
    con: duckdb.DuckDBPyConnection, review_threshold: float, scored: bool,
    locator: RecordLocator | None = None,
) -> None:
    """Shield every child that, in this change, received a record scoring at least the review
    threshold against a record of a shielded child (table `scored_edges`, when `scored`: a batch),
    or a record that belonged to a shielded child (a merge, a split, a move), so that the feeds
    never make an unshielded duplicate of a shielded child. A data manager can lift it; it is not
    applied again unless a later change does the same.

    The children's rows are read by key: first those the change's records came from or scored
    against, for the shielded ones among them (the blocks' statistics skip every block without a
    shielded child), then, only if there are any, those of the children placed. A join with the
    whole of `children` read every block that may hold a shielded child: ~10 ms a batch at 1M
    children with one in a thousand shielded, and more as the master grows."""
    sources = "SELECT previous_child_id FROM placed_now"
    if scored:
        sources += (" UNION ALL SELECT child_id FROM scored_edges"
                    f" WHERE match_probability >= {review_threshold!r}")
    rows = rows_of_children(locator, con, sources, "safety_rule_sources")
    shielding = [child for (child,) in con.execute(
        f"SELECT DISTINCT child_id FROM {rows} WHERE shielded AND child_id IN ({sources})"
    ).fetchall()]
    if not shielding:
        return
    targets = rows_of_children(locator, con, "SELECT child_id FROM placed_now",
                               "safety_rule_targets")
    via_scores = f"""
            UNION
            SELECT p.child_id FROM placed_now p
            JOIN scored_edges e ON e.unique_id_l = p.unique_id
            JOIN shielding s ON s.child_id = e.child_id
            WHERE e.match_probability >= {review_threshold!r}
    """ if scored else ""
    con.execute(f"""
        WITH shielding AS (SELECT unnest(?::VARCHAR[]) AS child_id)
        UPDATE children SET shielded = true, shielded_by = '{SAFETY_RULE}', shielded_at = now()
        WHERE row_no IN (SELECT row_no FROM {targets} WHERE NOT shielded AND child_id IN (
            SELECT p.child_id FROM placed_now p
            JOIN shielding s ON s.child_id = p.previous_child_id
            {via_scores}
        ))
    """, [shielding])


def _placements_to_arrow(changes: ChangeSet, hood: Neighbourhood) -> pa.Table:
    rows = changes.placements
    previous = [hood.records[p.unique_id].child_id for p in rows]
    parts = [p.unique_id.split(":", 1) for p in rows]
    return pa.table({
        "unique_id": [p.unique_id for p in rows],
        "feed": [feed for feed, _ in parts],
        "record_id": [record_id for _, record_id in parts],
        "child_id": [p.child_id for p in rows],
        "previous_child_id": previous,
        "decision": [p.decision for p in rows],
        "match_probability": [p.match_probability for p in rows],
        "candidates": [
            json.dumps([{"child_id": c, "match_probability": m} for c, m in p.candidates])
            if p.candidates else None
            for p in rows
        ],
        "reason": [p.reason for p in rows],
        "is_new": [child is None for child in previous],
    }, schema=_PLACEMENT_SCHEMA)


@dataclass(frozen=True)
class _Placed:
    """What kinds of placement a change set holds: any at all, of new records (only a batch
    places them), of records already in the master (moved, or their decision changed)."""

    any: bool
    new: bool
    moved: bool

    @classmethod
    def of(cls, changes: ChangeSet, hood: Neighbourhood, batch: bool) -> _Placed:
        is_new = [hood.records[p.unique_id].child_id is None for p in changes.placements]
        return cls(bool(is_new), batch and any(is_new), not all(is_new))


CHANGE_TABLES = (
    "placed_now", "new_records", "moved_now", "merges_now", "rebuilt", "placed",
    "indexed", "previous_children", "golden", "moved_nos", "moved_rows", "moved_xref_nos",
    "moved_xref", "rebuilt_nos",
    "placed_child_rows", "merged_child_rows", "safety_rule_sources", "safety_rule_targets",
)
