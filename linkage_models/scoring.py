"""The trained model compiled once into one SQL string that scores candidate pairs.

The SQL is Splink's own: the comparison-vector and predict steps that
`linker.inference.predict_between` runs, generated from the model JSON and pointed at the
caller's tables, so the weights are Splink's to the last bit.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from splink import SettingsCreator
from splink.internals.blocking import BlockingRule
from splink.internals.comparison_vector_values import (
    compute_comparison_vector_values_from_id_pairs_sqls,
)
from splink.internals.dialects import SplinkDialect
from splink.internals.predict import predict_from_comparison_vectors_sqls
from splink.internals.settings import Settings

DEFAULT_MODEL_PATH = Path(__file__).with_name("child_model.json")

# The blocked-pairs table Splink's generated SQL reads from.
_BLOCKED_PAIRS = "__splink__blocked_id_pairs"


class ModelError(Exception):
    """The model file is missing, corrupt or not a ContactPoint linkage model."""


class CompiledModel:
    """A trained child model: its version, tf columns, blocking rules and scoring SQL."""

    def __init__(self, model: dict[str, Any]) -> None:
        metadata = model.get("metadata")
        if not isinstance(metadata, dict) or "model_version" not in metadata:
            raise ModelError("not a ContactPoint model: no metadata.model_version")
        try:
            self._settings: Settings = SettingsCreator.from_path_or_dict(
                {k: v for k, v in model.items() if k != "metadata"}
            ).get_settings("duckdb")
        except Exception as exc:  # Splink raises many types for a bad settings dict
            raise ModelError(f"not a valid Splink model: {first_line(exc)}") from exc
        self.model = model
        self.metadata: dict[str, Any] = metadata
        self.version: str = str(metadata["model_version"])
        self.tf_columns: list[str] = sorted(
            col.unquote().name for col in self._settings._term_frequency_columns
        )
        rules = self._settings._blocking_rules_to_generate_predictions
        self.blocking_rules: list[str] = [rule.blocking_rule_sql for rule in rules]
        # Per blocking rule, the expressions whose values two records must share.
        self.blocking_keys: list[tuple[str, ...]] = [equi_join_key(rule) for rule in rules]
        # The columns of a record the model reads (unique_id, the compared columns, and those
        # of its blocking rules, which Splink retains); a level may read a term frequency
        # (tf_<col>), which scoring adds, not the record.
        term_frequencies = {f"tf_{column}" for column in self.tf_columns}
        self.record_columns: list[str] = [
            name for name in dict.fromkeys(
                col.unquote().name
                for col in (
                    *self._settings._columns_used_by_comparisons,
                    *self._settings._additional_columns_to_retain,
                )
            ) if name not in term_frequencies
        ]
        # Of those, the ones its comparisons read: all that scoring a pair needs of a record
        # (a blocking rule's columns only find the pair: feed and source_key here).
        compared = {col.unquote().name for col in self._settings._columns_used_by_comparisons}
        self.scored_columns: list[str] = [c for c in self.record_columns if c in compared]
        self.comparisons: list[str] = [
            cc.output_column_name for cc in self._settings.comparisons
        ]
        # rendered once per arguments (~0.1 s each)
        self._scoring_sql: dict[tuple[str, str, str, float | None, bool], str] = {}
        self._weights_only_settings: Settings | None = None  # built when first asked for

    @classmethod
    def from_json(cls, path: Path) -> CompiledModel:
        """Load the model JSON at `path`; ModelError (one-line reason) if unusable."""
        try:
            model = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"model file not found: {path}") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(
                f"model file {path} is not readable JSON: {first_line(exc)}"
            ) from exc
        if not isinstance(model, dict):
            raise ModelError(f"model file {path} does not hold a JSON object")
        return cls(model)

    @property
    def probability_two_random_records_match(self) -> float:
        """The model's prior: the chance that two records picked at random are one child."""
        return self._settings._probability_two_random_records_match

    @property
    def trained_on_records(self) -> int | None:
        """How many records the model was trained on (None for a model that does not say)."""
        count = self.metadata.get("trained_on_records", self.metadata.get("rows"))
        return int(count) if count is not None else None

    @property
    def trained_on_children(self) -> int | None:
        """How many children (persons) the training records held, as the trained prior says:
        `estimated_persons(trained_on_records, prior)` (None for a model that does not say how
        many records it was trained on)."""
        records = self.trained_on_records
        if records is None:
            return None
        return estimated_persons(records, self.probability_two_random_records_match)

    def match_probability(self, match_weight: float, prior: float | None = None) -> float:
        """The match probability of a pair this model scored `match_weight` (which holds the
        trained prior), with the prior replaced by `prior` (None: the trained prior). A
        population larger than the training one has a smaller prior: about the trained
        prior × trained_on_children / children in the master (engine.resolution.prior)."""
        return probability_from_weight(match_weight + self.prior_weight_change(prior))

    def prior_weight_change(self, prior: float | None) -> float:
        """What scoring with `prior` instead of the trained prior adds to a match weight."""
        return _prior_weight_change(self.probability_two_random_records_match, prior)

    def comparison_levels(self, comparison: str) -> dict[int, str]:
        """Chart label of each level of `comparison`, by its gamma value."""
        cc = self._settings.core_model_settings.get_comparison_by_output_column_name(
            comparison
        )
        return {
            level.comparison_vector_value: level.label_for_charts
            for level in cc.comparison_levels
        }

    def score_sql(self, left: str, right: str, pairs: str, prior: float | None = None,
                  weights_only: bool = False) -> str:
        """SQL (a SELECT, no trailing semicolon) scoring each (unique_id_l, unique_id_r) of
        table `pairs`, the left record from table `left`, the right one from `right`. Both
        hold the model records (canonical columns, unique_id, tf_<col> per tf column).
        Output: unique_id_l, unique_id_r, match_weight, match_probability, match_key and
        per comparison gamma_<name>, bf_<name> (and tf_<col>_l/_r, bf_tf_adj_<name>).
        With `prior`, match_weight and match_probability use that prior instead of the
        trained one (None: exactly Splink's `predict_between`). With `weights_only`, the
        output is the first five columns alone: Splink's steps then carry no compared value
        or level through, which DuckDB plans in ~20% less time (a batch's scores at 1M
        children: 14.4 -> 11.7 ms), to the same weights. Rendered once per arguments."""
        key = (left, right, pairs, prior, weights_only)
        if key not in self._scoring_sql:
            settings = self._weights_settings() if weights_only else self._settings
            self._scoring_sql[key] = self._render_score_sql(settings, left, right, pairs, prior)
        return self._scoring_sql[key]

    def _weights_settings(self) -> Settings:
        """The model's settings retaining no matching column and no intermediate value."""
        if self._weights_only_settings is None:
            model = {k: v for k, v in self.model.items() if k != "metadata"}
            model |= {"retain_matching_columns": False,
                      "retain_intermediate_calculation_columns": False}
            self._weights_only_settings = SettingsCreator.from_path_or_dict(
                model).get_settings("duckdb")
        return self._weights_only_settings

    def _render_score_sql(self, settings: Settings, left: str, right: str, pairs: str,
                          prior: float | None) -> str:
        steps = [
            {
                "sql": "SELECT unique_id_l AS join_key_l, unique_id_r AS join_key_r, "
                f"'0' AS match_key FROM {pairs}",
                "output_table_name": _BLOCKED_PAIRS,
            },
            *_comparison_vector_steps(settings, left, right),
            *_predict_steps(settings, prior),
        ]
        ctes = ",\n".join(f"{s['output_table_name']} AS ({s['sql']})" for s in steps[:-1])
        return f"WITH {ctes}\n{steps[-1]['sql']}".strip()


