"""Accredited users and their roles: who may act, and the checks every act starts with.

Roles: `practitioner` (searches), `data_manager` (searches, sees and sets shielding),
`admin` (users, sources, retention). A user whose accreditation has expired or who was revoked
is refused every act.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from engine.governance.errors import AccessRefused, GovernanceError
from engine.governance.policy import GovernancePolicy

ROLES: tuple[str, ...] = ("practitioner", "data_manager", "admin")


@dataclass(frozen=True)
class User:
    """An accredited user as the `users` table holds them."""

    name: str
    role: str
    organisation: str
    accredited_until: dt.date
    revoked_at: dt.datetime | None = None

    def status(self, today: dt.date) -> str:
        """`revoked`, `expired` (accreditation ended before `today`) or `active`."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.accredited_until < today else "active"


@dataclass(frozen=True)
class NewUser:
    """A user to accredit (`users add`)."""

    name: str
    role: str
    organisation: str
    accredited_until: dt.date


def authorise(
    con: duckdb.DuckDBPyConnection, name: str, roles: frozenset[str], today: dt.date
) -> User:
    """The acting user, if they exist, are active on `today` and hold one of `roles`;
    AccessRefused with a one-line reason otherwise."""
    user = find_user(con, name)
    if user is None:
        raise AccessRefused(f"unknown user {name!r}")
    status = user.status(today)
    if status == "revoked":
        raise AccessRefused(f"user {name!r} was revoked on {user.revoked_at:%Y-%m-%d}")
    if status == "expired":
        raise AccessRefused(
            f"user {name!r}: accreditation expired on {user.accredited_until.isoformat()}"
        )
    if user.role not in roles:
        allowed = " or ".join(sorted(roles))
        raise AccessRefused(f"user {name!r} is a {user.role}; this act needs the {allowed} role")
    return user


def find_user(con: duckdb.DuckDBPyConnection, name: str) -> User | None:
    """The user called `name`, or None."""
    rows = con.execute(
        "SELECT name, role, organisation, accredited_until, revoked_at FROM users WHERE name = ?",
        [name],
    ).fetchall()
    return User(*rows[0]) if rows else None


def has_users(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether any user was ever added (the first one is the bootstrap admin)."""
    return bool(con.execute("SELECT count(*) FROM users").fetchall()[0][0])


def add_user(
    con: duckdb.DuckDBPyConnection, new: NewUser, added_by: str, today: dt.date,
    policy: GovernancePolicy,
) -> dict:
    """Accredit `new`; returns its row as a dict. Refuses a taken name, an unknown role and an
    accreditation that is already over or runs longer than the policy allows."""
    if new.role not in ROLES:
        raise GovernanceError(f"unknown role {new.role!r}; one of {', '.join(ROLES)}")
    if find_user(con, new.name) is not None:
        raise GovernanceError(f"user {new.name!r} already exists")
    _check_accreditation(new.accredited_until, today, policy)
    con.execute(
        "INSERT INTO users (name, role, organisation, accredited_until, added_by, added_at) "
        "VALUES (?, ?, ?, ?, ?, now())",
        [new.name, new.role, new.organisation, new.accredited_until, added_by],
    )
    return _user_row(new.name, new.role, new.organisation, new.accredited_until, "active")


def renew_user(
    con: duckdb.DuckDBPyConnection, name: str, until: dt.date, today: dt.date,
    policy: GovernancePolicy,
) -> dict:
    """Renew the accreditation of `name` (checks and training redone) up to `until`; returns
    its row. A revoked user stays revoked."""
    user = find_user(con, name)
    if user is None:
        raise GovernanceError(f"unknown user {name!r}")
    if user.revoked_at is not None:
        raise GovernanceError(f"user {name!r} was revoked: add them again under a new name")
    _check_accreditation(until, today, policy)
    con.execute("UPDATE users SET accredited_until = ? WHERE name = ?", [until, name])
    return _user_row(user.name, user.role, user.organisation, until, "active")


def revoke_user(
    con: duckdb.DuckDBPyConnection, name: str, revoked_by: str, today: dt.date
) -> dict:
    """Revoke `name` for good; returns its row. The last active admin cannot be revoked (nobody
    could add users any more)."""
    user = find_user(con, name)
    if user is None:
        raise GovernanceError(f"unknown user {name!r}")
    if user.revoked_at is not None:
        raise GovernanceError(f"user {name!r} is already revoked")
    if user.role == "admin" and _active_admins(con, today) <= 1:
        raise GovernanceError(f"user {name!r} is the last active admin")
    con.execute(
        "UPDATE users SET revoked_by = ?, revoked_at = now() WHERE name = ?", [revoked_by, name]
    )
    return _user_row(user.name, user.role, user.organisation, user.accredited_until, "revoked")


def list_users(con: duckdb.DuckDBPyConnection, today: dt.date) -> list[dict]:
    """Every user with role, organisation, accreditation expiry, status and web sign-in state
    (`no password`, `token to enrol`, `enrolled` or `locked`), by name."""
    return _user_rows(con, today, "TRUE", [])


def user_row(con: duckdb.DuckDBPyConnection, name: str, today: dt.date) -> dict:
    """The `list_users` row of `name` (who must exist)."""
    return _user_rows(con, today, "name = ?", [name])[0]


def _user_rows(
    con: duckdb.DuckDBPyConnection, today: dt.date, where: str, parameters: list
) -> list[dict]:
    rows = con.execute(f"""
        SELECT name, role, organisation, accredited_until, revoked_at,
            CASE WHEN locked_until > now() THEN 'locked'
                 WHEN password_hash IS NULL THEN 'no password'
                 WHEN totp_enrolled_at IS NULL THEN 'token to enrol'
                 ELSE 'enrolled' END
        FROM users WHERE {where} ORDER BY name
    """, parameters).fetchall()
    return [
        _user_row(u.name, u.role, u.organisation, u.accredited_until, u.status(today))
        | {"sign_in": sign_in}
        for u, sign_in in ((User(*row[:5]), row[5]) for row in rows)
    ]


def _check_accreditation(until: dt.date, today: dt.date, policy: GovernancePolicy) -> None:
    latest = _years_after(today, policy.accreditation_max_years)
    if not today <= until <= latest:
        raise GovernanceError(
            f"accredited-until must be between {today.isoformat()} and {latest.isoformat()} "
            f"(checks are renewed every {policy.accreditation_max_years} years)"
        )


def _active_admins(con: duckdb.DuckDBPyConnection, today: dt.date) -> int:
    return con.execute(
        "SELECT count(*) FROM users WHERE role = 'admin' AND revoked_at IS NULL "
        "AND accredited_until >= ?",
        [today],
    ).fetchall()[0][0]


def _user_row(
    name: str, role: str, organisation: str, accredited_until: dt.date, status: str
) -> dict:
    return {
        "name": name, "role": role, "organisation": organisation,
        "accredited_until": accredited_until.isoformat(), "status": status,
    }


def _years_after(day: dt.date, years: int) -> dt.date:
    """The same calendar day `years` later (28 February for 29 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)
