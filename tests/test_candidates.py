"""The blocking index finds exactly the pairs the model's blocking rules would join, and is
rebuilt when the master was indexed for other rules."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from engine import candidates
from engine.candidates import CandidateFinder, ensure_blocking_index, index_records_sqls
from engine.master_store import open_master
from linkage_models.scoring import CompiledModel, ModelError
from streams.generator import generate
from streams.snapshot import read_updates


@pytest.fixture(scope="module")
def updates(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """The canonical records of 80 synthetic children (with their noise)."""
    out = tmp_path_factory.mktemp("feeds")
    generate(children=80, seed=3, out=out)
    return read_updates(out / "feeds").updates


@pytest.fixture
def master(tmp_path: Path, updates: pa.Table, model: CompiledModel) -> duckdb.DuckDBPyConnection:
    """A master whose record index holds two thirds of the records; `batch_new` the rest."""
    con = open_master(tmp_path / "master.duckdb")
    con.register("updates", updates)
    con.execute("""
        CREATE TEMP TABLE sample AS
        SELECT feed || ':' || record_id AS unique_id, * FROM updates
    """)
    con.execute("""
        CREATE TEMP TABLE placed AS
        SELECT 'C' || unique_id AS child_id, * FROM sample WHERE hash(unique_id) % 3 != 0
    """)
    con.execute("CREATE TEMP TABLE batch_new AS SELECT * FROM sample WHERE hash(unique_id) % 3 = 0")
    for statement in index_records_sqls(model, "placed"):
        con.execute(statement)
    ensure_blocking_index(con, model)
    return con


def test_index_finds_exactly_the_pairs_of_the_blocking_rules(
    master: duckdb.DuckDBPyConnection, model: CompiledModel
):
    CandidateFinder(model).find(master)
    found = set(master.execute("SELECT unique_id_l, unique_id_r FROM pairs").fetchall())
    assert len(found) > 500, "the sample must hold enough blocked pairs"
    assert found == _pairs_by_joining_on_the_rules(master, model)


def test_right_records_carry_their_child_and_the_scored_columns(
    master: duckdb.DuckDBPyConnection, model: CompiledModel
):
    CandidateFinder(model).find(master)
    columns = [row[0] for row in master.execute("DESCRIBE right_records").fetchall()]
    assert columns == ["record_no", "child_id", *model.scored_columns]
    orphans = master.execute("""
        SELECT count(*) FROM pairs p JOIN right_records r ON r.unique_id = p.unique_id_r
        WHERE r.child_id IS NULL AND p.unique_id_r NOT IN (SELECT unique_id FROM batch_new)
    """).fetchall()
    assert orphans == [(0,)]


def test_shares_read_once_for_both_sides_are_what_each_side_reads_alone(
    master: duckdb.DuckDBPyConnection, model: CompiledModel
):
    """A batch reads the term-frequency shares of `right_records`' values once and joins them to
    the new records and to the candidates (which hold the new records too)."""
    master.execute(candidates.count_term_frequencies_sql(model, "sample"))
    CandidateFinder(model).find(master)
    master.execute("CREATE TEMP TABLE shares AS "
                   + candidates.term_frequency_shares_sql(model, "right_records", min_values=50))
    shares = ", ".join(f"tf_{column}" for column in model.tf_columns)
    for table in ("batch_new", "right_records"):
        joined = candidates.with_shares_sql(model, table, "shares")
        read_alone = candidates.with_term_frequencies_sql(model, table, 50)
        once = master.execute(
            f"SELECT unique_id, {shares} FROM ({joined}) ORDER BY unique_id").fetchall()
        alone = master.execute(
            f"SELECT unique_id, {shares} FROM ({read_alone}) ORDER BY unique_id").fetchall()
        assert once == alone
        assert any(value is not None for row in once for value in row[1:])


def test_index_built_for_another_model_is_rebuilt(
    master: duckdb.DuckDBPyConnection, model: CompiledModel
):
    keys = master.execute("SELECT count(*) FROM blocking_keys").fetchall()
    master.execute("UPDATE master_meta SET value = 'another model' WHERE key = 'blocking_index'")
    master.execute("DELETE FROM blocking_keys WHERE record_no % 2 = 0")
    ensure_blocking_index(master, model)
    assert master.execute("SELECT count(*) FROM blocking_keys").fetchall() == keys


def test_a_blocking_rule_that_is_not_a_symmetric_equi_join_is_refused(model: CompiledModel):
    settings = json.loads(json.dumps(model.model))
    settings["blocking_rules_to_generate_predictions"] = [
        {"blocking_rule": "l.surname = r.surname AND l.date_of_birth < r.date_of_birth"}
    ]
    with pytest.raises(ModelError, match="not an equi-join"):
        CompiledModel(settings)


def _pairs_by_joining_on_the_rules(
    con: duckdb.DuckDBPyConnection, model: CompiledModel
) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for rule in model.blocking_rules:
        pairs |= set(con.execute(
            f"SELECT l.unique_id, r.unique_id FROM batch_new l JOIN records r ON {rule}"
        ).fetchall())
        pairs |= set(con.execute(
            f"SELECT l.unique_id, r.unique_id FROM batch_new l JOIN batch_new r "
            f"ON ({rule}) AND l.unique_id < r.unique_id"
        ).fetchall())
    return pairs
