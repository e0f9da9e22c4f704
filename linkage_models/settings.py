"""The model specification: a TOML or JSON file, in Splink's own vocabulary, that defines a
linkage model before training (comparisons, prediction blocking rules, training plan).

`load_spec` reads and checks a spec; `ModelSpec.settings()` gives the untrained Splink
settings; `training.train_model` turns a spec and records into the trained model JSON. The
shipped child model is the spec `child_model.toml`. The format is documented in docs/model.md.
"""

from __future__ import annotations

import inspect
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator
from splink.internals.comparison_creator import ComparisonCreator
from splink.internals.comparison_level_creator import ComparisonLevelCreator

from linkage_models.scoring import ModelError, equi_join_key, first_line
from streams.canonical import UPDATE_COLUMNS
from streams.declared import check_known_keys

UNIQUE_ID = "unique_id"
DEFAULT_SPEC_PATH = Path(__file__).with_name("child_model.toml")
# The columns a comparison or rule may read: the canonical update columns (the record index).
MODEL_COLUMNS: frozenset[str] = frozenset(UPDATE_COLUMNS)
_SPEC_TABLES = {"model", "comparisons", "blocking", "training"}


class SpecError(ValueError):
    """A model spec that cannot be used; its message is the one-line reason."""


@dataclass(frozen=True)
class TrainingPlan:
    """How `train_model` estimates the parameters (see Splink's `linker.training`); the
    `[training]` table of a spec."""

    # u by random sampling: enough pairs for stable u of rare levels, small enough that
    # 1M records train in under two minutes on two cores.
    u_max_pairs: float = 5e6
    # m by expectation maximisation, one session per rule; together they must leave every
    # comparison free in at least one session that runs.
    em_blocking_rules: tuple[str, ...] = ()
    # an EM session whose rule yields fewer pairs is skipped with a warning
    em_min_pairs: int = 50
    # an EM session whose rule yields more pairs estimates from a sample of about this many
    # (Splink's record-hash sampling; 0: every pair)
    em_max_pairs: float = 2e6
    # the prior from pairs that are matches beyond doubt, and the share of all true pairs
    # they are believed to find
    deterministic_rules: tuple[str, ...] = ()
    deterministic_recall: float = 0.7
    # no trained disagreement is treated as impossible: a level whose m EM drives towards 0
    # (never seen among matches in training) keeps at least this m (about -13 match weight)
    m_floor: float = 1e-4


@dataclass(frozen=True)
class ModelSpec:
    """A checked model spec: a name, Splink comparisons, prediction blocking rules, a plan."""

    name: str
    comparisons: tuple[dict[str, Any], ...]  # as written in the spec
    blocking_rules: tuple[str, ...]
    training: TrainingPlan = field(default_factory=TrainingPlan)

    def settings(self) -> SettingsCreator:
        """Untrained Splink settings (dedupe over all feeds' records)."""
        return SettingsCreator(
            link_type="dedupe_only",
            unique_id_column_name=UNIQUE_ID,
            comparisons=[_comparison(entry) for entry in self.comparisons],
            blocking_rules_to_generate_predictions=list(self.blocking_rules),
            retain_matching_columns=True,
            retain_intermediate_calculation_columns=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec as the document `load_spec` reads (TOML or JSON)."""
        return {
            "model": {"name": self.name},
            "comparisons": [dict(entry) for entry in self.comparisons],
            "blocking": {"rules": list(self.blocking_rules)},
            "training": {
                f.name: list(value) if isinstance(value, tuple) else value
                for f in fields(TrainingPlan)
                for value in [getattr(self.training, f.name)]
            },
        }


def load_spec(path: Path) -> ModelSpec:
    """The checked spec in TOML (`.toml`) or JSON (any other suffix) at `path`; raises
    SpecError(one-line reason)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"model spec {path} is not readable: {error}") from None
    try:
        document = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise SpecError(f"model spec {path} is not valid {path.suffix[1:] or 'JSON'}: "
                        f"{error}") from None
    return spec_from_dict(document)


def spec_from_dict(document: Any) -> ModelSpec:
    """The checked spec of a parsed document; raises SpecError(one-line reason)."""
    if not isinstance(document, dict):
        raise SpecError("a model spec is a table (TOML) or an object (JSON)")
    check_known_keys(document, _SPEC_TABLES, "the spec", SpecError)
    comparisons = document.get("comparisons")
    if not isinstance(comparisons, list) or not comparisons:
        raise SpecError("the spec has no [[comparisons]]")
    model = _table(document, "model")
    check_known_keys(model, {"name"}, "[model]", SpecError)
    blocking = _table(document, "blocking")
    check_known_keys(blocking, {"rules"}, "[blocking]", SpecError)
    spec = ModelSpec(
        name=str(model.get("name", "model")),
        comparisons=tuple(comparisons),
        blocking_rules=_rules(blocking.get("rules"), "[blocking] rules"),
        training=_training_plan(_table(document, "training")),
    )
    _check_settings(spec)
    return spec


