"""The shipped model on hand-made pairs: twins stay apart, one child's noisy records join."""

from __future__ import annotations

import math

import duckdb
import pytest

from engine.resolution.prior import population_prior
from linkage_models.records import register_model_records
from linkage_models.scoring import CompiledModel
from streams.canonical import Update, updates_to_arrow

# a rare surname and first names (tf 1 in 100,000): the most a name can say for a match
RARE = 1e-5

HOME = dict(surname="QUARTERMAINE", date_of_birth="2006-03-14", postcode="LS6 2AB", sex="M")



def test_twins_with_same_dob_surname_and_postcode_score_below_half(model: CompiledModel):
    oliver = Update("gro", "1", "birth", "2006-03-20T00:00:00Z", first_name="OLIVER",
                    first_name_std="OLIVER", nhs_number="4857773456", **HOME)
    harry = Update("dwp", "7", "new_claim", "2006-05-02T00:00:00Z", first_name="HARRY",
                   first_name_std="HARRY", **HOME)
    assert _match_probability(model, oliver, harry) < 0.5


def test_twins_with_different_nhs_numbers_score_far_below_half(model: CompiledModel):
    oliver = Update("gro", "1", "birth", "2006-03-20T00:00:00Z", first_name="OLIVER",
                    first_name_std="OLIVER", nhs_number="4857773456", **HOME)
    harry = Update("nhs", "3", "registration", "2006-04-02T00:00:00Z", first_name="HARRY",
                   first_name_std="HARRY", nhs_number="4857773464", **HOME)
    assert _match_probability(model, oliver, harry) < 0.01


def test_one_child_by_diminutive_at_a_new_address_scores_above_99_percent(
    model: CompiledModel,
):
    birth = Update("gro", "1", "birth", "2006-03-20T00:00:00Z", first_name="ALFRED",
                   first_name_std="ALFRED", middle_names="JAMES", **HOME)
    census = Update("census", "5", "census", "2011-01-20T00:00:00Z", first_name="ALFIE",
                    first_name_std="ALFRED", **{**HOME, "postcode": "M14 5RT"})
    assert _match_probability(model, birth, census) > 0.99


# first-name shares as a national master holds them: a common name, and a scanner's or a
# typist's slip of it (OHVIA: LI read as H), far rarer
SHARES = {"OLIVIA": 0.026, "OHVIA": 7e-5, "TOM": 0.004, "TOJ": 2e-6,
          "LARA": 0.0012, "ZARA": 0.0009}


@pytest.mark.parametrize(("name", "standard", "slip", "sex"), [
    ("OLIVIA", "OLIVIA", "OHVIA", "F"),  # a scanner read LI as H
    ("TOM", "THOMAS", "TOJ", "M"),  # a typist's neighbouring key, in a name too short for JW
])
def test_a_slip_of_a_common_first_name_links_among_a_million_children(
    model: CompiledModel, name: str, standard: str, slip: str, sex: str
):
    nhs = Update("nhs", "4", "registration", "2006-03-30T00:00:00Z", first_name=name,
                 first_name_std=standard, **{**HOME, "sex": sex})
    claim = Update("dwp", "8", "new_claim", "2006-05-02T00:00:00Z", first_name=slip,
                   first_name_std=slip, **{**HOME, "sex": sex})
    assert _match_probability(model, nhs, claim, SHARES, children=1_000_000) > 0.95


def test_twins_named_one_letter_apart_score_below_half_even_in_a_small_master(
    model: CompiledModel,
):
    lara = Update("gro", "1", "birth", "2006-03-20T00:00:00Z", first_name="LARA",
                  first_name_std="LARA", **{**HOME, "sex": "F"})
    zara = Update("dwp", "7", "new_claim", "2006-05-02T00:00:00Z", first_name="ZARA",
                  first_name_std="ZARA", **{**HOME, "sex": "F"})
    assert _match_probability(model, lara, zara, SHARES) < 0.5


# A triplet set at 1M (seed 2), anonymised: BILLY and LIAM, both diminutives of WILLIAM, with
# one surname, date of birth, address and claimant
MASON = dict(surname="MASON WATTS", date_of_birth="2004-03-18", postcode="BS6 1BP", sex="M",
             address_line1="104 HAWTHORN LANE", parent_forenames="OLIVIA HARRIET")


