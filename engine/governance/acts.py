"""The governance acts and the one function that performs them on a master connection.

A request is plain JSON (`Request`), so the CLI performs it on a master it opened itself or
sends it to the running engine's service, which performs it on its own connection: the same
`perform` either way. Every act by a user is checked (accredited, active, allowed role) and
audited in the same transaction as its effect; a refusal is audited too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from engine.backup import BackupError, write_backup
from engine.governance import retention, search, shielding, sources, users
from engine.governance.audit import AuditEntry, append_entry, verify_chain
from engine.governance.errors import AccessRefused, GovernanceError
from engine.governance.policy import DEFAULT_POLICY, GovernancePolicy
from linkage_models.scoring import CompiledModel
from streams.normalise import printable

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
CHILD_ID = re.compile(r"[A-Za-z0-9:_-]{1,64}")


@dataclass(frozen=True)
class Request:
    """One act as the CLI asks for it: `actor` is --user/--by, `args` the act's arguments."""

    act: str
    actor: str | None = None
    reason: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"act": self.act, "actor": self.actor, "reason": self.reason, "args": self.args}

    @classmethod
    def from_json(cls, data: object) -> Request:
        """A request from decoded JSON; GovernanceError if it has the wrong shape."""
        if not isinstance(data, dict) or set(data) != {"act", "actor", "reason", "args"}:
            raise GovernanceError("malformed request")
        if not isinstance(data["act"], str) or not isinstance(data["args"], dict):
            raise GovernanceError("malformed request")
        return cls(data["act"], data["actor"], data["reason"], data["args"])


@dataclass(frozen=True)
class Outcome:
    """An act's result (JSON-ready), the child IDs it returned or touched, its exit status."""

    result: Any
    child_ids: list[str] = field(default_factory=list)
    exit_status: int = 0


@dataclass(frozen=True)
class Context:
    """What an act runs with."""

    con: duckdb.DuckDBPyConnection
    actor: users.User | None
    reason: str | None
    args: dict[str, Any]
    today: dt.date
    policy: GovernancePolicy
    model: Callable[[], CompiledModel]


@dataclass(frozen=True)
class Argument:
    """One argument of an act: its JSON type, whether it must be given, and for text its
    longest allowed length (None: the policy's `max_field_chars`)."""

    kind: type
    required: bool = False
    max_chars: int | None = None


@dataclass(frozen=True)
class Act:
    """An act: who may do it (None: anyone, unaudited read), its arguments, what it does;
    `bootstraps`: on a master without users it may be done by nobody (the first admin)."""

    name: str
    roles: frozenset[str] | None
    arguments: dict[str, Argument]
    run: Callable[[Context], Outcome]
    needs_reason: bool = False
    bootstraps: bool = False


def perform(
    con: duckdb.DuckDBPyConnection,
    request: Request,
    model: Callable[[], CompiledModel],
    *,
    write_lock: AbstractContextManager | None = None,
    today: dt.date | None = None,
    policy: GovernancePolicy = DEFAULT_POLICY,
) -> Outcome:
    """Check, perform and audit `request` in one transaction on `con` (under `write_lock`, the
    lock the engine's writer shares). GovernanceError (AccessRefused: audited) if refused."""
    act, actor_name, reason, args = validate(request, policy)
    today = today or dt.date.today()
    with write_lock or nullcontext():
        con.begin()
        try:
            actor = _authorise(con, act, actor_name, args, today)
            outcome = act.run(Context(con, actor, reason, args, today, policy, model))
            if act.roles is not None:
                append_entry(con, _entry(act, actor, args, reason, outcome.child_ids))
            con.commit()
        except AccessRefused as refusal:
            con.rollback()
            _audit_refusal(con, act, actor_name, args, reason, refusal)
            raise
        except BaseException:
            con.rollback()
            raise
    return outcome


