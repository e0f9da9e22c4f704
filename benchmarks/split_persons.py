"""Why one child becomes two: the split persons of a finished master, by cause, and what a
candidate model would join (docs/model.md, "Recall at national scale").

    python -m benchmarks.split_persons --db MASTER --truth truth.csv \\
        [--candidate NEW_MODEL.json] [--model linkage_models/child_model.json] [--json OUT]

A person is *split* when its records sit in more than one child. Every pair of its records in
different children is scored by `--model` with the master's population prior (as the engine
scores a batch at that size) and checked against the model's blocking rules; the person's cause is
its best such pair:

- `refused`: a link-level pair the engine did score (it is in `scored_pairs`) and a decision rule
  refused — two keys of one exclusive feed, a record queued for a person, or another rule;
- `fast path`: a link-level pair only through records the xref fast path sent to their key's child
  unscored (the later record of the pair was not the first of its source key);
- `band` (0.30-0.95, in review or not), `below 0.30`, `not blocked`.

With `--candidate`, the split fragments the candidate lifts to link level are joined (union-find),
pairs the engine scores today only, then with fast-path records scored too, and the master's
pairwise recall is re-estimated; link-level pairs of `--model` stay refused. The master is only
read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import duckdb

from engine.candidates import with_term_frequencies_sql
from engine.resolution.prior import weight_shift
from linkage_models.scoring import CompiledModel
from linkage_models.settings import DEFAULT_SPEC_PATH

LINK, REVIEW = 0.95, 0.30
EXCLUSIVE_FEEDS = ("gro", "dwp", "nhs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.split_persons",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a finished master (read only)")
    parser.add_argument("--truth", type=Path, required=True, help="feed,record_id,person_id")
    parser.add_argument("--model", type=Path, default=DEFAULT_SPEC_PATH.with_suffix(".json"))
    parser.add_argument("--candidate", type=Path, help="a model to re-score the split pairs with")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    con = duckdb.connect(str(args.db), read_only=True)
    report = split_persons(con, args.truth, CompiledModel.from_json(args.model),
                           CompiledModel.from_json(args.candidate) if args.candidate else None)
    print(_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def split_persons(con: duckdb.DuckDBPyConnection, truth_csv: Path, model: CompiledModel,
                  candidate: CompiledModel | None = None) -> dict[str, Any]:
    """The split persons of the master on `con` by cause, with missed pairs, and with
    `candidate` the recall it would give."""
    children = con.execute(
        "SELECT count(*) FROM children WHERE status <> 'merged'").fetchall()[0][0]
    _register_split_pairs(con, truth_csv)
    _score(con, model, children, "model_pairs")
    causes = con.execute(f"""
        WITH person AS (
            SELECT p.person_id,
                   bool_or(p.blocked AND p.probability >= {LINK} AND p.stored) refused,
                   bool_or(p.blocked AND p.probability >= {LINK}) link,
                   bool_or(p.blocked AND p.probability >= {REVIEW}) band,
                   bool_or(p.blocked) blocked
            FROM model_pairs p GROUP BY 1)
        SELECT CASE
            WHEN refused AND k.two_keys THEN 'refused: two keys of one exclusive feed'
            WHEN refused AND k.in_review THEN 'refused: a record queued for a person'
            WHEN refused THEN 'refused: another decision rule'
            WHEN link THEN 'fast path: link level only through records never scored'
            WHEN band AND k.in_review THEN 'band, queued for a person'
            WHEN band THEN 'band, not queued'
            WHEN blocked THEN 'below 0.30'
            ELSE 'not blocked' END AS cause,
            count(*) AS persons, sum(m.missed)::BIGINT AS missed_pairs
        FROM split_keys k JOIN split_missed m USING (person_id)
        LEFT JOIN person USING (person_id)
        GROUP BY 1 ORDER BY 3 DESC
    """).fetchall()
    actual, true_positive = _pair_counts(con)
    report: dict[str, Any] = {
        "model": model.version, "children": children,
        "weight_shift": round(weight_shift(model, children), 2),
        "recall": true_positive / actual,
        "split_persons": sum(c[1] for c in causes),
        "missed_pairs": sum(c[2] for c in causes),
        "causes": [dict(zip(("cause", "persons", "missed_pairs"), c, strict=True))
                   for c in causes],
    }
    if candidate is not None:
        _score(con, candidate, children, "candidate_pairs")
        report["candidate"] = {
            "model": candidate.version,
            "recall_scored_today": (true_positive + _joined(con, only_scored=True)) / actual,
            "recall_fast_path_scored": (true_positive + _joined(con, only_scored=False))
            / actual,
        }
    return report


def _register_split_pairs(con: duckdb.DuckDBPyConnection, truth_csv: Path) -> None:
    """`split_records` (person, record, child, decision), `split_pairs` (every pair of one split
    person's records in two children, `scored`: the engine scored it — the later record was
    the first of its source key —, `stored`: it is in scored_pairs), `split_keys` (per person:
    two keys of one exclusive feed, a record in review) and `split_missed` (missed pairs)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE split_truth AS
        SELECT t.person_id, l.feed || ':' || l.record_id AS unique_id, l.child_id, l.decision
        FROM read_csv('{truth_csv}', all_varchar = true) t JOIN links l USING (feed, record_id)
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE split_records AS
        WITH placed AS (SELECT * FROM split_truth)
        SELECT p.*, r.record_no, r.feed, r.source_key, r.event,
               r.record_no = (SELECT min(k.record_no) FROM records k
                              WHERE k.feed = r.feed AND k.source_key = r.source_key) AS first_of_key
        FROM placed p JOIN records r USING (unique_id)
        WHERE p.person_id IN (SELECT person_id FROM placed GROUP BY 1
                              HAVING count(DISTINCT child_id) > 1)
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE split_pairs AS
        SELECT a.person_id, a.unique_id AS unique_id_l, b.unique_id AS unique_id_r,
               a.child_id AS child_l, b.child_id AS child_r,
               CASE WHEN a.record_no > b.record_no THEN a.first_of_key
                    ELSE b.first_of_key END AS scored,
               s.uid_a IS NOT NULL AS stored
        FROM split_records a JOIN split_records b
          ON a.person_id = b.person_id AND a.child_id < b.child_id
        LEFT JOIN scored_pairs s ON s.uid_a = least(a.unique_id, b.unique_id)
                                AND s.uid_b = greatest(a.unique_id, b.unique_id)
    """)
    exclusive = ", ".join(f"'{feed}'" for feed in EXCLUSIVE_FEEDS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE split_keys AS
        SELECT person_id, bool_or(in_review) AS in_review, max(keys) > 1 AS two_keys
        FROM (SELECT person_id, feed, bool_or(decision = 'review') AS in_review,
                     count(DISTINCT CASE WHEN feed IN ({exclusive}) AND event <> 'death'
                                         THEN source_key END) AS keys
              FROM split_records GROUP BY ALL)
        GROUP BY 1
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE split_missed AS
        SELECT person_id, (sum(n) * sum(n) - sum(n * n)) / 2 AS missed
        FROM (SELECT person_id, child_id, count(*) AS n FROM split_records GROUP BY ALL)
        GROUP BY 1
    """)


