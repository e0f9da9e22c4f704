"""The data manager's pages over HTTP (Flask's test client on the real application and a real
master file): the review queue with its evidence, settling an item, a child's stewardship page
and its corrections (split, unlink, link, merge, shield), each refused without a reason, to
other roles, and without the session's CSRF token.

The tests of this module run in order on one master: the claim is settled, then split off."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from flask.testing import FlaskClient

from linkage_models.scoring import CompiledModel
from tests.test_web_http import PAGE_LIMIT_BYTES, audit_rows, last_audited
from tests.web_helpers import add_review_case, csrf_token, web_master

CLAIM = "dwp:c"


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory, model: CompiledModel) -> dict:
    db = tmp_path_factory.mktemp("web-dm") / "m.duckdb"
    ids = web_master(db, model, {})
    return {"db": db, **ids, **add_review_case(db, model)}


def child_of(db: Path, record: str) -> str:
    feed, _, record_id = record.partition(":")
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT child_id FROM links WHERE feed = ? AND record_id = ?",
                           [feed, record_id]).fetchone()[0]
    finally:
        con.close()


def post(client: FlaskClient, path: str, **form):
    """POST `form` to `path` with the session's CSRF token (read from the review page)."""
    token = csrf_token(client.get("/search").text)
    return client.post(path, data={"csrf_token": token, **form})


def test_the_review_queue_shows_the_claim_beside_both_twins_with_the_waterfall(
    signed_in: dict[str, FlaskClient], master: dict
):
    page = signed_in["dana"].get("/review")
    assert page.status_code == 200 and len(page.data) < PAGE_LIMIT_BYTES
    assert f"record <span class=\"mono\">{CLAIM}</span>" in page.text
    assert "ambiguous" in page.text
    for twin in ("twin_a", "twin_b"):
        assert f'value="link:{master[twin]}"' in page.text
    for shown in ("AMELIA", "ISLA", "LS6 2AB", "2009-02-10", "Match probability",
                  "the match waterfall against", "Exact match on date_of_birth"):
        assert shown in page.text, shown
    user, _, children = last_audited(master["db"], "review.list")
    assert user == "dana" and {master["twin_a"], master["twin_b"]} <= set(children)


def test_settling_an_item_needs_a_reason_a_choice_and_the_forms_token(
    signed_in: dict[str, FlaskClient], master: dict
):
    client = signed_in["dana"]
    item = f"/review/{_item_id(client)}"
    no_reason = post(client, item, settle=f"link:{master['twin_a']}", reason=" ")
    assert no_reason.status_code == 400 and "a reason is required" in no_reason.text
    no_choice = post(client, item, reason="claimant confirmed by phone")
    assert no_choice.status_code == 400 and "choose the child" in no_choice.text
    forged = client.post(item, data={"csrf_token": "forged", "reason": "claimant confirmed",
                                     "settle": f"link:{master['twin_a']}"})
    assert forged.status_code == 400 and "This form has expired" in forged.text
    assert child_of(master["db"], CLAIM) == master["claim"]
    assert audit_rows(master["db"], "review.resolve") == []


def test_a_data_manager_settles_the_claim_as_the_first_twins(
    signed_in: dict[str, FlaskClient], master: dict
):
    client = signed_in["dana"]
    settled = post(client, f"/review/{_item_id(client)}", settle=f"link:{master['twin_a']}",
                   reason="claimant confirmed by phone")
    assert settled.status_code == 200
    assert f"the record joined child {master['twin_a']}" in settled.text
    assert "The review queue is empty" in settled.text
    assert child_of(master["db"], CLAIM) == master["twin_a"]
    assert last_audited(master["db"], "review.resolve") == (
        "dana", "claimant confirmed by phone", [master["twin_a"]])


def test_the_stewardship_page_shows_the_records_and_the_history_of_decisions(
    signed_in: dict[str, FlaskClient], master: dict
):
    page = signed_in["dana"].get(f"/children/{master['twin_a']}/manage")
    assert page.status_code == 200 and len(page.data) < PAGE_LIMIT_BYTES
    for shown in ('value="gro:a"', f'value="{CLAIM}"', "Split into a new child", "Unlink",
                  "Merge", "Link here", "Shield", "History of decisions", "user:dana"):
        assert shown in page.text, shown
    history = page.text[page.text.index("History of decisions"):]
    assert f"Merged into this child: <span class=\"mono\">{master['claim']}</span>" in history
    assert history.index(">review (") < history.index(">link (")  # queued, then settled
    assert last_audited(master["db"], "child.history") == ("dana", None, [master["twin_a"]])


