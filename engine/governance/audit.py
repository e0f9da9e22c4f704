"""The audit log: every search and administrative act, append-only and hash-chained.

Each entry's `hash` is sha256(`prev_hash` + the entry's canonical JSON), where the canonical JSON
holds seq, at (UTC, microseconds), user, role, act, reason, query and child_ids with sorted keys.
Editing an entry breaks its own hash; deleting one leaves a gap in `seq` (or, if the later
entries were renumbered, breaks their hashes). Deleting the newest entries is only detectable
against a head (seq, hash) kept elsewhere: `verify_chain` reports the head for that purpose and
checks the chain against an exported one.

Personal data (a search probe's name, date of birth, postcode) is not hashed into the chain as
such: the entry's `query` holds, for each such field, a commitment `sha256:<hex>` of a random
salt and the value, and the `personal` column holds the salt and the value. `verify_chain`
checks that they still match; retention later sets `personal` to NULL (`redact_personal_data`),
which leaves the commitment (useless without the salt) and the chain intact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

GENESIS_HASH = "0" * 64
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FETCH_ROWS = 10_000


@dataclass(frozen=True)
class AuditEntry:
    """What one act leaves in the log (seq, time and hashes are added when it is appended)."""

    user: str | None
    role: str | None
    act: str
    reason: str | None
    query: dict[str, Any]
    child_ids: Sequence[str] = ()
    personal: Mapping[str, str | None] = field(default_factory=dict)  # kept until redacted


@dataclass(frozen=True)
class ChainReport:
    """The outcome of `verify_chain`: intact or the first bad entry, and the chain's head."""

    entries: int
    first_bad_seq: int | None
    problem: str | None
    head_seq: int
    head_hash: str

    @property
    def intact(self) -> bool:
        return self.first_bad_seq is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact, "entries": self.entries, "first_bad_seq": self.first_bad_seq,
            "problem": self.problem, "head_seq": self.head_seq, "head_hash": self.head_hash,
        }


@dataclass(frozen=True)
class ExportedHead:
    """A chain head kept outside the master (`audit head`): the log must still reach it."""

    seq: int
    hash: str


def append_entry(con: duckdb.DuckDBPyConnection, entry: AuditEntry) -> int:
    """Append `entry` after the current head; returns its seq. Run it inside the act's
    transaction, one writer at a time (the service holds its write lock)."""
    head = con.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
    seq, prev_hash = head[0] if head else (0, GENESIS_HASH)
    seq += 1
    at = _to_microseconds(dt.datetime.now(dt.UTC))
    personal = {
        name: {"salt": secrets.token_hex(16), "value": value}
        for name, value in entry.personal.items() if value is not None
    }
    query = entry.query | {
        name: _commitment(personal[name]) if name in personal else None for name in entry.personal
    }
    body = _canonical(seq, at, entry.user, entry.role, entry.act, entry.reason, query,
                      list(entry.child_ids))
    con.execute(
        "INSERT INTO audit_log (seq, \"at\", \"user\", role, act, reason, query, child_ids, "
        "prev_hash, hash, personal) VALUES "
        "(?, make_timestamptz(?::BIGINT), ?, ?, ?, ?, ?::JSON, ?::JSON, ?, ?, ?::JSON)",
        [seq, at, entry.user, entry.role, entry.act, entry.reason, _json(query),
         _json(list(entry.child_ids)), prev_hash, _hash(prev_hash, body),
         _json(personal) if personal else None],
    )
    return seq


