"""The parse step: a raw feed line becomes an Update or a DeadLetter, never an exception."""

from __future__ import annotations

from dataclasses import dataclass

from engine.feed_positions import FeedPosition, FollowStarted
from engine.feed_source import FeedChunk, FeedLine
from streams.adapters import parse_line
from streams.canonical import FEEDS, BadRecord, Update
from streams.declared import parse_declared_line

# A dead letter keeps this much of the raw line (a hostile line may be megabytes long).
MAX_RAW_CHARS = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A bad feed line and why it was refused."""

    feed: str
    file: str
    line: int
    raw: str
    error: str


@dataclass(frozen=True)
class FeedParser:
    """Parses the lines of the accredited (registered) feeds — the four national feeds with their
    adapters, a registered declared feed (own data, `contactpoint import`) with the declared-feed
    adapter — and refuses any other folder's lines.

    >>> parser = FeedParser(frozenset({"gro"}))
    >>> parser.parse_line(FeedLine("gro", "gro/2009-01.jsonl", 3, "not json")).error[:12]
    'invalid JSON'
    >>> parser.parse_line(FeedLine("police", "police/a.jsonl", 1, "{}")).error
    "unregistered source 'police': only accredited feeds are accepted"
    """

    registered: frozenset[str]

    def parse_chunk(
        self, chunk: FeedChunk | FollowStarted
    ) -> list[Update | DeadLetter | FeedPosition | FollowStarted]:
        """The dataflow's parse step: every line of a chunk, then the chunk's end position
        (saved with the batch that holds it, after the lines before it: engine.feed_positions);
        the start marker passes through."""
        if isinstance(chunk, FollowStarted):
            return [chunk]
        return [*map(self.parse_line, chunk.lines), chunk.end]

    def parse_line(self, feed_line: FeedLine) -> Update | DeadLetter:
        if feed_line.feed not in self.registered:
            return _dead_letter(
                feed_line,
                f"unregistered source {feed_line.feed!r}: only accredited feeds are accepted",
            )
        if not feed_line.valid_utf8:
            return _dead_letter(feed_line, "line is not valid UTF-8")
        parse = parse_line if feed_line.feed in FEEDS else parse_declared_line
        try:
            return parse(feed_line.feed, feed_line.text)
        except BadRecord as err:
            return _dead_letter(feed_line, str(err))


def _dead_letter(feed_line: FeedLine, reason: str) -> DeadLetter:
    return DeadLetter(
        feed_line.feed, feed_line.file, feed_line.line, feed_line.text[:MAX_RAW_CHARS], reason
    )
