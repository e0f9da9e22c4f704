"""Benchmark of the synthetic feed generator: wall time, peak memory and records per feed.

    .venv/bin/python -m benchmarks.bench_generate --children 100000 [--seed 1] [--out DIR]

writes `benchmarks/results/generate-<N>.json`. The target (issue "Synthetic England"): 1,000,000
children with all their feed records in <= 10 minutes and <= 4 GiB peak RSS on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from streams.generator import generate

RESULTS = Path(__file__).resolve().parent / "results"


def bench_generate(children: int, seed: int, out: Path) -> dict[str, object]:
    """Generates `children` children into `out` and measures the run."""
    began = time.perf_counter()
    summary = generate(children, seed, out)
    seconds = time.perf_counter() - began
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    feed_bytes = sum(p.stat().st_size for p in (out / "feeds").rglob("*.jsonl"))
    return {
        "children": children,
        "seed": seed,
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak_kib / 1024),
        "records": summary.records,
        "total_records": summary.total_records,
        "records_per_second": round(summary.total_records / seconds),
        "feed_mib": round(feed_bytes / 2**20),
        "persons": summary.persons,
        "twin_sets": summary.twin_sets,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-generate-"))
    try:
        result = bench_generate(args.children, args.seed, out)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"generate-{args.children}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
