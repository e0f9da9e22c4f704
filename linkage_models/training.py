"""Training: estimate a model spec's parameters from a snapshot of canonical records and
write the versioned model JSON plus an offline HTML training report.

Training adapts to the records and says what it did: an EM session whose blocking rule finds
too few pairs is skipped with a warning naming the rule, a comparison that no session
estimated stops training with a one-line `TrainingError`, and the model's metadata
(`training`) lists what was estimated from what.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import splink
from splink import DuckDBAPI, Linker

from linkage_models.blocking import count_blocked_pairs
from linkage_models.charts import offline_charts_html
from linkage_models.records import register_model_records
from linkage_models.scoring import estimated_persons
from linkage_models.settings import DEFAULT_SPEC_PATH, ModelSpec, TrainingPlan, load_spec
from linkage_models.truth import register_truth

Progress = Callable[[str], None]


class TrainingError(Exception):
    """Training cannot give a usable model; the message is the one-line reason."""


def train_model(
    records: pa.Table,
    out: Path,
    *,
    spec: ModelSpec | None = None,
    seed: int = 1,
    progress: Progress | None = None,
    truth_csv: Path | None = None,
) -> dict[str, Any]:
    """Train `spec` (default: the shipped child spec) on a snapshot of canonical records;
    write the versioned model JSON (Splink settings + trained m/u + `metadata`) to `out` and
    the HTML training report (m/u parameters and match weights charts) to
    `out.with_suffix('.html')`. Returns the metadata: model_version, trained_at,
    trained_on_records, splink_version, data_fingerprint, seed, the training plan and
    `training` (the report: prior, u, each EM session estimated or skipped, warnings), and
    with `truth_csv` (feed,record_id,person_id) `trained_on_persons`: the true persons among
    the records.
    Raises TrainingError(one-line reason) when a comparison is left unestimated or the
    prior cannot be estimated."""
    report = progress or _ignore
    spec = spec or load_spec(DEFAULT_SPEC_PATH)
    started = time.perf_counter()
    if records.num_rows < 2:
        raise TrainingError(f"{records.num_rows} records: training needs at least two")
    with duckdb.connect() as con:
        settings = spec.settings()
        # the records carry their term frequencies, as the engine's do, for levels that read them
        table = register_model_records(con, records, "training_records", _tf_columns(settings))
        linker = _linker(con, table, settings)
        training = _estimate_parameters(con, table, linker, spec, seed, report)
        settings = floor_m_probabilities(
            linker.misc.save_model_to_json(), spec.training.m_floor
        )
        metadata = _metadata(spec, data_fingerprint(con, table), records.num_rows, seed)
        metadata["trained_on_persons_estimated"] = estimated_persons(
            records.num_rows, settings["probability_two_random_records_match"]
        )
        if truth_csv is not None:
            metadata["trained_on_persons"] = _persons(con, table, truth_csv)
        metadata["training"] = training
        metadata["seconds"] = round(time.perf_counter() - started, 1)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**settings, "metadata": metadata}, indent=2), "utf-8")
        report_html = _training_report(_linker(con, table, settings), metadata)
    out.with_suffix(".html").write_text(report_html, encoding="utf-8")
    report(f"model {metadata['model_version']} written to {out}")
    return metadata


def data_fingerprint(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """An order-independent hash of every row of `table` (row count + xor of row hashes)."""
    rows, digest = con.execute(
        f"SELECT count(*), coalesce(bit_xor(hash(t)), 0) FROM {table} AS t"
    ).fetchall()[0]
    return f"{rows}-{digest:016x}"


def floor_m_probabilities(settings: dict[str, Any], floor: float) -> dict[str, Any]:
    """Trained Splink settings with every m below `floor` (or never observed) raised to it;
    levels whose m is fixed by the model definition keep theirs."""
    for comparison in settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            m = level.get("m_probability")
            if level.get("is_null_level") or level.get("fix_m_probability") or m is None:
                continue
            if not isinstance(m, float | int) or m < floor:
                level["m_probability"] = floor
    return settings


def _persons(con: duckdb.DuckDBPyConnection, table: str, truth_csv: Path) -> int:
    """Distinct true persons of the records of `table` (truth rows of other records ignored)."""
    truth = register_truth(con, truth_csv, "training_truth")
    return con.execute(
        f"SELECT count(DISTINCT t.person_id) FROM {truth} t JOIN {table} r USING (unique_id)"
    ).fetchall()[0][0]


def _metadata(spec: ModelSpec, fingerprint: str, rows: int, seed: int) -> dict[str, Any]:
    """The model's metadata: a version from the time and the data, and how it was trained."""
    trained_at = datetime.now(UTC)
    digest = fingerprint.rsplit("-", 1)[-1]
    plan = spec.training
    return {
        "model_version": f"{spec.name}-{trained_at:%Y%m%dT%H%M%SZ}-{digest[:8]}",
        "trained_at": trained_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "rows": rows,
        "trained_on_records": rows,
        "splink_version": splink.__version__,
        "data_fingerprint": fingerprint,
        "seed": seed,
        "u_max_pairs": plan.u_max_pairs,
        "em_blocking_rules": list(plan.em_blocking_rules),
        "em_min_pairs": plan.em_min_pairs,
        "em_max_pairs": plan.em_max_pairs,
        "deterministic_rules": list(plan.deterministic_rules),
        "deterministic_recall": plan.deterministic_recall,
        "m_floor": plan.m_floor,
    }


