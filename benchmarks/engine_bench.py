"""The engine under measurement, always as its own `contactpoint` subprocess: bulk load (fresh
master), accuracy (`evaluate`), and per-update cost against master size from `batches`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.measure import run_measured
from engine.stage_clock import STAGES

_EVALUATION_KEYS = (
    "precision", "recall", "f1", "true_children", "found_children", "false_merges",
    "missed_links", "records", "unlinked_records", "multiple_birth_merges",
)


def bulk_load(python: str, feeds: Path, db: Path, log: Path, timeout_s: float,
              extra: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """`contactpoint run --json [extra]` of `feeds` into a fresh master `db`: the engine's own
    summary plus the process's wall seconds, peak RSS and the master's bytes on disk."""
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
        "master_bytes": master_bytes(db),
    }


def master_bytes(db: Path) -> int:
    """Bytes of the master on disk: its DuckDB file and write-ahead log."""
    return sum(path.stat().st_size for path in (db, db.with_name(db.name + ".wal"))
               if path.is_file())


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
    `bins` bins: end to end (commit to commit), in the resolver alone (start to commit) and per
    resolver stage (`batches.stage_ms`; `other` = the commit and what no stage covers);
    `growth` = resolver seconds per update in the last quarter of the load ÷ the first, and
    `stage_growth` the same per stage. Aggregated in DuckDB: no batch row reaches Python."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(_COST_CURVE_SQL, {"bins": bins}).fetchall()
    finally:
        con.close()
    points = [_curve_point(row) for row in rows]
    return {"points": points, "growth": _growth(rows), "stage_growth": _stage_growth(rows)}


# the resolver's stages that `stage_ms` holds (the commit is not in it)
TIMED_STAGES: tuple[str, ...] = tuple(stage for stage in STAGES if stage != "commit")
_STAGE_SUMS = ", ".join(
    f"sum(coalesce(TRY_CAST(stage_ms->>'{stage}' AS DOUBLE), 0))" for stage in TIMED_STAGES)
_STAGE_QUARTERS = ", ".join(
    f"sum(coalesce(TRY_CAST(stage_ms->>'{stage}' AS DOUBLE), 0)) FILTER ({quarter})"
    for quarter in ("bin < $bins / 4", "bin >= $bins * 3 / 4") for stage in TIMED_STAGES)
_COST_CURVE_SQL = f"""
    WITH b AS (
      SELECT updates, stage_ms,
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
           sum(resolve_s) FILTER (bin >= $bins * 3 / 4),
           count(*), count(stage_ms), {_STAGE_SUMS}, {_STAGE_QUARTERS}
    FROM binned GROUP BY bin ORDER BY bin
"""


def _curve_point(row: tuple) -> dict[str, Any]:
    before, updates, interval, resolve, *_, batches, timed = row[:10]
    point = {
        "master_records": int(before),
        "updates": int(updates),
        "batches": int(batches),
        "updates_per_second": round(updates / interval, 1) if interval else None,
        "resolve_updates_per_second": round(updates / resolve, 1) if resolve else None,
    }
    if timed == batches and updates:  # every batch of the bin has its stage times
        stage_ms = dict(zip(TIMED_STAGES, row[10:10 + len(TIMED_STAGES)], strict=True))
        stage_ms["other"] = max(0.0, resolve * 1000 - sum(stage_ms.values()))
        point["stages"] = {
            stage: {"ms_per_update": round(ms / updates, 4), "ms_per_batch": round(ms / batches, 2)}
            for stage, ms in stage_ms.items()
        }
    return point


def stage_points(size: dict[str, Any]) -> list[dict[str, Any]]:
    """The cost-curve bins of one size's result that have per-stage times."""
    return [p for p in size["engine"]["cost_curve"]["points"] if "stages" in p]


def _stage_growth(rows: list[tuple]) -> dict[str, float | None] | None:
    """Per stage: ms per update in the last quarter of the load ÷ in the first quarter."""
    if not rows or any(row[8] != row[9] for row in rows):
        return None
    count = len(TIMED_STAGES)
    first_updates = sum(r[4] or 0 for r in rows)
    last_updates = sum(r[6] or 0 for r in rows)
    growth: dict[str, float | None] = {}
    for index, stage in enumerate(TIMED_STAGES):
        first = sum(r[10 + count + index] or 0 for r in rows)
        last = sum(r[10 + 2 * count + index] or 0 for r in rows)
        growth[stage] = (round((last / last_updates) / (first / first_updates), 2)
                         if first and first_updates and last_updates else None)
    return growth


def _growth(rows: list[tuple]) -> float | None:
    """Resolver seconds per update in the last quarter of the load ÷ in the first quarter."""
    first_updates = sum(r[4] or 0 for r in rows)
    first_seconds = sum(r[5] or 0 for r in rows)
    last_updates = sum(r[6] or 0 for r in rows)
    last_seconds = sum(r[7] or 0 for r in rows)
    if not (first_updates and last_updates and first_seconds):
        return None
    return round((last_seconds / last_updates) / (first_seconds / first_updates), 2)
