"""Offline HTML pages of Vega-Lite charts: the chart libraries are inlined once per page, so
a page opens with no network."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from splink.internals.html_utils import json_for_html, load_chart_libraries

ChartSection = tuple[str, dict[str, Any]]  # (heading, Vega-Lite spec)


def offline_charts_html(title: str, sections: Sequence[ChartSection], intro: str = "") -> str:
    """A self-contained HTML page: `title`, an optional `intro` paragraph, then each
    section's heading and chart."""
    libraries = "\n".join(
        f"<script>{source}</script>" for source in load_chart_libraries().values()
    )
    body = "\n".join(
        _chart_section(index, heading, spec) for index, (heading, spec) in enumerate(sections)
    )
    intro_html = f"<p>{html.escape(intro)}</p>" if intro else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>{libraries}</head>"
        f'<body style="font-family: sans-serif"><h1>{html.escape(title)}</h1>'
        f"{intro_html}{body}</body></html>"
    )


def _chart_section(index: int, heading: str, spec: dict[str, Any]) -> str:
    """One heading and the div + script that draw `spec` into it."""
    div = f"chart-{index}"
    return (
        f"<h2>{html.escape(heading)}</h2><div id=\"{div}\"></div>"
        f"<script>vegaEmbed('#{div}', {json_for_html(spec)}, {{}});</script>"
    )
