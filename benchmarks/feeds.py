"""Benchmark inputs: synthetic feeds generated once per size and seed (cached), split into a bulk
part and the newest lines held back for the `--follow` phase, and their canonical snapshot.

    feeds = cached_feeds(cache_dir / "10000", children=10_000, seed=1)
    split = hold_back_newest(feeds.feeds, count=10_000, bulk_out=run_dir / "bulk")
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from streams.canonical import FEEDS
from streams.generator import generate
from streams.snapshot import read_updates

_MARKER = "generated.json"

# (event_time, feed, file name, line index): the order in which lines are held back and appended
LineKey = tuple[str, str, str, int]


@dataclass(frozen=True)
class GeneratedFeeds:
    """A cached synthetic snapshot: DIR/feeds, DIR/truth.csv and how long generating took."""

    folder: Path
    children: int
    seed: int
    lines: int
    generate_seconds: float | None  # None: reused from the cache

    @property
    def feeds(self) -> Path:
        return self.folder / "feeds"

    @property
    def truth(self) -> Path:
        return self.folder / "truth.csv"


@dataclass(frozen=True)
class HeldBackLine:
    """A feed line kept out of the bulk load; `record_id` is None for a line that is not a JSON
    object with a string record_id (a bad line: it never reaches `links`)."""

    feed: str
    record_id: str | None
    text: str  # with its newline


@dataclass(frozen=True)
class FeedSplit:
    """The feeds without their newest lines (`bulk_feeds`) and those lines, oldest first."""

    bulk_feeds: Path
    held_back: list[HeldBackLine]


def cached_feeds(
    folder: Path, children: int, seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> GeneratedFeeds:
    """The synthetic feeds of `children` and `seed` in `folder`, generated unless a complete
    earlier generation of the same children and seed is there."""
    marker = folder / _MARKER
    if marker.is_file():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved["children"] == children and saved["seed"] == seed:
            return GeneratedFeeds(folder, children, seed, saved["lines"], None)
    marker.unlink(missing_ok=True)
    began = time.perf_counter()
    summary = generate(children, seed, folder, progress=progress)
    seconds = round(time.perf_counter() - began, 1)
    marker.write_text(json.dumps({
        "children": children, "seed": seed, "lines": summary.total_records, "seconds": seconds,
    }), encoding="utf-8")
    return GeneratedFeeds(folder, children, seed, summary.total_records, seconds)


def hold_back_newest(feeds: Path, count: int, bulk_out: Path) -> FeedSplit:
    """Copy `feeds` to `bulk_out` without its `count` newest lines (by event_time; lines without
    one stay in the bulk part) and return those lines, oldest first. Files that lose no line
    are hard-linked, not copied."""
    newest = set(heapq.nlargest(count, _line_keys(feeds))) if count > 0 else set()
    files_losing_lines = {(feed, name) for _, feed, name, _ in newest}
    if bulk_out.exists():
        shutil.rmtree(bulk_out)
    held: list[tuple[LineKey, HeldBackLine]] = []
    for feed, path in _feed_files(feeds):
        target = bulk_out / feed / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (feed, path.name) not in files_losing_lines:
            _link_or_copy(path, target)
            continue
        with path.open(encoding="utf-8", errors="surrogateescape") as lines, target.open(
            "w", encoding="utf-8", errors="surrogateescape"
        ) as bulk:
            for index, text in enumerate(lines):
                event_time, record_id = _line_fields(text)
                key = (event_time, feed, path.name, index)
                if key in newest:
                    held.append((key, HeldBackLine(feed, record_id, text)))
                else:
                    bulk.write(text)
    held.sort(key=lambda pair: pair[0])
    return FeedSplit(bulk_out, [line for _, line in held])


def snapshot_records(feeds: Path, out: Path) -> tuple[Path, int]:
    """Every good record of `feeds` in canonical form as a Parquet file `out` (written once;
    the anchors read it) and its row count."""
    if not out.is_file():
        updates = read_updates(feeds).updates
        pq.write_table(updates, out)
    return out, pq.ParquetFile(out).metadata.num_rows


def _line_keys(feeds: Path) -> Iterator[LineKey]:
    for feed, path in _feed_files(feeds):
        with path.open(encoding="utf-8", errors="surrogateescape") as lines:
            for index, text in enumerate(lines):
                yield (_line_fields(text)[0], feed, path.name, index)


def _feed_files(feeds: Path) -> Iterator[tuple[str, Path]]:
    for feed in FEEDS:
        for path in sorted(Path(feeds, feed).glob("*.jsonl")):
            yield feed, path


def _line_fields(text: str) -> tuple[str, str | None]:
    """The line's event_time ('' if it has none) and record_id (None if it has none)."""
    try:
        record = json.loads(text)
    except ValueError:
        return "", None
    if not isinstance(record, dict):
        return "", None
    event_time, record_id = record.get("event_time"), record.get("record_id")
    return (
        event_time if isinstance(event_time, str) else "",
        record_id if isinstance(record_id, str) and record_id else None,
    )


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
