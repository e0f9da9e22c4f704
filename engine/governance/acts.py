"""The governance acts and the one function that performs them on a master connection.

A request is plain JSON (`Request`), so the CLI performs it on a master it opened itself or
sends it to the running engine's service, which performs it on its own connection: the same
`perform` either way. Every act by a user is checked (accredited, active, allowed role) and
audited in the same transaction as its effect; a refusal is audited too. Secret arguments
(passwords, codes) are never audited; personal ones (a search probe) are audited as data that
retention later drops (`audit.redact_personal_data`).
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
from engine.governance import (
    credentials,
    record_views,
    retention,
    search,
    shielding,
    sources,
    users,
)
from engine.governance.audit import AuditEntry, ExportedHead, append_entry, verify_chain
from engine.governance.errors import AccessRefused, GovernanceError
from engine.governance.policy import DEFAULT_POLICY, GovernancePolicy
from engine.governance.search_index import upkeep_paused
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
    """An act's result (JSON-ready), the child IDs it returned or touched, its exit status, and
    what the audit entry adds to the act's arguments (e.g. how a sign-in attempt ended)."""

    result: Any
    child_ids: list[str] = field(default_factory=list)
    exit_status: int = 0
    audit: dict[str, Any] = field(default_factory=dict)


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
    actor_name: str | None = None


@dataclass(frozen=True)
class Argument:
    """One argument of an act: its JSON type, whether it must be given, for text its longest
    allowed length (None: the policy's `max_field_chars`); `secret`: taken as given and never
    audited; `personal`: audited only until retention drops it."""

    kind: type
    required: bool = False
    max_chars: int | None = None
    secret: bool = False
    personal: bool = False


@dataclass(frozen=True)
class Act:
    """An act: who may do it (None: anyone, unaudited read), its arguments, what it does;
    `bootstraps`: on a master without users it may be done by nobody (the first admin);
    `audited`: False for a mere check of the user (a web page's session); `authenticates`:
    the act checks the user's credentials itself (sign-in), so it is not authorised first;
    `effect`: what it writes (READ, GOVERNANCE, INDEX or CHECKPOINT), which decides the locks
    it takes;
    `prepare`: upkeep of a structure the act reads that only acts write (the search index),
    done before the act's transaction (in one of its own, serialised by the upkeep itself)."""

    name: str
    roles: frozenset[str] | None
    arguments: dict[str, Argument]
    run: Callable[[Context], Outcome]
    needs_reason: bool = False
    bootstraps: bool = False
    audited: bool = True
    authenticates: bool = False
    effect: str = "index"
    prepare: Callable[[duckdb.DuckDBPyConnection, CompiledModel], None] | None = None


# What an act writes. READ: nothing but its audit entry, appended in a transaction of its own
# right after the act, before its result leaves (so a search never waits for a batch being
# written). GOVERNANCE: governance tables only (users, sources, audit): under the acts' own
# lock. INDEX (the default): tables the engine's batches write too: also under the engine's
# write lock, so acts and batches never write the same rows at once. CHECKPOINT: the master's
# file itself (a backup): also between two upkeeps of the search index, which write in
# transactions of their own; taken before the act's transaction begins, since a checkpoint
# fails in a transaction older than another's commit.
READ, GOVERNANCE, INDEX, CHECKPOINT = "read", "governance", "index", "checkpoint"


