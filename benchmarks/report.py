"""Benchmark results for machines and people: the JSON document, and its markdown tables.

Files in the results folder: `bench-<UTC timestamp>.json` (every run), `latest.json`,
`latest.md` (tables) and, with matplotlib, `throughput.png` and `latency.png` (benchmarks.plots).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import psutil

from benchmarks.engine_bench import TIMED_STAGES, stage_points
from benchmarks.plan import BenchPlan
from benchmarks.projection import measured_sizes, project, projection_markdown
from engine.config import EngineConfig
from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel


def bench_document(
    plan: BenchPlan, sizes: list[dict[str, Any]], started: datetime, seconds: float
) -> dict[str, Any]:
    """The whole run as one JSON-ready dict: machine, versions, model, plan, per-size results
    and, from two measured sizes on, the 11M-children projection (benchmarks.projection)."""
    document = {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 1),
        "machine": machine(),
        "model_version": CompiledModel.from_json(DEFAULT_MODEL_PATH).version,
        "link_threshold": EngineConfig().decision.link_threshold,
        "plan": {
            "seed": plan.seed,
            "skip_anchors": plan.skip_anchors,
            "follow": asdict(plan.follow),
            "anchors": asdict(plan.anchors),
        },
        "sizes": sizes,
    }
    measured = measured_sizes([document])
    if len(measured) >= 2:
        document["projection_11m"] = project(measured)
    return document


def machine() -> dict[str, Any]:
    """Cores, memory, platform, the versions of the libraries under measurement, and how fast
    the machine is right now (`speed_probe`)."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("bytewax", "splink", "duckdb", "pyarrow")},
        "speed_probe": speed_probe(),
    }


def speed_probe(rounds: int = 5) -> dict[str, float]:
    """Seconds for a fixed piece of Python and of DuckDB work, the median of `rounds`: a shared
    machine of the same kind ran the same engine up to twice as slow from one day to the next,
    and results from different runs compare only beside these (`python_s`: `sum(range(10**7))`;
    `duckdb_s`: hashing 50M numbers on one thread). ~1.5 s in all."""
    def timed(work: Callable[[], object]) -> float:
        seconds = []
        for _ in range(rounds):
            began = time.perf_counter()
            work()
            seconds.append(time.perf_counter() - began)
        return round(statistics.median(seconds), 4)

    con = duckdb.connect(config={"threads": 1})
    try:
        return {
            "python_s": timed(lambda: sum(range(10**7))),
            "duckdb_s": timed(lambda: con.execute(
                "SELECT sum(hash(i)) FROM range(50000000) t(i)").fetchall()),
        }
    finally:
        con.close()