def validate(request: Request, policy: GovernancePolicy) -> tuple[Act, str | None, str | None,
                                                                    dict[str, Any]]:
    """The act, acting user, cleaned reason and arguments of `request`; GovernanceError with a
    one-line reason for anything unknown, mistyped or too long (never echoing the value)."""
    act = ACTS.get(request.act)
    if act is None:
        raise GovernanceError("unknown act")
    actor = request.actor
    if actor is not None and (not isinstance(actor, str) or not USER_NAME.fullmatch(actor)):
        raise GovernanceError("a user name is 1-64 letters, digits, '.', '_', '@' or '-'")
    if act.roles is not None and actor is None and not act.bootstraps:
        raise GovernanceError("this needs the acting user (--user / --by)")
    reason = _text(request.reason, "reason", policy.max_reason_chars)
    if act.needs_reason and not reason:
        raise GovernanceError("a reason is required (--reason)")
    unknown = set(request.args) - set(act.arguments)
    if unknown:
        raise GovernanceError(f"unknown argument(s) for {act.name}: {len(unknown)}")
    args = {
        name: _argument(request.args.get(name), name, spec, policy)
        for name, spec in act.arguments.items()
    }
    return act, actor, reason, args


def _argument(value: Any, name: str, spec: Argument, policy: GovernancePolicy) -> Any:
    if value is not None and type(value) is not spec.kind:
        raise GovernanceError(f"{name} must be a {spec.kind.__name__}")
    if spec.kind is str:
        value = _text(value, name, spec.max_chars or policy.max_field_chars)
    if value is None and spec.required:
        raise GovernanceError(f"{name} is required")
    return value


