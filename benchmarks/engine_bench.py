"""The engine under measurement, always as its own `contactpoint` subprocess: bulk load (fresh
master), accuracy (`evaluate`), and per-update cost against master size from `batches`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.measure import run_measured

_EVALUATION_KEYS = (
    "precision", "recall", "f1", "true_children", "found_children", "false_merges",
    "missed_links", "records", "unlinked_records", "multiple_birth_merges",
)


def bulk_load(python: str, feeds: Path, db: Path, log: Path, timeout_s: float,
              extra: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """`contactpoint run --json [extra]` of `feeds` into a fresh master `db`: the engine's own
    summary plus the process's wall seconds and peak RSS."""
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    run = run_measured(
        [python, "-m", "engine", "run", "--feeds", str(feeds), "--db", str(db), "--json",
         *extra],
        log, timeout_s,
    )
    summary = json.loads(run.last_json_line())
    return {
        **summary,
        "process_seconds": run.seconds,
        "peak_rss_mib": run.peak_rss_mib,
    }


def evaluate(python: str, db: Path, truth: Path, log: Path, timeout_s: float) -> dict[str, Any]:
    """`contactpoint evaluate --json`: pairwise precision, recall, F1 and child counts (as a
    data manager the benchmark accredits in the fresh master: evaluate is an audited act)."""
    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    for name, role, by in (("bench-admin", "admin", []),
                           ("bench-evaluator", "data_manager", ["--by", "bench-admin"])):
        run_measured([python, "-m", "engine", "users", "add", name, "--role", role, "--org",
                      "benchmarks", "--accredited-until", until, "--db", str(db), *by],
                     log, timeout_s)
    run = run_measured(
        [python, "-m", "engine", "evaluate", "--db", str(db), "--truth", str(truth), "--user",
         "bench-evaluator", "--reason", "benchmark accuracy", "--json"],
        log, timeout_s,
    )
    result = json.loads(run.last_json_line())
    return {key: result[key] for key in _EVALUATION_KEYS if key in result}


def cost_curve(db: Path, bins: int = 24) -> dict[str, Any]:
    """Throughput of the master's batches by master size (records before each batch), in up to
    `bins` bins: end to end (commit to commit) and in the resolver alone (start to commit);
    `growth` = resolver seconds per update in the last quarter of the load ÷ the first."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            """
            WITH b AS (
              SELECT updates,
                     epoch(committed_at - started_at) AS resolve_s,
                     coalesce(epoch(committed_at - lag(committed_at) OVER w),
                              epoch(committed_at - started_at)) AS interval_s,
                     coalesce(sum(updates) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING
                                                 AND 1 PRECEDING), 0) AS before
              FROM batches WINDOW w AS (ORDER BY batch_id)),
            binned AS (
              SELECT *, least(floor(before * $bins / (SELECT sum(updates) FROM b)), $bins - 1)
                        AS bin FROM b)
            SELECT min(before), sum(updates), sum(interval_s), sum(resolve_s),
                   sum(updates) FILTER (bin < $bins / 4), sum(resolve_s) FILTER (bin < $bins / 4),
                   sum(updates) FILTER (bin >= $bins * 3 / 4),
                   sum(resolve_s) FILTER (bin >= $bins * 3 / 4)
            FROM binned GROUP BY bin ORDER BY bin
            """,
            {"bins": bins},
        ).fetchall()
    finally:
        con.close()
    points = [
        {
            "master_records": int(before),
            "updates": int(updates),
            "updates_per_second": round(updates / interval, 1) if interval else None,
            "resolve_updates_per_second": round(updates / resolve, 1) if resolve else None,
        }
        for before, updates, interval, resolve, *_ in rows
    ]
    return {"points": points, "growth": _growth(rows)}


def _growth(rows: list[tuple]) -> float | None:
    """Resolver seconds per update in the last quarter of the load ÷ in the first quarter."""
    first_updates = sum(r[4] or 0 for r in rows)
    first_seconds = sum(r[5] or 0 for r in rows)
    last_updates = sum(r[6] or 0 for r in rows)
    last_seconds = sum(r[7] or 0 for r in rows)
    if not (first_updates and last_updates and first_seconds):
        return None
    return round((last_seconds / last_updates) / (first_seconds / first_updates), 2)
