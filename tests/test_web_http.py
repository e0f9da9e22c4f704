"""The web application over HTTP (Flask's test client on the real application and a real master
file, no browser): only /healthz is open, every other route needs a signed-in session, forms
need the session's CSRF token, each role sees only its pages, sign-in needs both factors, and
revocation takes effect at the next request."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.governance.credentials import WRONG_CREDENTIALS
from engine.governance.search import CONTACT_DATA_MANAGER
from engine.web.app import OPEN_ENDPOINTS
from engine.web.sessions import AWAITING_CODE, SessionStore, SessionTimes
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import act
from tests.web_helpers import PASSWORD, code_for, csrf_token, sign_in, web_master

EXTRA_USERS = {"rita": "practitioner", "sam": "practitioner", "lou": "practitioner",
               "eve": "practitioner", "max": "practitioner", "kim": "data_manager",
               "ada": "practitioner", "ida": "practitioner", "joe": "practitioner"}
PAGE_LIMIT_BYTES = 200 * 1024


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory, model: CompiledModel) -> dict:
    db = tmp_path_factory.mktemp("web") / "m.duckdb"
    return {"db": db, **web_master(db, model, EXTRA_USERS)}


def audit_rows(db: Path, act_name: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute('SELECT "user", reason, query, child_ids FROM audit_log '
                           "WHERE act = ? ORDER BY seq", [act_name]).fetchall()
    finally:
        con.close()


def last_audited(db: Path, act_name: str) -> tuple[str, str, list[str]]:
    """(user, reason, child IDs) of the newest audit entry of `act_name`."""
    user, reason, _, child_ids = audit_rows(db, act_name)[-1]
    return user, reason, json.loads(child_ids)


def view_child(client: FlaskClient, child_id: str, reason: str):
    """The child page `client` gets for `child_id`, asked from the search page with `reason`."""
    token = csrf_token(client.get("/search").text)
    return client.post("/child", data={"csrf_token": token, "reason": reason,
                                       "child_id": child_id})


def test_healthz_answers_without_a_session(app: Flask):
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    """(status, Location header) of GET `path` on the local server at `port`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Location") or ""
    finally:
        connection.close()


def test_contactpoint_serve_answers_healthz_alone_without_a_session(master: dict, tmp_path: Path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--db", str(master["db"]), "--port", str(port)],
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get(port, "/healthz")[0] == 200
                break
            except ConnectionRefusedError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        status, location = get(port, "/search")
        assert status == 302 and location.endswith("/login")
    finally:
        server.terminate()
        server.wait(timeout=10)
    missing = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--db", str(tmp_path / "none.duckdb")],
        capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].endswith("run `contactpoint run` first")


def test_every_other_route_refuses_a_request_without_a_session(app: Flask):
    client = app.test_client()
    rules = [rule for rule in app.url_map.iter_rules()
             if rule.endpoint not in OPEN_ENDPOINTS | {"static"}]
    assert len(rules) >= 10
    for rule in rules:
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method)
            if path.startswith("/api/"):
                assert response.status_code == 401, (method, path)
            else:
                assert (response.status_code, response.headers["Location"]) == (
                    302, "/login"), (method, path)
    assert client.get("/no/such/page").status_code == 302


def test_a_forged_csrf_token_is_rejected_and_nothing_is_done(
    signed_in: dict[str, FlaskClient], master: dict
):
    searches = len(audit_rows(master["db"], "search"))
    for token in ("forged", ""):
        response = signed_in["pat"].post("/search", data={
            "csrf_token": token, "reason": "enquiry", "name": "Oliver Quartermaine"})
        assert response.status_code == 400 and "This form has expired" in response.text
    assert len(audit_rows(master["db"], "search")) == searches


def test_a_sign_in_form_without_its_own_token_is_rejected(app: Flask):
    response = app.test_client().post("/login", data={
        "csrf_token": "forged", "name": "pat", "password": PASSWORD})
    assert response.status_code == 400