def verify_chain(
    con: duckdb.DuckDBPyConnection, exported: ExportedHead | None = None
) -> ChainReport:
    """Walk the log in seq order and report the first entry that was edited or is missing;
    with `exported`, also that the log still holds that head (newest entries not deleted)."""
    cursor = con.execute("""
        SELECT seq, epoch_us("at"), "user", role, act, reason, query, child_ids, prev_hash, hash,
               personal
        FROM audit_log ORDER BY seq
    """)
    expected_seq, prev_hash, entries, hash_at_export = 1, GENESIS_HASH, 0, None
    while rows := cursor.fetchmany(_FETCH_ROWS):
        for (seq, at, user, role, act, reason, query, child_ids, stored_prev, stored_hash,
             personal) in rows:
            query = json.loads(query)
            body = _canonical(seq, at, user, role, act, reason, query, json.loads(child_ids))
            holds = _hash(stored_prev, body) == stored_hash and _personal_matches(
                query, json.loads(personal) if personal else {})
            problem = _problem(seq, expected_seq, prev_hash, stored_prev, holds)
            if problem is not None:
                cursor.fetchall()
                return ChainReport(entries, problem[0], problem[1], expected_seq - 1, prev_hash)
            expected_seq, prev_hash, entries = seq + 1, stored_hash, entries + 1
            if exported is not None and seq == exported.seq:
                hash_at_export = stored_hash
    report = ChainReport(entries, None, None, expected_seq - 1, prev_hash)
    return _against_export(report, exported, hash_at_export)


def redact_personal_data(
    con: duckdb.DuckDBPyConnection, before: dt.datetime, apply: bool
) -> int:
    """The entries written before `before` that still hold personal data; with `apply`, drop
    that data (their commitments stay, so the chain still verifies)."""
    due = con.execute(
        'SELECT count(*) FROM audit_log WHERE personal IS NOT NULL AND "at" < ?', [before]
    ).fetchall()[0][0]
    if apply and due:
        con.execute('UPDATE audit_log SET personal = NULL WHERE personal IS NOT NULL AND "at" < ?',
                    [before])
    return due


def _against_export(
    report: ChainReport, exported: ExportedHead | None, hash_at_export: str | None
) -> ChainReport:
    """`report`, broken if the log no longer reaches the exported head or holds another entry
    at its place."""
    if exported is None or not report.intact:
        return report
    if report.head_seq < exported.seq:
        problem = (f"entries {report.head_seq + 1} to {exported.seq} are missing "
                   "(the exported head is no longer in the log)")
        return ChainReport(report.entries, report.head_seq + 1, problem, report.head_seq,
                           report.head_hash)
    if hash_at_export != exported.hash:
        problem = f"entry {exported.seq} differs from the exported head"
        return ChainReport(report.entries, exported.seq, problem, report.head_seq,
                           report.head_hash)
    return report


def _commitment(kept: Mapping[str, str]) -> str:
    return "sha256:" + hashlib.sha256((kept["salt"] + kept["value"]).encode()).hexdigest()


def _personal_matches(query: dict[str, Any], personal: dict[str, Mapping[str, str]]) -> bool:
    """Whether each kept personal value still matches the commitment in the hashed query."""
    return all(query.get(name) == _commitment(kept) for name, kept in personal.items())


def _problem(
    seq: int, expected_seq: int, prev_hash: str, stored_prev: str, hash_holds: bool
) -> tuple[int, str] | None:
    """(first bad seq, message): a gap in seq (a deleted entry), an entry whose hash does not
    hold (edited), or one that no longer chains to its predecessor (which was edited and its
    hash recomputed)."""
    if seq != expected_seq:
        return expected_seq, f"entry {expected_seq} is missing"
    if not hash_holds:
        return seq, f"entry {seq} was edited"
    if stored_prev != prev_hash:
        return seq - 1, f"entry {seq - 1} was edited (entry {seq} no longer chains to it)"
    return None


def _canonical(
    seq: int, at_us: int, user: str | None, role: str | None, act: str, reason: str | None,
    query: dict[str, Any], child_ids: list[str],
) -> str:
    at = (_EPOCH + dt.timedelta(microseconds=at_us)).isoformat(timespec="microseconds")
    return _json({
        "seq": seq, "at": at, "user": user, "role": role, "act": act, "reason": reason,
        "query": query, "child_ids": child_ids,
    })


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + body).encode("ascii")).hexdigest()


def _to_microseconds(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)
