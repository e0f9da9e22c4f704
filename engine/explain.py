"""`contactpoint explain FEED:RECORD_ID`: the decision a record has now and every decision it got
before (`decision_history`: with the candidates and probabilities it was made on, the model, and
who made it), the children it could belong to scored now against the record index as it stands,
and the waterfall against the best one."""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from engine.candidates import with_term_frequencies_sql
from linkage_models.explain import WaterfallStep, render_html, render_text, waterfall
from linkage_models.scoring import CompiledModel

TOP_CANDIDATES = 10


class RecordNotFound(LookupError):
    """The master has no decision for that record."""


@dataclass(frozen=True)
class Candidate:
    child_id: str
    record: str  # the child's best-scoring record, feed:record_id
    match_weight: float
    match_probability: float


@dataclass(frozen=True)
class Explanation:
    record: str
    decision: dict
    candidates: list[Candidate]
    steps: list[WaterfallStep]
    history: list[dict]

    def text(self) -> str:
        d = self.decision
        lines = [
            f"{self.record}: {d['decision']} -> child {d['child_id']} "
            f"(probability {_fmt(d['match_probability'])}, model {d['model_version']}, "
            f"decided {d['decided_at']})",
        ]
        if d.get("review_reason"):
            lines.append(f"queued for review: {d['review_reason']}")
        lines += ["", "decisions as made (oldest first):"]
        for h in self.history:
            evidence = ", ".join(
                f"{c['child_id']} {c['match_probability']:.6f}" for c in h["candidates"]
            )
            lines.append(
                f"  {h['decided_at']}  {h['decision']:<7} -> {h['child_id']}  by {h['decided_by']}"
                f"  (probability {_fmt(h['match_probability'])}, model {h['model_version']})"
                + (f"  candidates: {evidence}" if evidence else "")
            )
        lines.append("")
        lines.append("candidate children now (best record of each):")
        if not self.candidates:
            lines.append("  none: no other record shares a blocking key")
        for c in self.candidates:
            lines.append(
                f"  {c.child_id}  via {c.record:<28} weight {c.match_weight:8.2f}  "
                f"probability {c.match_probability:.6f}"
            )
        if self.steps:
            lines += ["", f"waterfall against {self.candidates[0].record}:"]
            lines.append(render_text(self.steps))
        return "\n".join(lines)

    def html(self) -> str:
        title = f"{self.record}: {self.decision['decision']} -> {self.decision['child_id']}"
        if not self.steps:
            return render_html([], title)
        return render_html(self.steps, f"{title} (vs {self.candidates[0].record})")


def explain_record(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, feed: str, record_id: str
) -> Explanation:
    uid = f"{feed}:{record_id}"
    decision = _decision(con, feed, record_id)
    scores = _score_against_index(con, model, uid)
    best_per_child: dict[str, dict] = {}
    for row in scores:
        best_per_child.setdefault(row["child_id"], row)
    candidates = [
        Candidate(r["child_id"], r["unique_id_r"], r["match_weight"], r["match_probability"])
        for r in list(best_per_child.values())[:TOP_CANDIDATES]
    ]
    steps = waterfall(scores[0], model) if scores else []
    return Explanation(uid, decision, candidates, steps, _history(con, feed, record_id))


def _history(con: duckdb.DuckDBPyConnection, feed: str, record_id: str) -> list[dict]:
    rows = con.execute("""
        SELECT decided_at, decision, child_id, decided_by, match_probability, model_version,
               candidates
        FROM decision_history WHERE feed = ? AND record_id = ? ORDER BY seq
    """, [feed, record_id]).fetchall()
    names = ("decided_at", "decision", "child_id", "decided_by", "match_probability",
             "model_version")
    return [
        dict(zip(names, row[:-1], strict=True)) | {"candidates": json.loads(row[-1] or "[]")}
        for row in rows
    ]


def _decision(con: duckdb.DuckDBPyConnection, feed: str, record_id: str) -> dict:
    row = con.execute(
        """
        SELECT l.child_id, l.decision, l.match_probability, l.model_version, l.decided_at,
               q.reason AS review_reason
        FROM links l LEFT JOIN review_queue q USING (feed, record_id)
        WHERE l.feed = ? AND l.record_id = ?
        """,
        [feed, record_id],
    ).fetchall()
    if not row:
        raise RecordNotFound(
            f"no decision for {feed}:{record_id} in the master (not processed yet, or a bad "
            "line: see the dead_letters table)"
        )
    names = ("child_id", "decision", "match_probability", "model_version", "decided_at",
             "review_reason")
    return dict(zip(names, row[0], strict=True))


def _score_against_index(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, uid: str
) -> list[dict]:
    """Every record of another child sharing a blocking key with `uid`, best first."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE explained AS SELECT * FROM records WHERE unique_id = ?", [uid]
    )
    rules = " OR ".join(f"({rule})" for rule in model.blocking_rules)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE explain_right AS
        SELECT r.* FROM explained l JOIN records r ON ({rules})
        WHERE r.unique_id <> l.unique_id
    """)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE explain_pairs AS SELECT l.unique_id AS unique_id_l, "
        "r.unique_id AS unique_id_r FROM explained l, explain_right r"
    )
    for table in ("explained", "explain_right"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table}_tf AS "
                    + with_term_frequencies_sql(model, table))
    result = con.sql(f"""
        SELECT s.*, r.child_id FROM ({model.score_sql('explained_tf', 'explain_right_tf',
                                                      'explain_pairs')}) s
        JOIN explain_right r ON r.unique_id = s.unique_id_r
        ORDER BY s.match_weight DESC, s.unique_id_r
    """).to_arrow_table()
    return result.to_pylist()


def _fmt(probability: float | None) -> str:
    return "n/a (known identifier)" if probability is None else f"{probability:.6f}"
