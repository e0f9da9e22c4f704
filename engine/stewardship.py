"""People's decisions (DESIGN.md "Stewardship verbs"): review, link, unlink, merge, split.

Each act becomes must-link / cannot-link constraints between records (table `constraints`, kept
for good: every later batch, redo and model honours them), then travels the same road as a
batch — neighbourhood -> decide (engine.resolution.graph) -> change set -> store — with the
children it touches as seeds. The act checks that the outcome is what the person asked for and
refuses (the caller rolls back) with one line if a constraint an earlier person set stands in
the way. Run inside the caller's transaction; the caller audits (engine.governance).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import duckdb
import pyarrow as pa

from engine.config import EngineConfig
from engine.resolution.changes import ChangeWriter, Provenance
from engine.resolution.graph import decide
from engine.resolution.neighbourhood import HOOD_TABLES, SupportLookup, read_neighbourhood
from engine.resolution.prior import master_weight_shift
from linkage_models.scoring import CompiledModel


class StewardshipError(ValueError):
    """A person's act that cannot be done, in one line."""


def resolve_child_id(con: duckdb.DuckDBPyConnection, child_id: str) -> str:
    """The child an id stands for now: a merged-away id resolves to its survivor, also through
    chains of merges. StewardshipError if there is no such child."""
    seen = set()
    while True:
        rows = con.execute(
            "SELECT status, merged_into FROM children WHERE child_id = ?", [child_id]
        ).fetchall()
        if not rows:
            raise StewardshipError(f"no child {child_id!r} in the master")
        status, merged_into = rows[0]
        if status != "merged" or merged_into is None or child_id in seen:
            return child_id
        seen.add(child_id)
        child_id = merged_into