def test_a_data_manager_splits_the_claim_off_into_a_child_of_its_own(
    signed_in: dict[str, FlaskClient], master: dict
):
    client, twin_a = signed_in["dana"], master["twin_a"]
    everything = post(client, f"/children/{twin_a}/split", record=["gro:a", CLAIM],
                      reason="two children")
    assert everything.status_code == 400
    assert "a split must leave at least one record with the child" in everything.text
    split = post(client, f"/children/{twin_a}/split", record=CLAIM,
                 reason="the claim is for a third sibling")
    assert split.status_code == 200
    new = child_of(master["db"], CLAIM)
    assert new != twin_a and child_of(master["db"], "gro:a") == twin_a
    assert f"Split {CLAIM} into a new child {new}" in split.text
    assert last_audited(master["db"], "split") == (
        "dana", "the claim is for a third sibling", [new, twin_a])
    assert f'href="/children/{new}/manage"' in split.text
    history = split.text[split.text.index("History of decisions"):]
    assert f'<td class="mono">{new}</td><td>user:dana</td>' in history.replace("\n      ", "")


def test_unlink_link_merge_and_shield_from_the_stewardship_page(
    signed_in: dict[str, FlaskClient], master: dict
):
    client, oliver = signed_in["dana"], master["oliver"]
    unlinked = post(client, f"/children/{oliver}/unlink", record="census:oliver",
                    reason="school census record of another pupil")
    assert unlinked.status_code == 200 and "Unlinked census:oliver" in unlinked.text
    census_child = child_of(master["db"], "census:oliver")
    assert census_child != oliver
    linked = post(client, f"/children/{oliver}/link", record="census:oliver",
                  reason="the school confirmed the pupil")
    assert linked.status_code == 200 and child_of(master["db"], "census:oliver") == oliver
    merged = post(client, f"/children/{child_of(master['db'], CLAIM)}/merge",
                  other_child_id=master["twin_b"], reason="the claim is for Isla after all")
    assert merged.status_code == 200
    assert child_of(master["db"], CLAIM) == child_of(master["db"], "census:b")
    shielded = post(client, f"/children/{oliver}/shield", reason="court order")
    assert "Shielded:" in shielded.text and "Remove the shield" in shielded.text
    unshielded = post(client, f"/children/{oliver}/unshield", reason="order lifted")
    assert "The shield is removed." in unshielded.text
    assert [row[1] for row in audit_rows(master["db"], "shield")][-2:] == [
        "court order", "order lifted"]


def test_a_refused_or_forged_correction_changes_nothing_and_says_why(
    signed_in: dict[str, FlaskClient], master: dict
):
    client = signed_in["dana"]
    refused = post(client, f"/children/{master['oliver']}/merge",
                   other_child_id=master["oliver"], reason="same child")
    assert refused.status_code == 400
    assert "are one child" in refused.text and "There is a problem" in refused.text
    unknown = post(client, f"/children/{master['oliver']}/link", record="nhs:nobody",
                   reason="found it")
    assert unknown.status_code == 400 and "no record nhs:nobody in the master" in unknown.text
    assert signed_in["dana"].get("/children/NOSUCHCHILD/manage").status_code == 404
    for token in ("forged", ""):
        forged = client.post(f"/children/{master['oliver']}/unlink", data={
            "csrf_token": token, "record": "census:oliver", "reason": "a forged form"})
        assert forged.status_code == 400 and "This form has expired" in forged.text
    assert child_of(master["db"], "census:oliver") == master["oliver"]


@pytest.mark.parametrize("user", ["pat", "root"])
def test_only_a_data_manager_reaches_the_review_and_stewardship_pages(
    signed_in: dict[str, FlaskClient], master: dict, user: str
):
    client, oliver = signed_in[user], master["oliver"]
    assert client.get("/review").status_code == 403
    assert client.get(f"/children/{oliver}/manage").status_code == 403
    home = client.get({"pat": "/search", "root": "/admin/users"}[user]).text
    assert 'href="/review"' not in home
    token = csrf_token(home)
    for path, form in ((f"/children/{oliver}/unlink", {"record": "census:oliver"}),
                       (f"/children/{oliver}/shield", {}), ("/review/1", {"settle": "new"})):
        response = client.post(path, data={"csrf_token": token, "reason": "curious", **form})
        assert response.status_code == 403, path
    assert child_of(master["db"], "census:oliver") == oliver


def test_the_data_manager_sees_review_in_the_navigation_and_manage_on_a_child_page(
    signed_in: dict[str, FlaskClient], master: dict
):
    client = signed_in["dana"]
    assert '<a href="/review"' in client.get("/search").text
    child = post(client, "/child", child_id=master["oliver"], reason="data quality check")
    assert f'href="/children/{master["oliver"]}/manage"' in child.text
    practitioner_view = post(signed_in["pat"], "/child", child_id=master["oliver"],
                             reason="school nurse referral")
    assert "/manage" not in practitioner_view.text


def _item_id(client: FlaskClient) -> int:
    return int(re.search(r'action="/review/(\d+)"', client.get("/review").text).group(1))
