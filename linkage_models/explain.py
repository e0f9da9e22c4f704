"""Why a pair scored what it did: a match-weight waterfall from one row of `score_sql`'s
output, rendered as text (terminal) or self-contained HTML (inline-CSS bars, no scripts)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from linkage_models.scoring import CompiledModel


@dataclass(frozen=True)
class WaterfallStep:
    """One bar of the waterfall: what it is, its match weight (log2 Bayes factor) and the
    running total after it."""

    name: str  # "prior", a comparison name, "<comparison> tf", or "final"
    label: str  # level label, or what the step means
    value_l: str | None
    value_r: str | None
    match_weight: float
    cumulative_weight: float

    @property
    def bayes_factor(self) -> float:
        """The step's Bayes factor (2 ** match_weight)."""
        return 2.0**self.match_weight

    @property
    def cumulative_probability(self) -> float:
        """Match probability after this step."""
        return _probability(self.cumulative_weight)


def waterfall(row: Mapping[str, Any], model: CompiledModel) -> list[WaterfallStep]:
    """Waterfall steps of one score row: the prior, then per comparison its level and (when
    non-zero) its term-frequency adjustment, then the final weight and probability."""
    prior = model.probability_two_random_records_match
    total = math.log2(prior / (1 - prior))
    steps = [WaterfallStep("prior", "Two random records are one child", None, None, total, total)]
    for name in model.comparisons:
        gamma = row[f"gamma_{name}"]
        weight = row[f"mw_{name}"]
        total += weight
        steps.append(WaterfallStep(
            name, model.comparison_levels(name)[gamma],
            row.get(f"{name}_l"), row.get(f"{name}_r"), weight, total,
        ))
        tf_weight = row.get(f"mw_tf_adj_{name}") or 0.0
        if tf_weight:
            total += tf_weight
            steps.append(WaterfallStep(
                f"{name} tf", "Term-frequency adjustment",
                None, None, tf_weight, total,
            ))
    final = row["match_weight"]
    steps.append(WaterfallStep("final", "Match weight", None, None, final, final))
    return steps


def render_text(steps: Sequence[WaterfallStep]) -> str:
    """The waterfall as a fixed-width text table (one line per step)."""
    header = f"{'step':<22} {'level':<44} {'left':<14} {'right':<14} {'weight':>8} {'total':>8}"
    lines = [header, "-" * len(header)]
    for s in steps:
        lines.append(
            f"{s.name:<22} {s.label[:44]:<44} {_text(s.value_l):<14} {_text(s.value_r):<14} "
            f"{s.match_weight:>8.2f} {s.cumulative_weight:>8.2f}"
        )
    lines.append(f"match probability {steps[-1].cumulative_probability:.6f}")
    return "\n".join(lines)


def render_html(steps: Sequence[WaterfallStep], title: str) -> str:
    """The waterfall as a self-contained HTML page: a table with an inline-CSS bar per step
    (green for evidence for a match, red against)."""
    scale = max((abs(s.match_weight) for s in steps), default=1.0) or 1.0
    rows = "\n".join(_html_row(s, scale) for s in steps)
    probability = steps[-1].cumulative_probability if steps else float("nan")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family: sans-serif">'
        f"<h1>{html.escape(title)}</h1>"
        '<table style="border-collapse: collapse">'
        "<tr><th>step</th><th>level</th><th>left</th><th>right</th>"
        "<th>weight</th><th>total</th><th></th></tr>"
        f"{rows}</table><p>Match probability: {probability:.6f}</p></body></html>"
    )


def _html_row(step: WaterfallStep, scale: float) -> str:
    """One table row with a bar as wide as the step's weight relative to `scale`."""
    colour = "#2e7d32" if step.match_weight >= 0 else "#c62828"
    width = round(200 * abs(step.match_weight) / scale)
    cells = [
        step.name, step.label, _text(step.value_l), _text(step.value_r),
        f"{step.match_weight:.2f}", f"{step.cumulative_weight:.2f}",
    ]
    tds = "".join(
        f'<td style="padding: 2px 8px; border-bottom: 1px solid #ddd">{html.escape(c)}</td>'
        for c in cells
    )
    bar = f'<div style="width: {width}px; height: 12px; background: {colour}"></div>'
    return f"<tr>{tds}<td>{bar}</td></tr>"


def _text(value: object) -> str:
    """A cell's text: '' for missing values."""
    return "" if value is None else str(value)


def _probability(weight: float) -> float:
    """Match probability of a match weight, stable for large |weight|."""
    if weight >= 0:
        return 1.0 / (1.0 + 2.0**-weight)
    return 2.0**weight / (1.0 + 2.0**weight)