def perform(
    con: duckdb.DuckDBPyConnection,
    request: Request,
    model: Callable[[], CompiledModel],
    *,
    write_lock: AbstractContextManager | None = None,
    acts_lock: AbstractContextManager | None = None,
    today: dt.date | None = None,
    policy: GovernancePolicy = DEFAULT_POLICY,
) -> Outcome:
    """Check, perform and audit `request` on `con`. `acts_lock` serialises the acts' writes
    (the audit chain's appends) among concurrent cursors; `write_lock` is the lock the engine's
    writer holds while it writes a batch (taken by INDEX and CHECKPOINT acts). GovernanceError
    (AccessRefused: audited) if refused."""
    act, actor_name, reason, args = validate(request, policy)
    today = today or dt.date.today()
    acts_lock = acts_lock or nullcontext()
    writes_index = act.effect in (INDEX, CHECKPOINT)
    engine_lock = (write_lock or nullcontext()) if writes_index else nullcontext()
    upkeep_lock = upkeep_paused() if act.effect == CHECKPOINT else nullcontext()
    audited = act.roles is not None and act.audited
    if act.prepare is not None:
        act.prepare(con, model())
    try:
        if act.effect == READ:
            outcome, actor = _run_in_transaction(con, act, actor_name, reason, args, today,
                                                 policy, model, audit=False)
            if audited:
                with acts_lock:
                    _in_transaction(con, lambda: append_entry(con, _entry(
                        act, actor_name, actor, args, reason, outcome)))
            return outcome
        with acts_lock, engine_lock, upkeep_lock:
            return _run_in_transaction(con, act, actor_name, reason, args, today, policy, model,
                                       audit=audited)[0]
    except AccessRefused as refusal:
        with acts_lock:
            _audit_refusal(con, act, actor_name, args, reason, refusal)
        raise


def _run_in_transaction(
    con: duckdb.DuckDBPyConnection, act: Act, actor_name: str | None, reason: str | None,
    args: dict, today: dt.date, policy: GovernancePolicy, model: Callable[[], CompiledModel],
    *, audit: bool,
) -> tuple[Outcome, users.User | None]:
    """Authorise and run `act` in one transaction, with its audit entry if `audit`."""
    def run() -> tuple[Outcome, users.User | None]:
        if act.authenticates:
            actor = users.find_user(con, actor_name)
        else:
            actor = _authorise(con, act, actor_name, args, today)
        outcome = act.run(Context(con, actor, reason, args, today, policy, model, actor_name))
        if audit:
            append_entry(con, _entry(act, actor_name, actor, args, reason, outcome))
        return outcome, actor

    return _in_transaction(con, run)


def _in_transaction(con: duckdb.DuckDBPyConnection, work: Callable[[], Any]) -> Any:
    con.begin()
    try:
        result = work()
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return result


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
    if spec.kind is str and spec.secret:
        if value is not None and len(value) > (spec.max_chars or policy.max_field_chars):
            raise GovernanceError(f"{name} is too long")
    elif spec.kind is str:
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
    act: Act, actor_name: str | None, actor: users.User | None, args: dict,
    reason: str | None, outcome: Outcome,
) -> AuditEntry:
    query, personal = _audited_arguments(act, args)
    query |= outcome.audit
    if actor_name is None:  # the bootstrap admin
        return AuditEntry(args["name"], "admin", act.name, reason or "bootstrap", query,
                          outcome.child_ids, personal)
    role = actor.role if actor else None
    return AuditEntry(actor_name, role, act.name, reason, query, outcome.child_ids, personal)


def _audited_arguments(act: Act, args: dict) -> tuple[dict, dict]:
    """(the arguments the audit entry shows, its personal ones); secret ones are left out."""
    specs = act.arguments
    query = {k: v for k, v in args.items() if not (specs[k].secret or specs[k].personal)}
    return query, {k: v for k, v in args.items() if specs[k].personal}


def _audit_refusal(
    con: duckdb.DuckDBPyConnection, act: Act, actor: str | None, args: dict,
    reason: str | None, refusal: AccessRefused,
) -> None:
    def append() -> None:
        known = users.find_user(con, actor) if actor else None
        role = known.role if known else None
        query, personal = _audited_arguments(act, args)
        append_entry(con, AuditEntry(
            actor, role, act.name, reason, query | {"refused": str(refusal)}, [], personal
        ))

    _in_transaction(con, append)


# ---------------------------------------------------------------- the acts


