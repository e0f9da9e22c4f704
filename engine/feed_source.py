"""Bytewax input: every feed folder's `*.jsonl` files, read in name order with resumable offsets.

One partition per feed. A partition's state is `{file name: (byte offset, lines read)}`, so a
resumed run continues after the last line it had read. With `follow=True` a partition never ends:
it polls for new lines and new files, and only emits lines terminated by a newline (a line still
being written waits). Without it, a partition ends at the end of its files; a last line without a
newline is then read as a complete line.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

FileOffsets = dict[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class FeedLine:
    """One raw line of a feed file; `file` is relative to the feeds folder, `line` counts from 1."""

    feed: str
    file: str
    line: int
    text: str
    valid_utf8: bool = True


class StopSignal:
    """Set by the CLI on SIGINT/SIGTERM: sources end after their current read, batches flush."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class FeedFilesSource(FixedPartitionedSource[FeedLine, FileOffsets]):
    """Reads `<feeds_dir>/<feed>/*.jsonl` for each feed, one partition per feed."""

    def __init__(
        self,
        feeds_dir: Path,
        feeds: tuple[str, ...],
        *,
        follow: bool,
        lines_per_read: int,
        poll_interval: timedelta,
        stop: StopSignal | None = None,
    ) -> None:
        self.feeds_dir = feeds_dir
        self.feeds = feeds
        self.follow = follow
        self.lines_per_read = lines_per_read
        self.poll_interval = poll_interval
        self.stop = stop or StopSignal()

    def list_parts(self) -> list[str]:
        return list(self.feeds)

    def build_part(
        self, step_id: str, for_part: str, resume_state: FileOffsets | None
    ) -> FeedFilePartition:
        return FeedFilePartition(self, for_part, dict(resume_state or {}))


class FeedFilePartition(StatefulSourcePartition[FeedLine, FileOffsets]):
    """Tails one feed folder; see the module docstring for the reading rules."""

    def __init__(self, source: FeedFilesSource, feed: str, offsets: FileOffsets) -> None:
        self._source = source
        self._feed = feed
        self._offsets = offsets
        self._idle_until: datetime | None = None

    def next_batch(self) -> list[FeedLine]:
        if self._source.stop.is_set():
            raise StopIteration
        lines = self._read_some()
        if lines:
            self._idle_until = None
            return lines
        if not self._source.follow:
            raise StopIteration
        self._idle_until = datetime.now(UTC) + self._source.poll_interval
        return []

    def next_awake(self) -> datetime | None:
        return self._idle_until

    def snapshot(self) -> FileOffsets:
        return dict(self._offsets)

    def _read_some(self) -> list[FeedLine]:
        folder = self._source.feeds_dir / self._feed
        for path in sorted(folder.glob("*.jsonl")):
            lines = self._read_file(path)
            if lines:
                return lines
        return []

    def _read_file(self, path: Path) -> list[FeedLine]:
        name = f"{self._feed}/{path.name}"
        offset, line_no = self._offsets.get(name, (0, 0))
        if path.stat().st_size <= offset:
            return []
        lines: list[FeedLine] = []
        with path.open("rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n") and self._source.follow:
                    break  # still being written: wait for its newline
                offset += len(raw)
                line_no += 1
                lines.append(_feed_line(self._feed, name, line_no, raw))
                if len(lines) >= self._source.lines_per_read:
                    break
        self._offsets[name] = (offset, line_no)
        return lines


def _feed_line(feed: str, file: str, line_no: int, raw: bytes) -> FeedLine:
    raw = raw.rstrip(b"\r\n")
    try:
        return FeedLine(feed, file, line_no, raw.decode("utf-8"))
    except UnicodeDecodeError:
        return FeedLine(feed, file, line_no, raw.decode("utf-8", errors="replace"), False)
