"""The model as data: a spec in Splink's vocabulary becomes Splink settings, a trained model JSON
and a CompiledModel; `model init` writes a starter spec; training skips thin EM sessions and
refuses to leave a comparison unestimated; `evaluate --compare` puts models side by side."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from engine.cli import main
from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel
from linkage_models.settings import DEFAULT_SPEC_PATH, SpecError, load_spec, spec_from_dict
from linkage_models.training import TrainingError, train_model
from streams.declared import import_declared_feed
from streams.snapshot import read_updates

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own-data" / "people.toml"

SMALL_SPEC = {
    "model": {"name": "people"},
    "comparisons": [
        {"comparison": "NameComparison", "col_name": "first_name",
         "term_frequency_adjustments": True},
        {"comparison": "JaroWinklerAtThresholds", "col_name": "surname",
         "score_threshold_or_thresholds": [0.9]},
        {"comparison": "CustomComparison", "output_column_name": "date_of_birth",
         "comparison_levels": [
             {"level": "NullLevel", "col_name": "date_of_birth"},
             {"level": "ExactMatchLevel", "col_name": "date_of_birth"},
             {"level": "CustomLevel", "label_for_charts": "Same year",
              "sql_condition": "substr(date_of_birth_l, 1, 4) = substr(date_of_birth_r, 1, 4)"},
             {"level": "ElseLevel"},
         ]},
        {"comparison": "ExactMatch", "col_name": "postcode"},
    ],
    "blocking": {"rules": ["l.surname = r.surname", "l.date_of_birth = r.date_of_birth"]},
    "training": {
        "u_max_pairs": 1e5,
        "em_blocking_rules": ["l.first_name = r.first_name AND l.surname = r.surname",
                              "l.date_of_birth = r.date_of_birth"],
        "em_min_pairs": 20,
        "deterministic_rules": ["l.first_name = r.first_name AND l.surname = r.surname"
                                " AND l.date_of_birth = r.date_of_birth"],
    },
}


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """The example hospital feed (231 records of 150 children) and its truth file."""
    folder = tmp_path_factory.mktemp("hospital")
    import_declared_feed(EXAMPLE, folder / "feeds", folder / "truth.csv")
    return folder, read_updates(folder / "feeds").updates


def test_child_spec_gives_exactly_the_settings_the_shipped_model_was_trained_with() -> None:
    settings = load_spec(DEFAULT_SPEC_PATH).settings().get_settings("duckdb").as_dict()
    shipped = json.loads(DEFAULT_MODEL_PATH.read_text())

    def untrained(comparisons: list[dict]) -> list[list[tuple]]:
        return [[(level["sql_condition"], level["label_for_charts"],
                  level.get("tf_adjustment_column"), level.get("fix_m_probability", False))
                 for level in c["comparison_levels"]] for c in comparisons]

    assert untrained(settings["comparisons"]) == untrained(shipped["comparisons"])
    assert settings["blocking_rules_to_generate_predictions"] == (
        shipped["blocking_rules_to_generate_predictions"]
    )


def test_spec_round_trips_to_splink_settings_a_trained_model_and_a_compiled_model(
    hospital, tmp_path: Path,
) -> None:
    _, records = hospital
    spec_file = tmp_path / "people.json"
    spec_file.write_text(json.dumps(SMALL_SPEC))
    spec = load_spec(spec_file)
    assert spec_from_dict(spec.to_dict()) == spec

    metadata = train_model(records, tmp_path / "model.json", spec=spec, seed=2,
                           truth_csv=hospital[0] / "truth.csv")
    model = CompiledModel.from_json(tmp_path / "model.json")

    assert model.version == metadata["model_version"]
    assert model.version.startswith("people-")
    assert model.comparisons == ["first_name", "surname", "date_of_birth", "postcode"]
    assert model.tf_columns == ["first_name"]
    assert model.blocking_rules == SMALL_SPEC["blocking"]["rules"]
    assert model.trained_on_records == records.num_rows
    assert metadata["trained_on_persons"] == 150
    assert 100 < metadata["trained_on_persons_estimated"] < 200
    sessions = metadata["training"]["em_sessions"]
    assert [s["estimated"] for s in sessions] == [
        ["date_of_birth", "postcode"], ["first_name", "surname", "postcode"]
    ]


def test_a_toml_spec_reads_like_its_json_twin(tmp_path: Path) -> None:
    import tomli_w

    (tmp_path / "spec.toml").write_text(tomli_w.dumps(SMALL_SPEC))
    (tmp_path / "spec.json").write_text(json.dumps(SMALL_SPEC))
    assert load_spec(tmp_path / "spec.toml") == load_spec(tmp_path / "spec.json")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"comparisons": [{"comparison": "FuzzyMatch", "col_name": "surname"}]},
         "'FuzzyMatch' is not in splink.comparison_library"),
        ({"comparisons": [{"comparison": "ExactMatch", "column": "surname"}]},
         "ExactMatch has no parameter 'column'"),
        ({"comparisons": [{"comparison": "ExactMatch", "col_name": "shoe_size"}]},
         "reads 'shoe_size', which is not a canonical field"),
        ({"blocking": {"rules": ["l.surname = r.surname OR l.postcode = r.postcode"]}},
         "is not an equi-join"),
        ({"training": {"em_blocking_rules": []}}, "em_blocking_rules is empty"),
        ({"colour": {}}, "unknown key 'colour' in the spec"),
    ],
)
def test_a_bad_spec_is_refused_with_one_line(change: dict, reason: str) -> None:
    with pytest.raises(SpecError) as refused:
        spec_from_dict({**SMALL_SPEC, **change})
    assert reason in str(refused.value)
    assert "\n" not in str(refused.value)


def test_model_init_writes_a_trainable_spec_for_the_fields_the_feeds_carry(
    hospital, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = hospital
    spec_file, model_file = tmp_path / "starter.toml", tmp_path / "model.json"

    assert main(["model", "init", "--feeds", str(folder / "feeds"), "--out", str(spec_file),
                 "--name", "hospital"]) == 0
    spec = load_spec(spec_file)
    compared = [c.get("col_name", c.get("output_column_name")) for c in spec.comparisons]
    assert compared == ["first_name", "surname", "date_of_birth", "sex", "postcode",
                        "address_line1", "town", "nhs_number"]
    assert spec.comparisons[4]["comparison"] == "PostcodeComparison"  # UK postcodes
    assert "l.nhs_number = r.nhs_number" in spec.blocking_rules
    assert not any("upn" in rule for rule in spec.blocking_rules)  # not carried

    capsys.readouterr()
    assert main(["train", "--spec", str(spec_file), "--feeds", str(folder / "feeds"),
                 "--out", str(model_file), "--json"]) == 0
    metadata = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metadata["model_version"].startswith("hospital-")
    assert not metadata["training"]["warnings"]


def test_an_em_session_with_too_few_pairs_is_skipped_with_a_warning_naming_the_rule(
    hospital, tmp_path: Path,
) -> None:
    _, records = hospital
    sex = records.schema.get_field_index("sex")
    records = records.set_column(sex, "sex", pa.nulls(records.num_rows, pa.string()))
    spec = load_spec(DEFAULT_SPEC_PATH)
    plan = replace(spec.training, u_max_pairs=1e5, em_min_pairs=30, em_blocking_rules=(
        "l.upn = r.upn",  # the hospital feed carries no UPN: no pairs
        *spec.training.em_blocking_rules[1:],
    ))
    messages: list[str] = []

    metadata = train_model(records, tmp_path / "model.json", spec=replace(spec, training=plan),
                           progress=messages.append)

    warning = ("EM session skipped: blocking rule 'l.upn = r.upn' finds 0 pairs "
               "(fewer than em_min_pairs = 30)")
    no_columns = [
        f"comparison '{name}' reads only columns no record carries: it scores every pair 0 "
        "(its null level); remove it from the spec"
        # nulled above; not in the feed (middle_names reads first_name too: its swap level)
        for name in ("sex", "parent_forenames")
    ]
    assert warning in messages and set(no_columns) <= set(messages)
    assert metadata["training"]["warnings"] == [warning, *no_columns]
    assert metadata["training"]["em_sessions"][0] == {
        "rule": "l.upn = r.upn", "pairs": 0, "skipped": True
    }


def test_a_comparison_no_em_session_estimates_stops_training_with_one_line(
    hospital, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = hospital
    only_names = {**SMALL_SPEC, "training": {
        **SMALL_SPEC["training"],
        "em_blocking_rules": ["l.first_name = r.first_name AND l.surname = r.surname"],
    }}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(only_names))

    with pytest.raises(TrainingError, match="comparison 'first_name' was left unestimated"):
        train_model(read_updates(folder / "feeds").updates, tmp_path / "m.json",
                    spec=load_spec(spec_file))
    capsys.readouterr()
    assert main(["train", "--spec", str(spec_file), "--feeds", str(folder / "feeds"),
                 "--out", str(tmp_path / "m.json")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the records-read line
    assert error.startswith("contactpoint train: comparison 'first_name' was left unestimated")
    assert "add a rule to [training] em_blocking_rules" in error
    assert not (tmp_path / "m.json").exists()


def test_evaluate_compare_scores_two_models_on_the_same_truth(
    hospital, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder, records = hospital
    small = tmp_path / "small.json"
    train_model(records, small, spec=spec_from_dict(SMALL_SPEC))
    chart = tmp_path / "compare.html"
    capsys.readouterr()

    assert main(["evaluate", "--compare", str(small), str(DEFAULT_MODEL_PATH),
                 "--feeds", str(folder / "feeds"), "--truth", str(folder / "truth.csv"),
                 "--chart", str(chart), "--json"]) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["records"], result["true_pairs"]) == (231, 82)
    assert [m["model"] for m in result["models"]] == [str(small), str(DEFAULT_MODEL_PATH)]
    for model in result["models"]:
        assert [t["threshold"] for t in model["thresholds"]] == [
            0.5, 0.8, 0.9, 0.95, 0.99, 0.999
        ]
        assert all(0 <= t["precision"] <= 1 and 0 <= t["recall"] <= 1
                   for t in model["thresholds"])
    shipped = result["models"][1]["thresholds"][3]
    assert (shipped["precision"], shipped["recall"]) == (1.0, 1.0)
    page = chart.read_text()
    assert page.count("vegaEmbed('#chart-") == 1
    assert "small.json" in page and "child_model.json" in page
