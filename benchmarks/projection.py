"""`python -m benchmarks.projection RESULT.json [RESULT.json …]`: the 11-million-children
projection from the sizes measured in benchmark result files (`bench-*.json`, `latest.json`;
older files without stage times, master bytes or quiet updates are read too: what they lack is
left out of the fits). A size given twice is taken from the later file.

Writes `projection-<time>.json`, `projection-latest.json` and `projection-latest.md` into
`--out` (default benchmarks/results) and prints the table. It is a projection, not a
measurement: every figure says the fit and the measured sizes it comes from.

    bulk seconds   ∫₀ᴿ c(r) dr, c(r) = a + b·r the end-to-end seconds per update of the bulk
                   loads' cost-curve bins against records in the master (least squares weighted
                   by updates, all sizes pooled; a falling fit is held flat at the cost of the
                   largest master's last quarter), scaled so that it reproduces the largest
                   measured load; R = 11M × records per child measured
    RSS, disk, follow p99, quiet-update p50, fixed cost per batch
                   least-squares line against children through the measured sizes (a falling
                   line is held at the largest size's value), and for comparison a power law
                   c·childrenᵏ fitted on logarithms
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.plan import RESULTS_DIR

TARGET_CHILDREN = 11_000_000
GIB_MIB = 1024
_LINEAR = "least-squares line against children"


def measured_sizes(documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-size results that have an engine measurement, by children (later wins)."""
    by_children: dict[int, dict[str, Any]] = {}
    for document in documents:
        for size in document.get("sizes", []):
            if "engine" in size:
                by_children[size["children"]] = size
    return [by_children[children] for children in sorted(by_children)]


def project(sizes: Sequence[dict[str, Any]], children: int = TARGET_CHILDREN) -> dict[str, Any]:
    """The projection to `children` from at least two measured sizes (ValueError otherwise)."""
    if len(sizes) < 2:
        raise ValueError(f"a projection needs at least two measured sizes, got {len(sizes)}")
    records_per_child = _records_per_child(sizes[-1])

    def linear(value_of) -> dict[str, Any]:
        return _linear_in_children(sizes, value_of, children)

    return {
        "kind": "projection: extrapolated from measured sizes, not measured",
        "children": children,
        "from_sizes": [size["children"] for size in sizes],
        "records_per_child": round(records_per_child, 3),
        "master_records": round(children * records_per_child),
        "bulk_seconds": _bulk_seconds(sizes, children * records_per_child),
        "peak_rss_mib": linear(_peak_rss_mib),
        "master_bytes": linear(lambda size: size["engine"]["bulk"].get("master_bytes")),
        "follow_p99_ms": linear(lambda size: _follow(size).get("p99_ms")),
        "quiet_single_update_p50_ms": linear(
            lambda size: _follow(size).get("quiet_single_update_ms", {}).get("p50")),
        "batch_fixed_ms": linear(
            lambda size: _follow(size).get("batch_cost", {}).get("small_batch_median_ms")),
        "targets": _targets(sizes),
    }


def _records_per_child(size: dict[str, Any]) -> float:
    """Records per child of a size's feeds: its bulk load's updates, scaled up by the share of
    the feed lines held back from it for the `--follow` phase."""
    follow = _follow(size)
    held = follow.get("appended", 0) + follow.get("quiet_single_update_ms", {}).get("appended", 0)
    bulk_share = (size["feed_lines"] - held) / size["feed_lines"]
    return size["engine"]["bulk"]["updates"] / bulk_share / size["children"]


def _follow(size: dict[str, Any]) -> dict[str, Any]:
    return size["engine"].get("follow", {})


def _peak_rss_mib(size: dict[str, Any]) -> float:
    """The higher of the bulk load's and the `--follow` session's peak RSS."""
    return max(size["engine"]["bulk"]["peak_rss_mib"], _follow(size).get("peak_rss_mib") or 0)


