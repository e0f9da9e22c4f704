"""Sign-in credentials: a password (argon2id) and a TOTP second factor, with lockout.

A user who is given a password (`users add --password-stdin`, or an admin's form) also gets a
TOTP secret, shown once: as JSON to the admin's automation, or as a QR code at the user's first
sign-in, where the first good code enrols the token. Each TOTP time step is accepted once (a
code seen by someone else cannot be replayed). `policy.max_failed_signins` wrong passwords or
codes in a row lock the user for `policy.lockout_minutes`; a locked user is refused even with
the right password. The secrets live in the master's `users` table, which only the owner of the
master file (and through the owner-only socket, the running engine) can read.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

import duckdb
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.governance.errors import GovernanceError
from engine.governance.policy import GovernancePolicy

ISSUER = "ContactPoint Stream"
WRONG_CREDENTIALS = "wrong user name, password or code"
_HASHER = PasswordHasher()
# Verified against when the user is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")
_STEP_SECONDS = 30


@dataclass(frozen=True)
class Credentials:
    """A user's sign-in state as the `users` table holds it."""

    password_hash: str | None
    totp_secret: str | None
    totp_enrolled: bool
    totp_last_step: int | None
    failed_signins: int
    locked_until: dt.datetime | None

    def locked(self, now: dt.datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


@dataclass(frozen=True)
class Check:
    """The outcome of one sign-in step: passed, or the problem to show (and to audit)."""

    passed: bool
    problem: str | None = None


def set_password(
    con: duckdb.DuckDBPyConnection, name: str, password: str, policy: GovernancePolicy
) -> dict:
    """Give `name` a new password and a new TOTP secret (to enrol at the next sign-in); returns
    the secret and its otpauth URI, which are shown this once."""
    if (problem := _length_problem(password, policy)) is not None:
        raise GovernanceError(problem)
    secret = pyotp.random_base32()
    con.execute(
        """
        UPDATE users SET password_hash = ?, totp_secret = ?, totp_enrolled_at = NULL,
                         totp_last_step = NULL, failed_signins = 0, locked_until = NULL
        WHERE name = ?
        """,
        [_HASHER.hash(password), secret, name],
    )
    return {"totp_secret": secret, "totp_uri": totp_uri(secret, name)}


def change_password(
    con: duckdb.DuckDBPyConnection, name: str, current: str, new: str, now: dt.datetime,
    policy: GovernancePolicy,
) -> Check:
    """The user themself replaces their password, giving the current one (a wrong one counts
    towards the lockout, as at sign-in). Their TOTP token stays enrolled."""
    check = check_password(con, name, current, now, policy)
    if not check.passed:
        return check
    if hmac.compare_digest(new.encode(), current.encode()):
        return Check(False, "the new password is the same as the current one")
    if (problem := _length_problem(new, policy)) is not None:
        return Check(False, problem)
    con.execute("UPDATE users SET password_hash = ? WHERE name = ?", [_HASHER.hash(new), name])
    return Check(True)


def _length_problem(password: str, policy: GovernancePolicy) -> str | None:
    """Why `password` is refused for its length, or None."""
    if len(password) < policy.min_password_chars:
        return f"a password has at least {policy.min_password_chars} characters"
    return None


def totp_uri(secret: str, name: str) -> str:
    """The otpauth:// URI an authenticator app reads from the enrolment QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def credentials_of(con: duckdb.DuckDBPyConnection, name: str) -> Credentials | None:
    """The credentials of `name`, or None for an unknown user."""
    rows = con.execute(
        """
        SELECT password_hash, totp_secret, totp_enrolled_at IS NOT NULL, totp_last_step,
               coalesce(failed_signins, 0), locked_until
        FROM users WHERE name = ?
        """,
        [name],
    ).fetchall()
    return Credentials(*rows[0]) if rows else None


def check_password(
    con: duckdb.DuckDBPyConnection, name: str, password: str, now: dt.datetime,
    policy: GovernancePolicy,
) -> Check:
    """The first step: the password. A wrong one counts towards the lockout."""
    credentials = credentials_of(con, name)
    if credentials is None or credentials.password_hash is None:
        _verify(_DUMMY_HASH, password)
        return Check(False, WRONG_CREDENTIALS)
    if credentials.locked(now):
        return Check(False, _locked_message(credentials.locked_until))
    if not _verify(credentials.password_hash, password):
        return _failed(con, name, credentials, now, policy)
    return Check(True)


def check_code(
    con: duckdb.DuckDBPyConnection, name: str, code: str, now: dt.datetime,
    policy: GovernancePolicy,
) -> Check:
    """The second step: a TOTP code (the previous, current or next 30-second step), each step
    used once. The first good code enrols the token; success clears the failed attempts."""
    credentials = credentials_of(con, name)
    if credentials is None or credentials.totp_secret is None:
        return Check(False, WRONG_CREDENTIALS)
    if credentials.locked(now):
        return Check(False, _locked_message(credentials.locked_until))
    step = _matching_step(credentials.totp_secret, code.strip(), now)
    if step is None:
        return _failed(con, name, credentials, now, policy)
    if credentials.totp_last_step is not None and step <= credentials.totp_last_step:
        return Check(False, "that code was used already: wait for the next one")
    con.execute(
        """
        UPDATE users SET totp_last_step = ?, failed_signins = 0, locked_until = NULL,
                         totp_enrolled_at = coalesce(totp_enrolled_at, now())
        WHERE name = ?
        """,
        [step, name],
    )
    return Check(True)


def _matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step (±1, for clock drift) whose code is `code`, or None."""
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // _STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _failed(
    con: duckdb.DuckDBPyConnection, name: str, credentials: Credentials, now: dt.datetime,
    policy: GovernancePolicy,
) -> Check:
    """Count a wrong password or code; the policy's last allowed one locks the user."""
    failures = credentials.failed_signins + 1
    if failures < policy.max_failed_signins:
        con.execute("UPDATE users SET failed_signins = ? WHERE name = ?", [failures, name])
        return Check(False, WRONG_CREDENTIALS)
    until = now + dt.timedelta(minutes=policy.lockout_minutes)
    con.execute("UPDATE users SET failed_signins = 0, locked_until = ? WHERE name = ?",
                [until, name])
    return Check(False, f"{WRONG_CREDENTIALS}; {_locked_message(until)}")


def _locked_message(until: dt.datetime) -> str:
    return (f"too many failed attempts: signing in is locked until "
            f"{until.astimezone(dt.UTC):%H:%M} UTC")


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
