"""Accredited users: a bootstrap admin, roles, expiry and revocation refuse every act, and every
administrative act (refusals too) is audited."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import duckdb
import pyotp
import pytest

from engine.governance.credentials import check_password, credentials_of
from engine.governance.errors import AccessRefused, GovernanceError
from engine.governance.policy import DEFAULT_POLICY
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import (
    NEXT_YEAR,
    TODAY,
    act,
    add_staff,
    governed_master,
    run_cli,
    search,
)


@pytest.fixture
def con(tmp_path: Path, model: CompiledModel) -> duckdb.DuckDBPyConnection:
    con = governed_master(tmp_path / "m.duckdb")
    add_staff(con, model)
    return con


def audit_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        'SELECT "user", role, act, reason, query FROM audit_log ORDER BY seq'
    ).fetchall()


def test_the_first_user_is_a_bootstrap_admin_and_later_ones_need_an_admin(
    tmp_path: Path, model: CompiledModel
):
    con = governed_master(tmp_path / "m.duckdb")
    with pytest.raises(GovernanceError, match="first user must be an admin"):
        act(con, model, "users.add", None, name="eve", role="practitioner",
            organisation="X", accredited_until=NEXT_YEAR)
    act(con, model, "users.add", None, name="root", role="admin", organisation="DfE",
        accredited_until=NEXT_YEAR)
    with pytest.raises(AccessRefused, match="adding one needs an admin"):
        act(con, model, "users.add", None, name="eve", role="admin", organisation="X",
            accredited_until=NEXT_YEAR)
    assert audit_rows(con)[0][:4] == ("root", "admin", "users.add", "bootstrap")


def test_only_an_admin_adds_users(con: duckdb.DuckDBPyConnection, model: CompiledModel):
    with pytest.raises(AccessRefused, match="'pat' is a practitioner; this act needs the admin"):
        act(con, model, "users.add", "pat", name="eve", role="admin", organisation="X",
            accredited_until=NEXT_YEAR)
    names = [row["name"] for row in act(con, model, "users.list", None).result]
    assert names == ["dana", "pat", "root"]


def test_an_expired_user_is_refused_every_act(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    con.execute("UPDATE users SET accredited_until = ? WHERE name IN ('pat', 'dana')",
                [yesterday])
    with pytest.raises(AccessRefused, match=f"'pat': accreditation expired on {yesterday}"):
        search(con, model, "pat", dob="2009-03-01")
    with pytest.raises(AccessRefused, match="expired"):
        act(con, model, "shield", "dana", "risk", child_id="C1", unshield=False)


def test_a_user_accredited_until_today_may_still_act(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    con.execute("UPDATE users SET accredited_until = ? WHERE name = 'pat'", [TODAY])
    assert search(con, model, "pat", dob="2009-03-01") == []


def test_a_revoked_user_is_refused_and_the_refusal_is_audited(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    act(con, model, "users.revoke", "root", "left the service", name="pat")
    with pytest.raises(AccessRefused, match="'pat' was revoked on"):
        search(con, model, "pat", name="Oliver Quartermaine")
    user, role, name, reason, query = audit_rows(con)[-1]
    assert (user, role, name, reason) == ("pat", "practitioner", "search", "safeguarding enquiry")
    assert json.loads(query)["refused"].startswith("user 'pat' was revoked on")


def test_an_unknown_user_is_refused(con: duckdb.DuckDBPyConnection, model: CompiledModel):
    with pytest.raises(AccessRefused, match="unknown user 'mallory'"):
        search(con, model, "mallory", dob="2009-03-01")


def test_accreditation_longer_than_three_years_or_already_over_is_refused(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    for until in ((TODAY + dt.timedelta(days=3 * 366 + 1)).isoformat(),
                  (TODAY - dt.timedelta(days=1)).isoformat()):
        with pytest.raises(GovernanceError, match="accredited-until must be between"):
            act(con, model, "users.add", "root", name="eve", role="practitioner",
                organisation="X", accredited_until=until)


def test_the_last_active_admin_cannot_be_revoked(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    with pytest.raises(GovernanceError, match="last active admin"):
        act(con, model, "users.revoke", "root", name="root")


def test_users_list_shows_each_status(con: duckdb.DuckDBPyConnection, model: CompiledModel):
    act(con, model, "users.revoke", "root", name="dana")
    con.execute("UPDATE users SET accredited_until = DATE '2001-01-01' WHERE name = 'pat'")
    statuses = {row["name"]: row["status"] for row in act(con, model, "users.list", None).result}
    assert statuses == {"dana": "revoked", "pat": "expired", "root": "active"}


def test_cli_users_add_list_revoke_with_a_one_line_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    db = str(tmp_path / "m.duckdb")
    add = ["users", "add", "--org", "DfE", "--accredited-until", NEXT_YEAR, "--db", db]
    assert run_cli([*add, "root", "--role", "admin"], capsys)[0] == 0
    assert run_cli([*add, "pat", "--role", "practitioner", "--by", "root"], capsys)[0] == 0
    status, _, err = run_cli([*add, "eve", "--role", "admin", "--by", "pat"], capsys)
    assert (status, err) == (2, "contactpoint users: user 'pat' is a practitioner; "
                                "this act needs the admin role\n")
    assert run_cli(["users", "revoke", "pat", "--by", "root", "--db", db], capsys)[0] == 0
    status, out, _ = run_cli(["users", "list", "--json", "--db", db], capsys)
    assert [(u["name"], u["status"]) for u in json.loads(out)] == [
        ("pat", "revoked"), ("root", "active")]


def test_a_password_from_stdin_gives_a_totp_secret_once_and_is_never_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    db = str(tmp_path / "m.duckdb")
    add = ["users", "add", "--org", "DfE", "--accredited-until", NEXT_YEAR, "--db", db,
           "--password-stdin", "--json"]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    status, out, _ = run_cli([*add, "root", "--role", "admin"], capsys)
    added = json.loads(out)
    assert status == 0 and pyotp.TOTP(added["totp_secret"]).now().isdigit()
    assert added["totp_uri"].startswith("otpauth://totp/ContactPoint%20Stream:root?secret=")
    status, out, _ = run_cli(["users", "list", "--json", "--db", db], capsys)
    assert "totp_secret" not in out and json.loads(out)[0]["sign_in"] == "token to enrol"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    status, _, err = run_cli([*add, "pat", "--role", "practitioner", "--by", "root"], capsys)
    assert (status, err) == (2, "contactpoint users: a password has at least 12 characters\n")
    con = duckdb.connect(db, read_only=True)
    logged = " ".join(str(row) for row in audit_rows(con))
    assert "a long enough password" not in logged and "short" not in logged
    assert added["totp_secret"] not in logged


def test_a_user_changes_their_own_password_from_the_cli_and_keeps_their_token(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    db = str(tmp_path / "m.duckdb")
    monkeypatch.setattr("sys.stdin", io.StringIO("the first password\n"))
    status, out, _ = run_cli(["users", "add", "root", "--role", "admin", "--org", "DfE",
                              "--accredited-until", NEXT_YEAR, "--password-stdin", "--json",
                              "--db", db], capsys)
    secret = json.loads(out)["totp_secret"]
    change = ["users", "password", "root", "--password-stdin", "--db", db]
    refusals = {
        "a wrong guess\nthe second password\n": "wrong user name, password or code",
        "the first password\nthe first password\n":
            "the new password is the same as the current one",
        "the first password\nshort\n": "a password has at least 12 characters",
    }
    for stdin, problem in refusals.items():
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        assert run_cli(change, capsys) == (2, "", f"contactpoint users: {problem}\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("the first password\nthe second password\n"))
    assert run_cli(change, capsys) == (0, "changed the password of root\n", "")

    con = duckdb.connect(db)
    assert credentials_of(con, "root").failed_signins == 1  # the wrong guess, as at sign-in
    now = dt.datetime.now(dt.UTC)
    assert check_password(con, "root", "the second password", now, DEFAULT_POLICY).passed
    assert not check_password(con, "root", "the first password", now, DEFAULT_POLICY).passed
    assert credentials_of(con, "root").totp_secret == secret
    changes = [json.loads(row[4])["outcome"] for row in audit_rows(con)
               if row[2] == "users.password"]
    assert changes == [*refusals.values(), "password changed"]
    logged = " ".join(str(row) for row in audit_rows(con))
    assert "first password" not in logged and "second password" not in logged
