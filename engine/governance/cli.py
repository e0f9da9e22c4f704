"""The governance verbs of `contactpoint`: users, search, explain, evaluate, audit, shield,
retention, sources, backup (a copy of every child's record: an audited admin act) and the
stewardship verbs (engine.governance.stewardship_cli).

Each handler turns its arguments into one `acts.Request` and hands it to `client.dispatch`
(the running engine's service, or the master file), then prints the outcome for people, or as
JSON with --json. Refusals are one line on stderr with exit status 2; `audit verify` exits 1
when the chain is broken.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.errors import UsageError
from engine.governance.acts import Outcome, Request
from engine.governance.client import dispatch
from engine.governance.errors import GovernanceError

_out = Console(highlight=False, soft_wrap=True)
Handler = Callable[[argparse.Namespace], int]


def register_governance_verbs(verbs: argparse._SubParsersAction) -> None:
    """Adds: users add|list|revoke|renew|reset|password, search, explain, evaluate, audit
    verify|head, shield, retention, sources list|register, backup, and the stewardship verbs
    (review list|resolve, link, unlink, merge, split)."""
    from engine.cli import DEFAULT_DB  # engine.cli imports this module: look it up when called
    from engine.governance.stewardship_cli import register_stewardship_verbs

    for add in (_add_users, _add_search, _add_explain, _add_evaluate, _add_audit, _add_shield,
                _add_retention, _add_sources, _add_backup, register_stewardship_verbs):
        add(verbs, DEFAULT_DB)


# ---------------------------------------------------------------- verbs


def _add_users(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    users = _group(verbs, "users", "accredited users: add, list, revoke")
    add = _action(users, "add", "accredit a user (the first one, an admin, needs no --by)",
                  _users_add, default_db)
    add.add_argument("name", help="user name (letters, digits, . _ @ -)")
    add.add_argument("--role", required=True, choices=("practitioner", "data_manager", "admin"))
    add.add_argument("--org", required=True, help="the user's organisation")
    add.add_argument("--accredited-until", required=True, metavar="YYYY-MM-DD",
                     help="when the user's checks and training expire (at most 3 years on)")
    add.add_argument("--by", help="the admin adding the user")
    add.add_argument("--reason", help="why (audited)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the user's web sign-in password from stdin (one line); prints "
                     "the TOTP secret to enrol, this once")
    _action(users, "list", "list users and their status", _users_list, default_db)
    revoke = _action(users, "revoke", "revoke a user for good", _users_revoke, default_db)
    revoke.add_argument("name")
    revoke.add_argument("--by", required=True, help="the admin revoking the user")
    revoke.add_argument("--reason", help="why (audited)")
    renew = _action(users, "renew", "renew a user's accreditation (checks redone)",
                    _users_renew, default_db)
    renew.add_argument("name")
    renew.add_argument("--accredited-until", required=True, metavar="YYYY-MM-DD")
    renew.add_argument("--by", required=True, help="the admin renewing it")
    renew.add_argument("--reason", help="why (audited)")
    reset = _action(users, "reset", "give a user a new password and a new TOTP token to enrol "
                    "(a lost token; also unlocks)", _users_reset, default_db)
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", required=True,
                       help="read the new password from stdin (one line)")
    reset.add_argument("--by", required=True, help="the admin resetting it")
    reset.add_argument("--reason", help="why (audited)")
    password = _action(users, "password", "change your own password (stdin: the current one on "
                       "the first line, the new one on the second); your token stays",
                       _users_password, default_db)
    password.add_argument("name", help="your user name")
    password.add_argument("--password-stdin", action="store_true", required=True,
                          help="read the current and the new password from stdin (two lines)")


def _users_add(args: argparse.Namespace) -> int:
    password = _password_from_stdin() if args.password_stdin else None
    return _perform(args, Request("users.add", args.by, args.reason, {
        "name": args.name, "role": args.role, "organisation": args.org,
        "accredited_until": args.accredited_until, "password": password,
    }), lambda user: f"added {user['role']} {user['name']} of {user['organisation']}, "
                     f"accredited until {user['accredited_until']}{_token_text(user)}")


def _users_renew(args: argparse.Namespace) -> int:
    request = Request("users.renew", args.by, args.reason,
                      {"name": args.name, "accredited_until": args.accredited_until})
    return _perform(args, request, lambda user: f"renewed {user['name']}: accredited until "
                    f"{user['accredited_until']}")


def _users_reset(args: argparse.Namespace) -> int:
    request = Request("users.reset", args.by, args.reason,
                      {"name": args.name, "password": _password_from_stdin()})
    return _perform(args, request, lambda user: f"reset {user['name']}{_token_text(user)}")


def _users_password(args: argparse.Namespace) -> int:
    current, new = _password_from_stdin(), _password_from_stdin()
    request = Request("users.password", args.name, None,
                      {"current_password": current, "new_password": new})
    outcome = dispatch(args.db, request)
    if not outcome.result["changed"]:  # audited, and a wrong password counted: now refuse
        raise GovernanceError(outcome.result["problem"])
    return _print_outcome(args, outcome, lambda done: f"changed the password of {done['name']}")


def _password_from_stdin() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: no password on stdin")
    return password


def _token_text(user: dict) -> str:
    if "totp_secret" not in user:
        return ""
    return (f"\nTOTP secret (shown once; the user can also enrol from the QR code at first "
            f"sign-in): {user['totp_secret']}")


def _users_list(args: argparse.Namespace) -> int:
    return _perform(args, Request("users.list"), _table)


def _users_revoke(args: argparse.Namespace) -> int:
    return _perform(args, Request("users.revoke", args.by, args.reason, {"name": args.name}),
                    lambda user: f"revoked {user['role']} {user['name']}")


def _add_search(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    search = _leaf(verbs, "search", "find a child (audited)",
                   "Fuzzy search scored with the linkage model, best match first, showing the "
                   "ContactPoint basics. Every search is audited with its reason, query and "
                   "the children it returned.", _search, default_db)
    search.add_argument("--user", required=True, help="the accredited user searching")
    search.add_argument("--reason", required=True, help="why you are searching (audited)")
    search.add_argument("--name", help='"first last" (one word: a surname)')
    search.add_argument("--dob", metavar="YYYY-MM-DD", help="date of birth")
    search.add_argument("--postcode")
    search.add_argument("--limit", type=int, help="most children shown (default 10, at most 100)")
    search.add_argument("--model", type=Path, help="model JSON when the engine is not running "
                        "(default: the shipped model)")


def _search(args: argparse.Namespace) -> int:
    request = Request("search", args.user, args.reason, {
        "name": args.name, "dob": args.dob, "postcode": args.postcode, "limit": args.limit,
    })
    return _perform(args, request, _search_text, model_path=args.model)


def _add_explain(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    explain = _leaf(verbs, "explain", "why a record went where it did (audited)",
                    "Show the decision for FEED:RECORD_ID, the candidate children with their "
                    "match weights now, and a per-comparison waterfall against the best "
                    "candidate, as text (and as offline HTML with --html). A practitioner is "
                    "refused a shielded child's record and does not see shielded candidates.",
                    _explain, default_db)
    explain.add_argument("record", metavar="FEED:RECORD_ID", help="e.g. nhs:000123")
    explain.add_argument("--user", required=True, help="the accredited user asking")
    explain.add_argument("--reason", required=True, help="why (audited)")
    explain.add_argument("--model", type=Path, help="model JSON when the engine is not running "
                         "(default: the shipped model)")
    explain.add_argument("--html", type=Path, help="also write the explanation as offline HTML")


def _explain(args: argparse.Namespace) -> int:
    request = Request("explain", args.user, args.reason,
                      {"record": args.record, "html": args.html is not None})
    outcome = dispatch(args.db, request, args.model)
    if args.json:
        print(json.dumps(outcome.result))
    else:
        print(outcome.result["text"])
    if args.html:
        args.html.write_text(outcome.result["html"], encoding="utf-8")
        print(f"HTML written to {args.html}", file=sys.stderr)
    return outcome.exit_status


def _add_evaluate(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    evaluate = _leaf(verbs, "evaluate", "score the master against a truth file (data managers)",
                     "Pairwise precision, recall and F1 of the master's links against truth.csv, "
                     "with true vs found children, false merges and missed links. --sweep also "
                     "scores all blocked pairs of the record index at every threshold and writes "
                     "an offline HTML precision-recall chart with suggested link and review "
                     "thresholds. Reads every child: a data manager's act, audited.",
                     _evaluate, default_db)
    evaluate.add_argument("--truth", type=Path, required=True,
                          help="truth.csv of the synthetic feeds")
    evaluate.add_argument("--user", help="the data manager (required to read the master)")
    evaluate.add_argument("--reason", help="why (audited; required to read the master)")
    evaluate.add_argument("--sweep", type=Path, metavar="HTML",
                          help="write the threshold sweep chart")
    evaluate.add_argument("--model", type=Path,
                          help="model for --sweep (default: the shipped model)")
    evaluate.add_argument("--compare", type=Path, nargs="+", metavar="MODEL",
                          help="compare two or more model JSONs on the records of --feeds and "
                          "the same truth (precision, recall, F1 per threshold, one chart); "
                          "reads no master")
    evaluate.add_argument("--feeds", type=Path, help="--compare: the feed snapshot to score")
    evaluate.add_argument("--chart", type=Path, metavar="HTML", help="--compare: the chart to "
                          "write (default: model-comparison.html beside the first model)")


def _evaluate(args: argparse.Namespace) -> int:
    if args.compare:
        from engine.cli import compare_models_verb

        return compare_models_verb(args)
    if not (args.user and args.reason):
        raise UsageError("evaluating the master reads every child: give --user and --reason")

    def absolute(path: Path | None) -> str | None:  # the engine's process may do the reading
        return str(path.absolute()) if path else None

    request = Request("evaluate", args.user, args.reason, {
        "truth": absolute(args.truth), "sweep": absolute(args.sweep),
        "model": absolute(args.model)})
    return _perform(args, request, _evaluation_table)


def _add_audit(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    audit = _group(verbs, "audit", "the tamper-evident audit log")
    verify = _action(audit, "verify", "check the hash chain; exit 1 and name the first bad "
                     "entry if broken", _audit_verify, default_db)
    verify.add_argument("--head", type=Path, metavar="FILE",
                        help="also check the log still holds this exported head (`audit head`)")
    head = _action(audit, "head", "export the chain's head to keep outside the master (admins)",
                   _audit_head, default_db)
    head.add_argument("--user", required=True, help="the admin")
    head.add_argument("--reason", help="why (audited)")
    head.add_argument("--out", type=Path, metavar="FILE", help="write the head here as JSON")


def _audit_verify(args: argparse.Namespace) -> int:
    exported = {"head_seq": None, "head_hash": None}
    if args.head:
        exported = _read_head(args.head)
    return _perform(args, Request("audit.verify", args=exported), _verify_text)


def _read_head(path: Path) -> dict:
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
        return {"head_seq": int(head["head_seq"]), "head_hash": str(head["head_hash"])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"--head {path}: not an exported head ({type(err).__name__})") from None


def _audit_head(args: argparse.Namespace) -> int:
    outcome = dispatch(args.db, Request("audit.head", args.user, args.reason))
    head = json.dumps(outcome.result)
    if args.out:
        args.out.write_text(head + "\n", encoding="utf-8")
        _out.print(f"head entry {outcome.result['head_seq']} written to {args.out}")
    else:
        print(head)
    return outcome.exit_status


def _add_shield(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    shield = _leaf(verbs, "shield", "shield a child (data managers)",
                   "Shield CHILD: practitioners then see only name, sex, date of birth and ID, "
                   "and are told to contact the data manager. --unshield lifts it (also the "
                   "review of a child the safety rule shielded).", _shield, default_db)
    shield.add_argument("child", metavar="CHILD", help="child ID")
    shield.add_argument("--user", required=True, help="the data manager")
    shield.add_argument("--reason", required=True, help="why (audited)")
    shield.add_argument("--unshield", action="store_true", help="lift the shield")


def _shield(args: argparse.Namespace) -> int:
    request = Request("shield", args.user, args.reason,
                      {"child_id": args.child, "unshield": args.unshield})
    return _perform(args, request, lambda r: f"child {r['child_id']} is now "
                    f"{'shielded' if r['shielded'] else 'not shielded'}")


def _add_retention(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    retention = _leaf(verbs, "retention", "archive and purge by the retention rules (admins)",
                      "Archive children at their 18th birthday (25th for a consenting care "
                      "leaver), deceased children a year after death, and purge children "
                      "archived six years. A dry run unless --apply.", _retention, default_db)
    retention.add_argument("--as-of", required=True, metavar="YYYY-MM-DD")
    retention.add_argument("--apply", action="store_true", help="do it (default: dry run)")
    retention.add_argument("--user", required=True, help="the admin")
    retention.add_argument("--reason", help="why (audited)")


def _retention(args: argparse.Namespace) -> int:
    request = Request("retention", args.user, args.reason,
                      {"as_of": args.as_of, "apply": args.apply})
    return _perform(args, request, _retention_text)


def _add_sources(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    sources = _group(verbs, "sources", "the accredited feeds")
    _action(sources, "list", "list the registered feeds", _sources_list, default_db)
    register = _action(sources, "register", "register a feed (admins)", _sources_register,
                       default_db)
    register.add_argument("feed", metavar="NAME")
    register.add_argument("--by", required=True, help="the admin registering it")
    register.add_argument("--reason", help="why (audited)")


def _sources_list(args: argparse.Namespace) -> int:
    return _perform(args, Request("sources.list"), _table)


def _sources_register(args: argparse.Namespace) -> int:
    return _perform(args, Request("sources.register", args.by, args.reason,
                                  {"feed": args.feed}),
                    lambda source: f"registered feed {source['feed']}")


def _add_backup(verbs: argparse._SubParsersAction, default_db: Path) -> None:
    backup = _leaf(verbs, "backup", "a consistent copy of the master (admins, audited)",
                   "Copy the master as of its last committed batch into DIR (new or empty), with "
                   "a manifest (feed positions, schema and engine versions, SHA-256). While `run "
                   "--follow` holds the master, the running engine takes the copy between two "
                   "batches. `contactpoint restore --from DIR` puts it back. See "
                   "docs/operations.md.", _backup, default_db)
    backup.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder to write (new or empty)")
    backup.add_argument("--by", required=True, help="the admin taking the backup")
    backup.add_argument("--reason", help="why (audited)")


def _backup(args: argparse.Namespace) -> int:
    out = str(args.out.absolute())
    if out != " ".join(out.split()) or not out.isprintable():  # a request's text is tidied
        raise GovernanceError("the backup folder's path may not hold runs of spaces or "
                              "unprintable characters")
    request = Request("backup", args.by, args.reason, {"out": out})
    return _perform(args, request, lambda manifest: (
        f"backup holding {manifest['counts']['links']:,} links written to {args.out} "
        f"({manifest['bytes'] / 2**20:,.1f} MiB, {len(manifest['feed_positions'])} feed files' "
        "positions)"))


# ---------------------------------------------------------------- parser helpers


def _group(verbs: argparse._SubParsersAction, name: str, help_text: str
           ) -> argparse._SubParsersAction:
    parser = verbs.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _action(group: argparse._SubParsersAction, name: str, help_text: str, handler: Handler,
            default_db: Path) -> argparse.ArgumentParser:
    return _leaf(group, name, help_text, help_text, handler, default_db)


def _leaf(verbs: argparse._SubParsersAction, name: str, help_text: str, description: str,
          handler: Handler, default_db: Path) -> argparse.ArgumentParser:
    parser = verbs.add_parser(name, help=help_text, description=description)
    parser.set_defaults(handler=handler)
    parser.add_argument("--db", type=Path, default=default_db,
                        help=f"master file ({default_db})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


# ---------------------------------------------------------------- output


def _perform(args: argparse.Namespace, request: Request, as_text: Callable[[Any], Any],
             model_path: Path | None = None) -> int:
    return _print_outcome(args, dispatch(args.db, request, model_path), as_text)


def _print_outcome(args: argparse.Namespace, outcome: Outcome,
                   as_text: Callable[[Any], Any]) -> int:
    if args.json:
        print(json.dumps(outcome.result, default=str))
    else:
        _out.print(as_text(outcome.result))
    return outcome.exit_status


def _table(rows: list[dict]) -> Table | str:
    if not rows:
        return "none"
    table = Table(*rows[0], title_justify="left")
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row.values()))
    return table


def _evaluation_table(result: dict) -> Table:
    table = Table(title="Accuracy against the truth", show_header=False, title_justify="left")
    for key, value in result.items():
        shown = json.dumps(value, default=str)[:200] if isinstance(value, dict | list) else value
        table.add_row(key, f"{shown:.4f}" if isinstance(shown, float) else str(shown))
    return table


def _search_text(hits: list[dict]) -> Text:
    if not hits:
        return Text("no matching child")
    lines = []
    for rank, hit in enumerate(hits, 1):
        lines.append(f"{rank}. {hit['child_id']}  probability {hit['match_probability']:.4f}")
        name = " ".join(filter(None, (hit["first_name"], hit.get("middle_names"),
                                      hit["surname"])))
        lines.append(f"   {name}, sex {hit['sex'] or '?'}, born {hit['date_of_birth'] or '?'}")
        if "contact" in hit:
            lines.append(f"   SHIELDED: {hit['contact']}")
            continue
        lines += [f"   {label}: {value}" for label, value in _basics(hit) if value]
    return Text("\n".join(lines))


def _basics(hit: dict) -> list[tuple[str, str | None]]:
    def joined(separator: str, *names: str) -> str | None:
        return separator.join(hit[n] for n in names if hit.get(n)) or None

    return [
        ("shielded", "yes" if hit["shielded"] else None),
        ("status", hit["status"] if hit["status"] != "active" else None),
        ("archived on", hit.get("archived_on")),
        ("preferred name", joined(" ", "preferred_first_name", "preferred_surname")),
        ("address", joined(", ", "address_line1", "address_line2", "town", "postcode")),
        ("NHS number", hit["nhs_number"]),
        ("UPN", hit["upn"]),
        ("parent/carer", joined(" ", "parent_forenames", "parent_surname")),
        ("school URN", hit["school_urn"]),
        ("GP practice", hit["gp_practice_code"]),
        ("died", hit["date_of_death"]),
    ]


def _verify_text(report: dict) -> str:
    head = f"head: entry {report['head_seq']} {report['head_hash']}"
    if report["intact"]:
        return f"audit log intact: {report['entries']:,} entries; {head}"
    return f"audit log BROKEN: {report['problem']} ({report['entries']:,} entries verified)"


def _retention_text(report: dict) -> str:
    verb = ("archived", "purged") if report["applied"] else ("would archive", "would purge")
    lines = [
        f"retention as of {report['as_of']}"
        f"{'' if report['applied'] else ' (dry run: --apply to do it)'}:",
        f"  {verb[0]} {len(report['archive'])} children, {verb[1]} {len(report['purge'])}; "
        f"{report['undetermined']} without a usable date of birth kept for review",
    ]
    lines += [f"  archive {r['child_id']}: {r['rule']} on {r['due']}" for r in report["archive"]]
    lines += [f"  purge {r['child_id']}: archived {r['archived_on']}" for r in report["purge"]]
    return "\n".join(lines)