def _text(value: object, name: str, max_chars: int) -> str | None:
    """Free text bounded in length, control characters removed, spaces collapsed."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise GovernanceError(f"{name} must be text")
    if len(value) > max_chars:
        raise GovernanceError(f"{name} is {len(value):,} characters long (limit {max_chars:,})")
    return " ".join(filter(None, map(printable, value.split()))) or None


def _authorise(
    con: duckdb.DuckDBPyConnection, act: Act, actor: str | None, args: dict, today: dt.date
) -> users.User | None:
    if act.roles is None:
        return None
    if actor is None:  # validate() allowed it: the bootstrap admin adds themself
        if users.has_users(con):
            raise AccessRefused("users exist already: adding one needs an admin (--by)")
        if args["role"] != "admin":
            raise GovernanceError("the first user must be an admin")
        return None
    return users.authorise(con, actor, act.roles, today)


def _entry(
    act: Act, actor: users.User | None, args: dict, reason: str | None, child_ids: list[str]
) -> AuditEntry:
    if actor is None:  # the bootstrap admin
        return AuditEntry(args["name"], "admin", act.name, reason or "bootstrap", args, child_ids)
    return AuditEntry(actor.name, actor.role, act.name, reason, args, child_ids)


def _audit_refusal(
    con: duckdb.DuckDBPyConnection, act: Act, actor: str | None, args: dict,
    reason: str | None, refusal: AccessRefused,
) -> None:
    con.begin()
    try:
        known = users.find_user(con, actor) if actor else None
        role = known.role if known else None
        append_entry(con, AuditEntry(
            actor, role, act.name, reason, {**args, "refused": str(refusal)}, []
        ))
        con.commit()
    except BaseException:
        con.rollback()
        raise


# ---------------------------------------------------------------- the acts


def _users_add(ctx: Context) -> Outcome:
    try:
        until = dt.date.fromisoformat(ctx.args["accredited_until"])
    except ValueError:
        raise GovernanceError("accredited-until must be a date YYYY-MM-DD") from None
    name = ctx.args["name"]
    if not USER_NAME.fullmatch(name):
        raise GovernanceError("a user name is 1-64 letters, digits, '.', '_', '@' or '-'")
    new = users.NewUser(name, ctx.args["role"], ctx.args["organisation"], until)
    added_by = ctx.actor.name if ctx.actor else name
    return Outcome(users.add_user(ctx.con, new, added_by, ctx.today, ctx.policy))


def _users_list(ctx: Context) -> Outcome:
    return Outcome(users.list_users(ctx.con, ctx.today))


def _users_revoke(ctx: Context) -> Outcome:
    return Outcome(users.revoke_user(ctx.con, ctx.args["name"], ctx.actor.name, ctx.today))


def _search(ctx: Context) -> Outcome:
    limit = ctx.policy.search_limit if ctx.args["limit"] is None else ctx.args["limit"]
    if not 1 <= limit <= ctx.policy.max_search_limit:
        raise GovernanceError(f"limit must be between 1 and {ctx.policy.max_search_limit}")
    probe = search.probe_from_inputs(ctx.args["name"], ctx.args["dob"], ctx.args["postcode"])
    is_manager = ctx.actor.role == "data_manager"
    viewer = search.Viewer(sees_archived=is_manager, sees_shielded=is_manager)
    hits = search.search_children(ctx.con, ctx.model(), probe, viewer, limit, ctx.policy)
    return Outcome(hits, [hit["child_id"] for hit in hits])


def _shield(ctx: Context) -> Outcome:
    child_id = ctx.args["child_id"]
    if not CHILD_ID.fullmatch(child_id):
        raise GovernanceError("a child ID is 1-64 letters, digits, ':', '_' or '-'")
    shielded = not ctx.args["unshield"]
    return Outcome(
        shielding.set_shielded(ctx.con, child_id, shielded, ctx.actor.name), [child_id]
    )


def _retention(ctx: Context) -> Outcome:
    try:
        as_of = dt.date.fromisoformat(ctx.args["as_of"])
    except ValueError:
        raise GovernanceError("as-of must be a date YYYY-MM-DD") from None
    apply = bool(ctx.args["apply"])
    if apply and as_of > ctx.today:
        raise GovernanceError("--apply takes an --as-of date no later than today")
    report = retention.run_retention(ctx.con, as_of, apply, ctx.policy)
    return Outcome(report.to_dict(), report.child_ids)


def _audit_verify(ctx: Context) -> Outcome:
    report = verify_chain(ctx.con)
    return Outcome(report.to_dict(), exit_status=0 if report.intact else 1)


def _backup(ctx: Context) -> Outcome:
    """Under the write lock, so between batches: a copy of the master as of one batch."""
    out = Path(ctx.args["out"])
    if not out.is_absolute():
        raise GovernanceError("the backup folder must be an absolute path")
    try:
        return Outcome(write_backup(ctx.con, out))
    except BackupError as err:
        raise GovernanceError(str(err)) from err


def _sources_list(ctx: Context) -> Outcome:
    return Outcome(sources.list_sources(ctx.con))


def _sources_register(ctx: Context) -> Outcome:
    return Outcome(sources.register_source(ctx.con, ctx.args["feed"], ctx.actor.name))


_ADMIN = frozenset({"admin"})
_SEARCHERS = frozenset({"practitioner", "data_manager"})
_DATA_MANAGER = frozenset({"data_manager"})
_TEXT = Argument(str)
_REQUIRED_TEXT = Argument(str, required=True)

ACTS: dict[str, Act] = {act.name: act for act in (
    Act("users.add", _ADMIN, {
        "name": _REQUIRED_TEXT, "role": _REQUIRED_TEXT, "organisation": _REQUIRED_TEXT,
        "accredited_until": _REQUIRED_TEXT,
    }, _users_add, bootstraps=True),
    Act("users.list", None, {}, _users_list),
    Act("users.revoke", _ADMIN, {"name": _REQUIRED_TEXT}, _users_revoke),
    Act("search", _SEARCHERS, {
        "name": _TEXT, "dob": _TEXT, "postcode": _TEXT, "limit": Argument(int),
    }, _search, needs_reason=True),
    Act("shield", _DATA_MANAGER, {"child_id": _REQUIRED_TEXT, "unshield": Argument(bool)},
        _shield, needs_reason=True),
    Act("retention", _ADMIN, {"as_of": _REQUIRED_TEXT, "apply": Argument(bool)}, _retention),
    Act("audit.verify", None, {}, _audit_verify),
    Act("backup", _ADMIN, {"out": Argument(str, required=True, max_chars=4096)}, _backup),
    Act("sources.list", None, {}, _sources_list),
    Act("sources.register", _ADMIN, {"feed": _REQUIRED_TEXT}, _sources_register),
)}

# The data managers' stewardship acts live beside the engine's stewardship code; imported last
# because they are built from the classes above.
from engine.governance.stewardship_acts import STEWARDSHIP_ACTS  # noqa: E402

ACTS |= {act.name: act for act in STEWARDSHIP_ACTS}
