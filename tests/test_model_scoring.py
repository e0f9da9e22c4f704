"""The compiled scoring SQL gives Splink's own predict_between weights; the model file loads
or fails with one ModelError."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from splink import DuckDBAPI, Linker

from linkage_models.records import register_model_records
from linkage_models.scoring import CompiledModel, ModelError
from streams.generator import generate
from streams.snapshot import read_updates


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """A few hundred canonical records of 60 synthetic children (with their noise)."""
    out = tmp_path_factory.mktemp("feeds")
    generate(children=60, seed=11, out=out)
    return read_updates(out / "feeds").updates



def test_compiled_sql_gives_predict_between_weights(sample: pa.Table, model: CompiledModel):
    con = duckdb.connect()
    splink_weights = _predict_between_weights(con, sample, model)
    assert len(splink_weights) > 200, "the sample must hold enough blocked pairs"
    assert _compiled_weights(con, model, "pairs") == pytest.approx(splink_weights, abs=1e-9)


def test_weights_only_sql_gives_the_same_weights_and_probabilities_and_nothing_else(
    sample: pa.Table, model: CompiledModel
):
    con = duckdb.connect()
    splink_weights = _predict_between_weights(con, sample, model)
    lean = model.score_sql("new_tf", "known_tf", "pairs", weights_only=True)
    assert [c for (c, *_) in con.execute(f"DESCRIBE {lean}").fetchall()] == [
        "match_weight", "match_probability", "unique_id_l", "unique_id_r", "match_key"]
    full = model.score_sql("new_tf", "known_tf", "pairs")
    scored = ("SELECT unique_id_l, unique_id_r, match_weight, match_probability "
              "FROM ({}) ORDER BY 1, 2")
    rows = con.execute(scored.format(lean)).fetchall()
    assert len(rows) > 200 and rows == con.execute(scored.format(full)).fetchall()
    assert _compiled_weights(con, model, "pairs", weights_only=True) == pytest.approx(
        splink_weights, abs=1e-9)


def test_the_scored_columns_are_all_that_weights_need_and_not_a_blocking_rules_own(
    sample: pa.Table, model: CompiledModel
):
    """A batch reads its candidates with the scored columns alone: the weights of records
    holding only those (and their term frequencies) are Splink's own, and the columns only a
    blocking rule reads (it finds the pair, no level compares them) are not among them."""
    assert set(model.record_columns) - set(model.scored_columns) == {"feed", "source_key"}
    con = duckdb.connect()
    splink_weights = _predict_between_weights(con, sample, model)
    kept = ", ".join([*model.scored_columns, *(f"tf_{c}" for c in model.tf_columns)])
    for side in ("new", "known"):
        con.execute(f"CREATE TABLE {side}_scored AS SELECT {kept} FROM {side}_tf")
    sql = model.score_sql("new_scored", "known_scored", "pairs", weights_only=True)
    rows = con.execute(f"SELECT unique_id_l, unique_id_r, match_weight FROM ({sql})").fetchall()
    assert {(left, right): weight for left, right, weight in rows} == pytest.approx(
        splink_weights, abs=1e-9)


def test_model_json_round_trip_scores_the_same(
    sample: pa.Table, model: CompiledModel, tmp_path: Path
):
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(model.model))
    reloaded = CompiledModel.from_json(copy)
    assert reloaded.version == model.version
    assert reloaded.score_sql("a", "b", "c") == model.score_sql("a", "b", "c")
    con = duckdb.connect()
    _predict_between_weights(con, sample, model)
    assert _compiled_weights(con, reloaded, "pairs") == _compiled_weights(con, model, "pairs")


def test_a_population_prior_shifts_every_weight_by_the_same_log_odds(
    sample: pa.Table, model: CompiledModel
):
    con = duckdb.connect()
    _predict_between_weights(con, sample, model)
    trained = _compiled_weights(con, model, "pairs")
    smaller = model.probability_two_random_records_match / 10
    rows = con.execute(
        "SELECT unique_id_l, unique_id_r, match_weight, match_probability "
        f"FROM ({model.score_sql('new_tf', 'known_tf', 'pairs', prior=smaller)})"
    ).fetchall()
    shift = math.log2(smaller / (1 - smaller)) - math.log2(
        model.probability_two_random_records_match
        / (1 - model.probability_two_random_records_match)
    )
    for left, right, weight, probability in rows:
        assert weight == pytest.approx(trained[(left, right)] + shift, abs=1e-9)
        assert probability == pytest.approx(
            model.match_probability(trained[(left, right)], prior=smaller), abs=1e-12
        )
    assert model.match_probability(0.0) == 0.5
    assert model.score_sql("a", "b", "c", prior=None) == model.score_sql("a", "b", "c")


def test_model_exposes_version_tf_columns_and_equi_join_rules(model: CompiledModel):
    assert model.version.startswith("child-")
    assert model.tf_columns == ["first_name", "surname"]
    assert all(" = " in rule and " OR " not in rule.upper() for rule in model.blocking_rules)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "not found"),
        ("{not json", "not readable JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        ('{"link_type": "dedupe_only"}', "no metadata.model_version"),
        ('{"metadata": {"model_version": "x"}, "comparisons": 3}', "not a valid Splink model"),
    ],
)
def test_unusable_model_file_raises_model_error(tmp_path: Path, content: str | None, reason):
    path = tmp_path / "model.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelError, match=reason) as error:
        CompiledModel.from_json(path)
    assert "\n" not in str(error.value)


def _predict_between_weights(
    con: duckdb.DuckDBPyConnection, sample: pa.Table, model: CompiledModel
) -> dict[tuple[str, str], float]:
    """Splink's weights for the sample split in two halves; leaves tables `new_tf`,
    `known_tf` (records with tf columns) and `pairs` (the pairs Splink scored) in `con`."""
    register_model_records(con, sample, "records")
    register_model_records(con, sample, "records_tf", model.tf_columns)
    for side, remainder in (("new", 0), ("known", 1)):
        con.execute(f"CREATE TABLE {side} AS SELECT * FROM records "
                    f"WHERE hash(unique_id) % 2 = {remainder}")
        con.execute(f"CREATE TABLE {side}_tf AS SELECT * FROM records_tf "
                    f"WHERE hash(unique_id) % 2 = {remainder}")
    db_api = DuckDBAPI(connection=con)
    settings = {k: v for k, v in model.model.items() if k != "metadata"}
    linker = Linker(db_api.register("records"), settings, log_level=None)
    for column in model.tf_columns:
        linker.table_management.compute_tf_table(column)
    predictions = linker.inference.predict_between(
        db_api.register("new"), db_api.register("known"), warning_mode="never"
    ).as_duckdbpyrelation().to_arrow_table()
    con.register("predictions", predictions)
    con.execute("CREATE TABLE pairs AS SELECT unique_id_l, unique_id_r FROM predictions")
    return {
        (row["unique_id_l"], row["unique_id_r"]): row["match_weight"]
        for row in predictions.select(["unique_id_l", "unique_id_r", "match_weight"]).to_pylist()
    }


def _compiled_weights(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, pairs: str, weights_only: bool = False
) -> dict[tuple[str, str], float]:
    """Our compiled SQL's weights for the same pairs."""
    sql = model.score_sql("new_tf", "known_tf", pairs, weights_only=weights_only)
    rows = con.execute(f"SELECT unique_id_l, unique_id_r, match_weight FROM ({sql})").fetchall()
    return {(left, right): weight for left, right, weight in rows}
