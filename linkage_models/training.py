"""Training: estimate the child model's parameters from a snapshot of canonical records and
write the versioned model JSON plus an offline HTML training report."""

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

from linkage_models.charts import offline_charts_html
from linkage_models.records import register_model_records
from linkage_models.settings import TrainingPlan, model_settings

Progress = Callable[[str], None]


def train_model(
    records: pa.Table,
    out: Path,
    *,
    seed: int = 1,
    progress: Progress | None = None,
    plan: TrainingPlan | None = None,
) -> dict[str, Any]:
    """Train on a snapshot of canonical records; write the versioned model JSON (Splink
    settings + trained m/u + `metadata`) to `out` and the HTML training report (m/u
    parameters and match weights charts) to `out.with_suffix('.html')`. Returns the
    metadata: model_version, trained_at, rows, splink_version, data_fingerprint, seed,
    training blocking rules, seconds."""
    report = progress or _ignore
    plan = plan or TrainingPlan()
    started = time.perf_counter()
    with duckdb.connect() as con:
        table = register_model_records(con, records, "training_records")
        linker = _linker(con, table)
        _estimate_parameters(linker, plan, seed, report)
        settings = floor_m_probabilities(linker.misc.save_model_to_json(), plan.m_floor)
        metadata = _metadata(data_fingerprint(con, table), records.num_rows, seed, plan)
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


def _metadata(fingerprint: str, rows: int, seed: int, plan: TrainingPlan) -> dict[str, Any]:
    """The model's metadata: a version from the time and the data, and how it was trained."""
    trained_at = datetime.now(UTC)
    digest = fingerprint.rsplit("-", 1)[-1]
    return {
        "model_version": f"child-{trained_at:%Y%m%dT%H%M%SZ}-{digest[:8]}",
        "trained_at": trained_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "rows": rows,
        "splink_version": splink.__version__,
        "data_fingerprint": fingerprint,
        "seed": seed,
        "u_max_pairs": plan.u_max_pairs,
        "em_blocking_rules": list(plan.em_blocking_rules),
        "deterministic_rules": list(plan.deterministic_rules),
        "deterministic_recall": plan.deterministic_recall,
        "m_floor": plan.m_floor,
    }


def _estimate_parameters(linker: Linker, plan: TrainingPlan, seed: int, report: Progress) -> None:
    """Prior from deterministic rules, u by random sampling, m by EM over several blocks."""
    report("estimating the prior from deterministic rules")
    linker.training.estimate_probability_two_random_records_match(
        list(plan.deterministic_rules), recall=plan.deterministic_recall
    )
    report(f"estimating u from {plan.u_max_pairs:,.0f} random pairs")
    linker.training.estimate_u_using_random_sampling(max_pairs=plan.u_max_pairs, seed=seed)
    for rule in plan.em_blocking_rules:
        report(f"estimating m by EM on pairs with {rule}")
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, fix_probability_two_random_records_match=True
        )


def _linker(
    con: duckdb.DuckDBPyConnection, table: str, settings: dict[str, Any] | None = None
) -> Linker:
    """A Splink linker over model-records table `table` with `settings` (default: the
    untrained child settings)."""
    db_api = DuckDBAPI(connection=con)
    return Linker(db_api.register(table), settings or model_settings(), log_level=None)


def _training_report(linker: Linker, metadata: dict[str, Any]) -> str:
    """Offline HTML: the trained match weights and m/u parameters, with the metadata."""
    charts = linker.visualisations
    return offline_charts_html(
        f"Child model {metadata['model_version']}",
        [
            ("Match weights", charts.match_weights_chart().chart_dict),
            ("m and u parameters", charts.m_u_parameters_chart().chart_dict),
        ],
        intro=json.dumps(metadata),
    )


def _ignore(_message: str) -> None:
    """The default progress callback: says nothing."""
