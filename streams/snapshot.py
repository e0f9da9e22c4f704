"""Snapshot loader: every good record of a feeds folder as one Arrow table (for training and
benchmarks; the streaming engine reads feeds line by line instead)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from streams.adapters import parse_line
from streams.canonical import FEEDS, UPDATE_SCHEMA, BadRecord, Update, updates_to_arrow
from streams.declared import declared_feeds, parse_declared_line

LineParser = Callable[[str, str], Update]


@dataclass(frozen=True)
class SnapshotRead:
    """What `read_updates` found: the good records, and how many lines and files it read."""

    updates: pa.Table
    bad_lines: int
    files: int


def read_updates(feeds_dir: Path, feeds: Sequence[str] | None = None) -> SnapshotRead:
    """Every good record of every *.jsonl under feeds_dir/<feed>/ (files in name order) as one Arrow
    table with UPDATE_SCHEMA (+ nothing else), plus the count of bad lines. Used by `train` and by
    benchmarks — not by the streaming engine.

    `feeds` defaults to the national feeds then the declared feeds of the folder (those with a
    `feed.toml`, read with `parse_declared_line`). A line that is not valid UTF-8 counts as bad,
    like any line the adapter rejects (empty lines included). A feed with no folder contributes
    nothing.
    """
    declared = declared_feeds(Path(feeds_dir))
    tables = [UPDATE_SCHEMA.empty_table()]
    bad_lines = 0
    files = 0
    with _cyclic_gc_paused():
        for feed in (*FEEDS, *declared) if feeds is None else feeds:
            parser = parse_declared_line if feed in declared else parse_line
            for path in sorted(p for p in Path(feeds_dir, feed).glob("*.jsonl") if p.is_file()):
                updates, bad = _read_feed_file(feed, path, parser)
                tables.append(updates_to_arrow(updates))
                bad_lines += bad
                files += 1
    return SnapshotRead(updates=pa.concat_tables(tables), bad_lines=bad_lines, files=files)


def _read_feed_file(feed: str, path: Path, parser: LineParser) -> tuple[list[Update], int]:
    """The good updates of one feed file (lines parsed by `parser`), and its number of bad lines."""
    updates: list[Update] = []
    bad_lines = 0
    with path.open("rb") as lines:
        for raw in lines:
            try:
                updates.append(parser(feed, raw.decode("utf-8")))
            except (UnicodeDecodeError, BadRecord):
                bad_lines += 1
    return updates, bad_lines


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: millions of live, acyclic updates make its full
    passes cost a quarter of the load time and free nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
