"""One size of the benchmark, step by step: feeds → engine bulk load → cost curve → `--follow`
latency → accuracy → Splink anchors → ratios. Produces that size's JSON-ready result."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.anchors import run_anchor
from benchmarks.engine_bench import bulk_load, cost_curve, evaluate
from benchmarks.feeds import (
    GeneratedFeeds,
    HeldBackLine,
    cached_feeds,
    hold_back_newest,
    snapshot_records,
)
from benchmarks.follow import SMALL_BATCH_UPDATES, FollowRun, percentiles_ms, run_follow
from benchmarks.measure import MeasuredCommandError
from benchmarks.plan import BenchPlan
from engine.config import EngineConfig
from engine.progress import progress_bar


def bench_size(plan: BenchPlan, children: int, console: Console) -> dict[str, Any]:
    """Measure the engine and the anchors on the synthetic feeds of `children` children."""
    folder = plan.size_dir(children)
    console.rule(f"[bold]{children:,} children")
    with progress_bar(console, f"feeds for {children:,} children") as advance:
        feeds = cached_feeds(folder, children, plan.seed, progress=advance)
    _say(console, "feeds", f"{feeds.lines:,} lines" + (
        f", generated in {feeds.generate_seconds} s" if feeds.generate_seconds
        else f" (cached in {folder})"))
    result: dict[str, Any] = {
        "children": children,
        "feed_lines": feeds.lines,
        "generate_seconds": feeds.generate_seconds,
        **_engine(plan, feeds, folder / "run", console),
    }
    if "engine" in result and not plan.skip_anchors:
        if feeds.lines > plan.anchors.max_feed_lines:
            skipped = {"skipped": f"{feeds.lines:,} feed lines > cap "
                                  f"{plan.anchors.max_feed_lines:,} (snapshot in memory)"}
            _say(console, "anchors", f"[yellow]{skipped['skipped']}")
            result.update({"anchor_batch": skipped, "anchor_incremental": skipped})
        else:
            result.update(_anchors(plan, feeds.feeds, feeds.truth, folder, console))
        result["ratios"] = _ratios(result)
    return result


def _engine(
    plan: BenchPlan, feeds: GeneratedFeeds, run_dir: Path, console: Console
) -> dict[str, Any]:
    """`{"engine": {bulk, cost_curve, follow, accuracy}}`, or `{"failed": reason}` if the bulk
    load failed (nothing else can be measured without a master)."""
    follow = plan.follow
    held = min(int(follow.rate * follow.seconds) + follow.quiet_updates,
               math.floor(follow.max_share * feeds.lines))
    with console.status(f"holding back the newest {held:,} lines for --follow"):
        split = hold_back_newest(feeds.feeds, held, run_dir / "bulk")
    db = run_dir / "master.duckdb"
    with console.status(f"engine bulk load of {feeds.lines - held:,} lines (fresh master)"):
        try:
            bulk = bulk_load(plan.python, split.bulk_feeds, db, run_dir / "engine-bulk.log",
                             plan.engine_timeout_s)
        except MeasuredCommandError as err:
            console.print(f"  [red]✗ engine bulk load failed: {err}")
            return {"failed": str(err)[:500]}
    _say(console, "engine bulk load", f"{bulk['updates']:,} updates in {bulk['seconds']} s: "
         f"{bulk['updates_per_second']:,.0f}/s, peak RSS {bulk['peak_rss_mib']:,.0f} MiB")
    curve = cost_curve(db)
    _say(console, "cost growth", f"resolver s/update, last vs first quarter: {curve['growth']}")
    latency = follow_phase(plan, db, split.held_back, run_dir / "follow", console)
    with console.status("evaluate"):
        accuracy = evaluate(plan.python, db, feeds.truth, run_dir / "evaluate.log",
                            plan.evaluate_timeout_s)
    _say(console, "engine accuracy", f"P {accuracy['precision']:.4f} R {accuracy['recall']:.4f} "
         f"F1 {accuracy['f1']:.4f} ({accuracy['unlinked_records']:,} records not in the master)")
    return {"engine": {"bulk": bulk, "accuracy": accuracy, "follow": latency,
                       "cost_curve": curve}}


def follow_phase(
    plan: BenchPlan, db: Path, lines: list[HeldBackLine], work_dir: Path, console: Console
) -> dict[str, Any]:
    """The `--follow` latency phase on the loaded master, or `{"failed": reason}`: `lines` at
    the offered rate, the last `quiet_updates` of them (at most half) one at a time after."""
    rate = plan.follow.rate
    quiet = min(plan.follow.quiet_updates, len(lines) // 2)
    at_rate, one_by_one = lines[:len(lines) - quiet], lines[len(lines) - quiet:]
    description = (f"--follow: appending {len(at_rate):,} lines at {rate:,}/s, "
                   f"then {quiet} one at a time")
    with progress_bar(console, description) as advance:
        try:
            run = run_follow(plan.python, db, at_rate, rate, plan.follow, work_dir, advance,
                             quiet_lines=one_by_one)
        except MeasuredCommandError as err:
            console.print(f"  [red]✗ engine --follow failed: {err}")
            return {"failed": str(err)[:500]}
    latency = _follow_result(run)
    single, cost = latency["quiet_single_update_ms"], latency["batch_cost"]
    _say(console, "engine --follow",
         f"p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms "
         f"({latency['committed']:,}/{latency['appended']:,} lines); single updates on the "
         f"idle engine p50 {single['p50']} ms, max {single['max']} ms; fixed cost per batch "
         f"{cost['small_batch_median_ms']} ms (median of {cost['small_batches']} batches of "
         f"≤ {SMALL_BATCH_UPDATES} updates)")
    return latency


def _anchors(
    plan: BenchPlan, feeds: Path, truth: Path, folder: Path, console: Console
) -> dict[str, Any]:
    """Both Splink anchors on the canonical snapshot of all the feeds."""
    began = time.perf_counter()
    with console.status("canonical snapshot of the feeds for the anchors"):
        records, rows = snapshot_records(feeds, folder / "records.parquet")
    _say(console, "snapshot", f"{rows:,} records ({time.perf_counter() - began:.1f} s)")
    anchors = plan.anchors
    threshold = EngineConfig().decision.link_threshold
    log_dir = folder / "run"
    if rows > anchors.batch_max_records:
        batch: dict[str, Any] = {"skipped": f"{rows:,} records > cap {anchors.batch_max_records:,}"}
    else:
        with console.status(f"anchor 1: Splink predict + cluster of {rows:,} records"):
            batch = _anchor_or_failure(plan, [
                "batch", "--records", str(records), "--truth", str(truth),
                "--threshold", str(threshold)], log_dir / "anchor-batch.log",
                anchors.batch_timeout_s)
    _say(console, "anchor 1 (batch)", _anchor_line(batch, "seconds"))
    with console.status(f"anchor 2: Splink predict_between in {anchors.incremental_batch:,}-"
                        "record batches vs the growing master"):
        incremental = _anchor_or_failure(plan, [
            "incremental", "--records", str(records),
            "--batch", str(anchors.incremental_batch),
            "--max-scored", str(anchors.incremental_max_scored)],
            log_dir / "anchor-incremental.log", anchors.incremental_timeout_s)
    _say(console, "anchor 2 (incremental)", _anchor_line(incremental, "estimated_seconds"))
    return {"anchor_batch": batch, "anchor_incremental": incremental}


def _anchor_or_failure(
    plan: BenchPlan, args: list[str], log: Path, timeout_s: float
) -> dict[str, Any]:
    """The anchor's result, or `{"skipped": reason}` if it failed or ran out of time (the
    benchmark goes on: an anchor that does not fit is itself a finding)."""
    try:
        return run_anchor(plan.python, args, log, timeout_s)
    except MeasuredCommandError as err:
        return {"skipped": str(err)[:300]}


def _follow_result(run: FollowRun) -> dict[str, Any]:
    """The latency phase as JSON: rates, counts and append→commit percentiles (ms)."""
    percentiles = percentiles_ms(run.latencies_ms)
    return {
        "offered_rate": round(run.appended / run.append_seconds, 1) if run.append_seconds else 0,
        "achieved_rate": round(run.achieved_rate, 1),
        "appended": run.appended,
        "committed": run.committed,
        "append_seconds": run.append_seconds,
        "ready_seconds": run.ready_seconds,
        "drain_seconds": run.drain_seconds,
        **{f"{name}_ms": value for name, value in percentiles.items()},
        "peak_rss_mib": run.process.peak_rss_mib,
        "p99_by_second": _p99_by_second(run),
        "quiet_single_update_ms": {
            "appended": run.quiet_appended,
            "committed": len(run.quiet_latencies_ms),
            "seconds": run.quiet_seconds,
            **percentiles_ms(run.quiet_latencies_ms),
        },
        "batch_cost": run.batch_cost,
    }


def _p99_by_second(run: FollowRun) -> list[dict[str, float]]:
    """Latency over the phase: p99 per second of appending (for the latency plot)."""
    if not run.appended_at:
        return []
    start = run.appended_at[0]
    by_second: dict[int, list[float]] = {}
    for at, latency in zip(run.appended_at, run.latencies_ms, strict=True):
        by_second.setdefault(int(at - start), []).append(latency)
    return [
        {"second": second, "p99_ms": percentiles_ms(values)["p99"]}
        for second, values in sorted(by_second.items())
    ]


def _ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """Engine ÷ anchor in the same run: throughput (> 1: engine faster), peak RSS, F1."""
    engine = result["engine"]
    batch, incremental = result["anchor_batch"], result["anchor_incremental"]
    return {
        "bulk_throughput_vs_batch": _ratio(
            engine["bulk"]["updates_per_second"], batch.get("records_per_second")),
        "bulk_throughput_vs_incremental": _ratio(
            engine["bulk"]["updates_per_second"], incremental.get("records_per_second")),
        "peak_rss_vs_batch": _ratio(engine["bulk"]["peak_rss_mib"], batch.get("peak_rss_mib")),
        "f1_vs_batch": _ratio(engine["accuracy"]["f1"], batch.get("f1"), digits=4),
    }


def _ratio(ours: float | None, theirs: float | None, digits: int = 2) -> float | None:
    return round(ours / theirs, digits) if ours and theirs else None


def _anchor_line(anchor: dict[str, Any], seconds_key: str) -> str:
    if "skipped" in anchor:
        return f"[yellow]skipped: {anchor['skipped']}"
    f1 = f", F1 {anchor['f1']:.4f}" if "f1" in anchor else ""
    return (f"{anchor['records_per_second']:,.0f} records/s ({anchor[seconds_key]} s), "
            f"peak RSS {anchor['peak_rss_mib']:,.0f} MiB{f1}")


def _say(console: Console, step: str, text: str) -> None:
    console.print(f"  [green]✓[/green] {step}: {text}")
