"""The waterfall of one score row: prior, one step per comparison, tf steps, final weight."""

from __future__ import annotations

import duckdb
import pytest

from linkage_models.explain import render_html, render_text, waterfall
from linkage_models.records import register_model_records
from linkage_models.scoring import CompiledModel
from streams.canonical import Update, updates_to_arrow


@pytest.fixture(scope="module")
def score_row(model: CompiledModel) -> dict:
    birth = Update("gro", "1", "birth", "2006-03-20T00:00:00Z", first_name="ALFRED",
                   first_name_std="ALFRED", surname="SMITH", date_of_birth="2006-03-14",
                   postcode="LS6 2AB", sex="M")
    claim = Update("dwp", "2", "new_claim", "2006-05-01T00:00:00Z", first_name="ALFRED",
                   first_name_std="ALFRED", surname="SMYTH", date_of_birth="2006-03-14",
                   postcode="LS6 2AD", sex=None)
    con = duckdb.connect()
    register_model_records(con, updates_to_arrow([birth, claim]), "records", model.tf_columns)
    con.execute("CREATE TABLE pairs AS SELECT 'gro:1' AS unique_id_l, 'dwp:2' AS unique_id_r")
    sql = model.score_sql("records", "records", "pairs")
    return con.sql(sql).to_arrow_table().to_pylist()[0]


def test_waterfall_steps_add_up_to_the_match_weight(model, score_row) -> None:
    steps = waterfall(score_row, model)
    assert steps[0].name == "prior" and steps[-1].name == "final"
    assert [s.name for s in steps if s.name in model.comparisons] == model.comparisons
    assert steps[-2].cumulative_weight == pytest.approx(score_row["match_weight"], abs=1e-9)
    assert steps[-1].cumulative_probability == pytest.approx(
        score_row["match_probability"], abs=1e-12
    )


def test_waterfall_names_each_level_and_the_tf_adjustment(model, score_row) -> None:
    by_name = {s.name: s for s in waterfall(score_row, model)}
    assert by_name["first_name"].label == "Exact match on first_name"
    assert "first_name tf" in by_name
    assert by_name["surname"].label.startswith("Jaro-Winkler")
    assert (by_name["surname"].value_l, by_name["surname"].value_r) == ("SMITH", "SMYTH")
    assert by_name["sex"].label == "sex is NULL" and by_name["sex"].match_weight == 0.0


def test_renderings_show_every_step(model, score_row) -> None:
    steps = waterfall(score_row, model)
    text = render_text(steps)
    page = render_html(steps, "gro:1 vs dwp:2")
    for step in steps:
        assert step.name in text and step.name in page
    assert "SMYTH" in text and "<table" in page and "<script" not in page
