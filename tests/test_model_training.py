"""train_model writes a loadable, versioned model JSON and an offline training report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from linkage_models.scoring import CompiledModel
from linkage_models.settings import DEFAULT_SPEC_PATH, load_spec
from linkage_models.training import floor_m_probabilities, train_model
from streams.generator import generate
from streams.snapshot import read_updates

CHILD_SPEC = load_spec(DEFAULT_SPEC_PATH)
SMALL_SPEC = replace(CHILD_SPEC, training=replace(CHILD_SPEC.training, u_max_pairs=2e5))


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    out = tmp_path_factory.mktemp("feeds")
    generate(children=300, seed=5, out=out)
    return read_updates(out / "feeds").updates


@pytest.fixture(scope="module")
def trained(snapshot: pa.Table, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("model") / "model.json"
    messages: list[str] = []
    metadata = train_model(snapshot, out, seed=3, progress=messages.append, spec=SMALL_SPEC)
    return out, metadata, messages


def test_training_writes_a_model_the_scorer_loads(trained, snapshot: pa.Table) -> None:
    out, metadata, messages = trained
    model = CompiledModel.from_json(out)
    assert model.version == metadata["model_version"]
    assert metadata["rows"] == snapshot.num_rows
    assert metadata["splink_version"] == "5.0.0"
    assert metadata["em_blocking_rules"] == list(SMALL_SPEC.training.em_blocking_rules)
    assert metadata["data_fingerprint"].startswith(f"{snapshot.num_rows}-")
    assert any("EM" in message for message in messages)
    assert 0 < model.probability_two_random_records_match < 0.01


def test_training_report_is_offline_html_with_both_charts(trained) -> None:
    out, metadata, _ = trained
    page = out.with_suffix(".html").read_text()
    assert page.count("vegaEmbed('#chart-") == 2
    assert "cdn.jsdelivr" not in page and metadata["model_version"] in page


def test_training_is_deterministic_for_a_seed(trained, snapshot, tmp_path: Path) -> None:
    out, metadata, _ = trained
    again = tmp_path / "again.json"
    again_metadata = train_model(snapshot, again, seed=3, spec=SMALL_SPEC)
    assert again_metadata["data_fingerprint"] == metadata["data_fingerprint"]
    first, second = _parameters(out), _parameters(again)
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert second[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_m_floor_raises_trained_m_but_keeps_fixed_and_null_levels() -> None:
    settings = {"comparisons": [{"comparison_levels": [
        {"is_null_level": True},
        {"m_probability": 0.9},
        {"m_probability": 1e-9},
        {"m_probability": 1e-8, "fix_m_probability": True},
    ]}]}
    levels = floor_m_probabilities(settings, 1e-4)["comparisons"][0]["comparison_levels"]
    assert [level.get("m_probability") for level in levels] == [None, 0.9, 1e-4, 1e-8]


def _parameters(path: Path) -> dict[str, float]:
    """Every trained m and u of a model file, by comparison and level label."""
    model = json.loads(path.read_text())
    return {
        f"{c['output_column_name']}/{level['label_for_charts']}/{p}": level[p]
        for c in model["comparisons"]
        for level in c["comparison_levels"]
        for p in ("m_probability", "u_probability")
        if p in level
    } | {"prior": model["probability_two_random_records_match"]}