def _predict_steps(settings: Settings, prior: float | None) -> list[dict[str, str]]:
    """Splink's predict steps (match weight parts, then weight and probability)."""
    core = settings.core_model_settings
    if prior is not None:
        _prior_weight_change(core.probability_two_random_records_match, prior)  # checks it
        core = copy.copy(core)
        core.probability_two_random_records_match = prior
    return predict_from_comparison_vectors_sqls(
        unique_id_input_columns=settings.column_info_settings.unique_id_input_columns,
        core_model_settings=core,
        sql_dialect=SplinkDialect.from_string(settings._sql_dialect_str),
        retain_matching_columns=settings._retain_matching_columns,
        retain_intermediate_calculation_columns=(
            settings._retain_intermediate_calculation_columns
        ),
        additional_columns_to_retain=settings._additional_columns_to_retain,
    )


def _comparison_vector_steps(settings: Settings, left: str, right: str
                             ) -> list[dict[str, str]]:
    """Splink's SQL steps from the blocked pairs to `__splink__df_comparison_vectors`."""
    return compute_comparison_vector_values_from_id_pairs_sqls(
        settings._columns_to_select_for_blocking,
        settings._columns_to_select_for_comparison_vector_values,
        input_tablename_l=left,
        input_tablename_r=right,
        source_dataset_input_column=settings.column_info_settings.source_dataset_input_column,
        unique_id_input_column=settings.column_info_settings.unique_id_input_column,
        link_type=settings._link_type,
        sql_dialect_str="duckdb",
    )


def estimated_persons(records: int, prior: float) -> int:
    """The number of persons `records` records hold if the chance that two of them are one
    person is `prior` and persons have similar numbers of records: n / (1 + prior·(n − 1))."""
    return round(records / (1 + prior * (records - 1)))


def probability_from_weight(match_weight: float) -> float:
    """Splink's match probability of a match weight: 2^w / (1 + 2^w)."""
    if match_weight >= 0:
        return 1.0 / (1.0 + 2.0 ** -match_weight)
    return 2.0**match_weight / (1.0 + 2.0**match_weight)


def _prior_weight_change(trained: float, prior: float | None) -> float:
    """What replacing the `trained` prior by `prior` adds to a match weight."""
    if prior is None:
        return 0.0
    if not 0 < prior < 1:
        raise ValueError(f"a prior is a probability in (0, 1), not {prior}")
    return math.log2(prior / (1 - prior)) - math.log2(trained / (1 - trained))


def equi_join_key(rule: BlockingRule) -> tuple[str, ...]:
    """The expressions of a rule `l.a = r.a AND f(l.b) = f(r.b) …` (ModelError for any other
    shape: the engine finds candidates by these keys, not by joining on the rule)."""
    conditions = rule._equi_join_conditions
    symmetric = conditions and all(left == right for left, right in conditions)
    if not symmetric or rule._filter_conditions not in ("", "TRUE"):
        raise ModelError(
            f"blocking rule {rule.blocking_rule_sql!r} is not an equi-join of the same "
            "expression on both sides (l.x = r.x AND …), which the engine's candidate index needs"
        )
    return tuple(left for left, _ in conditions)


def first_line(error: Exception) -> str:
    """The first line of an error's message (ModelError reasons are one line)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
