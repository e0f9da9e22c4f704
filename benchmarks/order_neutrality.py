"""Sequence neutrality: the same synthetic feeds in several arrival orders and batch sizes.

Each order writes every feed's lines, shuffled, into one file whose name puts the feeds in
another reading order; each (order, batch size) is a `contactpoint run` into a fresh master and an
`evaluate`. Agreement between two runs is the pairwise F1 of one run's children against the
other's, over the records neither run queued for review. Writes
`benchmarks/results/order-neutrality-latest.json`.

    python -m benchmarks.order_neutrality --children 20000 --orders 5 --batch-sizes 100,1000,20000
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.engine_bench import bulk_load, evaluate
from streams.canonical import FEEDS

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.order_neutrality",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--orders", type=int, default=5)
    parser.add_argument("--batch-sizes", default="100,1000,20000")
    parser.add_argument("--work", type=Path, default=Path("data/bench/order-neutrality"))
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    result = measure(args.children, args.seed, args.orders, sizes, args.work, args.timeout)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "order-neutrality-latest.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    return 0


def measure(children: int, seed: int, orders: int, sizes: list[int], work: Path,
            timeout: float) -> dict[str, Any]:
    generated = _generated(children, seed, work)
    runs = []
    for order in range(orders):
        feeds = write_order(generated / "feeds", work / f"order-{order}" / "feeds", order)
        for size in sizes:
            runs.append(_run(feeds, work / f"order-{order}", order, size, generated, timeout))
            print(json.dumps(runs[-1]), file=sys.stderr)
    agreements = [
        {"a": a["name"], "b": b["name"], "f1": agreement(Path(a["db"]), Path(b["db"]))}
        for a, b in itertools.combinations(runs, 2)
    ]
    return {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "children": children, "seed": seed,
        "runs": runs, "agreements": agreements,
        "summary": {
            "runs": len(runs),
            "min_agreement": min((a["f1"] for a in agreements), default=1.0),
            "min_precision": min(r["precision"] for r in runs),
            "min_recall": min(r["recall"] for r in runs),
            "max_multiple_birth_merges": max(r["multiple_birth_merges"] or 0 for r in runs),
            "max_review_share": max(r["review_share"] for r in runs),
        },
    }


def write_order(source: Path, target: Path, order: int) -> Path:
    """Every feed's lines shuffled (seed `order`) into one file per feed, the files named so
    that the feeds are read in a rotated order; order 0 keeps the generated order of lines."""
    rng = random.Random(order)
    target.mkdir(parents=True, exist_ok=True)
    rotation = FEEDS[order % len(FEEDS):] + FEEDS[:order % len(FEEDS)]
    for rank, feed in enumerate(rotation):
        lines = [line for path in sorted((source / feed).glob("*.jsonl"))
                 for line in path.read_text(encoding="utf-8").splitlines()]
        if order:
            rng.shuffle(lines)
        folder = target / feed
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.jsonl"):
            old.unlink()
        (folder / f"{rank}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def agreement(a: Path, b: Path) -> float:
    """Pairwise F1 of the children of master `a` against master `b`, review items left out."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
        con.execute("""
            CREATE TEMP TABLE both_runs AS
            SELECT la.child_id AS ca, lb.child_id AS cb
            FROM a.links la JOIN b.links lb USING (feed, record_id)
            WHERE la.decision <> 'review' AND lb.decision <> 'review'
        """)
        pairs = "sum(n * (n - 1) / 2)"
        in_a, in_b, common = con.execute(f"""
            SELECT (SELECT {pairs} FROM (SELECT count(*) AS n FROM both_runs GROUP BY ca)),
                   (SELECT {pairs} FROM (SELECT count(*) AS n FROM both_runs GROUP BY cb)),
                   (SELECT {pairs} FROM (SELECT count(*) AS n FROM both_runs GROUP BY ca, cb))
        """).fetchone()
    finally:
        con.close()
    return round(2 * common / (in_a + in_b), 6) if in_a + in_b else 1.0


def _generated(children: int, seed: int, work: Path) -> Path:
    from streams.generator import generate

    folder = work / f"generated-{children}-{seed}"
    if not (folder / "truth.csv").exists():
        generate(children, seed, folder)
    return folder


def _run(feeds: Path, folder: Path, order: int, size: int, generated: Path,
         timeout: float) -> dict[str, Any]:
    config = folder / f"batch-{size}.toml"
    config.write_text(f"[batch]\nmax_records = {size}\n", encoding="utf-8")
    db = folder / f"master-{size}.duckdb"
    python = sys.executable
    started = time.monotonic()
    summary = bulk_load(python, feeds, db, folder / f"run-{size}.log", timeout,
                        extra=["--config", str(config)])
    scores = evaluate(python, db, generated / "truth.csv", folder / f"evaluate-{size}.log",
                      timeout)
    return {
        "name": f"order{order}-batch{size}", "db": str(db), "order": order, "batch_size": size,
        "seconds": round(time.monotonic() - started, 1),
        "updates_per_second": summary["updates_per_second"],
        "review": summary["review"], "children": summary["children"],
        "review_share": round(summary["review"] / max(summary["children"], 1), 5),
        **{k: scores.get(k) for k in ("precision", "recall", "f1", "false_merges",
                                       "multiple_birth_merges")},
    }


if __name__ == "__main__":
    sys.exit(main())
