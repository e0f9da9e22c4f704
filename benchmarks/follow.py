"""Latency of `contactpoint run --follow`: lines appended to live feed files at a fixed offered
rate, each line's latency = its batch's `committed_at` − the wall-clock time it was appended.

    run = run_follow(python, db, lines, rate=1000, plan=FollowPlan(), work_dir=tmp,
                     quiet_lines=more_lines)
    percentiles_ms(run.latencies_ms)   # {"p50": …, "p95": …, "p99": …, "max": …}
    percentiles_ms(run.quiet_latencies_ms)   # single lines appended to the idle engine
    run.batch_cost                     # fixed cost per batch of the session's batches

The engine cannot be queried while it runs (one DuckDB writer), so latencies are read from the
master after it stops; readiness and catching up are judged from its CPU use (idle = polling).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from benchmarks.feeds import HeldBackLine
from benchmarks.measure import MeasuredProcess, MeasuredRun
from benchmarks.plan import FollowPlan
from streams.canonical import FEEDS

APPEND_FILE = "tail.jsonl"
READY_LINE = "master ready:"  # what `run` says once its master is open and indexed
_TICK_S = 0.01
_APPENDED = pa.schema(
    [("feed", pa.string()), ("record_id", pa.string()), ("appended_at", pa.float64())]
)


@dataclass(frozen=True)
class FollowRun:
    """One `run --follow` session: what was appended when, and what the engine made of it."""

    appended: int  # lines appended
    committed: int  # appended lines whose record reached `links`
    appended_at: list[float]  # epoch seconds, per committed line
    latencies_ms: list[float]  # per committed line, in append order
    append_seconds: float
    ready_seconds: float  # start-up until the engine was idle, before the first append
    drain_seconds: float  # after the last append until the engine was idle again
    engine_summary: dict[str, float | int]
    process: MeasuredRun
    started_epoch: float  # when the engine process started
    quiet_appended: int = 0  # single lines appended one at a time to the idle engine
    quiet_latencies_ms: list[float] = field(default_factory=list)  # of those committed
    quiet_seconds: float = 0.0
    batch_cost: dict[str, float | int | None] = field(default_factory=dict)

    @property
    def achieved_rate(self) -> float:
        """Committed lines per second of appending."""
        return self.committed / self.append_seconds if self.append_seconds else 0.0


def run_follow(
    python: str, db: Path, lines: Sequence[HeldBackLine], rate: float, plan: FollowPlan,
    work_dir: Path, on_progress: Callable[[int, int], None] | None = None,
    quiet_lines: Sequence[HeldBackLine] = (), append_file: str = APPEND_FILE,
) -> FollowRun:
    """Start `run --follow` on master `db` over empty feed folders in `work_dir`, append
    `lines` at `rate` lines/s to `<feed>/<append_file>` once it is idle, wait until it has
    caught up, then append each of `quiet_lines` alone, each once the engine is idle again
    (`append_quietly`), stop it (SIGTERM) and read each line's latency from the master.
    MeasuredCommandError if the engine fails."""
    feeds = work_dir / "feeds"
    for feed in FEEDS:
        (feeds / feed).mkdir(parents=True, exist_ok=True)
        (feeds / feed / append_file).unlink(missing_ok=True)
    cmd = [python, "-m", "engine", "run", "--feeds", str(feeds), "--db", str(db), "--follow",
           "--json"]
    if plan.engine_config is not None:
        cmd += ["--config", str(plan.engine_config)]
    started_epoch = time.time()
    with MeasuredProcess(cmd, work_dir / "engine-follow.log") as proc:
        # CPU alone is no sign of readiness: opening a large master can wait on the disk
        ready = proc.wait_for_stderr(READY_LINE, plan.ready_line_max_s)
        ready += proc.wait_until_idle(
            below=plan.idle_below, settle_s=plan.idle_settle_s, min_s=1.0, max_s=plan.ready_max_s
        )
        if not proc.running:  # failed at start-up: raise with its reason, append nothing
            proc.succeeded(proc.wait(timeout_s=1.0))
        began = time.monotonic()
        appended = append_at_rate(lines, feeds, rate, on_progress, append_file)
        append_seconds = time.monotonic() - began
        drain = proc.wait_until_idle(
            below=plan.idle_below, settle_s=plan.idle_settle_s, min_s=0.5, max_s=plan.drain_max_s
        )
        began = time.monotonic()
        quiet = append_quietly(proc, quiet_lines, feeds, plan, append_file)
        quiet_seconds = time.monotonic() - began
        result = proc.succeeded(proc.stop(timeout_s=plan.drain_max_s))
    latencies = line_latencies(db, appended)
    quiet_latencies = line_latencies(db, quiet)
    return FollowRun(
        appended=len(lines),
        committed=latencies.num_rows,
        appended_at=latencies["appended_at"].to_pylist(),
        latencies_ms=latencies["latency_ms"].to_pylist(),
        append_seconds=round(append_seconds, 3),
        ready_seconds=round(ready, 2),
        drain_seconds=round(drain, 2),
        engine_summary=json.loads(result.last_json_line()),
        process=result,
        started_epoch=started_epoch,
        quiet_appended=len(quiet_lines),
        quiet_latencies_ms=quiet_latencies["latency_ms"].to_pylist(),
        quiet_seconds=round(quiet_seconds, 2),
        batch_cost=batch_fixed_cost(db, started_epoch),
    )


def append_quietly(
    proc: MeasuredProcess, lines: Sequence[HeldBackLine], feeds: Path, plan: FollowPlan,
    append_file: str = APPEND_FILE,
) -> pa.Table:
    """Append `lines` one at a time, each once the engine is idle (below `plan.idle_below` of
    a core over half a second, at least `plan.quiet_gap_s` after the previous line): the
    latency of a single update on a quiet master. Returns the appended lines as
    `append_at_rate` does."""
    appended = []
    for line in lines:
        appended.append(append_at_rate([line], feeds, rate=1 / _TICK_S, append_file=append_file))
        proc.wait_until_idle(below=plan.idle_below, settle_s=0.0, min_s=plan.quiet_gap_s,
                             max_s=plan.quiet_max_wait_s)
    return pa.concat_tables(appended) if appended else _APPENDED.empty_table()


def append_at_rate(
    lines: Sequence[HeldBackLine], feeds: Path, rate: float,
    on_progress: Callable[[int, int], None] | None = None, append_file: str = APPEND_FILE,
) -> pa.Table:
    """Append `lines` to `feeds/<feed>/<append_file>` at `rate` lines/s (in small flushed chunks);
    returns `(feed, record_id, appended_at)` of the lines with a record_id, appended_at in
    epoch seconds taken right after the flush."""
    rows: dict[str, list] = {"feed": [], "record_id": [], "appended_at": []}
    with ExitStack() as files:
        handles = {
            feed: files.enter_context((feeds / feed / append_file).open(
                "a", encoding="utf-8", errors="surrogateescape"))
            for feed in FEEDS
        }
        start = time.monotonic()
        done = 0
        while done < len(lines):
            due = min(len(lines), math.floor((time.monotonic() - start) * rate) + 1)
            chunk = lines[done:due]
            for line in chunk:
                handles[line.feed].write(line.text.rstrip("\n") + "\n")
            for feed in {line.feed for line in chunk}:
                handles[feed].flush()
            now = time.time()
            for line in chunk:
                if line.record_id is not None:
                    rows["feed"].append(line.feed)
                    rows["record_id"].append(line.record_id)
                    rows["appended_at"].append(now)
            done = due
            if on_progress:
                on_progress(done, len(lines))
            time.sleep(max(_TICK_S, start + done / rate - time.monotonic()))
    return pa.table(rows, schema=_APPENDED)


def line_latencies(db: Path, appended: pa.Table) -> pa.Table:
    """`(appended_at, latency_ms)` of each appended line the master decided, in append order:
    the `committed_at` of the batch that first placed its record (`decision_history`) −
    `appended_at`. Not the batch of its current decision (`links.batch_id`): a later batch's
    redo, when the record's neighbourhood changed (DESIGN.md principle 3), moves that on, though
    the line was resolved and visible since its first batch."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.register("appended", appended)
        return con.sql("""
            WITH first AS (
                SELECT a.feed, a.record_id, a.appended_at,
                       arg_min(d.batch_id, d.seq) AS batch_id
                FROM appended a JOIN decision_history d USING (feed, record_id)
                GROUP BY a.feed, a.record_id, a.appended_at
            )
            SELECT f.appended_at, (epoch(b.committed_at) - f.appended_at) * 1000 AS latency_ms
            FROM first f JOIN batches b USING (batch_id)
            ORDER BY f.appended_at, f.feed, f.record_id
        """).to_arrow_table()
    finally:
        con.close()


