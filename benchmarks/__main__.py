"""`python -m benchmarks --sizes 10000,100000`: the engine against Splink batch and incremental on
synthetic feeds (generated once per size under data/bench/<size>/), same run, same machine.

Writes benchmarks/results/bench-<timestamp>.json, latest.json, latest.md (markdown tables, with
the 11M-children projection from two sizes on: benchmarks.projection) and throughput.png,
latency.png, stages.png (with matplotlib). See benchmarks/plan.py for every default.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from benchmarks.plan import BenchPlan, FollowPlan
from benchmarks.plots import write_plots
from benchmarks.report import bench_document, markdown_tables, write_json
from benchmarks.suite import bench_size


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    plan = _plan(parser, parser.parse_args(argv))
    console = Console(stderr=True)
    started = datetime.now(UTC)
    began = time.perf_counter()
    sizes = [bench_size(plan, children, console) for children in plan.sizes]
    document = bench_document(plan, sizes, started, time.perf_counter() - began)
    written = write_json(document, plan.out_dir, "bench")
    table = markdown_tables(document)
    (plan.out_dir / "latest.md").write_text(table, encoding="utf-8")
    plots, skipped = write_plots(document, plan.out_dir)
    console.rule(f"done in {document['seconds']:,.0f} s")
    if skipped:
        console.print(f"[yellow]{skipped}")
    for path in (*written, plan.out_dir / "latest.md", *plots):
        console.print(f"  wrote {path}")
    print(table)
    return 0


def _parser() -> argparse.ArgumentParser:
    defaults = BenchPlan()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in defaults.sizes),
                        help="children per size, comma separated (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--skip-anchors", action="store_true", help="measure the engine only")
    parser.add_argument("--out", type=Path, default=defaults.out_dir, help="results folder")
    parser.add_argument("--cache", type=Path, default=defaults.cache_dir,
                        help="generated feeds and run files (default %(default)s)")
    parser.add_argument("--rate", type=int, default=defaults.follow.rate,
                        help="--follow offered rate, lines/s (default %(default)s)")
    parser.add_argument("--follow-seconds", type=float, default=defaults.follow.seconds,
                        help="--follow phase length at most (default %(default)s)")
    parser.add_argument("--quiet-updates", type=int, default=defaults.follow.quiet_updates,
                        help="single lines appended one at a time to the idle engine after "
                             "the --follow phase (default %(default)s)")
    parser.add_argument("--engine-timeout", type=float, default=defaults.engine_timeout_s,
                        metavar="SECONDS", help="longest a bulk load may run before it is "
                        "stopped (default %(default)s)")
    parser.add_argument("--evaluate-timeout", type=float, default=defaults.evaluate_timeout_s,
                        metavar="SECONDS", help="longest `evaluate` may run (default %(default)s)")
    return parser


def _plan(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BenchPlan:
    """The plan of the command line (exit status 2 on a bad value)."""
    try:
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 1:
        parser.error("--sizes: at least one size, each at least 1")
    if args.quiet_updates < 0:
        parser.error("--quiet-updates: at least 0")
    if min(args.engine_timeout, args.evaluate_timeout) <= 0:
        parser.error("--engine-timeout and --evaluate-timeout: more than 0 seconds")
    return BenchPlan(
        sizes=sizes, seed=args.seed, cache_dir=args.cache, out_dir=args.out,
        skip_anchors=args.skip_anchors,
        engine_timeout_s=args.engine_timeout, evaluate_timeout_s=args.evaluate_timeout,
        follow=replace(FollowPlan(), rate=args.rate, seconds=args.follow_seconds,
                       quiet_updates=args.quiet_updates),
    )


if __name__ == "__main__":
    sys.exit(main())