def _score(con: duckdb.DuckDBPyConnection, model: CompiledModel, children: int,
           name: str) -> None:
    """Table `name`: the split pairs, blocked by `model`'s rules or not, with its match
    probability under the population prior of `children` children."""
    con.execute("CREATE OR REPLACE TEMP TABLE split_model_records AS SELECT * FROM records "
                "WHERE unique_id IN (SELECT unique_id FROM split_records)")
    con.execute("CREATE OR REPLACE TEMP TABLE split_tf AS "
                + with_term_frequencies_sql(model, "split_model_records"))
    blocked = " OR ".join(f"({rule})" for rule in model.blocking_rules)
    shift = weight_shift(model, children)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        SELECT p.*, ({blocked}) AS blocked,
               1.0 / (1.0 + pow(2.0, -(s.match_weight + {shift!r}))) AS probability
        FROM split_pairs p
        JOIN ({model.score_sql('split_tf', 'split_tf', 'split_pairs')}) s
          USING (unique_id_l, unique_id_r)
        JOIN split_tf l ON l.unique_id = p.unique_id_l
        JOIN split_tf r ON r.unique_id = p.unique_id_r
    """)


def _pair_counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """True pairs of the master's records and those one child holds (pairwise recall)."""
    return con.execute("""
        SELECT (SELECT sum(n * (n - 1) / 2) FROM (SELECT count(*) n FROM split_truth
                                                  GROUP BY person_id)),
               (SELECT sum(n * (n - 1) / 2) FROM (SELECT count(*) n FROM split_truth
                                                  GROUP BY person_id, child_id))
    """).fetchall()[0]


def _joined(con: duckdb.DuckDBPyConnection, only_scored: bool) -> int:
    """Missed pairs the candidate would recover: fragments joined by its link-level pairs that
    the model does not already have at link level (those a rule refused)."""
    scored = "AND c.scored" if only_scored else ""
    joins = con.execute(f"""
        SELECT DISTINCT c.person_id, c.child_l, c.child_r FROM candidate_pairs c
        WHERE c.blocked AND c.probability >= {LINK} {scored}
          AND (c.person_id, c.child_l, c.child_r) NOT IN (
              SELECT (person_id, child_l, child_r) FROM model_pairs
              WHERE blocked AND probability >= {LINK} AND scored)
    """).fetchall()
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(node: tuple[str, str]) -> tuple[str, str]:
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    for person, left, right in joins:
        parent[root((person, left))] = root((person, right))
    groups: dict[tuple[str, str], list[int]] = {}
    for person, child, n in con.execute(
        "SELECT person_id, child_id, count(*) FROM split_records GROUP BY ALL"
    ).fetchall():
        groups.setdefault(root((person, child)), []).append(n)
    return sum((sum(ns) ** 2 - sum(n * n for n in ns)) // 2 for ns in groups.values())


def _table(report: dict[str, Any]) -> str:
    lines = [f"model {report['model']}, {report['children']:,} children "
             f"(prior shift {report['weight_shift']} bits), recall {report['recall']:.5f}",
             f"{report['split_persons']:,} split persons, {report['missed_pairs']:,} missed pairs",
             "", f"{'cause':<60} {'persons':>8} {'missed pairs':>13}"]
    lines += [f"{c['cause']:<60} {c['persons']:>8,} {c['missed_pairs']:>13,}"
              for c in report["causes"]]
    if "candidate" in report:
        c = report["candidate"]
        lines += ["", f"candidate {c['model']}: recall {c['recall_scored_today']:.5f} "
                  f"(pairs scored today), {c['recall_fast_path_scored']:.5f} "
                  "(fast-path records scored too)"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
