"""PNG plots of a benchmark document: `throughput.png`, `latency.png` and `stages.png` (resolver
ms per update by stage) against master size.

matplotlib is optional (not a runtime dependency of the engine): without it `write_plots`
returns no paths and says how to get them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.engine_bench import stage_points

PLOTS_MISSING = "plots skipped: matplotlib is not installed (.venv/bin/pip install matplotlib)"


def write_plots(document: dict[str, Any], out_dir: Path) -> tuple[list[Path], str | None]:
    """Write both plots into `out_dir`; returns their paths and, if skipped, why."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], PLOTS_MISSING
    measured = [size for size in document["sizes"] if "engine" in size]
    followed = [size for size in measured if "failed" not in size["engine"]["follow"]]
    paths = [_throughput(plt, measured, out_dir / "throughput.png"),
             _latency(plt, followed, out_dir / "latency.png")]
    staged = [size for size in measured if stage_points(size)]
    if staged:
        paths.append(_stages(plt, staged, out_dir / "stages.png"))
    return paths, None


def _throughput(plt, sizes: list[dict[str, Any]], path: Path) -> Path:
    """Left: updates/s per bin of the bulk load against records in the master (engine) and
    records/s of sampled predict_between batches (Splink incremental). Right: overall
    throughput against children, engine vs both anchors."""
    figure, (curves, overall) = plt.subplots(1, 2, figsize=(13, 5))
    for size in sizes:
        label = f"{size['children']:,} children"
        points = size["engine"]["cost_curve"]["points"]
        line, = curves.plot([p["master_records"] for p in points],
                            [p["updates_per_second"] for p in points], marker="o", ms=3,
                            label=f"engine, {label}")
        incremental = size.get("anchor_incremental", {}).get("curve")
        if incremental:
            curves.plot([p["master_records"] for p in incremental],
                        [p["records_per_second"] for p in incremental], ls="--",
                        color=line.get_color(), label=f"Splink predict_between, {label}")
    curves.set(xlabel="records in the master", ylabel="records (updates) per second",
               title="Per-update cost as the master grows")
    curves.set_ylim(bottom=0)
    curves.legend(fontsize=8)
    children = [size["children"] for size in sizes]
    series = {
        "engine bulk load": [s["engine"]["bulk"]["updates_per_second"] for s in sizes],
        "Splink batch (predict + cluster)": [
            s.get("anchor_batch", {}).get("records_per_second") for s in sizes],
        "Splink incremental (predict_between)": [
            s.get("anchor_incremental", {}).get("records_per_second") for s in sizes],
    }
    for name, values in series.items():
        known = [(c, v) for c, v in zip(children, values, strict=True) if v]
        if known:
            overall.plot(*zip(*known, strict=True), marker="o", label=name)
    overall.set(xlabel="children", ylabel="records per second", xscale="log",
                title="Throughput by size (same run, same machine)")
    overall.set_ylim(bottom=0)
    overall.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _latency(plt, sizes: list[dict[str, Any]], path: Path) -> Path:
    """Left: p50/p95/p99 append→commit latency against records in the master. Right: p99 per
    second of the `--follow` phase (a rising line means the engine fell behind)."""
    figure, (by_size, over_time) = plt.subplots(1, 2, figsize=(13, 5))
    masters = [size["engine"]["bulk"]["updates"] for size in sizes]
    for name in ("p50", "p95", "p99"):
        values = [size["engine"]["follow"][f"{name}_ms"] for size in sizes]
        by_size.plot(masters, values, marker="o", label=name)
    by_size.set(xlabel="records in the master", ylabel="append → commit latency (ms)",
                xscale="log", title="run --follow latency at the offered rate")
    by_size.set_ylim(bottom=0)
    by_size.legend()
    for size in sizes:
        follow = size["engine"]["follow"]
        seconds = follow["p99_by_second"]
        over_time.plot([p["second"] for p in seconds], [p["p99_ms"] for p in seconds],
                       label=f"{size['children']:,} children, {follow['offered_rate']:,.0f}/s")
    over_time.set(xlabel="second of the follow phase", ylabel="p99 latency (ms)",
                  title="p99 over the follow phase")
    over_time.set_ylim(bottom=0)
    over_time.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path



def _stages(plt, sizes: list[dict[str, Any]], path: Path) -> Path:
    """Resolver ms per update of each stage against records in the master: one colour per
    stage, one line style per size (which stage grows with the master)."""
    figure, axes = plt.subplots(figsize=(9, 5.5))
    styles = ("-", "--", ":", "-.")
    colours = {}
    for index, size in enumerate(sizes):
        points = stage_points(size)
        for stage in points[0]["stages"]:
            line, = axes.plot([p["master_records"] for p in points],
                              [p["stages"][stage]["ms_per_update"] for p in points],
                              ls=styles[index % len(styles)], marker="o", ms=2,
                              color=colours.get(stage),
                              label=f"{stage}, {size['children']:,} children")
            colours.setdefault(stage, line.get_color())
    axes.set(xlabel="records in the master", ylabel="resolver ms per update",
             title="Per-stage cost as the master grows (bulk load)")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
