"""The prior follows the population (engine.resolution.prior): a master of more children than the
model's training snapshot held lowers every pair's match weight by log2 of the ratio."""

import math

import duckdb

from engine.config import ScoringConfig
from engine.resolution.prior import (
    master_weight_shift,
    population_prior,
    probability_sql,
    weight_shift,
)
from linkage_models.scoring import CompiledModel


def test_a_master_no_larger_than_the_training_snapshot_keeps_the_trained_prior(
    model: CompiledModel
):
    assert population_prior(model, model.trained_on_children) is None
    assert population_prior(model, 10) is None
    assert weight_shift(model, 10) == 0.0


def test_the_training_snapshot_held_the_children_its_prior_says(model: CompiledModel):
    records, prior = model.trained_on_records, model.probability_two_random_records_match
    assert model.trained_on_children == round(records / (1 + prior * (records - 1)))
    assert model.trained_on_children < records


def test_ten_times_the_training_population_takes_about_log2_10_bits_off_every_pair(
    model: CompiledModel
):
    n = model.trained_on_children * 10
    assert math.isclose(population_prior(model, n),
                        model.probability_two_random_records_match / 10, rel_tol=1e-12)
    assert math.isclose(weight_shift(model, n), -math.log2(10), abs_tol=0.01)


def test_a_master_counts_its_children_but_not_the_merged_ones(model: CompiledModel):
    con = duckdb.connect()
    children = model.trained_on_children * 10
    con.execute("CREATE TABLE children AS SELECT CASE WHEN i < 1000 THEN 'merged' "
                "WHEN i % 7 = 0 THEN 'deceased' ELSE 'active' END AS status "
                "FROM range(?) t(i)", [children + 1000])
    con.execute("CREATE TABLE records AS SELECT i FROM range(?) t(i)", [children * 4])
    shift = master_weight_shift(con, model, ScoringConfig(), pending_records=400)
    assert shift == weight_shift(model, children + 100)  # pending: 1 child per 4 records


def test_the_shifted_probability_in_sql_is_the_models_own(model: CompiledModel):
    shift = weight_shift(model, model.trained_on_children * 50)
    for weight in (-5.0, 0.0, 7.5, 20.0):
        sql = probability_sql(str(weight), shift)
        in_sql = duckdb.sql(f"SELECT {sql}").fetchall()[0][0]
        expected = model.match_probability(
            weight, population_prior(model, model.trained_on_children * 50))
        assert math.isclose(in_sql, expected, rel_tol=1e-12)