def _estimate_parameters(
    con: duckdb.DuckDBPyConnection, table: str, linker: Linker, spec: ModelSpec, seed: int,
    report: Progress,
) -> dict[str, Any]:
    """Prior from deterministic rules, u by random sampling, m by EM over the plan's rules;
    returns the training report (what was estimated from what)."""
    plan = spec.training
    report("estimating the prior from deterministic rules")
    deterministic_pairs = count_blocked_pairs(con, table, plan.deterministic_rules)
    if deterministic_pairs == 0:
        raise TrainingError(
            "the deterministic rules find no pairs, so the prior cannot be estimated: "
            "add a rule [training] deterministic_rules that these records satisfy"
        )
    linker.training.estimate_probability_two_random_records_match(
        list(plan.deterministic_rules), recall=plan.deterministic_recall
    )
    report(f"estimating u from {plan.u_max_pairs:,.0f} random pairs")
    began = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(max_pairs=plan.u_max_pairs, seed=seed)
    u_seconds = round(time.perf_counter() - began, 1)
    sessions, warnings = _em_sessions(con, table, linker, plan, report)
    _check_every_comparison_estimated(linker, sessions)
    for name in _comparisons_without_data(con, table, linker):
        warnings.append(f"comparison {name!r} reads only columns no record carries: it "
                        "scores every pair 0 (its null level); remove it from the spec")
        report(warnings[-1])
    return {
        "prior": {
            "rules": list(plan.deterministic_rules),
            "pairs": deterministic_pairs,
            "recall": plan.deterministic_recall,
            "probability_two_random_records_match":
                linker._settings_obj._probability_two_random_records_match,
        },
        "u": {"random_pairs": plan.u_max_pairs, "seed": seed, "seconds": u_seconds},
        "em_sessions": sessions,
        "warnings": warnings,
    }


