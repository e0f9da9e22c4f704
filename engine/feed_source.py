"""Bytewax input: every feed folder's `*.jsonl` files as one deterministic stream of lines.

Feed files are rotated per period (`gro/2009-01.jsonl`, `nhs/2009-01.jsonl`, …), so the source
reads period by period across the feeds — all of `2009-01` (gro, dwp, nhs, census, then any other
folder), then `2009-02` — which keeps the stream close to event-time order across feeds. It is one
partition with state `{file: (byte offset, lines read)}`: the same files always give the same
sequence of lines. It starts at the positions the master holds (`start`, engine.feed_positions),
never at a state Bytewax kept: each chunk carries its end position through the stream to the batch
that commits its lines, so a resumed run continues after the last line the master applied.

Every sub-folder of the feeds folder is read: lines of a folder that is not a registered feed still
flow (the parse step sends them to dead letters as an unregistered source). With `follow=True` the
source never ends: it polls for new lines and files, and only emits lines terminated by a newline (a
line still being written waits); given a `watch_interval`, it reads the files as soon as the kernel
says one changed (engine.feed_watch), looking that often, and every `poll_interval` regardless.
Without `follow`, the source ends at the end of the files, and a last line without a newline is
read as a complete line.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from engine.feed_positions import FeedPosition, FileOffsets, FollowStarted
from engine.feed_watch import FeedWatch

FEEDS_PARTITION = "feeds"


@dataclass(frozen=True, slots=True)
class FeedLine:
    """One raw line of a feed file; `file` is relative to the feeds folder, `line` counts from 1."""

    feed: str
    file: str
    line: int
    text: str
    valid_utf8: bool = True


class StopSignal:
    """Set by the CLI on SIGINT/SIGTERM: the source ends after its current read, batches flush."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True, slots=True)
class FeedChunk:
    """Consecutive lines of one file (one read of it) and the file's position just after them.

    The source emits chunks rather than lines so that the dataflow pays its per-item overhead
    once per chunk, not once per line."""

    lines: list[FeedLine]
    end: FeedPosition


class FeedFilesSource(FixedPartitionedSource[FeedChunk | FollowStarted, FileOffsets]):
    """Reads `<feeds_dir>/*/*.jsonl`, the given feeds first (in their order) within each period,
    from the positions `start` on. Following, its first item is `FollowStarted`.

    A chunk ends at every `chunk_boundary`-th line read since the run started (the batch size;
    None: no such boundary):
    a full batch then ends with the position of its last line, so a run resumed there reads the
    very lines that followed, and cuts its batches where the interrupted run would have."""

    def __init__(
        self,
        feeds_dir: Path,
        feeds: tuple[str, ...],
        *,
        follow: bool,
        lines_per_read: int,
        poll_interval: timedelta,
        stop: StopSignal | None = None,
        offered: bool = True,
        start: FileOffsets | None = None,
        chunk_boundary: int | None = None,
        watch_interval: timedelta | None = None,
    ) -> None:
        self.feeds_dir = feeds_dir
        self.watch_interval = watch_interval
        self.start = dict(start or {})
        self.chunk_boundary = chunk_boundary
        self.offered = offered
        self.feeds = feeds
        self.follow = follow
        self.lines_per_read = lines_per_read
        self.poll_interval = poll_interval
        self.stop = stop or StopSignal()

    def list_parts(self) -> list[str]:
        """The one partition, offered by the process that writes the master (`offered`)."""
        return [FEEDS_PARTITION] if self.offered else []

    def build_part(
        self, step_id: str, for_part: str, resume_state: FileOffsets | None
    ) -> FeedFilesPartition:
        """Reads from the master's positions (`start`); a `resume_state` is not trusted: it may
        come from another master, or from later than the master (which would skip lines)."""
        watch = FeedWatch(self.feeds_dir) if self.follow and self.watch_interval else None
        return FeedFilesPartition(self, dict(self.start), watch)

    def files_in_order(self) -> list[tuple[str, Path]]:
        """(feed, path) of every feed file, in the order they are read (`feed_files_in_order`)."""
        return feed_files_in_order(self.feeds_dir, self.feeds)