@pytest.mark.parametrize(("user", "allowed", "refused"), [
    ("pat", ["/search"], ["/review", "/admin/users", "/admin/sources", "/admin/retention",
                          "/admin/audit"]),
    ("dana", ["/search", "/review"], ["/admin/users", "/admin/audit"]),
    ("root", ["/admin/users", "/admin/sources", "/admin/retention", "/admin/audit"],
     ["/search", "/review"]),
])
def test_each_role_sees_only_its_pages(
    signed_in: dict[str, FlaskClient], user: str, allowed: list[str], refused: list[str]
):
    client = signed_in[user]
    for path in allowed:
        response = client.get(path)
        assert response.status_code == 200, path
        assert len(response.data) < PAGE_LIMIT_BYTES
    for path in refused:
        assert client.get(path).status_code == 403, path
    assert client.get("/api/session").json["role"] == {
        "pat": "practitioner", "dana": "data_manager", "root": "admin"}[user]


FIELD = re.compile(r"<(input|select|textarea)\b([^>]*)>")
LABEL_FOR = re.compile(r'<label\b[^>]*\bfor="([^"]+)"')


def unlabelled_fields(html: str) -> list[str]:
    """The form fields a person fills in that have neither a <label for> nor an aria-label."""
    labelled = set(LABEL_FOR.findall(html))
    missing = []
    for _, attributes in FIELD.findall(html):
        kind = re.search(r'\btype="([^"]+)"', attributes)
        if kind and kind.group(1) in ("hidden", "submit", "button"):
            continue
        field_id = re.search(r'\bid="([^"]+)"', attributes)
        if "aria-label=" not in attributes and (not field_id or field_id.group(1) not in labelled):
            missing.append(attributes.strip())
    return missing


@pytest.mark.parametrize(("user", "paths"), [
    (None, ["/login"]),
    ("pat", ["/search", "/account/password"]),
    ("dana", ["/review"]),
    ("root", ["/admin/users", "/admin/sources", "/admin/retention", "/admin/audit"]),
])
def test_every_field_of_every_form_has_a_label(
    app: Flask, signed_in: dict[str, FlaskClient], user: str | None, paths: list[str]
):
    client = signed_in[user] if user else app.test_client()
    for path in paths:
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<form" in page.text, path
        assert unlabelled_fields(page.text) == [], path


def test_a_search_needs_a_reason_and_is_audited_with_it(
    signed_in: dict[str, FlaskClient], master: dict
):
    client = signed_in["pat"]
    token = csrf_token(client.get("/search").text)
    refused = client.post("/search", data={"csrf_token": token, "reason": " ",
                                           "name": "Oliver Quartermaine"})
    assert refused.status_code == 400 and "a reason is required" in refused.text
    found = client.post("/search", data={"csrf_token": token, "reason": "school nurse referral",
                                         "name": "Oliver Quartermaine", "dob": "2009-03-01"})
    assert found.status_code == 200 and "1 child found" in found.text
    assert last_audited(master["db"], "search") == (
        "pat", "school nurse referral", [master["oliver"]])


def test_a_child_page_shows_the_basics_and_contacts_and_is_audited(
    signed_in: dict[str, FlaskClient], master: dict
):
    page = view_child(signed_in["pat"], master["oliver"], "school nurse referral")
    assert page.status_code == 200
    for shown in ("OLIVER QUARTERMAINE", "2009-03-01", "1 HIGH STREET", "9434765919",
                  "SARAH QUARTERMAINE", "URN 100234", "Practice code B86001", "School census"):
        assert shown in page.text, shown
    assert last_audited(master["db"], "child.view") == (
        "pat", "school nurse referral", [master["oliver"]])