def _users_add(ctx: Context) -> Outcome:
    until = _date(ctx.args["accredited_until"], "accredited-until")
    name = ctx.args["name"]
    if not USER_NAME.fullmatch(name):
        raise GovernanceError("a user name is 1-64 letters, digits, '.', '_', '@' or '-'")
    new = users.NewUser(name, ctx.args["role"], ctx.args["organisation"], until)
    added_by = ctx.actor.name if ctx.actor else name
    added = users.add_user(ctx.con, new, added_by, ctx.today, ctx.policy)
    if ctx.args["password"] is not None:
        added |= credentials.set_password(ctx.con, name, ctx.args["password"], ctx.policy)
    return Outcome(added)


def _users_renew(ctx: Context) -> Outcome:
    until = _date(ctx.args["accredited_until"], "accredited-until")
    return Outcome(users.renew_user(ctx.con, ctx.args["name"], until, ctx.today, ctx.policy))


def _users_reset(ctx: Context) -> Outcome:
    if users.find_user(ctx.con, ctx.args["name"]) is None:
        raise GovernanceError(f"unknown user {ctx.args['name']!r}")
    reset = credentials.set_password(ctx.con, ctx.args["name"], ctx.args["password"], ctx.policy)
    return Outcome({"name": ctx.args["name"]} | reset)


def _users_password(ctx: Context) -> Outcome:
    """The acting user changes their own password: refusals are outcomes, not errors, so that
    a wrong current password's count towards the lockout is kept (and audited)."""
    check = credentials.change_password(
        ctx.con, ctx.actor.name, ctx.args["current_password"], ctx.args["new_password"],
        dt.datetime.now(dt.UTC), ctx.policy)
    if not check.passed:
        return Outcome({"changed": False, "problem": check.problem}, exit_status=2,
                       audit={"outcome": check.problem})
    return Outcome({"changed": True, "name": ctx.actor.name},
                   audit={"outcome": "password changed"})


def _signin_password(ctx: Context) -> Outcome:
    now = dt.datetime.now(dt.UTC)
    check = credentials.check_password(
        ctx.con, ctx.actor_name, ctx.args["password"], now, ctx.policy)
    if check.passed:
        check = _still_accredited(ctx)
    if not check.passed:
        return _signin_refused(check)
    held = credentials.credentials_of(ctx.con, ctx.actor_name)
    if held.totp_enrolled:
        return Outcome({"passed": True, "next": "code"}, audit={"outcome": "password accepted"})
    return Outcome({"passed": True, "next": "enrol", "totp_secret": held.totp_secret,
                    "totp_uri": credentials.totp_uri(held.totp_secret, ctx.actor_name)},
                   audit={"outcome": "password accepted; token to enrol"})


def _signin_code(ctx: Context) -> Outcome:
    now = dt.datetime.now(dt.UTC)
    check = credentials.check_code(ctx.con, ctx.actor_name, ctx.args["code"], now, ctx.policy)
    if check.passed:
        check = _still_accredited(ctx)
    if not check.passed:
        return _signin_refused(check)
    user = users.user_row(ctx.con, ctx.actor_name, ctx.today)
    return Outcome({"passed": True, "user": user}, audit={"outcome": "signed in"})


def _still_accredited(ctx: Context) -> credentials.Check:
    status = ctx.actor.status(ctx.today) if ctx.actor else "unknown"
    if status == "active":
        return credentials.Check(True)
    return credentials.Check(False, f"your accreditation is {status}: ask your admin")


def _signin_refused(check: credentials.Check) -> Outcome:
    return Outcome({"passed": False, "problem": check.problem}, exit_status=2,
                   audit={"outcome": check.problem})


def _session_check(ctx: Context) -> Outcome:
    return Outcome(users.user_row(ctx.con, ctx.actor.name, ctx.today))


def _users_list(ctx: Context) -> Outcome:
    return Outcome(users.list_users(ctx.con, ctx.today))


def _users_revoke(ctx: Context) -> Outcome:
    return Outcome(users.revoke_user(ctx.con, ctx.args["name"], ctx.actor.name, ctx.today))


