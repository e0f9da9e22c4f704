"""Retention: archive children at their 18th birthday (25th for a consenting care leaver) or a
year after death, and purge them six years after archiving; drop the personal data of audit
entries (a search probe's name, date of birth, postcode) older than the policy's
`audit_personal_data_days`. A dry run reports what would happen.

Archiving sets `children.archived_on` (practitioners no longer see the child). Purging deletes the
child, the children merged into it, and their records (with their blocking keys, scored pairs,
constraints and decision history), links, xref, review-queue and merge rows, and takes their
values out of the term-frequency counts: the one exception to "one links row per processed
record". The audit log keeps the purged child IDs (no
personal details).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from engine.governance import search_index
from engine.governance.audit import redact_personal_data
from engine.governance.policy import GovernancePolicy
from streams.canonical import UPDATE_COLUMNS

# Tables holding a purged child's rows, and the column naming the child.
PURGED_TABLES: tuple[tuple[str, str], ...] = (
    ("records", "child_id"), ("links", "child_id"), ("xref", "child_id"),
    ("review_queue", "child_id"), ("merges", "into_child_id"), ("merges", "merged_child_id"),
    ("children", "child_id"),
)


@dataclass(frozen=True)
class RetentionReport:
    """What retention did (or, in a dry run, would do) as of one date."""

    as_of: dt.date
    applied: bool
    archive: list[dict]  # child_id, rule, due
    purge: list[dict]  # child_id, archived_on, due
    undetermined: int  # unarchived children with no usable date: kept, for a person to check
    deleted_rows: dict[str, int] = field(default_factory=dict)
    audit_entries_redacted: int = 0  # audit entries whose personal data is (or would be) dropped

    @property
    def child_ids(self) -> list[str]:
        return [row["child_id"] for row in self.archive + self.purge]

    def to_dict(self) -> dict:
        return {
            "as_of": self.as_of.isoformat(), "applied": self.applied,
            "archive": self.archive, "purge": self.purge, "undetermined": self.undetermined,
            "deleted_rows": self.deleted_rows,
            "audit_entries_redacted": self.audit_entries_redacted,
        }


def run_retention(
    con: duckdb.DuckDBPyConnection, as_of: dt.date, apply: bool, policy: GovernancePolicy
) -> RetentionReport:
    """The children due for archiving and for purging on `as_of`; with `apply`, archive and
    purge them (in the caller's transaction)."""
    archive = _due_for_archive(con, as_of, policy)
    purge = _due_for_purge(con, as_of, policy)
    undetermined = _undetermined(con, policy)
    deleted: dict[str, int] = {}
    if apply:
        _archive(con, [row["child_id"] for row in archive], as_of)
        deleted = _purge(con, [row["child_id"] for row in purge])
    redact_before = dt.datetime.combine(as_of, dt.time(), dt.UTC) - dt.timedelta(
        days=policy.audit_personal_data_days)
    redacted = redact_personal_data(con, redact_before, apply)
    return RetentionReport(as_of, apply, archive, purge, undetermined, deleted, redacted)


_DUE_SQL = """
    SELECT child_id,
        CASE WHEN died IS NOT NULL THEN $death_rule
             WHEN care_leaver_consent THEN $care_leaver_rule
             ELSE $age_rule END AS rule,
        CASE WHEN died IS NOT NULL THEN died + to_years($years_after_death)
             WHEN care_leaver_consent THEN born + to_years($care_leaver_age)
             ELSE born + to_years($age) END::DATE AS due
    FROM (
        SELECT child_id, care_leaver_consent, TRY_CAST(date_of_birth AS DATE) AS born,
               CASE WHEN status = 'deceased' THEN TRY_CAST(date_of_death AS DATE) END AS died
        FROM children WHERE archived_on IS NULL AND status <> 'merged'
    )
"""


def _due_parameters(policy: GovernancePolicy) -> dict[str, object]:
    return {
        "death_rule": f"{policy.years_kept_after_death} year(s) after death",
        "care_leaver_rule": f"age {policy.care_leaver_archive_age} (care leaver)",
        "age_rule": f"age {policy.archive_age}",
        "years_after_death": policy.years_kept_after_death,
        "care_leaver_age": policy.care_leaver_archive_age,
        "age": policy.archive_age,
    }


def _due_for_archive(
    con: duckdb.DuckDBPyConnection, as_of: dt.date, policy: GovernancePolicy
) -> list[dict]:
    rows = con.execute(
        f"SELECT * FROM ({_DUE_SQL}) WHERE due <= $as_of ORDER BY due, child_id",
        {**_due_parameters(policy), "as_of": as_of},
    ).fetchall()
    return [{"child_id": c, "rule": rule, "due": due.isoformat()} for c, rule, due in rows]


def _undetermined(con: duckdb.DuckDBPyConnection, policy: GovernancePolicy) -> int:
    return con.execute(
        f"SELECT count(*) FROM ({_DUE_SQL}) WHERE due IS NULL", _due_parameters(policy)
    ).fetchall()[0][0]


def _due_for_purge(
    con: duckdb.DuckDBPyConnection, as_of: dt.date, policy: GovernancePolicy
) -> list[dict]:
    rows = con.execute(
        """
        SELECT child_id, archived_on, (archived_on + to_years(?))::DATE AS due FROM children
        WHERE archived_on IS NOT NULL AND status <> 'merged' AND due <= ?
        ORDER BY due, child_id
        """,
        [policy.years_archived_before_purge, as_of],
    ).fetchall()
    return [
        {"child_id": c, "archived_on": archived.isoformat(), "due": due.isoformat()}
        for c, archived, due in rows
    ]


def _archive(con: duckdb.DuckDBPyConnection, child_ids: list[str], as_of: dt.date) -> None:
    con.execute(
        "UPDATE children SET archived_on = ?, updated_at = now() "
        "WHERE child_id IN (SELECT unnest(?::VARCHAR[]))",
        [as_of, child_ids],
    )


def _purge(con: duckdb.DuckDBPyConnection, child_ids: list[str]) -> dict[str, int]:
    """Delete the children and everything that names them; rows deleted per table."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE purged_children AS
        WITH RECURSIVE gone(child_id) AS (
            SELECT unnest(?::VARCHAR[])
            UNION
            SELECT c.child_id FROM children c JOIN gone g ON c.merged_into = g.child_id
        )
        SELECT DISTINCT child_id FROM gone
        """,
        [child_ids],
    )
    try:
        _forget_term_frequencies(con)
        deleted: dict[str, int] = {"blocking_keys": _forget_blocking_keys(con)}
        indexed = search_index.forget_records(
            con, "SELECT record_no FROM records "
                 "WHERE child_id IN (SELECT child_id FROM purged_children)")
        if indexed is not None:
            deleted["search_index"] = indexed
        deleted |= _forget_record_graph(con)
        for table, column in PURGED_TABLES:
            rows = con.execute(
                f"DELETE FROM {table} WHERE {column} IN (SELECT child_id FROM purged_children)"
            ).fetchall()
            deleted[table] = deleted.get(table, 0) + rows[0][0]
        return deleted
    finally:
        con.execute("DROP TABLE IF EXISTS purged_children")


