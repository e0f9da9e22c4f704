"""Accredited sources: the feeds the engine accepts. Lines from any other feed folder, or records
claiming another source, go to `dead_letters`; registering a feed needs an admin. The `sources`
table is the engine's (engine.master_store): policy reaches the engine as data."""

from __future__ import annotations

import re

import duckdb

from engine.governance.errors import GovernanceError
from engine.master_store import registered_feeds

__all__ = ["list_sources", "register_source", "registered_feeds"]

FEED_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def list_sources(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every registered feed with who registered it and when, by feed name."""
    rows = con.execute(
        "SELECT feed, registered_by, registered_at FROM sources ORDER BY feed"
    ).fetchall()
    return [
        {"feed": feed, "registered_by": by, "registered_at": at.isoformat()}
        for feed, by, at in rows
    ]


def register_source(con: duckdb.DuckDBPyConnection, feed: str, registered_by: str) -> dict:
    """Register `feed` (lower-case letters, digits, underscores); returns its row."""
    if not FEED_NAME.fullmatch(feed):
        raise GovernanceError(
            "a feed name is 1-32 lower-case letters, digits or underscores, starting with a letter"
        )
    if feed in registered_feeds(con):
        raise GovernanceError(f"feed {feed!r} is already registered")
    con.execute("INSERT INTO sources VALUES (?, ?, now())", [feed, registered_by])
    return next(row for row in list_sources(con) if row["feed"] == feed)