def write_json(document: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """`<stem>-<timestamp>.json` and `<stem>-latest.json` ("latest.json" for stem `bench`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = document["started_at"].replace(":", "").replace("-", "")
    text = json.dumps(document, indent=2) + "\n"
    paths = [out_dir / f"{stem}-{stamp}.json",
             out_dir / ("latest.json" if stem == "bench" else f"{stem}-latest.json")]
    for path in paths:
        path.write_text(text, encoding="utf-8")
    return paths


def _speed_line(m: dict[str, Any]) -> str:
    probe = m.get("speed_probe")  # absent from runs before 2026-12-04
    if not probe:
        return ""
    return (f" Speed probe: Python {probe['python_s']:.3f} s, DuckDB {probe['duckdb_s']:.3f} s "
            "(`benchmarks.report.speed_probe`; compare runs beside it).")


def markdown_tables(document: dict[str, Any]) -> str:
    """The engine table and the anchors table (one row per size) with a line on the machine."""
    sizes = document["sizes"]
    m = document["machine"]
    lines = [
        f"Run {document['started_at']} on {m['cpus']} cores, {m['memory_gib']} GiB "
        f"(Python {m['python']}, Splink {m['versions']['splink']}, DuckDB "
        f"{m['versions']['duckdb']}, Bytewax {m['versions']['bytewax']}); model "
        f"`{document['model_version']}`, link threshold {document['link_threshold']}."
        + _speed_line(m),
        "",
        "| children | feed lines | engine bulk updates/s | peak RSS MiB | cost growth | "
        "follow offered → achieved /s | p50 / p95 / p99 ms | precision | recall | F1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        if "failed" in size:
            lines.append(f"| {size['children']:,} | {size['feed_lines']:,} | failed: "
                         f"{_one_line(size['failed'])} |||||||")
            continue
        bulk, follow, acc = (size["engine"][k] for k in ("bulk", "follow", "accuracy"))
        rates = ("failed" if "failed" in follow
                 else f"{follow['offered_rate']:,.0f} → {follow['achieved_rate']:,.0f}")
        lines.append(
            f"| {size['children']:,} | {size['feed_lines']:,} | "
            f"{bulk['updates_per_second']:,.0f} | {bulk['peak_rss_mib']:,.0f} | "
            f"{_num(size['engine']['cost_curve']['growth'], digits=2)} | {rates} | "
            f"{_num(follow.get('p50_ms'))} / {_num(follow.get('p95_ms'))} / "
            f"{_num(follow.get('p99_ms'))} | "
            f"{acc['precision']:.4f} | {acc['recall']:.4f} | {acc['f1']:.4f} |"
        )
    engines = [size for size in sizes if "engine" in size]
    lines += ["", *_quiet_table(engines)]
    if any(stage_points(size) for size in engines):
        lines += ["", *_stage_table(engines)]
    if any("anchor_batch" in size for size in sizes):
        lines += ["", *_anchor_table(sizes)]
    lines += ["", _LEGEND]
    if "projection_11m" in document:
        lines += ["", projection_markdown(document["projection_11m"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


def _quiet_table(sizes: list[dict[str, Any]]) -> list[str]:
    """Per size: single updates on the idle following engine, the fixed cost of a batch and
    the master's size on disk."""
    lines = [
        "| children | quiet single update p50 / p95 / max ms | fixed cost per batch ms "
        "(median, batches ≤ 20 updates) | intercept ms + ms/update | master on disk MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        follow, bulk = size["engine"]["follow"], size["engine"]["bulk"]
        quiet, cost = follow.get("quiet_single_update_ms", {}), follow.get("batch_cost", {})
        disk = bulk.get("master_bytes")
        lines.append(
            f"| {size['children']:,} | {_num(quiet.get('p50'))} / {_num(quiet.get('p95'))} / "
            f"{_num(quiet.get('max'))} | {_num(cost.get('small_batch_median_ms'))} "
            f"({cost.get('small_batches', 0)} batches) | {_num(cost.get('intercept_ms'))} + "
            f"{_num(cost.get('ms_per_update'), digits=2)} | "
            f"{_num(disk / 2**20 if disk else None)} |"
        )
    return lines



def _stage_table(sizes: list[dict[str, Any]]) -> list[str]:
    """Resolver ms per update by stage at the first, a third, two thirds and the last bin of
    each bulk load, and each stage's growth (last quarter ÷ first)."""
    stages = (*TIMED_STAGES, "other")
    lines = [
        "| children | master records | updates / batch | " + " | ".join(stages) + " |",
        "|---:|---:|---:|" + "---:|" * len(stages),
    ]
    for size in sizes:
        points = stage_points(size)
        if not points:
            continue
        picks = sorted({0, len(points) // 3, 2 * len(points) // 3, len(points) - 1})
        for index in picks:
            point = points[index]
            lines.append(
                f"| {size['children']:,} | {point['master_records']:,} | "
                f"{point['updates'] / point['batches']:,.0f} | "
                + " | ".join(f"{point['stages'][s]['ms_per_update']:.3f}" for s in stages)
                + " |")
        growth = size["engine"]["cost_curve"].get("stage_growth") or {}
        lines.append(f"| {size['children']:,} | growth, last ÷ first quarter | | "
                     + " | ".join(_num(growth.get(s), digits=2) for s in stages) + " |")
    return lines


def _anchor_table(sizes: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| children | Splink batch s | batch records/s | batch peak RSS MiB | batch F1 | "
        "Splink incremental records/s | engine ÷ batch (throughput) | "
        "engine ÷ incremental (throughput) | engine ÷ batch (RSS) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        if "anchor_batch" not in size:
            continue
        batch, incremental, ratios = size["anchor_batch"], size["anchor_incremental"], size[
            "ratios"]
        lines.append(
            f"| {size['children']:,} | {_num(batch.get('seconds'), batch, 1)} | "
            f"{_num(batch.get('records_per_second'), batch)} | "
            f"{_num(batch.get('peak_rss_mib'), batch)} | {_num(batch.get('f1'), batch, 4)} | "
            f"{_num(incremental.get('records_per_second'), incremental)} | "
            f"{_num(ratios['bulk_throughput_vs_batch'], digits=2)} | "
            f"{_num(ratios['bulk_throughput_vs_incremental'], digits=2)} | "
            f"{_num(ratios['peak_rss_vs_batch'], digits=2)} |"
        )
    return lines


_LEGEND = (
    "Engine: `contactpoint run --json` into a fresh master (bulk: the feeds "
    "without their newest lines), then `run --follow` with those lines appended at the offered "
    "rate (latency = the line's batch `committed_at` − its append time), then `evaluate` over "
    "all records. Cost growth: resolver seconds per update in the last quarter of the bulk "
    "load ÷ the first quarter (1 = flat). Quiet single update: after the rate phase, single "
    "lines appended one at a time to the idle following engine, append → commit. Fixed cost "
    "per batch: resolver ms (start → commit) of the follow session's batches of at most 20 "
    "updates (median), and the least-squares line of resolver ms against updates per batch. "
    "Stages: resolver ms per update from `batches.stage_ms` (other = the commit and what no "
    "stage covers). Splink batch: `predict` + "
    "`cluster_pairwise_predictions_at_threshold` at the link threshold on the same canonical "
    "records (parsing excluded). Splink incremental: `predict_between` of 1,000-record "
    "batches against the growing master, scoring only (no clustering, decisions or writes; "
    "time estimated from evenly spread sampled batches). Ratios > 1 mean the engine is "
    "faster (throughput) or uses more memory (RSS)."
)


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")[:160]


def _num(value: float | None, anchor: dict[str, Any] | None = None, digits: int = 0) -> str:
    if anchor is not None and "skipped" in anchor:
        return "skipped"
    if value is None:
        return "–"
    return f"{value:,.{digits}f}" if digits or isinstance(value, float) else f"{value:,}"
