"""The shipped model on hand-made pairs: twins stay apart, one child's noisy records join."""

from __future__ import annotations

import duckdb

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


def _match_probability(model: CompiledModel, left: Update, right: Update) -> float:
    """The model's match probability for one pair, every tf value set to RARE."""
    con = duckdb.connect()
    register_model_records(con, updates_to_arrow([left, right]), "records")
    tf = ", ".join(f"{RARE} AS tf_{col}" for col in model.tf_columns)
    con.execute(f"CREATE TABLE records_tf AS SELECT *, {tf} FROM records")
    con.execute(f"CREATE TABLE pairs AS SELECT '{left.unique_id}' AS unique_id_l, "
                f"'{right.unique_id}' AS unique_id_r")
    sql = model.score_sql("records_tf", "records_tf", "pairs")
    return con.execute(f"SELECT match_probability FROM ({sql})").fetchall()[0][0]