# ---------------------------------------------------------------- comparisons


def _comparison(entry: Any) -> ComparisonCreator:
    """A Splink comparison from a spec entry: `comparison` names a function of
    splink.comparison_library, the other keys are its parameters (or `configure` options:
    term_frequency_adjustments, m_probabilities, u_probabilities). `comparison_levels` of a
    CustomComparison are levels of splink.comparison_level_library written the same way
    (`level` = the function name), or Splink's own serialised level dicts."""
    if not isinstance(entry, dict) or "comparison" not in entry:
        raise SpecError(f"a [[comparisons]] entry needs 'comparison': {_shown(entry)}")
    params = {key: value for key, value in entry.items() if key != "comparison"}
    if "comparison_levels" in params:
        params["comparison_levels"] = [_level(level) for level in params["comparison_levels"]]
    return _call_library(cl, entry["comparison"], params, ComparisonCreator.configure)


def _level(entry: Any) -> ComparisonLevelCreator | dict[str, Any]:
    """A comparison level from a spec entry (`level` = a comparison_level_library name)."""
    if isinstance(entry, dict) and "level" not in entry:
        return entry  # Splink's serialised form (sql_condition, label_for_charts, ...)
    if not isinstance(entry, dict):
        raise SpecError(f"a comparison level is a table: {_shown(entry)}")
    params = {key: value for key, value in entry.items() if key != "level"}
    return _call_library(cll, entry["level"], params, ComparisonLevelCreator.configure)


def _call_library(library: Any, name: Any, params: dict[str, Any], configure: Any) -> Any:
    """`library.name(**constructor params).configure(**configure params)`; SpecError for an
    unknown function or parameter, or a value Splink refuses."""
    function = getattr(library, name, None) if isinstance(name, str) else None
    if function is None or not name[:1].isupper():
        raise SpecError(f"{name!r} is not in {library.__name__}")
    accepted = inspect.signature(function).parameters
    options = inspect.signature(configure).parameters
    unknown = sorted(set(params) - set(accepted) - set(options))
    if unknown:
        raise SpecError(f"{name} has no parameter {unknown[0]!r}")
    try:
        created = function(**{k: v for k, v in params.items() if k in accepted})
        later = {k: v for k, v in params.items() if k not in accepted}
        return created.configure(**later) if later else created
    except (TypeError, ValueError) as error:
        raise SpecError(f"{name}: {first_line(error)}") from None


# ---------------------------------------------------------------- checks


def _check_settings(spec: ModelSpec) -> None:
    """Splink accepts the settings; comparisons read only canonical columns; prediction
    rules are symmetric equi-joins (the engine's blocking index needs them)."""
    try:
        settings = spec.settings().get_settings("duckdb")
    except SpecError:
        raise
    except Exception as error:  # Splink raises many types for bad settings
        raise SpecError(f"Splink refuses the settings: {first_line(error)}") from None
    term_frequencies = {f"tf_{column.unquote().name}"
                        for column in settings._term_frequency_columns}
    for comparison in settings.comparisons:
        for column in comparison._input_columns_used_by_case_statement:
            name = column.unquote().name
            if name not in MODEL_COLUMNS and name not in term_frequencies:
                raise SpecError(
                    f"comparison {comparison.output_column_name!r} reads {name!r}, which is "
                    "not a canonical field (streams.canonical.Update) or the term frequency "
                    "(tf_<column>) of a term-frequency adjusted column"
                )
    for rule in settings._blocking_rules_to_generate_predictions:
        try:
            equi_join_key(rule)
        except ModelError as error:
            raise SpecError(str(error)) from None


def _training_plan(table: dict[str, Any]) -> TrainingPlan:
    known = {f.name: f for f in fields(TrainingPlan)}
    check_known_keys(table, set(known), "[training]", SpecError)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key.endswith("_rules"):
            values[key] = _rules(value, f"[training] {key}")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"[training] {key} must be a number, not {_shown(value)}")
        else:
            values[key] = value
    plan = TrainingPlan(**values)
    if not plan.em_blocking_rules:
        raise SpecError("[training] em_blocking_rules is empty: m cannot be estimated")
    if not plan.deterministic_rules:
        raise SpecError("[training] deterministic_rules is empty: the prior cannot be estimated")
    if not 0 < plan.deterministic_recall <= 1:
        raise SpecError("[training] deterministic_recall must be in (0, 1]")
    return plan


def _rules(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise SpecError(f"{where} must be a list of SQL conditions over l and r")
    return tuple(value)


def _table(document: dict[str, Any], name: str) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise SpecError(f"{name!r} must be a [{name}] table")
    return table


def _shown(value: Any) -> str:
    return json.dumps(value, default=str)[:80]