def _search(ctx: Context) -> Outcome:
    limit = ctx.policy.search_limit if ctx.args["limit"] is None else ctx.args["limit"]
    if not 1 <= limit <= ctx.policy.max_search_limit:
        raise GovernanceError(f"limit must be between 1 and {ctx.policy.max_search_limit}")
    probe = search.probe_from_inputs(ctx.args["name"], ctx.args["dob"], ctx.args["postcode"])
    viewer = search.viewer_for(ctx.actor.role)
    fields = search.LIST_VIEW if ctx.args["brief"] else search.FULL_VIEW
    hits = search.search_children(ctx.con, ctx.model(), probe, viewer, limit, ctx.policy, fields)
    return Outcome(hits, [hit["child_id"] for hit in hits])


def _child_view(ctx: Context) -> Outcome:
    child_id = _child_id(ctx.args["child_id"])
    view = search.child_view(ctx.con, child_id, search.viewer_for(ctx.actor.role))
    return Outcome(view, [view["child_id"]])


def _explain(ctx: Context) -> Outcome:
    shown = record_views.explain_for(
        ctx.con, ctx.model(), ctx.args["record"], search.viewer_for(ctx.actor.role))
    result = {"record": shown.record, "text": shown.text()}
    if ctx.args["html"]:
        result["html"] = shown.html()
    children = [shown.decision["child_id"], *(c.child_id for c in shown.candidates)]
    return Outcome(result, list(dict.fromkeys(children)))


def _evaluate(ctx: Context) -> Outcome:
    return Outcome(record_views.evaluate(
        ctx.con, ctx.args["truth"], ctx.args["sweep"], ctx.args["model"]))


def _child_id(child_id: str) -> str:
    if not CHILD_ID.fullmatch(child_id):
        raise GovernanceError("a child ID is 1-64 letters, digits, ':', '_' or '-'")
    return child_id


