"""Feed positions kept in the master: how far each feed file has been applied.

The parse step puts, after each chunk of lines, the position just past the chunk's last line
(`FeedPosition`); the micro-batch that holds it saves it in the batch's own transaction
(`save_feed_positions`). When a batch's links and dead letters commit, so do the positions of
the lines they came from, and never a position whose lines are not committed: the position
travels behind its lines in one ordered stream. A run starts reading where the master says
(`load_feed_positions`), so a master restored from a backup, or re-created, re-reads everything
after its own positions, whatever else lies beside it; a line applied twice changes nothing
(links are keyed by (feed, record_id), dead letters by (file, line)).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

# {file: (byte offset, lines read)}, `file` relative to the feeds folder (`gro/2009-01.jsonl`).
FileOffsets = dict[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """`file` has been read up to `byte_offset` bytes, which is its first `line` lines."""

    file: str
    byte_offset: int
    line: int


@dataclass(frozen=True, slots=True)
class FollowStarted:
    """The first item of a followed stream, before any line. Bytewax builds a sink's partition
    at its first item, so without it a `run --follow` on quiet feeds would open the master, load
    its in-memory indexes and start its service only when the first line arrives: that line
    would wait for all of it, and people could not search until then."""


def is_feed_line(item: object) -> bool:
    """Whether a stream item stands for a feed line (an update or a dead letter), rather than
    being a position or the start marker: what a batch's size counts."""
    return not isinstance(item, FeedPosition | FollowStarted)


_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS feed_positions (
    file VARCHAR PRIMARY KEY,
    byte_offset BIGINT NOT NULL,
    line BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
)
"""

def create_feed_positions_table(con: duckdb.DuckDBPyConnection) -> None:
    """The `feed_positions` table, if the master does not have it yet (an empty table: a master
    from before positions were kept re-reads its feeds once, changing nothing it holds)."""
    con.execute(_SCHEMA_SQL)


def save_feed_positions(con: duckdb.DuckDBPyConnection, positions: list[FeedPosition]) -> None:
    """Record `positions` (in stream order) in the caller's transaction; a file's position only
    moves forward."""
    furthest = {position.file: position for position in positions}  # later in the stream: further
    if not furthest:
        return
    rows = ", ".join(["(?::VARCHAR, ?::BIGINT, ?::BIGINT)"] * len(furthest))
    con.execute(f"""
        INSERT INTO feed_positions
        SELECT file, byte_offset, line, now() FROM (VALUES {rows}) p(file, byte_offset, line)
        ON CONFLICT (file) DO UPDATE SET
            byte_offset = excluded.byte_offset, line = excluded.line,
            updated_at = excluded.updated_at
        WHERE excluded.line > feed_positions.line
    """, [value for p in furthest.values() for value in (p.file, p.byte_offset, p.line)])


def load_feed_positions(con: duckdb.DuckDBPyConnection) -> FileOffsets:
    """Where the next run starts reading each file (a file not listed: from its start)."""
    rows = con.execute("SELECT file, byte_offset, line FROM feed_positions").fetchall()
    return {file: (byte_offset, line) for file, byte_offset, line in rows}
