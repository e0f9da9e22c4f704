"""The governance tables of the master and the columns they add to `children`.

- `users`      accredited users: role, organisation, accreditation expiry, who added/revoked them,
               and their sign-in credentials (argon2 password hash, TOTP secret and enrolment,
               the last TOTP time step used, failed attempts, locked-until);
- `audit_log`  append-only, hash-chained record of every search and administrative act, with
               the personal data of its query in `personal` until retention drops it;
- `children` gains `care_leaver_consent` and `archived_on` (retention).

The engine's own schema (engine.master_store) holds what policy the resolver reads as data:
`sources` (the accredited feeds) and `children.shielded`, `shielded_by`, `shielded_at`.
"""

from __future__ import annotations

import duckdb

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
ALTER TABLE users ADD COLUMN IF NOT EXISTS password_hash VARCHAR;
ALTER TABLE users ADD COLUMN IF NOT EXISTS totp_secret VARCHAR;
ALTER TABLE users ADD COLUMN IF NOT EXISTS totp_enrolled_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN IF NOT EXISTS totp_last_step BIGINT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS failed_signins INTEGER DEFAULT 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS locked_until TIMESTAMPTZ;
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS personal JSON;
ALTER TABLE children ADD COLUMN IF NOT EXISTS care_leaver_consent BOOLEAN DEFAULT false;
ALTER TABLE children ADD COLUMN IF NOT EXISTS archived_on DATE;
"""


def create_governance_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Idempotent: create `users` and `audit_log` and add the retention columns to `children`.
    Run after the core master schema (engine.master_store.open_master)."""
    con.execute(_TABLES_SQL)