def _date(text: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise GovernanceError(f"{name} must be a date YYYY-MM-DD") from None


def _shield(ctx: Context) -> Outcome:
    child_id = _child_id(ctx.args["child_id"])
    shielded = not ctx.args["unshield"]
    return Outcome(
        shielding.set_shielded(ctx.con, child_id, shielded, ctx.actor.name), [child_id]
    )


def _retention(ctx: Context) -> Outcome:
    as_of = _date(ctx.args["as_of"], "as-of")
    apply = bool(ctx.args["apply"])
    if apply and as_of > ctx.today:
        raise GovernanceError("--apply takes an --as-of date no later than today")
    report = retention.run_retention(ctx.con, as_of, apply, ctx.policy)
    return Outcome(report.to_dict(), report.child_ids)


def _audit_verify(ctx: Context) -> Outcome:
    head_seq, head_hash = ctx.args["head_seq"], ctx.args["head_hash"]
    if (head_seq is None) != (head_hash is None):
        raise GovernanceError("an exported head has both head_seq and head_hash")
    exported = ExportedHead(head_seq, head_hash) if head_seq is not None else None
    report = verify_chain(ctx.con, exported)
    return Outcome(report.to_dict(), exit_status=0 if report.intact else 1)


def _backup(ctx: Context) -> Outcome:
    """Under the write lock, so between batches: a copy of the master as of one batch (the
    CHECKPOINT effect)."""
    out = Path(ctx.args["out"])
    if not out.is_absolute():
        raise GovernanceError("the backup folder must be an absolute path")
    try:
        return Outcome(write_backup(ctx.con, out))
    except BackupError as err:
        raise GovernanceError(str(err)) from err


def _audit_head(ctx: Context) -> Outcome:
    report = verify_chain(ctx.con)
    if not report.intact:
        raise GovernanceError(f"the audit log is broken ({report.problem}): not exporting")
    return Outcome({"head_seq": report.head_seq, "head_hash": report.head_hash,
                    "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})


def _sources_list(ctx: Context) -> Outcome:
    return Outcome(sources.list_sources(ctx.con))


def _sources_register(ctx: Context) -> Outcome:
    return Outcome(sources.register_source(ctx.con, ctx.args["feed"], ctx.actor.name))


_ADMIN = frozenset({"admin"})
_SEARCHERS = frozenset({"practitioner", "data_manager"})
_DATA_MANAGER = frozenset({"data_manager"})
_ANYONE = frozenset(users.ROLES)
_TEXT = Argument(str)
_REQUIRED_TEXT = Argument(str, required=True)
_PERSONAL = Argument(str, personal=True)
_SECRET = Argument(str, secret=True)
_REQUIRED_SECRET = Argument(str, required=True, secret=True)

ACTS: dict[str, Act] = {act.name: act for act in (
    Act("users.add", _ADMIN, {
        "name": _REQUIRED_TEXT, "role": _REQUIRED_TEXT, "organisation": _REQUIRED_TEXT,
        "accredited_until": _REQUIRED_TEXT, "password": _SECRET,
    }, _users_add, bootstraps=True, effect=GOVERNANCE),
    Act("users.list", None, {}, _users_list, effect=READ),
    Act("users.revoke", _ADMIN, {"name": _REQUIRED_TEXT}, _users_revoke, effect=GOVERNANCE),
    Act("users.renew", _ADMIN, {"name": _REQUIRED_TEXT, "accredited_until": _REQUIRED_TEXT},
        _users_renew, effect=GOVERNANCE),
    Act("users.reset", _ADMIN, {"name": _REQUIRED_TEXT, "password": _REQUIRED_SECRET},
        _users_reset, effect=GOVERNANCE),
    Act("users.password", _ANYONE, {
        "current_password": _REQUIRED_SECRET, "new_password": _REQUIRED_SECRET,
    }, _users_password, effect=GOVERNANCE),
    Act("signin.password", _ANYONE, {"password": _REQUIRED_SECRET}, _signin_password,
        authenticates=True, effect=GOVERNANCE),
    Act("signin.code", _ANYONE, {"code": _REQUIRED_SECRET}, _signin_code, authenticates=True,
        effect=GOVERNANCE),
    Act("session.check", _ANYONE, {}, _session_check, audited=False, effect=READ),
    Act("search", _SEARCHERS, {
        "name": _PERSONAL, "dob": _PERSONAL, "postcode": _PERSONAL, "limit": Argument(int),
        "brief": Argument(bool),  # only a list's fields (search.LIST_VIEW): the results page
    }, _search, needs_reason=True, effect=READ, prepare=search.prepare_search_index),
    Act("child.view", _SEARCHERS, {"child_id": _REQUIRED_TEXT}, _child_view, needs_reason=True,
        effect=READ),
    Act("explain", _SEARCHERS, {"record": _REQUIRED_TEXT, "html": Argument(bool)}, _explain,
        needs_reason=True, effect=READ),
    Act("evaluate", _DATA_MANAGER, {
        "truth": Argument(str, required=True, max_chars=4096),
        "sweep": Argument(str, max_chars=4096), "model": Argument(str, max_chars=4096),
    }, _evaluate, needs_reason=True, effect=READ),
    Act("shield", _DATA_MANAGER, {"child_id": _REQUIRED_TEXT, "unshield": Argument(bool)},
        _shield, needs_reason=True),
    Act("retention", _ADMIN, {"as_of": _REQUIRED_TEXT, "apply": Argument(bool)}, _retention),
    Act("audit.verify", None, {"head_seq": Argument(int), "head_hash": _TEXT}, _audit_verify,
        effect=READ),
    Act("audit.head", _ADMIN, {}, _audit_head, effect=READ),
    Act("backup", _ADMIN, {"out": Argument(str, required=True, max_chars=4096)}, _backup,
        effect=CHECKPOINT),
    Act("sources.list", None, {}, _sources_list, effect=READ),
    Act("sources.register", _ADMIN, {"feed": _REQUIRED_TEXT}, _sources_register,
        effect=GOVERNANCE),
)}

# The data managers' stewardship acts live beside the engine's stewardship code; imported last
# because they are built from the classes above.
from engine.governance.stewardship_acts import STEWARDSHIP_ACTS  # noqa: E402

ACTS |= {act.name: act for act in STEWARDSHIP_ACTS}