def test_a_practitioner_sees_a_shielded_child_only_as_today(
    signed_in: dict[str, FlaskClient], master: dict
):
    page = view_child(signed_in["pat"], master["amelia"], "health visitor check")
    assert page.status_code == 200
    assert "This child is shielded" in page.text and CONTACT_DATA_MANAGER in page.text
    assert "AMELIA FOTHERINGHAM" in page.text and "2008-07-14" in page.text
    for hidden in ("2 LOW ROAD", "YO1 7HH", "JANE", "Contacts"):
        assert hidden not in page.text, hidden
    full = view_child(signed_in["dana"], master["amelia"], "review of shielding")
    assert "2 LOW ROAD" in full.text and "JANE FOTHERINGHAM" in full.text


def test_sign_in_needs_the_password_and_then_a_good_code(app: Flask, master: dict):
    client = app.test_client()
    form = client.get("/login")
    wrong = client.post("/login", data={"csrf_token": csrf_token(form.text), "name": "sam",
                                        "password": "not the password"})
    assert wrong.status_code == 401 and WRONG_CREDENTIALS in wrong.text
    assert client.get("/search").status_code == 302
    client.post("/login", data={"csrf_token": csrf_token(wrong.text), "name": "sam",
                                "password": PASSWORD})
    code_page = client.get("/login/code")
    assert "<svg" in code_page.text and master["secrets"]["sam"] in code_page.text  # enrol
    assert client.get("/search").status_code == 302  # a password alone is not a session
    bad = client.post("/login/code", data={"csrf_token": csrf_token(code_page.text),
                                           "code": "000000"})
    assert bad.status_code == 401
    good = client.post("/login/code", data={"csrf_token": csrf_token(code_page.text),
                                            "code": code_for(master["secrets"]["sam"])})
    assert (good.status_code, good.headers["Location"]) == (302, "/")
    assert client.get("/search").status_code == 200


def test_a_locked_user_is_refused_even_with_the_right_password(app: Flask, master: dict):
    client = app.test_client()
    page = client.get("/login")
    for _ in range(5):
        page = client.post("/login", data={"csrf_token": csrf_token(page.text), "name": "lou",
                                           "password": "guess"})
    locked = client.post("/login", data={"csrf_token": csrf_token(page.text), "name": "lou",
                                         "password": PASSWORD})
    assert locked.status_code == 401 and "locked until" in locked.text
    outcomes = [json.loads(query).get("outcome") for user, _, query, _ in
                audit_rows(master["db"], "signin.password") if user == "lou"]
    assert outcomes[-2].startswith(WRONG_CREDENTIALS + "; too many failed attempts")
    assert "locked" in outcomes[-1]
    assert all(PASSWORD not in q and "guess" not in q
               for _, _, q, _ in audit_rows(master["db"], "signin.password"))


def test_a_revoked_user_is_signed_out_at_the_next_request(
    app: Flask, master: dict, model: CompiledModel
):
    client = app.test_client()
    assert sign_in(client, "rita", master["secrets"]["rita"]).status_code == 302
    assert client.get("/search").status_code == 200
    con = duckdb.connect(str(master["db"]))
    act(con, model, "users.revoke", "root", "left the service", name="rita")
    con.close()
    refused = client.get("/search")
    assert refused.status_code == 403 and "was revoked" in refused.text
    assert client.get("/search").status_code == 302


def test_an_accreditation_that_runs_out_signs_the_user_out_at_the_next_request(
    app: Flask, master: dict
):
    client = app.test_client()
    assert sign_in(client, "ada", master["secrets"]["ada"]).status_code == 302
    assert client.get("/search").status_code == 200
    con = duckdb.connect(str(master["db"]))  # the day after the accreditation's last one
    con.execute("UPDATE users SET accredited_until = current_date - 1 WHERE name = 'ada'")
    con.close()
    refused = client.get("/search")
    assert refused.status_code == 403 and "accreditation expired" in refused.text
    assert client.get("/search").status_code == 302