def _linear_in_children(sizes: Sequence[dict[str, Any]], value_of, children: int
                        ) -> dict[str, Any]:
    points = [(size["children"], value) for size in sizes
              if (value := value_of(size)) is not None]
    if len(points) < 2:
        return {"value": None, "why": "measured at fewer than two sizes"}
    intercept, slope = _least_squares(points)
    held_flat = slope < 0  # a falling line would project below zero: no growth assumed instead
    figure = {
        "value": round(points[-1][1] if held_flat else intercept + slope * children, 1),
        "fit": _LINEAR + (", falling: held at the largest size's value" if held_flat else ""),
        "intercept": round(intercept, 3),
        "per_child": round(slope, 9),
        "measured": [{"children": x, "value": y} for x, y in points],
    }
    if all(y > 0 for _, y in points):  # the other reading of the same points: y = c·childrenᵏ
        log_c, exponent = _least_squares([(math.log(x), math.log(y)) for x, y in points])
        figure["power_law"] = {"value": round(math.exp(log_c) * children ** exponent, 1),
                               "exponent": round(exponent, 3)}
    return figure


def _bulk_seconds(sizes: Sequence[dict[str, Any]], records: float) -> dict[str, Any]:
    """Seconds to bulk-load `records` into a fresh master, integrating the fitted end-to-end
    cost per update from the pooled cost-curve bins of every size."""
    bins = [(p["master_records"], 1 / p["updates_per_second"], p["updates"])
            for size in sizes for p in size["engine"]["cost_curve"]["points"]
            if p.get("updates_per_second")]
    intercept, slope = _least_squares([(x, y) for x, y, _ in bins], [w for *_, w in bins])
    held_flat = slope < 0
    if held_flat:
        intercept, slope = _last_quarter_cost(sizes[-1]), 0.0

    def integral(r: float) -> float:
        return intercept * r + slope * r * r / 2

    check = [{"children": size["children"], "measured_s": size["engine"]["bulk"]["seconds"],
              "fitted_s": round(integral(size["engine"]["bulk"]["updates"]), 1)}
             for size in sizes]
    # the batches' intervals leave out the time before the first batch and after the last:
    # scale so that the fit reproduces the largest measured load as a whole
    calibration = check[-1]["measured_s"] / check[-1]["fitted_s"] if check[-1]["fitted_s"] else 1
    return {
        "value": round(integral(records) * calibration),
        "fit": ("seconds per update = a + b × master records, least squares weighted by "
                "updates over the cost-curve bins of all sizes, integrated from 0 to the "
                "projected records" + ("; the fitted slope was negative, so the cost is held "
                                       "flat at the largest master's last quarter"
                                       if held_flat else "")
                + f"; × {calibration:.2f}, the largest load's measured ÷ fitted seconds"),
        "a_ms_per_update": round(intercept * 1000, 4),
        "b_ms_per_update_per_million_records": round(slope * 1e9, 4),
        "calibration": round(calibration, 3),
        "check": check,
    }