def _forget_blocking_keys(con: duckdb.DuckDBPyConnection) -> int:
    """Delete the purged records' blocking keys (hashes of their names and dates); rows deleted."""
    return con.execute("""
        DELETE FROM blocking_keys WHERE record_no IN (
            SELECT record_no FROM records
            WHERE child_id IN (SELECT child_id FROM purged_children))
    """).fetchall()[0][0]


def _forget_record_graph(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Delete the purged records' scored pairs, people's constraints and decision history."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE purged_records AS
        SELECT unique_id, feed, record_id FROM records
        WHERE child_id IN (SELECT child_id FROM purged_children)
    """)
    deleted = {}
    for table in ("scored_pairs", "constraints"):
        deleted[table] = con.execute(f"""
            DELETE FROM {table} WHERE uid_a IN (SELECT unique_id FROM purged_records)
                                   OR uid_b IN (SELECT unique_id FROM purged_records)
        """).fetchall()[0][0]
    deleted["decision_history"] = con.execute("""
        DELETE FROM decision_history h USING purged_records p
        WHERE h.feed = p.feed AND h.record_id = p.record_id
    """).fetchall()[0][0]
    con.execute("DROP TABLE purged_records")
    return deleted


def _forget_term_frequencies(con: duckdb.DuckDBPyConnection) -> None:
    """Take the purged records' values out of the term-frequency counts (a name counted only
    for a purged child disappears from the master)."""
    counted = con.execute("SELECT DISTINCT column_name FROM term_frequencies").fetchall()
    for column in sorted({row[0] for row in counted} & set(UPDATE_COLUMNS)):
        con.execute(f"""
            UPDATE term_frequencies t SET n = t.n - p.n
            FROM (SELECT {column} AS value, count(*) AS n FROM records
                  WHERE {column} IS NOT NULL
                    AND child_id IN (SELECT child_id FROM purged_children)
                  GROUP BY ALL) p
            WHERE t.column_name = '{column}' AND t.value = p.value
        """)
    con.execute("DELETE FROM term_frequencies WHERE n <= 0")