def password_step(app: Flask, name: str) -> tuple[FlaskClient, str]:
    """A new client past the password step of `name`'s sign-in, and the code page's token."""
    client = app.test_client()
    form = client.get("/login")
    client.post("/login", data={"csrf_token": csrf_token(form.text), "name": name,
                                "password": PASSWORD})
    return client, csrf_token(client.get("/login/code").text)


def test_a_code_works_once(app: Flask, master: dict):
    code = code_for(master["secrets"]["ida"])
    client, token = password_step(app, "ida")
    assert client.post("/login/code", data={"csrf_token": token, "code": code}).status_code == 302
    again, token = password_step(app, "ida")
    replayed = again.post("/login/code", data={"csrf_token": token, "code": code})
    assert replayed.status_code == 401 and "used already" in replayed.text
    assert again.get("/search").status_code == 302


def test_five_wrong_codes_lock_the_user_out(app: Flask, master: dict):
    client, token = password_step(app, "joe")
    for _ in range(5):
        wrong = client.post("/login/code", data={"csrf_token": token, "code": "000000"})
    assert wrong.status_code == 401 and "locked until" in wrong.text
    again = app.test_client()
    page = again.get("/login")
    refused = again.post("/login", data={"csrf_token": csrf_token(page.text), "name": "joe",
                                         "password": PASSWORD})
    assert refused.status_code == 401 and "locked until" in refused.text


def test_an_admin_exports_the_audit_head_and_checks_the_log_against_it(
    signed_in: dict[str, FlaskClient], master: dict
):
    client = signed_in["root"]
    token = csrf_token(client.get("/admin/audit").text)
    download = client.post("/admin/audit/head", data={"csrf_token": token})
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    head = json.loads(download.data)
    checked = client.post("/admin/audit", data={
        "csrf_token": token, "head": (__import__("io").BytesIO(download.data), "head.json")})
    assert checked.status_code == 200
    assert f"still holds the exported head (entry {head['head_seq']})" in checked.text


def test_an_admin_adds_renews_and_revokes_users_from_the_users_page(
    signed_in: dict[str, FlaskClient], master: dict
):
    client = signed_in["root"]
    token = csrf_token(client.get("/admin/users").text)
    added = client.post("/admin/users/add", data={
        "csrf_token": token, "name": "nia", "role": "practitioner", "organisation": "York CC",
        "accredited_until": "2030-01-01", "password": PASSWORD})
    assert added.status_code == 400 and "accredited-until must be between" in added.text
    from tests.test_governance_helpers import NEXT_YEAR
    added = client.post("/admin/users/add", data={
        "csrf_token": token, "name": "nia", "role": "practitioner", "organisation": "York CC",
        "accredited_until": NEXT_YEAR, "password": PASSWORD})
    assert added.status_code == 200 and "Added nia (practitioner)" in added.text
    renewed = client.post("/admin/users/renew", data={
        "csrf_token": token, "name": "nia", "accredited_until": NEXT_YEAR})
    assert f"accredited until {NEXT_YEAR}" in renewed.text
    revoked = client.post("/admin/users/revoke", data={"csrf_token": token, "name": "nia"})
    assert "Revoked nia" in revoked.text
    assert [row[0] for row in audit_rows(master["db"], "users.renew")] == ["root"]


def test_the_retention_page_is_a_dry_run(signed_in: dict[str, FlaskClient], master: dict):
    client = signed_in["root"]
    token = csrf_token(client.get("/admin/retention").text)
    report = client.post("/admin/retention", data={"csrf_token": token, "as_of": "2027-07-14"})
    assert report.status_code == 200 and "(dry run)" in report.text
    assert json.loads(audit_rows(master["db"], "retention")[-1][2])["apply"] is False


def change_password(client: FlaskClient, current: str, new: str, again: str | None = None,
                    token: str | None = None):
    """`client` posts the change-password form (the new password typed twice unless `again`)."""
    token = token if token is not None else csrf_token(client.get("/account/password").text)
    return client.post("/account/password", data={
        "csrf_token": token, "current_password": current, "new_password": new,
        "new_password_again": new if again is None else again})


