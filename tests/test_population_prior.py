"""The prior follows the population (engine.resolution.prior): a master of more children than the
model's training snapshot held lowers every pair's match weight by log2 of the ratio."""

import math
from pathlib import Path

import duckdb

from engine.config import EngineConfig, ScoringConfig
from engine.master_store import open_master
from engine.resolution.prior import (
    WEIGHT_SHIFT,
    MasterPopulation,
    master_weight_shift,
    population_prior,
    shifted_probability_sql,
    weight_shift,
)
from engine.resolver import Resolver
from linkage_models.scoring import CompiledModel
from streams.canonical import Update
from streams.generator import generate
from streams.snapshot import read_updates


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
    for children in (model.trained_on_children, model.trained_on_children * 50):
        shift = weight_shift(model, children)
        for weight in (-5.0, 0.0, 7.5, 20.0):
            sql = shifted_probability_sql(str(weight))
            in_sql = duckdb.execute(f"SELECT {sql}", {WEIGHT_SHIFT: shift}).fetchall()[0][0]
            expected = model.match_probability(weight, population_prior(model, children))
            assert math.isclose(in_sql, expected, rel_tol=1e-12)


def test_a_population_counts_once_then_follows_the_engines_batches_and_others_writes(
    model: CompiledModel
):
    """Counted once; an engine's batch says what it added (its own records written before its
    prior is taken change nothing); a write by anyone else between batches (a child's row
    written, drawing a `row_no`; records purged) has it counted again."""
    con = duckdb.connect()
    con.execute("CREATE SEQUENCE child_row_seq")
    con.execute("CREATE TABLE children (status VARCHAR, "
                "row_no BIGINT DEFAULT nextval('child_row_seq'))")
    con.execute("INSERT INTO children (status) SELECT 'active' FROM range(10)")
    con.execute("CREATE TABLE records AS SELECT i FROM range(40) t(i)")
    population, config = MasterPopulation(), ScoringConfig()

    def batch(children: int, records: int) -> bool:
        """Whether the batch found that someone else wrote."""
        others_wrote = population.begin_batch(con)
        con.execute("INSERT INTO records SELECT i FROM range(?) t(i)", [records])
        population.weight_shift(con, model, config)
        con.execute("INSERT INTO children (status) SELECT 'active' FROM range(?)", [children])
        population.batch_wrote(con, children)
        return others_wrote

    assert population.children is None
    assert not batch(2, 3)
    assert population.children == 12  # counted (10), then the batch's own 2
    con.execute("UPDATE children SET status = 'merged' WHERE row_no = 1")  # drew no row_no
    assert not batch(0, 5)
    assert population.children == 12  # kept in step, not counted again
    con.execute("INSERT INTO children (status) VALUES ('active')")  # a person's act
    assert batch(0, 5)
    assert population.children == 12  # 13 rows, one of them merged: counted again
    con.execute("DELETE FROM children WHERE row_no = 2")  # a purge: the child and its records
    con.execute("DELETE FROM records WHERE i = 0")
    assert batch(1, 1)
    assert population.children == 12  # 11 counted, and the batch's own
    population.forget()  # a batch rolled back
    assert population.children is None


def test_a_resolvers_population_is_the_masters_after_every_batch(
    model: CompiledModel, tmp_path: Path
):
    """Kept in step by each batch's new and merged children, it is what counting would give."""
    out = tmp_path / "generated"
    generate(25, 11, out)
    updates = [Update(**row) for row in read_updates(out / "feeds").updates.to_pylist()]
    con = open_master(tmp_path / "master.duckdb")
    resolver = Resolver(con, model, EngineConfig(), following=True)
    kept = []
    for start in range(0, len(updates) - 9, 9):
        resolver.resolve(updates[start:start + 9])
        counted = con.execute("SELECT count(*) FILTER (WHERE status <> 'merged') "
                              "FROM children").fetchall()[0][0]
        kept.append((resolver.population.children, counted))
    assert all(children in (None, counted) for children, counted in kept)
    assert sum(children is not None for children, _ in kept) > len(kept) // 2
    # a change no writer makes (it draws no row_no): the resolver keeps its count, not counting
    con.execute("UPDATE children SET status = 'merged' WHERE row_no = "
                "(SELECT min(row_no) FROM children WHERE status = 'active')")
    resolver.resolve(updates[len(kept) * 9:])
    counted = con.execute("SELECT count(*) FILTER (WHERE status <> 'merged') "
                          "FROM children").fetchall()[0][0]
    con.close()
    assert resolver.population.children == counted + 1
