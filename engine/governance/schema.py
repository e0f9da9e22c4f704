"""The governance tables of the master and the columns they add to `children`.

- `users`      accredited users: role, organisation, accreditation expiry, who added/revoked them,
               and their sign-in credentials (argon2 password hash, TOTP secret and enrolment,
               the last TOTP time step used, failed attempts, locked-until);
- `audit_log`  append-only, hash-chained record of every search and administrative act, with
               the personal data of its query in `personal` until retention drops it;
- `sources`    the accredited feeds (seeded with the four national feeds, frozen in June 2010);
- `children` gains `care_leaver_consent`, `archived_on` (retention) and `shielded_by`,
  `shielded_at` (who or which rule shielded the child, and when).
"""

from __future__ import annotations

import duckdb

from streams.canonical import FEEDS

SEEDED_BY = "DfE (sources frozen June 2010)"

_TABLES_SQL = """
CREATE TABLE IF NOT EXISTS users (
    name VARCHAR PRIMARY KEY,
    role VARCHAR NOT NULL,
    organisation VARCHAR NOT NULL,
    accredited_until DATE NOT NULL,
    added_by VARCHAR NOT NULL,
    added_at TIMESTAMPTZ NOT NULL,
    revoked_by VARCHAR,
    revoked_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY,
    "at" TIMESTAMPTZ NOT NULL,
    "user" VARCHAR,
    role VARCHAR,
    act VARCHAR NOT NULL,
    reason VARCHAR,
    query JSON NOT NULL,
    child_ids JSON NOT NULL,
    prev_hash VARCHAR NOT NULL,
    hash VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    feed VARCHAR PRIMARY KEY,
    registered_by VARCHAR NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE users ADD COLUMN IF NOT EXISTS password_hash VARCHAR;
ALTER TABLE users ADD COLUMN IF NOT EXISTS totp_secret VARCHAR;
ALTER TABLE users ADD COLUMN IF NOT EXISTS totp_enrolled_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN IF NOT EXISTS totp_last_step BIGINT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS failed_signins INTEGER DEFAULT 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS locked_until TIMESTAMPTZ;
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS personal JSON;
ALTER TABLE children ADD COLUMN IF NOT EXISTS care_leaver_consent BOOLEAN DEFAULT false;
ALTER TABLE children ADD COLUMN IF NOT EXISTS archived_on DATE;
ALTER TABLE children ADD COLUMN IF NOT EXISTS shielded_by VARCHAR;
ALTER TABLE children ADD COLUMN IF NOT EXISTS shielded_at TIMESTAMPTZ;
"""


def create_governance_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Idempotent: create `users`, `audit_log` and `sources` (seeded with the four feeds) and add
    the retention and shielding columns to `children`. Run after the core master schema."""
    con.execute(_TABLES_SQL)
    con.executemany(
        "INSERT INTO sources VALUES (?, ?, now()) ON CONFLICT DO NOTHING",
        [[feed, SEEDED_BY] for feed in FEEDS],
    )