def sign_in_again(app: Flask, name: str, secret: str, password: str) -> FlaskClient:
    """A second signed-in browser of `name`, with the next time step's code (a code is accepted
    once, and the first browser used this step's)."""
    client = app.test_client()
    form = client.get("/login")
    client.post("/login", data={"csrf_token": csrf_token(form.text), "name": name,
                                "password": password})
    code_page = client.get("/login/code")
    next_code = pyotp.TOTP(secret).at(time.time() + 30)
    assert client.post("/login/code", data={"csrf_token": csrf_token(code_page.text),
                                            "code": next_code}).status_code == 302
    return client


def test_every_role_reaches_the_change_password_page_from_the_header(
    signed_in: dict[str, FlaskClient]
):
    for client in signed_in.values():
        home = client.get(client.get("/").headers.get("Location", "/"))
        assert 'href="/account/password"' in home.text
        page = client.get("/account/password")
        assert page.status_code == 200 and len(page.data) < PAGE_LIMIT_BYTES
        assert '<label for="new-password-again">' in page.text


def test_a_user_changes_their_password_and_their_other_sessions_end(
    app: Flask, master: dict
):
    secret = master["secrets"]["max"]
    here = app.test_client()
    assert sign_in(here, "max", secret).status_code == 302
    elsewhere = sign_in_again(app, "max", secret, PASSWORD)
    new = "a new and longer passphrase"
    refusals = [
        (("not my password", new), WRONG_CREDENTIALS),
        ((PASSWORD, new, new + "!"), "the two new passwords differ"),
        ((PASSWORD, "too short"), "a password has at least 12 characters"),
        ((PASSWORD, PASSWORD), "the new password is the same as the current one"),
    ]
    for args, problem in refusals:
        refused = change_password(here, *args)
        assert refused.status_code == 400 and problem in refused.text, problem
    assert elsewhere.get("/search").status_code == 200  # nothing changed yet
    changed = change_password(here, PASSWORD, new)
    assert changed.status_code == 200
    assert "Your password is changed. Your 1 other session(s) were signed out." in changed.text
    assert here.get("/search").status_code == 200
    assert elsewhere.get("/search").status_code == 302
    outcomes = [json.loads(query)["outcome"] for user, _, query, _ in
                audit_rows(master["db"], "users.password") if user == "max"]
    assert outcomes == [WRONG_CREDENTIALS, "a password has at least 12 characters",
                        "the new password is the same as the current one", "password changed"]
    assert all(new not in query and PASSWORD not in query
               for _, _, query, _ in audit_rows(master["db"], "users.password"))
    browser = app.test_client()
    token = csrf_token(browser.get("/login").text)
    for password, status in ((PASSWORD, 401), (new, 302)):  # 302: on to the code
        assert browser.post("/login", data={"csrf_token": token, "name": "max",
                                            "password": password}).status_code == status


def test_changing_a_password_refuses_a_forged_csrf_token_and_a_missing_session(
    app: Flask, signed_in: dict[str, FlaskClient], master: dict
):
    changes = len(audit_rows(master["db"], "users.password"))
    forged = change_password(signed_in["dana"], PASSWORD, "a new and longer passphrase",
                             token="forged")
    assert forged.status_code == 400 and "This form has expired" in forged.text
    anonymous = app.test_client().post("/account/password", data={
        "current_password": PASSWORD, "new_password": "a new and longer passphrase"})
    assert (anonymous.status_code, anonymous.headers["Location"]) == (302, "/login")
    assert len(audit_rows(master["db"], "users.password")) == changes


def test_guessing_the_current_password_locks_the_user_and_signs_the_session_out(
    app: Flask, master: dict
):
    client = app.test_client()
    assert sign_in(client, "kim", master["secrets"]["kim"]).status_code == 302
    for _ in range(4):
        assert change_password(client, "a guess", "a new and longer passphrase").status_code == 400
    locked = change_password(client, "a guess", "a new and longer passphrase")
    assert locked.status_code == 403 and "locked until" in locked.text
    assert client.get("/account/password").status_code == 302


