"""Errors of governance acts: one line each, reported by the CLI with exit status 2."""

from __future__ import annotations

from engine.errors import UsageError


class GovernanceError(UsageError):
    """A request that cannot be carried out (bad argument, unknown child, too broad a search)."""


class AccessRefused(GovernanceError):
    """The acting user may not do this act (unknown, revoked, accreditation expired, wrong role).
    Refusals are themselves written to the audit log."""


class MasterUnavailable(GovernanceError):
    """The master could not be opened (held by another process that serves no socket, missing,
    unreadable): nothing was done; trying again later may work."""
