"""`python -m benchmarks.soak --minutes 10 [--rate 500]`: does `run --follow` hold its memory and
latency over time? A warm master (bulk load), then feed lines appended continuously at the rate;
RSS and latency per minute of appending. Writes benchmarks/results/soak-latest.json (and
soak-<timestamp>.json) with start vs end memory and p99.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks.engine_bench import bulk_load
from benchmarks.feeds import cached_feeds, hold_back_newest
from benchmarks.follow import FollowRun, percentiles_ms, run_follow
from benchmarks.plan import FollowPlan, SoakPlan
from benchmarks.report import machine, write_json

_MINUTE_S = 60.0
_PARTIAL_MINUTE_S = 10.0


def soak(plan: SoakPlan, console: Console) -> dict[str, Any]:
    """Run the soak and return its JSON-ready result (see the module docstring)."""
    folder = plan.cache_dir / str(plan.children)
    run_dir = folder / "soak"
    with console.status(f"feeds for {plan.children:,} children"):
        feeds = cached_feeds(folder, plan.children, plan.seed)
    wanted = int(plan.rate * plan.minutes * _MINUTE_S)
    held = min(wanted, math.floor((1 - plan.warm_share) * feeds.lines))
    if held < wanted:
        console.print(f"[yellow]feeds of {plan.children:,} children hold {held:,} lines for the "
                      f"soak, not {wanted:,}: it lasts {held / plan.rate / 60:.1f} minutes "
                      "(raise --children for longer)")
    with console.status(f"holding back the newest {held:,} lines"):
        split = hold_back_newest(feeds.feeds, held, run_dir / "bulk")
    db = run_dir / "master.duckdb"
    with console.status(f"warming the master: bulk load of {feeds.lines - held:,} lines"):
        bulk = bulk_load(plan.python, split.bulk_feeds, db, run_dir / "engine-bulk.log",
                         plan.engine_timeout_s)
    console.print(f"  warm master: {bulk['updates']:,} records in {bulk['seconds']} s")
    follow = replace(FollowPlan(), rate=plan.rate)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task(f"soak: {held:,} lines at {plan.rate:,}/s", total=held)
        run = run_follow(plan.python, db, split.held_back, plan.rate, follow, run_dir / "follow",
                         on_progress=lambda done, _: progress.update(task, completed=done))
    return _soak_result(plan, feeds.lines, bulk, run)


def per_minute(run: FollowRun) -> list[dict[str, Any]]:
    """Per minute of appending (a last partial minute only if at least `_PARTIAL_MINUTE_S`
    long): lines committed, RSS at its end and peak, p50 and p99 (ms) of its lines."""
    append_start = run.ready_seconds  # process seconds when appending began
    epoch_start = run.started_epoch + run.ready_seconds
    full, rest = divmod(run.append_seconds, _MINUTE_S)
    minutes = max(1, int(full) + (rest >= _PARTIAL_MINUTE_S))
    rows = []
    for minute in range(minutes):
        low = minute * _MINUTE_S
        high = min((minute + 1) * _MINUTE_S, run.append_seconds)
        rss = [s.rss_mib for s in run.process.samples if low <= s.at - append_start < high]
        latencies = [latency for at, latency in zip(run.appended_at, run.latencies_ms, strict=True)
                     if low <= at - epoch_start < high]
        shares = percentiles_ms(latencies)
        rows.append({
            "minute": minute + 1,
            "committed": len(latencies),
            "rss_mib": round(rss[-1], 1) if rss else None,
            "peak_rss_mib": round(max(rss), 1) if rss else None,
            "p50_ms": shares["p50"],
            "p99_ms": shares["p99"],
        })
    return rows


def _soak_result(
    plan: SoakPlan, lines: int, bulk: dict[str, Any], run: FollowRun
) -> dict[str, Any]:
    minutes = per_minute(run)
    idle_rss = next((s.rss_mib for s in run.process.samples if s.at >= run.ready_seconds), None)
    first, last = minutes[0], minutes[-1]
    return {
        "started_at": datetime.fromtimestamp(run.started_epoch, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "plan": {key: getattr(plan, key)
                 for key in ("minutes", "rate", "children", "seed", "warm_share")},
        "feed_lines": lines,
        "warm_master_records": bulk["updates"],
        "appended": run.appended,
        "committed": run.committed,
        "append_seconds": run.append_seconds,
        "offered_rate": round(run.appended / run.append_seconds, 1) if run.append_seconds else 0,
        "achieved_rate": round(run.achieved_rate, 1),
        "drain_seconds": run.drain_seconds,
        "latency_ms": percentiles_ms(run.latencies_ms),
        "rss_before_appending_mib": round(idle_rss, 1) if idle_rss else None,
        # start = the first minute of appending, end = the last
        "start": {key: first[key] for key in ("rss_mib", "peak_rss_mib", "p50_ms", "p99_ms")},
        "end": {key: last[key] for key in ("rss_mib", "peak_rss_mib", "p50_ms", "p99_ms")},
        "peak_rss_mib": run.process.peak_rss_mib,
        "minutes": minutes,
    }


def main(argv: list[str] | None = None) -> int:
    defaults = SoakPlan()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=defaults.minutes)
    parser.add_argument("--rate", type=int, default=defaults.rate, help="lines/s appended")
    parser.add_argument("--children", type=int, default=defaults.children,
                        help="size of the synthetic feeds the lines come from")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--cache", type=Path, default=defaults.cache_dir)
    parser.add_argument("--out", type=Path, default=defaults.out_dir)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate < 1 or args.children < 1:
        parser.error("--minutes, --rate and --children must be positive")
    plan = replace(defaults, minutes=args.minutes, rate=args.rate, children=args.children,
                   seed=args.seed, cache_dir=args.cache, out_dir=args.out)
    console = Console(stderr=True)
    began = time.perf_counter()
    result = soak(plan, console)
    result["seconds"] = round(time.perf_counter() - began, 1)
    for path in write_json(result, plan.out_dir, "soak"):
        console.print(f"  wrote {path}")
    console.print(
        f"RSS at the end of the first → last minute {result['start']['rss_mib']} → "
        f"{result['end']['rss_mib']} MiB, p99 {result['start']['p99_ms']} → "
        f"{result['end']['p99_ms']} ms over {len(result['minutes'])} minute(s); "
        f"achieved {result['achieved_rate']:,}/s of {result['offered_rate']:,}/s offered"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