# a process holding the master read-write until its stdin ends; with "serve", serving acts on
# its socket as the running engine does
HOLDING_PROCESS = """
import sys
from pathlib import Path
from engine.governance.service import start_service
from engine.master_store import open_master
from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel
con = open_master(Path(sys.argv[1]))
if sys.argv[2] == "serve":
    service = start_service(con, Path(sys.argv[1]), CompiledModel.from_json(DEFAULT_MODEL_PATH))
print("holding", flush=True)
sys.stdin.read()
if sys.argv[2] == "serve":
    service.stop()
con.close()
"""


def holding_process(db: Path, mode: str) -> subprocess.Popen:
    """A process holding the master (see HOLDING_PROCESS), once it holds it."""
    process = subprocess.Popen([sys.executable, "-c", HOLDING_PROCESS, str(db), mode],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).parents[1])
    assert process.stdout.readline().strip() == "holding"
    return process


def test_the_same_pages_work_while_the_engine_holds_the_master(app: Flask, master: dict):
    engine = holding_process(master["db"], "serve")
    try:
        client = app.test_client()
        assert sign_in(client, "eve", master["secrets"]["eve"]).status_code == 302
        token = csrf_token(client.get("/search").text)
        found = client.post("/search", data={"csrf_token": token, "reason": "GP referral",
                                             "name": "Oliver Quartermaine", "dob": "2009-03-01"})
        assert "1 child found" in found.text
        assert "SARAH QUARTERMAINE" in view_child(client, master["oliver"], "GP referral").text
        changed = change_password(client, PASSWORD, "a new and longer passphrase")
        assert "Your password is changed." in changed.text
    finally:
        engine.communicate("", timeout=60)
    audited = [user_act for user_act in audit_acts(master["db"]) if user_act[0] == "eve"]
    assert [act_name for _, act_name in audited] == [
        "signin.password", "signin.code", "search", "child.view", "users.password"]


def test_a_master_held_without_a_service_is_a_503_and_the_session_stays(
    signed_in: dict[str, FlaskClient], master: dict
):
    holder = holding_process(master["db"], "hold")
    try:
        busy = signed_in["pat"].get("/search")
        assert busy.status_code == 503 and "Nothing was done" in busy.text
    finally:
        holder.communicate("", timeout=60)
    assert signed_in["pat"].get("/search").status_code == 200


def audit_acts(db: Path) -> list[tuple[str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute('SELECT "user", act FROM audit_log ORDER BY seq').fetchall()
    finally:
        con.close()


def test_sessions_expire_when_idle_and_at_the_end_of_their_lifetime():
    now = [0.0]
    store = SessionStore(SessionTimes(idle=900, lifetime=8 * 3600, pending=300),
                         clock=lambda: now[0])
    pending = store.start_sign_in("pat", AWAITING_CODE)
    now[0] = 301
    assert store.find(pending.token) is None  # the code came too late
    session = store.sign_in(store.start_sign_in("pat", AWAITING_CODE), "practitioner")
    for _ in range(32):  # a click every 15 minutes keeps it alive ...
        now[0] += 899
        assert store.find(session.token) is not None
    now[0] += 899  # ... until eight hours have passed
    assert store.find(session.token) is None
    idle = store.sign_in(store.start_sign_in("pat", AWAITING_CODE), "practitioner")
    now[0] += 901
    assert store.find(idle.token) is None


def test_signing_in_replaces_the_session_token():
    store = SessionStore(SessionTimes())
    pending = store.start_sign_in("pat", AWAITING_CODE)
    signed_in = store.sign_in(pending, "practitioner")
    assert signed_in.token != pending.token and signed_in.csrf != pending.csrf
    assert store.find(pending.token) is None and store.find(signed_in.token).signed_in