def test_twins_named_by_two_diminutives_of_one_name_are_no_link(model: CompiledModel):
    billy = Update("dwp", "4", "new_claim", "2009-01-01T00:00:00Z", first_name="BILLY",
                   first_name_std="WILLIAM", middle_names="MASON", **MASON)
    liam = Update("dwp", "5", "new_claim", "2009-01-01T00:00:00Z", first_name="LIAM",
                  first_name_std="WILLIAM", **MASON)
    # their claims agree on everything else, the claimant too: the first names must outweigh it
    assert _match_probability(model, billy, liam, children=1_000_000) < 0.95


def test_a_diminutive_still_links_to_its_formal_name(model: CompiledModel):
    william = Update("nhs", "1", "registration", "2004-04-01T00:00:00Z", first_name="WILLIAM",
                     first_name_std="WILLIAM", **MASON)
    liam = Update("census", "5", "census", "2009-01-01T00:00:00Z", first_name="LIAM",
                  first_name_std="WILLIAM", **MASON)
    assert _match_probability(model, william, liam, children=1_000_000) > 0.95


# Twins at 1M (seed 2), anonymised: ABIGAIL CHARLOTTE, whose claim swapped her first and middle
# names, and CHARLOTTE LILY
PERRY = dict(surname="PERRY", date_of_birth="1995-01-25", postcode="E9 6YD", sex="F",
             address_line1="36 QUEENS GARDENS")


def test_a_claim_with_first_and_middle_names_swapped_is_its_own_child_not_her_twin(
    model: CompiledModel,
):
    claim = Update("dwp", "1", "new_claim", "2009-01-01T00:00:00Z", first_name="CHARLOTTE",
                   first_name_std="CHARLOTTE", middle_names="ABIGAIL", **PERRY)
    own = Update("nhs", "8", "registration", "2009-01-01T00:00:00Z", first_name="ABIGAIL",
                 first_name_std="ABIGAIL", middle_names="CHARLOTTE", **PERRY)
    twin = Update("nhs", "9", "registration", "2009-01-01T00:00:00Z", first_name="CHARLOTTE",
                  first_name_std="CHARLOTTE", middle_names="LILY", **PERRY)
    shares = {"CHARLOTTE": 0.01, "ABIGAIL": 0.005}
    own_p = _match_probability(model, claim, own, shares, children=1_000_000)
    twin_p = _match_probability(model, claim, twin, shares, children=1_000_000)
    assert own_p > 0.95
    assert _weight(own_p) > _weight(twin_p) + 6  # clearly her own, by the decision's margin


def _weight(probability: float) -> float:
    return math.log2(probability / (1 - probability))


def _match_probability(model: CompiledModel, left: Update, right: Update,
                       first_name_tf: dict[str, float] | None = None,
                       children: int | None = None) -> float:
    """The model's match probability for one pair, every tf value set to RARE except the
    first names in `first_name_tf` (value -> share); with `children`, the prior of a master of
    that many children (engine.resolution.prior), else the trained prior."""
    con = duckdb.connect()
    register_model_records(con, updates_to_arrow([left, right]), "records")
    tf = ", ".join(f"{RARE} AS tf_{col}" for col in model.tf_columns if col != "first_name")
    shares = " ".join(f"WHEN '{name}' THEN {share}"
                      for name, share in (first_name_tf or {}).items())
    first_name = f"CASE first_name {shares} ELSE {RARE} END" if shares else f"{RARE}"
    con.execute(f"CREATE TABLE records_tf AS SELECT *, {tf}, {first_name} AS tf_first_name "
                "FROM records")
    con.execute(f"CREATE TABLE pairs AS SELECT '{left.unique_id}' AS unique_id_l, "
                f"'{right.unique_id}' AS unique_id_r")
    prior = None if children is None else population_prior(model, children)
    sql = model.score_sql("records_tf", "records_tf", "pairs", prior=prior)
    return con.execute(f"SELECT match_probability FROM ({sql})").fetchall()[0][0]
