"""`python -m benchmarks.follow_master --cache data/bench2 --children 1000000 --master FILE`:
the benchmark's `--follow` phase alone, on a copy of a master that is already loaded.

The full benchmark loads a fresh master before it measures `--follow` (27 min at 1M children);
this measures the engine of this checkout on a master loaded earlier (by `python -m benchmarks`
of the same size and seed: its `run/master.duckdb` copied right after the bulk load, before its
own `--follow` phase appends to it). The feeds' newest lines — the ones that benchmark held back
from its bulk load — are appended at `--rate` lines/s, then `--quiet-updates` of them one at a
time, exactly as `python -m benchmarks` does. The master is copied (the file given is never
written) and opened by this checkout's engine, which migrates the copy if needed.
Writes benchmarks/results/follow-latest.json (and follow-<timestamp>.json).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.feeds import cached_feeds, hold_back_newest
from benchmarks.measure import copy_master
from benchmarks.plan import BenchPlan, FollowPlan
from benchmarks.report import machine, write_json
from benchmarks.suite import follow_phase


def follow_master(plan: BenchPlan, children: int, master: Path, console: Console
                  ) -> dict[str, Any]:
    """The `--follow` result of `python -m benchmarks` for `children`, measured on a copy of
    `master`."""
    started = datetime.now(UTC)
    folder = plan.size_dir(children)
    feeds = cached_feeds(folder, children, plan.seed)
    work = folder / "follow-master"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    held = min(int(plan.follow.rate * plan.follow.seconds) + plan.follow.quiet_updates,
               math.floor(plan.follow.max_share * feeds.lines))
    with console.status(f"finding the newest {held:,} lines"):
        lines = hold_back_newest(feeds.feeds, held, work / "bulk").held_back
    shutil.rmtree(work / "bulk")
    db = work / "master.duckdb"
    with console.status(f"copying {master}"):
        copy_master(master, db)
    began = time.monotonic()
    follow = follow_phase(plan, db, lines, work / "follow", console)
    return {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(time.monotonic() - began, 1),
        "machine": machine(),
        "children": children,
        "master": str(master),
        "engine_python": plan.python,
        "plan": {"seed": plan.seed, "rate": plan.follow.rate, "seconds": plan.follow.seconds,
                 "quiet_updates": plan.follow.quiet_updates,
                 "engine_config": (plan.follow.engine_config.read_text()
                                   if plan.follow.engine_config else None)},
        "follow": follow,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.follow_master",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", type=Path, required=True,
                        help="a master loaded with the feeds but their newest lines (copied)")
    parser.add_argument("--children", type=int, default=1_000_000,
                        help="the benchmark size the master was loaded from")
    parser.add_argument("--cache", type=Path, default=BenchPlan.cache_dir,
                        help="the benchmark's feeds folder (as `python -m benchmarks --cache`)")
    parser.add_argument("--seed", type=int, default=BenchPlan.seed)
    parser.add_argument("--out", type=Path, default=BenchPlan.out_dir, help="results folder")
    parser.add_argument("--engine-python", default=sys.executable,
                        help="the Python whose `engine` is measured (e.g. another checkout's "
                             ".venv/bin/python, to compare two versions on one master)")
    parser.add_argument("--rate", type=int, default=FollowPlan.rate, help="lines/s offered")
    parser.add_argument("--follow-seconds", type=float, default=FollowPlan.seconds)
    parser.add_argument("--engine-config", type=Path, metavar="TOML",
                        help="run the engine with this config (`run --config`), e.g. "
                             "[store] checkpoint_threshold_mb = 16 for checkpoints while it "
                             "follows, as a long session has them")
    parser.add_argument("--quiet-updates", type=int, default=FollowPlan.quiet_updates)
    args = parser.parse_args(argv)
    if not args.master.is_file():
        parser.error(f"no master at {args.master}")
    if args.engine_config is not None and not args.engine_config.is_file():
        parser.error(f"no engine config at {args.engine_config}")
    follow = replace(FollowPlan(), rate=args.rate, seconds=args.follow_seconds,
                     quiet_updates=args.quiet_updates,
                     engine_config=args.engine_config.resolve() if args.engine_config else None)
    plan = replace(BenchPlan(), cache_dir=args.cache, seed=args.seed, out_dir=args.out,
                   follow=follow, python=args.engine_python)
    console = Console(stderr=True)
    result = follow_master(plan, args.children, args.master, console)
    for path in write_json(result, plan.out_dir, "follow"):
        console.print(f"wrote {path}")
    print(json.dumps(result["follow"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