class FeedFilesPartition(StatefulSourcePartition[FeedChunk | FollowStarted, FileOffsets]):
    """Tails the feed files; see the module docstring for the reading rules."""

    def __init__(self, source: FeedFilesSource, offsets: FileOffsets,
                 watch: FeedWatch | None = None) -> None:
        self._source = source
        self._offsets = offsets
        self._watch = watch if watch is not None and watch.active else None
        self._lines_read = 0
        self._idle_until: datetime | None = None
        self._next_poll = datetime.now(UTC)  # following: the files are read by then at latest
        self._started = not source.follow

    def next_batch(self) -> list[FeedChunk | FollowStarted]:
        if self._source.stop.is_set():
            raise StopIteration
        if not self._started:
            self._started = True
            return [FollowStarted()]
        chunks = self._read_some() if self._may_have_lines() else []
        if chunks:
            self._idle_until = None
            return chunks
        if not self._source.follow:
            raise StopIteration
        wait = self._source.watch_interval if self._watch else self._source.poll_interval
        self._idle_until = datetime.now(UTC) + wait
        return []

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def _may_have_lines(self) -> bool:
        """False only while following with a watch that saw no change since the last read that
        found nothing, and before the poll interval since the last read is out."""
        if self._watch is None or self._idle_until is None:
            return True  # no watch, or the last read found lines: there may be more
        now = datetime.now(UTC)
        if not self._watch.changed() and now < self._next_poll:
            return False
        self._next_poll = now + self._source.poll_interval
        return True

    def next_awake(self) -> datetime | None:
        return self._idle_until

    def snapshot(self) -> FileOffsets:
        return dict(self._offsets)

    def _read_some(self) -> list[FeedChunk]:
        """Up to `lines_per_read` unread lines, file after file in reading order: what all the
        feeds appended meanwhile reaches the batcher together. A chunk ends at the end of its
        file's new lines and at every `chunk_boundary`-th line since the run started."""
        chunks: list[FeedChunk] = []
        room = self._source.lines_per_read
        for feed, path in self._source.files_in_order():
            while room and (chunk := self._read_file(feed, path, min(room, self._to_boundary()))):
                chunks.append(chunk)
                room -= len(chunk.lines)
                self._lines_read += len(chunk.lines)
            if not room:
                break
        return chunks

    def _to_boundary(self) -> int:
        """Lines until the next chunk boundary (at least `lines_per_read` if there is none)."""
        boundary = self._source.chunk_boundary
        if boundary is None:
            return self._source.lines_per_read
        return boundary - self._lines_read % boundary

    def _read_file(self, feed: str, path: Path, max_lines: int) -> FeedChunk | None:
        name = f"{feed}/{path.name}"
        offset, line_no = self._offsets.get(name, (0, 0))
        if path.stat().st_size <= offset:
            return None
        lines: list[FeedLine] = []
        with path.open("rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n") and self._source.follow:
                    break  # still being written: wait for its newline
                offset += len(raw)
                line_no += 1
                lines.append(_feed_line(feed, name, line_no, raw))
                if len(lines) >= max_lines:
                    break
        if not lines:
            return None
        self._offsets[name] = (offset, line_no)
        return FeedChunk(lines, FeedPosition(name, offset, line_no))


def feed_files_in_order(feeds_dir: Path, feeds: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(feed, path) of every feed file under `feeds_dir`: by period (file name), then the order
    of `feeds` (the registered feeds; other folders after them, by name)."""
    rank = {feed: i for i, feed in enumerate(feeds)}
    files = [
        (path.name, rank.get(folder.name, len(rank)), folder.name, path)
        for folder in feeds_dir.iterdir() if folder.is_dir()
        for path in folder.glob("*.jsonl")
    ]
    return [(feed, path) for _, _, feed, path in sorted(files)]


def _feed_line(feed: str, file: str, line_no: int, raw: bytes) -> FeedLine:
    raw = raw.rstrip(b"\r\n")
    try:
        return FeedLine(feed, file, line_no, raw.decode("utf-8"))
    except UnicodeDecodeError:
        return FeedLine(feed, file, line_no, raw.decode("utf-8", errors="replace"), False)