class Steward:
    """The stewardship acts on one master connection, as user `by` (e.g. `user:jo`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, model: CompiledModel,
                 config: EngineConfig, by: str, reason: str | None = None) -> None:
        self.con = con
        self.model = model
        self.config = config
        self.by = by
        self.reason = reason

    # ------------------------------------------------------------ the acts

    def link(self, record: str, child_id: str) -> str:
        """Move `record` (feed:record_id) to `child_id` (must-link with it; cannot-link with the
        rest of the child it leaves)."""
        target = resolve_child_id(self.con, child_id)
        current = self._child_of(record)
        if current == target:
            raise StewardshipError(f"{record} is linked to {target} already")
        leaving = [r for r in self._records_of(current) if r != record]
        self._lift_cannot_links([record], self._records_of(target))
        self._constrain("must", [(record, self._founder(target))])
        self._constrain("cannot", [(record, other) for other in leaving])
        self._redo([current, target])
        return self._expect_together([record], target, f"{record} could not join {target}")

    def unlink(self, record: str) -> str:
        """`record` becomes a child of its own (cannot-link with the rest of its child)."""
        current = self._child_of(record)
        others = [r for r in self._records_of(current) if r != record]
        if not others:
            raise StewardshipError(f"{record} is the only record of {current} already")
        self._constrain("cannot", [(record, other) for other in others])
        self._redo([current])
        child = self._child_of(record)
        if child == current and len(self._records_of(child)) > 1:
            raise StewardshipError(f"{record} could not be unlinked from {current}")
        return child

    def merge(self, first: str, second: str) -> str:
        """One child from two (must-link); the survivor is chosen by evidence."""
        a, b = resolve_child_id(self.con, first), resolve_child_id(self.con, second)
        if a == b:
            raise StewardshipError(f"{first} and {second} are one child ({a}) already")
        founders = self._founder(a), self._founder(b)
        self._lift_cannot_links(self._records_of(a), self._records_of(b))
        self._constrain("must", [founders])
        self._redo([a, b])
        survivor = self._child_of(founders[0])
        if survivor != self._child_of(founders[1]):
            raise StewardshipError(f"{a} and {b} could not be merged")
        return survivor

    def split(self, child_id: str, records: list[str]) -> str:
        """The listed records of `child_id` become a new child (cannot-link with the rest)."""
        child = resolve_child_id(self.con, child_id)
        holding = self._records_of(child)
        strangers = sorted(set(records) - set(holding))
        if strangers:
            raise StewardshipError(f"{strangers[0]} is not a record of {child}")
        rest = [r for r in holding if r not in set(records)]
        if not rest:
            raise StewardshipError("a split must leave at least one record with the child")
        self._constrain("must", [(records[0], other) for other in records[1:]])
        self._constrain("cannot", [(r, other) for r in records for other in rest])
        self._redo([child])
        new = self._expect_together(records, None, "the split could not be made")
        if new == self._child_of(rest[0]):
            raise StewardshipError("the split could not be made")
        return new

    def resolve_review(self, item_id: int, link_to: str | None) -> str:
        """Settle a review item: link its record to `link_to`, or (None) confirm it as a child
        of its own (cannot-link with every candidate it was queued with)."""
        rows = self.con.execute(
            "SELECT feed || ':' || record_id, candidates, resolved_at FROM review_queue "
            "WHERE item_id = ?", [item_id],
        ).fetchall()
        if not rows:
            raise StewardshipError(f"no review item {item_id}")
        record, candidates, resolved_at = rows[0]
        if resolved_at is not None:
            raise StewardshipError(f"review item {item_id} is settled already")
        if link_to is not None:
            return self.link(record, link_to)
        current = self._child_of(record)
        others = [
            resolve_child_id(self.con, c["child_id"]) for c in json.loads(candidates or "[]")
        ]
        self._constrain("cannot", [
            (record, self._founder(other)) for other in others if other != current
        ])
        self._redo([current, *others])
        return self._child_of(record)

    # ------------------------------------------------------------ reading

    def review_items(self, limit: int = 100) -> list[dict]:
        """Open review items, oldest first, with their candidates."""
        rows = self.con.execute("""
            SELECT item_id, feed, record_id, child_id, reason, candidates, queued_at
            FROM review_queue WHERE resolved_at IS NULL ORDER BY queued_at, item_id LIMIT ?
        """, [limit]).fetchall()
        return [
            {"item_id": item, "feed": feed, "record_id": record_id, "child_id": child,
             "reason": reason, "candidates": json.loads(candidates or "[]"),
             "queued_at": queued.isoformat()}
            for item, feed, record_id, child, reason, candidates, queued in rows
        ]

    # ------------------------------------------------------------ helpers

    def _child_of(self, record: str) -> str:
        feed, _, record_id = record.partition(":")
        rows = self.con.execute(
            "SELECT child_id FROM links WHERE feed = ? AND record_id = ?", [feed, record_id]
        ).fetchall()
        if not rows:
            raise StewardshipError(f"no record {record} in the master")
        return rows[0][0]

    def _records_of(self, child_id: str) -> list[str]:
        return [row[0] for row in self.con.execute(
            "SELECT unique_id FROM records WHERE child_id = ? ORDER BY event_time, unique_id",
            [child_id],
        ).fetchall()]

    def _founder(self, child_id: str) -> str:
        records = self._records_of(child_id)
        if not records:
            raise StewardshipError(f"child {child_id} holds no records")
        return records[0]

    def _constrain(self, kind: str, pairs: Iterable[tuple[str, str]]) -> None:
        rows = [tuple(sorted(pair)) for pair in pairs if pair[0] != pair[1]]
        if not rows:
            return
        self.con.register("constraint_rows", pa.table({
            "uid_a": [a for a, _ in rows], "uid_b": [b for _, b in rows],
        }))
        self.con.execute("""
            INSERT OR REPLACE INTO constraints (kind, uid_a, uid_b, decided_by, reason, decided_at)
            SELECT DISTINCT ?, uid_a, uid_b, ?, ?, now() FROM constraint_rows
        """, [kind, self.by, self.reason])
        self.con.unregister("constraint_rows")

    def _lift_cannot_links(self, records: list[str], others: list[str]) -> None:
        """A person joining these records corrects any earlier decision keeping them apart."""
        self.con.execute("""
            DELETE FROM constraints WHERE kind = 'cannot'
              AND ((list_contains($a, uid_a) AND list_contains($b, uid_b))
                OR (list_contains($b, uid_a) AND list_contains($a, uid_b)))
        """, {"a": records, "b": others})

    def _redo(self, seeds: list[str]) -> None:
        """Re-resolve the neighbourhood of `seeds` under the constraints, and apply it."""
        con = self.con
        con.register("seed_rows", pa.table({"child_id": sorted(set(seeds))}))
        con.execute("CREATE OR REPLACE TEMP TABLE hood_seeds AS SELECT * FROM seed_rows")
        con.unregister("seed_rows")
        decision = self.config.decision
        hood = read_neighbourhood(con, with_new=False)
        support = SupportLookup(con, self.model, decision.merge_support_threshold,
                                self.config.scoring.tf_min_values, with_new=False)
        support.weight_shift = master_weight_shift(con, self.model, self.config.scoring)
        changes = decide(hood, decision, support)
        ChangeWriter(self.model, self.config).apply(
            con, changes, hood, Provenance(self.by, self.model.version)
        )
        for table in HOOD_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")

    def _expect_together(self, records: list[str], child_id: str | None, failure: str) -> str:
        children = {self._child_of(record) for record in records}
        if len(children) != 1 or (child_id is not None and
                                  children != {resolve_child_id(self.con, child_id)}):
            raise StewardshipError(
                f"{failure}: a person decided earlier that these records are different children"
            )
        return children.pop()
