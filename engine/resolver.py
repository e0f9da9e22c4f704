"""Resolve one micro-batch against the master in one DuckDB transaction.

    xref fast path -> candidates (blocking vs the record index and within the batch) -> scores
    (the compiled Splink model) -> decisions (engine.decisions) -> writes: records and blocking
    keys, links, xref, term frequencies, merges, review queue, golden records
    (engine.survivorship), dead letters.

A record already in `links` is skipped, so replaying a batch after a crash changes nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from engine.candidates import (
    candidate_sqls,
    count_term_frequencies_sql,
    ensure_blocking_index,
    index_records_sqls,
    record_columns_sql,
    with_term_frequencies_sql,
)
from engine.config import EngineConfig
from engine.decisions import CHILD_NODE, BatchDecisions, Edge, decide
from engine.feed_positions import FeedPosition, save_feed_positions
from engine.governance.shielding import shield_by_safety_rule
from engine.intake import DeadLetter
from engine.master_store import MasterStoreError, scalar
from engine.survivorship import golden_upsert_sqls
from linkage_models.scoring import CompiledModel
from streams.canonical import Update, updates_to_arrow

_DEAD_LETTER_SCHEMA = pa.schema(
    [("feed", pa.string()), ("file", pa.string()), ("line", pa.int64()),
     ("raw", pa.string()), ("error", pa.string())]
)
_DECISION_SCHEMA = pa.schema(
    [("unique_id", pa.string()), ("child_id", pa.string()), ("decision", pa.string()),
     ("match_probability", pa.float64()), ("candidates", pa.string())]
)


@dataclass
class BatchOutcome:
    """What one batch did (counts of this batch only)."""

    updates: int = 0
    duplicates: int = 0
    xref: int = 0
    linked: int = 0
    new_children: int = 0
    review: int = 0
    bridge: int = 0
    merged_children: int = 0
    dead_letters: int = 0


class Resolver:
    """Owns the master connection; `resolve(items)` applies one micro-batch atomically."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, model: CompiledModel, config: EngineConfig
    ) -> None:
        """Rebuilds the master's blocking index first if it was built for another model."""
        self.con = con
        self.model = model
        self.config = config
        tf_min = config.scoring.tf_min_values
        self._candidate_sqls = candidate_sqls(model)
        self._index_known_sqls = index_records_sqls(model, "known_records")
        self._index_new_sqls = index_records_sqls(model, "new_records")
        self._score_sql = model.score_sql("left_tf", "right_tf", "pairs")
        self._tf_count_sql = count_term_frequencies_sql(model, "batch")
        self._left_tf_sql = with_term_frequencies_sql(model, "batch_new", tf_min)
        self._right_tf_sql = with_term_frequencies_sql(model, "right_records", tf_min)
        self._golden_sqls = golden_upsert_sqls(config.survivorship, "placed", "merged_now")
        self._support_tf_sql = with_term_frequencies_sql(model, "support_records", tf_min)
        self._support_score_sql = model.score_sql("support_tf", "support_tf", "support_pairs")
        self._batch_id = 0
        with self._transaction():
            ensure_blocking_index(con, model)

    def resolve(self, items: list[Update | DeadLetter | FeedPosition]) -> BatchOutcome:
        updates = [i for i in items if isinstance(i, Update)]
        dead = [i for i in items if isinstance(i, DeadLetter)]
        positions = [i for i in items if isinstance(i, FeedPosition)]
        outcome = BatchOutcome()
        started_at = datetime.now(UTC)
        with self._transaction():
            self._batch_id = self._next_batch_id()
            outcome.dead_letters = self._write_dead_letters(dead)
            if updates:
                self._resolve_updates(updates, outcome)
            save_feed_positions(self.con, positions)
            self._record_batch(len(updates) + len(dead), outcome, started_at)
        return outcome

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One DuckDB transaction: committed (then the batch's temporary tables are dropped), or
        rolled back (which drops them) and reported as MasterStoreError."""
        self.con.begin()
        try:
            yield
            self.con.commit()
        except duckdb.Error as err:
            self._rollback()
            raise MasterStoreError(f"writing the master failed: {_first_line(err)}") from err
        except BaseException:  # e.g. KeyboardInterrupt mid-batch: leave no transaction open
            self._rollback()
            raise
        self._drop_batch_tables()

    def _resolve_updates(self, updates: list[Update], outcome: BatchOutcome) -> None:
        con = self.con
        con.register("incoming", updates_to_arrow(updates))
        con.execute("""
            CREATE OR REPLACE TEMP TABLE batch AS
            SELECT feed || ':' || record_id AS unique_id, *
            FROM incoming i
            WHERE NOT EXISTS (
                SELECT 1 FROM links k WHERE k.feed = i.feed AND k.record_id = i.record_id)
            QUALIFY row_number() OVER (PARTITION BY feed, record_id ORDER BY event_time) = 1
        """)
        con.unregister("incoming")
        outcome.updates = self._count("batch")
        outcome.duplicates = len(updates) - outcome.updates
        if not outcome.updates:
            return
        con.execute(self._tf_count_sql)
        outcome.xref = self._resolve_known_identifiers()
        decisions = self._decide_new_records()
        self._apply(decisions, outcome)

    def _resolve_known_identifiers(self) -> int:
        """Records whose (feed, source_key) is already linked go to that child: no scoring.
        They join the record index at once, so the batch's new records can match them."""
        con = self.con
        con.execute("""
            CREATE OR REPLACE TEMP TABLE known_records AS
            SELECT x.child_id, b.* FROM batch b
            JOIN xref x ON x.feed = b.feed AND x.source_key = b.source_key
        """)
        self._run(self._index_known_sqls)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE batch_new AS
            SELECT * FROM batch WHERE unique_id NOT IN (SELECT unique_id FROM known_records)
        """)
        return self._count("known_records")

    def _decide_new_records(self) -> BatchDecisions:
        con = self.con
        self._run(self._candidate_sqls)
        con.execute(f"CREATE OR REPLACE TEMP TABLE left_tf AS {self._left_tf_sql}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE right_tf AS {self._right_tf_sql}")
        review = self.config.decision.review_threshold
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE scored_edges AS
            SELECT s.unique_id_l, s.unique_id_r, r.child_id, s.match_probability
            FROM ({self._score_sql}) s
            JOIN right_records r ON r.unique_id = s.unique_id_r
            WHERE s.match_probability >= {review}
        """)
        scored = con.sql("SELECT * FROM scored_edges").to_arrow_table().to_pydict()
        edges = [
            Edge(uid, other, child, probability)
            for uid, other, child, probability in zip(
                scored["unique_id_l"], scored["unique_id_r"], scored["child_id"],
                scored["match_probability"], strict=True,
            )
        ]
        new_rows = con.sql(
            "SELECT unique_id, feed, source_key FROM batch_new ORDER BY unique_id"
        ).to_arrow_table().to_pydict()
        return decide(
            new_rows["unique_id"], _same_key_groups(new_rows), edges,
            self.config.decision, self._supported_pairs, self._identifiers(new_rows),
        )

    def _identifiers(self, new_rows: dict[str, list]) -> dict[str, list[tuple[str, str]]]:
        """The source keys of the batch's new records and of the children they scored against
        (a feed's own key is exclusive: engine.decisions)."""
        exclusive = self.config.decision.exclusive_key_feeds
        identifiers: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for uid, feed, key in zip(
            new_rows["unique_id"], new_rows["feed"], new_rows["source_key"], strict=True
        ):
            if key is not None and feed in exclusive:
                identifiers[uid].append((feed, key))
        rows = self.con.execute(
            """
            SELECT x.child_id, x.feed, x.source_key FROM xref x
            WHERE x.child_id IN (SELECT child_id FROM scored_edges WHERE child_id IS NOT NULL)
              AND list_contains(?, x.feed)
            """,
            [list(exclusive)],
        ).fetchall()
        for child_id, feed, key in rows:
            identifiers[CHILD_NODE + child_id].append((feed, key))
        return identifiers

    def _supported_pairs(self, groups: list[list[str]]) -> set[frozenset[str]]:
        """Pairs of children within each group with some pair of their own records scoring at
        least the merge-support threshold (all their records compared), for all groups at once."""
        con = self.con
        con.register("bridged", pa.table({
            "child_id": [child for group in groups for child in group],
            "bridge": [i for i, group in enumerate(groups) for _ in group],
        }))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE support_records AS
            SELECT r.child_id, {record_columns_sql(self.model, "r")}, b.bridge
            FROM records r JOIN bridged b USING (child_id)
        """)
        con.unregister("bridged")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE support_pairs AS
            SELECT l.unique_id AS unique_id_l, r.unique_id AS unique_id_r
            FROM support_records l JOIN support_records r
              ON l.bridge = r.bridge AND l.child_id < r.child_id
        """)
        con.execute(f"CREATE OR REPLACE TEMP TABLE support_tf AS {self._support_tf_sql}")
        rows = con.sql(f"""
            SELECT DISTINCT l.child_id AS child_l, r.child_id AS child_r
            FROM ({self._support_score_sql}) s
            JOIN support_records l ON l.unique_id = s.unique_id_l
            JOIN support_records r ON r.unique_id = s.unique_id_r
            WHERE s.match_probability >= {self.config.decision.merge_support_threshold}
        """).fetchall()
        return {frozenset(row) for row in rows}

    def _apply(self, decisions: BatchDecisions, outcome: BatchOutcome) -> None:
        con = self.con
        con.register("decided", _decisions_to_arrow(decisions))
        self._apply_merges(decisions.merges)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE new_records AS
            SELECT d.child_id, b.* FROM batch_new b JOIN decided d USING (unique_id)
        """)
        self._run(self._index_new_sqls)
        con.execute(f"""
            INSERT INTO links
            SELECT b.feed, b.record_id, d.child_id, d.decision, d.match_probability,
                   '{self.model.version}', now(), {self._batch_id}
            FROM batch b JOIN (
                SELECT unique_id, child_id, decision, match_probability FROM decided
                UNION ALL
                SELECT unique_id, child_id, 'link', NULL FROM known_records
            ) d USING (unique_id)
        """)
        con.execute("""
            INSERT INTO xref
            SELECT DISTINCT ON (feed, source_key) feed, source_key, child_id
            FROM new_records
            WHERE source_key IS NOT NULL
            ORDER BY feed, source_key, event_time, unique_id
            ON CONFLICT DO NOTHING
        """)
        con.execute("""
            INSERT INTO review_queue
            SELECT b.feed, b.record_id, d.decision, d.child_id, d.candidates::JSON, now(), NULL
            FROM batch_new b JOIN decided d USING (unique_id)
            WHERE d.candidates IS NOT NULL
            ON CONFLICT DO NOTHING
        """)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE placed AS
            SELECT * FROM known_records UNION ALL BY NAME SELECT * FROM new_records
        """)
        self._run(self._golden_sqls)
        if decisions.merges:
            self._mark_merged_children()
        shield_by_safety_rule(con, "scored_edges", "decided", self.config.decision.review_threshold)
        con.unregister("decided")
        counts = defaultdict(int)
        for decision in decisions.decisions:
            counts[decision.decision] += 1
        outcome.linked = outcome.xref + counts["link"]
        outcome.new_children = len(decisions.new_children)
        outcome.review = counts["review"]
        outcome.bridge = counts["bridge"]
        outcome.merged_children = len(decisions.merges)

    def _run(self, statements: list[str]) -> None:
        for statement in statements:
            self.con.execute(statement)

    def _apply_merges(self, merges: dict[str, str]) -> None:
        """Move every record, link, identifier and queue entry of a merged child to its survivor
        (table `merged_now` lists this batch's merges, empty if none)."""
        con = self.con
        con.register("merge_map", pa.table(
            {"merged": list(merges), "survivor": list(merges.values())},
            schema=pa.schema([("merged", pa.string()), ("survivor", pa.string())]),
        ))
        con.execute("CREATE OR REPLACE TEMP TABLE merged_now AS SELECT * FROM merge_map")
        con.unregister("merge_map")
        if not merges:
            return
        for table in ("records", "links", "xref", "review_queue", "known_records"):
            con.execute(f"""
                UPDATE {table} SET child_id = m.survivor FROM merged_now m
                WHERE {table}.child_id = m.merged
            """)
        con.execute("""
            INSERT INTO merges
            SELECT m.merged, m.survivor, split_part(d.unique_id, ':', 1),
                   substr(d.unique_id, strpos(d.unique_id, ':') + 1), now()
            FROM merged_now m
            JOIN (SELECT min(unique_id) AS unique_id, child_id FROM decided
                  WHERE decision = 'bridge' GROUP BY child_id) d ON d.child_id = m.survivor
            ON CONFLICT DO NOTHING
        """)

    def _mark_merged_children(self) -> None:
        """After their rows were folded into the survivors' golden records."""
        self.con.execute("""
            UPDATE children SET status = 'merged', merged_into = m.survivor, updated_at = now()
            FROM merged_now m WHERE children.child_id = m.merged
        """)

    def _next_batch_id(self) -> int:
        return scalar(self.con, "SELECT coalesce(max(batch_id), 0) + 1 FROM batches")

    def _record_batch(self, items: int, outcome: BatchOutcome, started_at: datetime) -> None:
        """The batch's row; `committed_at` is taken last, just before the commit."""
        self.con.execute(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [self._batch_id, started_at, datetime.now(UTC), items, outcome.updates,
             outcome.new_children, outcome.review, outcome.dead_letters],
        )

    def _write_dead_letters(self, dead: list[DeadLetter]) -> int:
        if not dead:
            return 0
        table = pa.table(
            {name: [getattr(d, name) for d in dead] for name in _DEAD_LETTER_SCHEMA.names},
            schema=_DEAD_LETTER_SCHEMA,
        )
        self.con.register("dead_batch", table)
        before = self._count("dead_letters")
        self.con.execute("""
            INSERT INTO dead_letters
            SELECT feed, file, line, raw, error, now() FROM dead_batch
            ON CONFLICT DO NOTHING
        """)
        self.con.unregister("dead_batch")
        return self._count("dead_letters") - before

    def _rollback(self) -> None:
        """Undo the batch; a failed commit has already ended the transaction, and a fatal error
        (disk full during a checkpoint) has closed the database: nothing is left to undo."""
        with contextlib.suppress(duckdb.TransactionException, duckdb.FatalException):
            self.con.rollback()

    def _count(self, table: str) -> int:
        return scalar(self.con, f"SELECT count(*) FROM {table}")

    def _drop_batch_tables(self) -> None:
        for table in _BATCH_TABLES:
            self.con.execute(f"DROP TABLE IF EXISTS {table}")


_BATCH_TABLES = (
    "batch", "known_records", "batch_new", "batch_keys", "index_pairs", "right_records",
    "pairs", "left_tf", "right_tf", "scored_edges", "support_records", "support_pairs",
    "support_tf", "merged_now", "new_records", "indexed", "placed", "previous_children",
    "golden_candidates", "golden",
)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


def _same_key_groups(rows: dict[str, list]) -> list[list[str]]:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for uid, feed, key in zip(rows["unique_id"], rows["feed"], rows["source_key"], strict=True):
        if key is not None:
            groups[(feed, key)].append(uid)
    return [members for members in groups.values() if len(members) > 1]


def _decisions_to_arrow(decisions: BatchDecisions) -> pa.Table:
    rows = decisions.decisions
    return pa.table({
        "unique_id": [d.unique_id for d in rows],
        "child_id": [d.child_id for d in rows],
        "decision": [d.decision for d in rows],
        "match_probability": [d.match_probability for d in rows],
        "candidates": [
            json.dumps([{"id": c, "match_probability": p} for c, p in d.candidates])
            if d.candidates else None
            for d in rows
        ],
    }, schema=_DECISION_SCHEMA)
