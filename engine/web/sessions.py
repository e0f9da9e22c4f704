"""Web sessions, held in the server process: a random token in an HttpOnly, SameSite=Strict
cookie names a session the server keeps, with its user, its sign-in stage and its CSRF token.

Held server-side rather than in a signed cookie so that expiry and sign-out are the server's
decision (a copied cookie dies with its session) and nothing about the user travels in it.
Restarting the server signs everyone out, which is acceptable for a service people sign in to
with a token every working day. A session expires after `idle` without a request and after
`lifetime` in any case; a half-done sign-in (password given, code not yet) after `pending`.
Signing in fully replaces the token (no session fixation).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, replace

SIGNED_IN = "signed_in"
AWAITING_CODE = "code"  # password accepted, the TOTP code is next
AWAITING_ENROLMENT = "enrol"  # password accepted, the token is to be enrolled with a code


@dataclass(frozen=True)
class SessionTimes:
    """How long sessions last, in seconds."""

    idle: float = 15 * 60
    lifetime: float = 8 * 3600
    pending: float = 5 * 60


@dataclass(frozen=True)
class WebSession:
    """One browser's session: who, at which stage of signing in, its CSRF token, its times."""

    token: str
    user: str
    stage: str
    csrf: str
    started: float
    last_seen: float
    role: str | None = None
    enrol_uri: str | None = None  # the otpauth URI to show as a QR code while enrolling

    @property
    def signed_in(self) -> bool:
        return self.stage == SIGNED_IN

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(self.csrf, sent)


class SessionStore:
    """The server's sessions (thread-safe); expired ones are dropped as they are met."""

    def __init__(self, times: SessionTimes, clock=time.monotonic) -> None:
        self.times = times
        self._clock = clock
        self._sessions: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def start_sign_in(self, user: str, stage: str, enrol_uri: str | None = None) -> WebSession:
        """A session for a user whose password was accepted and whose code comes next."""
        now = self._clock()
        session = WebSession(secrets.token_urlsafe(32), user, stage, secrets.token_urlsafe(32),
                             now, now, enrol_uri=enrol_uri)
        with self._lock:
            self._drop_expired(now)
            self._sessions[session.token] = session
        return session

    def sign_in(self, pending: WebSession, role: str) -> WebSession:
        """The fully signed-in session replacing `pending` (a new token and CSRF token)."""
        now = self._clock()
        session = replace(pending, token=secrets.token_urlsafe(32), stage=SIGNED_IN,
                          csrf=secrets.token_urlsafe(32), started=now, last_seen=now, role=role,
                          enrol_uri=None)
        with self._lock:
            self._sessions.pop(pending.token, None)
            self._sessions[session.token] = session
        return session

    def find(self, token: str | None) -> WebSession | None:
        """The live session named by `token` (its idle time restarted), or None."""
        if not token:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[token]
                return None
            session = replace(session, last_seen=now)
            self._sessions[token] = session
            return session

    def end(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def end_others(self, kept: WebSession) -> int:
        """End every session of `kept`'s user but `kept` (its password changed); how many."""
        with self._lock:
            others = [token for token, held in self._sessions.items()
                      if held.user == kept.user and token != kept.token]
            for token in others:
                del self._sessions[token]
        return len(others)

    def seconds_left(self, session: WebSession) -> int:
        """Seconds until `session` expires if no other request comes."""
        limit = min(session.last_seen + self._idle(session), session.started + self.times.lifetime)
        return max(0, int(limit - self._clock()))

    def _expired(self, session: WebSession, now: float) -> bool:
        return (now - session.last_seen > self._idle(session)
                or now - session.started > self.times.lifetime)

    def _idle(self, session: WebSession) -> float:
        return self.times.idle if session.signed_in else self.times.pending

    def _drop_expired(self, now: float) -> None:
        for token in [t for t, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[token]