def _last_quarter_cost(size: dict[str, Any]) -> float:
    """End-to-end seconds per update over the last quarter of a size's bulk load."""
    points = [p for p in size["engine"]["cost_curve"]["points"] if p.get("updates_per_second")]
    last = points[len(points) * 3 // 4:]
    return sum(p["updates"] / p["updates_per_second"] for p in last) / sum(
        p["updates"] for p in last)


def _least_squares(points: Sequence[tuple[float, float]],
                   weights: Sequence[float] | None = None) -> tuple[float, float]:
    """(intercept, slope) of the weighted least-squares line through `points`."""
    weights = weights or [1.0] * len(points)
    total = sum(weights)
    mean_x = sum(w * x for (x, _), w in zip(points, weights, strict=True)) / total
    mean_y = sum(w * y for (_, y), w in zip(points, weights, strict=True)) / total
    spread = sum(w * (x - mean_x) ** 2 for (x, _), w in zip(points, weights, strict=True))
    if not spread:
        return mean_y, 0.0
    slope = sum(w * (x - mean_x) * (y - mean_y)
                for (x, y), w in zip(points, weights, strict=True)) / spread
    return mean_y - slope * mean_x, slope


def _targets(sizes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Issue #12's measured targets, where the sizes allow: quiet-update p50 per size and the
    fixed cost per batch of the largest size ÷ the smallest."""
    quiet = {str(size["children"]): p50 for size in sizes
             if (p50 := _follow(size).get("quiet_single_update_ms", {}).get("p50")) is not None}
    fixed = [(size["children"], ms) for size in sizes
             if (ms := _follow(size).get("batch_cost", {}).get("small_batch_median_ms"))]
    ratio = None
    if len(fixed) >= 2:
        (small, small_ms), (large, large_ms) = fixed[0], fixed[-1]
        ratio = {"children": [small, large], "ratio": round(large_ms / small_ms, 2)}
    return {"quiet_single_update_p50_ms_by_children": quiet, "batch_fixed_cost_ratio": ratio}


def projection_markdown(projection: dict[str, Any]) -> str:
    """The projection as a markdown table, labelled as a projection."""
    sizes = ", ".join(f"{c:,}" for c in projection["from_sizes"])
    rows = [
        ("bulk load into a fresh master", projection["bulk_seconds"], _duration),
        ("peak RSS", projection["peak_rss_mib"], lambda v: f"{v / GIB_MIB:,.1f} GiB"),
        ("master on disk", projection["master_bytes"], lambda v: f"{v / 2**30:,.1f} GiB"),
        ("--follow p99 (append → commit)", projection["follow_p99_ms"], _ms),
        ("single update on a quiet master, p50", projection["quiet_single_update_p50_ms"], _ms),
        ("fixed cost per batch", projection["batch_fixed_ms"], _ms),
    ]
    lines = [
        f"**Projection to {projection['children']:,} children** ({projection['master_records']:,}"
        f" records at {projection['records_per_child']} records per child) from the measured "
        f"sizes {sizes} — extrapolated, not measured:",
        "",
        "| quantity | projected | fit | power law c·childrenᵏ instead |",
        "|---|---:|---|---:|",
    ]
    for name, figure, show in rows:
        value = figure["value"]
        power = figure.get("power_law")
        lines.append(f"| {name} | {show(value) if value is not None else '–'} | "
                     f"{figure.get('fit', figure.get('why'))} | "
                     + (f"{show(power['value'])} (k = {power['exponent']})" if power else "")
                     + " |")
    checks = "; ".join(f"{c['children']:,} children {c['fitted_s']:,.0f} s fitted, "
                       f"{c['measured_s']:,.0f} s measured"
                       for c in projection["bulk_seconds"]["check"])
    lines += ["", f"Bulk-time fit against the measured loads: {checks}."]
    targets = projection["targets"]
    quiet = targets["quiet_single_update_p50_ms_by_children"]
    if quiet:
        measured = ", ".join(f"{int(c):,} children {ms:,.0f} ms" for c, ms in quiet.items())
        lines += ["", f"Single update on a quiet master, p50 measured: {measured} "
                      "(target ≤ 100 ms)."]
    if targets["batch_fixed_cost_ratio"]:
        ratio = targets["batch_fixed_cost_ratio"]
        large, small = (f"{c:,}" for c in reversed(ratio["children"]))
        lines += ["", f"Fixed cost per batch at {large} ÷ at {small} children: "
                      f"{ratio['ratio']} (target ≤ 1.25 for 3M ÷ 100k)."]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h ({seconds:,.0f} s)"


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.projection",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench result JSON files")
    parser.add_argument("--children", type=int, default=TARGET_CHILDREN,
                        help="project to this many children (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    args = parser.parse_args(argv)
    try:
        documents = [json.loads(path.read_text(encoding="utf-8")) for path in args.results]
        projection = project(measured_sizes(documents), args.children)
    except (OSError, ValueError) as err:
        print(f"projection: {err}", file=sys.stderr)
        return 2
    projection["results"] = [str(path) for path in args.results]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(projection, indent=2) + "\n"
    table = projection_markdown(projection)
    for path in (args.out / f"projection-{stamp}.json", args.out / "projection-latest.json"):
        path.write_text(text, encoding="utf-8")
    (args.out / "projection-latest.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
