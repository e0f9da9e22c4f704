"""`contactpoint run`: preflight checks, the dataflow run, and the run's summary from the master."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import duckdb

from engine.config import ConfigError
from engine.dataflow import RunOptions, build_flow, run_flow
from engine.feed_source import StopSignal
from engine.master_store import ENGINE_OPEN_WAIT_S, open_master, registered_feeds, scalar
from engine.resolver import BatchOutcome
from linkage_models.scoring import CompiledModel
from streams.canonical import FEEDS


@dataclass(frozen=True)
class RunSummary:
    """What one run did (DESIGN.md CLI contract: the `run --json` object)."""

    updates: int
    linked: int
    new_children: int
    review: int
    bridge: int
    merged_children: int
    dead_letters: int
    children: int
    seconds: float
    updates_per_second: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def run_engine(
    options: RunOptions,
    stop: StopSignal,
    on_batch: Callable[[BatchOutcome], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> RunSummary | None:
    """Check the inputs, stream the feeds into the master, and summarise what changed.

    In a cluster only the process that owns the master opens it and returns the summary; the
    others return None when the dataflow ends."""
    _preflight(options)
    if not options.owns_master:
        run_flow(build_flow(options, stop, on_batch), options)
        return None
    before = _master_counts(options)
    options = replace(options, registered_feeds=_registered_feeds(options))
    started = time.monotonic()
    run_flow(build_flow(options, stop, on_batch, on_ready), options)
    seconds = time.monotonic() - started
    after = _master_counts(options)
    delta = {key: after[key] - before[key] for key in after}
    return RunSummary(
        updates=delta["updates"],
        linked=delta["link"] + delta["bridge"],
        new_children=delta["new_children"],
        review=delta["review"],
        bridge=delta["bridge"],
        merged_children=delta["merged_children"],
        dead_letters=delta["dead_letters"],
        children=after["children"],
        seconds=round(seconds, 3),
        updates_per_second=round(delta["updates"] / seconds, 1) if seconds else 0.0,
    )


def _preflight(options: RunOptions) -> None:
    """Fail fast, before any work, on inputs the run cannot use (each raises a one-line error)."""
    feeds = options.feeds_dir
    if not feeds.is_dir():
        raise ConfigError(f"feeds folder {feeds} does not exist or is not a folder")
    try:
        next(feeds.iterdir(), None)
    except OSError as err:
        raise ConfigError(f"feeds folder {feeds} cannot be read: {err.strerror}") from err
    CompiledModel.from_json(options.model_path)


def _registered_feeds(options: RunOptions) -> tuple[str, ...]:
    """The accredited feeds, built-in ones first in their reading order."""
    con = open_master(options.db_path, wait_s=ENGINE_OPEN_WAIT_S)
    try:
        registered = registered_feeds(con)
    finally:
        con.close()
    return tuple(f for f in FEEDS if f in registered) + tuple(
        f for f in registered if f not in FEEDS
    )


def _master_counts(options: RunOptions) -> dict[str, int]:
    con = open_master(options.db_path, wait_s=ENGINE_OPEN_WAIT_S)
    try:
        return master_counts(con)
    finally:
        con.close()


def master_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Totals in the master: links by decision, children, merges, dead letters."""
    by_decision = dict(con.execute("SELECT decision, count(*) FROM links GROUP BY ALL").fetchall())
    children = dict(con.execute("SELECT status, count(*) FROM children GROUP BY ALL").fetchall())
    return {
        "updates": sum(by_decision.values()),
        "link": by_decision.get("link", 0),
        "new": by_decision.get("new", 0),
        "review": by_decision.get("review", 0),
        "bridge": by_decision.get("bridge", 0),
        "new_children": sum(children.values()),
        "merged_children": children.get("merged", 0),
        "children": sum(children.values()) - children.get("merged", 0),
        "dead_letters": scalar(con, "SELECT count(*) FROM dead_letters"),
    }