def percentiles_ms(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 (nearest rank) and max of latencies in ms, rounded to 0.1 ms."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "max": None}

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(ordered[-1], 1)}


SMALL_BATCH_UPDATES = 20


def batch_fixed_cost(db: Path, since_epoch: float) -> dict[str, float | int | None]:
    """The fixed cost of a batch, from the batches committed since `since_epoch` (a `--follow`
    session: small batches): `small_batch_median_ms` = median resolver ms (start to commit) of
    the batches of at most SMALL_BATCH_UPDATES updates, and a least-squares line of resolver ms
    against updates per batch over all of them (`intercept_ms`, `ms_per_update`)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            """
            WITH b AS (SELECT updates, epoch(committed_at - started_at) * 1000 AS ms
                       FROM batches WHERE committed_at >= to_timestamp($since) AND updates > 0)
            SELECT count(*), count(*) FILTER (updates <= $small),
                   median(ms) FILTER (updates <= $small),
                   regr_intercept(ms, updates), regr_slope(ms, updates)
            FROM b
            """,
            {"since": since_epoch, "small": SMALL_BATCH_UPDATES},
        ).fetchone()
    finally:
        con.close()
    batches, small, median_ms, intercept, slope = row
    return {
        "batches": batches,
        "small_batches": small,
        "small_batch_median_ms": _round(median_ms, 1),
        "intercept_ms": _round(intercept, 1),
        "ms_per_update": _round(slope, 3),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