def _em_sessions(
    con: duckdb.DuckDBPyConnection, table: str, linker: Linker, plan: TrainingPlan,
    report: Progress,
) -> tuple[list[dict[str, Any]], list[str]]:
    """One EM session per rule with at least `em_min_pairs` pairs; the others are skipped
    with a warning. Returns each session's record and the warnings."""
    sessions: list[dict[str, Any]] = []
    warnings: list[str] = []
    for rule in plan.em_blocking_rules:
        pairs = count_blocked_pairs(con, table, [rule])
        if pairs < plan.em_min_pairs:
            warning = (
                f"EM session skipped: blocking rule {rule!r} finds {pairs:,} pairs "
                f"(fewer than em_min_pairs = {plan.em_min_pairs:,})"
            )
            report(warning)
            warnings.append(warning)
            sessions.append({"rule": rule, "pairs": pairs, "skipped": True})
            continue
        sampled = 0 < plan.em_max_pairs < pairs
        report(f"estimating m by EM on {pairs:,} pairs with {rule}"
               + (f" (a sample of about {plan.em_max_pairs:,.0f})" if sampled else ""))
        began = time.perf_counter()
        session = linker.training.estimate_parameters_using_expectation_maximisation(
            rule, fix_probability_two_random_records_match=True,
            max_pairs=plan.em_max_pairs if sampled else None,
        )
        fixed = {cc.output_column_name for cc in session._comparisons_that_cannot_be_estimated}
        sessions.append({
            "rule": rule,
            "pairs": pairs,
            "skipped": False,
            "estimated": [
                cc.output_column_name for cc in linker._settings_obj.comparisons
                if cc.output_column_name not in fixed
            ],
            "held_fixed": sorted(fixed),
            "sampled_pairs": plan.em_max_pairs if sampled else None,
            "seconds": round(time.perf_counter() - began, 1),
        })
    return sessions, warnings


def _comparisons_without_data(
    con: duckdb.DuckDBPyConnection, table: str, linker: Linker
) -> list[str]:
    """The comparisons whose input columns are null in every record of `table`."""
    comparisons = linker._settings_obj.comparisons
    columns = sorted({
        column.unquote().name for cc in comparisons
        for column in cc._input_columns_used_by_case_statement
    })
    counts = con.execute(
        "SELECT " + ", ".join(f'count("{c}")' for c in columns) + f" FROM {table}"
    ).fetchall()[0]
    carried = {column for column, count in zip(columns, counts, strict=True) if count}
    return [
        cc.output_column_name for cc in comparisons
        if not {c.unquote().name for c in cc._input_columns_used_by_case_statement} & carried
    ]


def _check_every_comparison_estimated(linker: Linker, sessions: list[dict[str, Any]]) -> None:
    """TrainingError naming the first comparison with a trainable m that no EM session
    estimated (every session that ran blocked on its columns, or none ran)."""
    estimated = {name for session in sessions for name in session.get("estimated", ())}
    for comparison in linker._settings_obj.comparisons:
        trainable = [
            level for level in comparison.comparison_levels
            if not level.is_null_level and not level._fix_m_probability
        ]
        if trainable and comparison.output_column_name not in estimated:
            ran = [s["rule"] for s in sessions if not s["skipped"]]
            raise TrainingError(
                f"comparison {comparison.output_column_name!r} was left unestimated: "
                + (f"every EM session that ran ({'; '.join(ran)}) blocks on its columns"
                   if ran else "every EM session was skipped")
                + "; add a rule to [training] em_blocking_rules that does not use them"
            )


def _tf_columns(settings: Any) -> list[str]:
    """The term-frequency adjusted columns of Splink `settings` (a SettingsCreator)."""
    return sorted(column.unquote().name
                  for column in settings.get_settings("duckdb")._term_frequency_columns)


def _linker(
    con: duckdb.DuckDBPyConnection, table: str, settings: Any
) -> Linker:
    """A Splink linker over model-records table `table` with `settings`."""
    db_api = DuckDBAPI(connection=con)
    return Linker(db_api.register(table), settings, log_level=None)


def _training_report(linker: Linker, metadata: dict[str, Any]) -> str:
    """Offline HTML: the trained match weights and m/u parameters, with the metadata."""
    charts = linker.visualisations
    return offline_charts_html(
        f"Model {metadata['model_version']}",
        [
            ("Match weights", charts.match_weights_chart().chart_dict),
            ("m and u parameters", charts.m_u_parameters_chart().chart_dict),
        ],
        intro=json.dumps(metadata),
    )


def _ignore(_message: str) -> None:
    """The default progress callback: says nothing."""
