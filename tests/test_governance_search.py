"""`contactpoint search`: model-scored, best child first, ContactPoint basics; shielded children
restricted and archived or merged ones hidden from practitioners; hostile input stays data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from engine.governance.acts import Request, perform
from engine.governance.errors import GovernanceError
from engine.governance.policy import GovernancePolicy
from engine.governance.search import CONTACT_DATA_MANAGER, LIST_VIEW
from engine.governance.search_index import ChildRows, use_child_rows
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import (
    AMELIA,
    OLIVER,
    act,
    add_staff,
    child_of,
    governed_master,
    ingest,
    run_cli,
    search,
    update,
)

HARRY = OLIVER | {"first_name": "HARRY"}  # Oliver's twin: same surname, birthday and home
SOPHIE = dict(first_name="SOPHIE", surname="QUARTERMAINE", sex="F", date_of_birth="2005-02-02",
              postcode="LS6 2AB")
SHIELDED_KEYS = {"child_id", "match_probability", "shielded", "first_name", "surname", "sex",
                 "date_of_birth", "contact"}



@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, model: CompiledModel) -> Path:
    path = tmp_path_factory.mktemp("search") / "m.duckdb"
    con = governed_master(path)
    ingest(con, model, [
        update("gro", "oliver", source_key="R1", nhs_number="9434765919",
               parent_forenames="SARAH", parent_surname="QUARTERMAINE", **OLIVER),
        update("nhs", "oliver", source_key="9434765919", nhs_number="9434765919",
               gp_practice_code="B86001", **OLIVER | {"first_name": "OLLIE",
                                                       "first_name_std": "OLIVER"}),
        update("census", "oliver", source_key="A123", upn="A123", school_urn="100234",
               **OLIVER),
        update("gro", "harry", source_key="R2", **HARRY),
        update("gro", "amelia", source_key="R3", **AMELIA),
        update("gro", "sophie", source_key="R4", **SOPHIE),
    ])
    add_staff(con, model)
    con.close()
    return path


@pytest.fixture(params=["file", "engine"])
def con(template: Path, tmp_path: Path, request: pytest.FixtureRequest
        ) -> duckdb.DuckDBPyConnection:
    """A copy of the template master; "engine": searched as the engine's service searches it,
    finding children's rows through a ChildRows loaded as the service starts."""
    con = duckdb.connect(shutil.copy(template, tmp_path / "m.duckdb"))
    if request.param == "engine":
        use_child_rows([con], ChildRows.loaded(con))
    return con


