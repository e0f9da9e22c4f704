"""Shared arrangements for the web application's tests (no tests here): a real master file with
children resolved by the real engine (one of them shielded), users with passwords and TOTP
secrets as `users add --password-stdin --json` returns them, and signing in over HTTP."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import duckdb
import pyotp

from linkage_models.scoring import CompiledModel
from tests.test_entity_graph import NAMELESS_CLAIM, TWIN_A, TWIN_B
from tests.test_governance_helpers import (
    AMELIA,
    NEXT_YEAR,
    OLIVER,
    act,
    child_of,
    governed_master,
    ingest,
    update,
)

PASSWORD = "correct horse battery"  # every test user's password (at least 12 characters)
ROLES = {"root": "admin", "pat": "practitioner", "dana": "data_manager"}
SHIELD_REASON = "risk of harm: do not disclose"


def web_master(path: Path, model: CompiledModel, extra_users: dict[str, str]) -> dict:
    """A master at `path`: Oliver (known to GRO, NHS and the school census, with parent, GP and
    school), Amelia (shielded); users root, pat, dana and `extra_users` (name: role), all with
    PASSWORD. Returns {"secrets": {user: TOTP secret}, "oliver": id, "amelia": id}."""
    con = governed_master(path)
    ingest(con, model, [
        update("gro", "oliver", source_key="R1", nhs_number="9434765919",
               parent_forenames="SARAH", parent_surname="QUARTERMAINE", **OLIVER),
        update("nhs", "oliver", source_key="9434765919", nhs_number="9434765919",
               gp_practice_code="B86001", **OLIVER),
        update("census", "oliver", source_key="A123", upn="A123", school_urn="100234",
               **OLIVER),
        update("gro", "amelia", source_key="R3", parent_forenames="JANE",
               parent_surname="FOTHERINGHAM", **AMELIA),
    ])
    secrets: dict[str, str] = {}
    for name, role in (ROLES | extra_users).items():
        added = act(con, model, "users.add", None if name == "root" else "root", name=name,
                    role=role, organisation="Leeds CC", accredited_until=NEXT_YEAR,
                    password=PASSWORD).result
        secrets[name] = added["totp_secret"]
    ids = {"oliver": child_of(con, "gro", "oliver"), "amelia": child_of(con, "gro", "amelia")}
    act(con, model, "shield", "dana", SHIELD_REASON, child_id=ids["amelia"], unshield=False)
    con.close()
    return {"secrets": secrets, **ids}


def add_review_case(path: Path, model: CompiledModel) -> dict:
    """Twins Amelia and Isla Khan and a child benefit claim without a first name, which the
    engine queues for review (it could be either twin). Returns their child IDs."""
    con = duckdb.connect(str(path))
    twin_a = replace(TWIN_A, source_key="R9")  # R1 is Oliver's birth registration here
    ingest(con, model, [twin_a, TWIN_B, NAMELESS_CLAIM])
    ids = {"twin_a": child_of(con, "gro", "a"), "twin_b": child_of(con, "census", "b"),
           "claim": child_of(con, "dwp", "c")}
    con.close()
    return ids


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def signed_in_clients(app, secrets: dict[str, str]) -> dict:
    """One signed-in Flask test client for each of root, pat and dana (a TOTP code is accepted
    once: sign in once per user)."""
    clients = {}
    for name in ROLES:
        clients[name] = app.test_client()
        assert sign_in(clients[name], name, secrets[name]).status_code == 302
    return clients


def code_for(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def sign_in(client, name: str, secret: str, password: str = PASSWORD):
    """Sign `name` in with a Flask test client: password, then a code (enrolling the token the
    first time). Returns the response to the code step."""
    form = client.get("/login")
    client.post("/login", data={"csrf_token": csrf_token(form.text), "name": name,
                                "password": password})
    code_page = client.get("/login/code")
    return client.post("/login/code", data={"csrf_token": csrf_token(code_page.text),
                                            "code": code_for(secret)})