def children(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {name: child_of(con, "gro", name) for name in ("oliver", "harry", "amelia", "sophie")}


def test_best_match_first_with_the_contactpoint_basics(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    hits = search(con, model, name="Oliver Quartermaine", dob="2009-03-01", postcode="ls6 2ab")
    ids = children(con)
    assert [hit["child_id"] for hit in hits][:1] == [ids["oliver"]]
    assert ids["amelia"] not in [hit["child_id"] for hit in hits]
    oliver = hits[0]
    assert oliver["match_probability"] > 0.99
    assert {k: oliver[k] for k in ("first_name", "surname", "sex", "date_of_birth",
                                   "address_line1", "town", "postcode", "nhs_number", "upn",
                                   "parent_forenames", "parent_surname", "school_urn",
                                   "gp_practice_code", "shielded")} == {
        "first_name": "OLIVER", "surname": "QUARTERMAINE", "sex": "M",
        "date_of_birth": "2009-03-01", "address_line1": "1 HIGH STREET", "town": "LEEDS",
        "postcode": "LS6 2AB", "nhs_number": "9434765919", "upn": "A123",
        "parent_forenames": "SARAH", "parent_surname": "QUARTERMAINE", "school_urn": "100234",
        "gp_practice_code": "B86001", "shielded": False,
    }
    probabilities = [hit["match_probability"] for hit in hits]
    assert probabilities == sorted(probabilities, reverse=True)


def test_a_diminutive_finds_the_child(con: duckdb.DuckDBPyConnection, model: CompiledModel):
    hits = search(con, model, name="Ollie Quartermaine", dob="2009-03-01")
    assert hits[0]["child_id"] == children(con)["oliver"]


def test_a_probe_without_a_model_blocking_key_falls_back_to_broader_blocking(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    ids = children(con)
    by_dob = {hit["child_id"] for hit in search(con, model, dob="2009-03-01")}
    assert by_dob == {ids["oliver"], ids["harry"]}
    by_district = search(con, model, name="Quartermaine", postcode="LS6 9ZZ")
    assert {hit["child_id"] for hit in by_district} >= {ids["oliver"], ids["sophie"]}


def test_a_child_the_probe_speaks_against_is_not_shown(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    assert search(con, model, name="Sophie Quartermaine", dob="2009-03-01") == []


def test_too_little_to_search_on_is_refused(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    with pytest.raises(GovernanceError, match="too little to search on"):
        search(con, model, name="Quartermaine")
    with pytest.raises(GovernanceError, match="give a name, a date of birth or a postcode"):
        search(con, model)


def test_a_search_broader_than_the_policy_is_refused_not_truncated(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    request = Request("search", "pat", "enquiry", {"dob": "2009-03-01"})
    with pytest.raises(GovernanceError, match="too broad: 4 candidate records"):
        perform(con, request, lambda: model, policy=GovernancePolicy(max_candidate_pairs=1))


def test_limit_bounds_the_hits(con: duckdb.DuckDBPyConnection, model: CompiledModel):
    assert len(search(con, model, dob="2009-03-01", limit=1)) == 1
    for limit in (0, 101):
        with pytest.raises(GovernanceError, match="limit must be between 1 and 100"):
            search(con, model, dob="2009-03-01", limit=limit)


# ---------------------------------------------------------------- shielded, archived, merged


def test_a_practitioner_sees_only_name_sex_dob_and_id_of_a_shielded_child(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    oliver = children(con)["oliver"]
    act(con, model, "shield", "dana", "child protection plan", child_id=oliver)
    hit = search(con, model, name="Oliver Quartermaine", dob="2009-03-01")[0]
    assert set(hit) == SHIELDED_KEYS
    assert (hit["child_id"], hit["first_name"], hit["surname"], hit["sex"],
            hit["date_of_birth"], hit["contact"]) == (
        oliver, "OLIVER", "QUARTERMAINE", "M", "2009-03-01", CONTACT_DATA_MANAGER)


def test_a_brief_search_finds_the_same_children_with_only_a_lists_fields(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    act(con, model, "shield", "dana", "child protection plan", child_id=children(con)["harry"])
    probe = {"dob": "2009-03-01"}
    full, brief = search(con, model, **probe), search(con, model, brief=True, **probe)
    assert [(h["child_id"], h["match_probability"]) for h in brief] == [
        (h["child_id"], h["match_probability"]) for h in full]
    assert len(brief) == 2
    for full_hit, brief_hit in zip(full, brief, strict=True):
        if "contact" in full_hit:  # the shielded child: as restricted as in a full search
            assert brief_hit == full_hit
        else:
            assert set(brief_hit) == {"child_id", "shielded", "match_probability", *LIST_VIEW}
            assert brief_hit == {key: full_hit[key] for key in brief_hit}


def test_the_data_manager_sees_a_shielded_child_in_full(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    act(con, model, "shield", "dana", "child protection plan", child_id=children(con)["oliver"])
    hit = search(con, model, "dana", name="Oliver Quartermaine", dob="2009-03-01")[0]
    assert (hit["shielded"], hit["postcode"], hit["nhs_number"]) == (True, "LS6 2AB",
                                                                     "9434765919")


def test_a_guessed_postcode_does_not_change_a_shielded_childs_score(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    ids = children(con)
    act(con, model, "shield", "dana", "child protection plan", child_id=ids["oliver"])

    def probability(postcode: str, child: str) -> float:
        hits = search(con, model, name=f"{child} Quartermaine", dob="2009-03-01",
                      postcode=postcode)
        return next(h["match_probability"] for h in hits if h["child_id"] == ids[child.lower()])

    assert probability("LS6 2AB", "Oliver") == probability("M1 1AE", "Oliver")
    assert probability("LS6 2AB", "Harry") > probability("M1 1AE", "Harry")  # unshielded


def test_archived_children_are_invisible_to_practitioners_only(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    sophie = children(con)["sophie"]
    con.execute("UPDATE children SET archived_on = DATE '2023-02-02' WHERE child_id = ?",
                [sophie])
    probe = {"name": "Sophie Quartermaine", "dob": "2005-02-02"}
    assert search(con, model, "pat", **probe) == []
    hits = search(con, model, "dana", **probe)
    assert (hits[0]["child_id"], hits[0]["archived_on"]) == (sophie, "2023-02-02")


def test_merged_children_are_never_shown(con: duckdb.DuckDBPyConnection, model: CompiledModel):
    ids = children(con)
    con.execute("UPDATE children SET status = 'merged', merged_into = ? WHERE child_id = ?",
                [ids["oliver"], ids["amelia"]])
    for user in ("pat", "dana"):
        assert search(con, model, user, name="Amelia Fotheringham", dob="2008-07-14") == []


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "probe",
    [
        {"name": "Robert'); DROP TABLE children;--", "dob": "2009-03-01"},
        {"name": "x' OR '1'='1", "postcode": "' OR 1=1 --"},
        {"name": "_ _", "dob": "2009-03-01", "postcode": "LS6_2AB"},
        {"name": "Q% Q%", "postcode": "LS6%"},
        {"name": "\\x00' UNION SELECT * FROM users --", "postcode": "$1"},
    ],
)
def test_sql_and_wildcards_in_a_search_are_only_data(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, probe: dict
):
    ids = children(con)
    hits = search(con, model, **probe)
    by_dob_only = {ids["oliver"], ids["harry"]} if probe.get("dob") else set()
    assert {hit["child_id"] for hit in hits} <= by_dob_only
    assert con.execute("SELECT count(*) FROM children").fetchall()[0][0] == 4
    assert con.execute("SELECT count(*) FROM users").fetchall()[0][0] == 3


@pytest.mark.parametrize(
    "probe", [{"name": "% %", "postcode": "%"}, {"name": "_", "postcode": "%_"}, {"name": "%"}]
)
def test_a_probe_of_wildcards_is_refused_not_widened(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, probe: dict
):
    with pytest.raises(GovernanceError, match="too little to search on|give a name"):
        search(con, model, **probe)


def test_a_date_of_birth_that_is_not_a_date_is_refused(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    with pytest.raises(GovernanceError, match="real date written YYYY-MM-DD"):
        search(con, model, dob="2009-03-01' OR '1'='1")


@pytest.mark.parametrize("field", ["name", "postcode", "dob"])
def test_a_megabyte_argument_is_refused_in_one_line_without_echo(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, field: str
):
    with pytest.raises(GovernanceError) as refusal:
        search(con, model, **{field: "A" * 1_048_576})
    assert str(refusal.value) == f"{field} is 1,048,576 characters long (limit 200)"


def test_a_megabyte_reason_or_user_name_is_refused(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    with pytest.raises(GovernanceError, match="reason is 1,048,576 characters long"):
        act(con, model, "search", "pat", "R" * 1_048_576, dob="2009-03-01")
    with pytest.raises(GovernanceError, match="a user name is 1-64 letters"):
        act(con, model, "search", "p" * 1_048_576, "enquiry", dob="2009-03-01")
    assert con.execute("SELECT count(*) FROM audit_log").fetchall()[0][0] == 3


@pytest.mark.parametrize(
    "name",
    ["Oli\x00ver\tQuarter\u200bmaine", "  ÖLÏVÉR   qüartermaine ", "Oliver\u202e Quartermaine",
     "OLIVER\r\nQUARTERMAINE", "Ｏｌｉｖｅｒ Ｑｕａｒｔｅｒｍａｉｎｅ"],
)
def test_control_characters_and_odd_unicode_are_normalised_away(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, name: str
):
    hits = search(con, model, name=name, dob="2009-03-01")
    assert hits[0]["child_id"] == children(con)["oliver"]


def test_letters_with_no_ascii_form_leave_only_the_other_fields(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    with pytest.raises(GovernanceError, match="give a name, a date of birth or a postcode"):
        search(con, model, name="Оливер 橋本")
    assert len(search(con, model, name="Оливер 橋本", dob="2009-03-01")) == 2


def test_the_reason_is_stored_without_control_characters(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
):
    act(con, model, "search", "pat", "urgent\n\x1b[2Jreferral\x00", dob="2009-03-01")
    reason = con.execute("SELECT reason FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
    assert reason == [("urgent [2Jreferral",)]


# ---------------------------------------------------------------- the verb


def test_cli_search_prints_hits_or_json_and_refuses_in_one_line(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    db = str(shutil.copy(template, tmp_path / "m.duckdb"))
    verb = ["search", "--user", "pat", "--reason", "enquiry", "--db", db]
    status, out, _ = run_cli([*verb, "--name", "Oliver Quartermaine", "--dob", "2009-03-01"],
                             capsys)
    assert status == 0
    assert out.splitlines()[1] == "   OLIVER QUARTERMAINE, sex M, born 2009-03-01"
    assert "   NHS number: 9434765919" in out.splitlines()
    status, out, _ = run_cli([*verb, "--dob", "2009-03-01", "--json"], capsys)
    assert (status, len(json.loads(out))) == (0, 2)
    status, out, err = run_cli([*verb, "--name", "x" * 300], capsys)
    assert (status, out, err) == (2, "", "contactpoint search: name is 300 characters long "
                                         "(limit 200)\n")
