"""The Splink anchors: what a user would run instead of the engine, on the same canonical records
with the same model JSON. Each runs in its own subprocess so its peak RSS is its own:

    python -m benchmarks.anchors batch --records R.parquet --truth truth.csv --threshold 0.95
    python -m benchmarks.anchors incremental --records R.parquet --batch 1000 --max-scored 120

- batch: `linker.inference.predict` + `linker.clustering.cluster_pairwise_predictions_at_threshold`
  at the engine's link threshold; pairwise accuracy of the clusters via `evaluate_links`.
- incremental: `predict_between(batch, master)` for each 1,000-record batch in event-time order,
  then the batch joins the master (scoring only: no clustering, no decisions, no writes); term
  frequency tables computed once from all records. At most `max_scored` batches, spread evenly
  over the growth, are scored (the rest only appended); total time is estimated from them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from splink import DuckDBAPI, Linker

from benchmarks.measure import run_measured
from linkage_models.evaluation import evaluate_links
from linkage_models.records import register_model_records
from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel

_CURVE_POINTS = 24


def run_anchor(python: str, args: Sequence[str], log: Path, timeout_s: float) -> dict[str, Any]:
    """Run one anchor (`batch` or `incremental` and its options) in a subprocess: its JSON
    result plus the process's wall seconds and peak RSS."""
    run = run_measured([python, "-m", "benchmarks.anchors", *args], log, timeout_s)
    return {
        **json.loads(run.last_json_line()),
        "process_seconds": run.seconds,
        "peak_rss_mib": run.peak_rss_mib,
    }


def batch_anchor(records: Path, truth: Path, threshold: float, model: Path) -> dict[str, Any]:
    """Splink batch linkage of all `records`: predict, then connected-component clusters of
    the pairs at `threshold`; seconds of each step and pairwise accuracy of the clusters."""
    con, _, linker, rows = _linker_over(records, model)
    began = time.perf_counter()
    predictions = linker.inference.predict(
        threshold_match_probability=threshold, warning_mode="never"
    )
    predicted = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold
    )
    clustered = time.perf_counter()
    con.execute(
        "CREATE TABLE links AS SELECT feed, record_id, cluster_id AS child_id "
        f"FROM {clusters.physical_name}"
    )
    accuracy = evaluate_links(con, truth)
    pairs = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchall()[0][0]
    return {
        "records": rows,
        "pairs": pairs,
        "clusters": accuracy.found_children,
        "predict_seconds": round(predicted - began, 3),
        "cluster_seconds": round(clustered - predicted, 3),
        "seconds": round(clustered - began, 3),
        "records_per_second": round(rows / (clustered - began), 1),
        "precision": accuracy.precision,
        "recall": accuracy.recall,
        "f1": accuracy.f1,
        "false_merges": accuracy.false_merges,
        "missed_links": accuracy.missed_links,
    }


def incremental_anchor(
    records: Path, batch_size: int, max_scored: int, model: Path
) -> dict[str, Any]:
    """Splink's incremental path over `records` in event-time order (see the module docstring):
    estimated records/s over the whole growth and a records/s curve by master size."""
    con, db_api, linker, rows = _linker_over(records, model)
    for column in CompiledModel.from_json(model).tf_columns:
        linker.table_management.compute_tf_table(column)
    con.execute("""
        CREATE TABLE arrivals AS
        SELECT *, row_number() OVER (ORDER BY event_time, unique_id) - 1 AS arrival FROM records
    """)
    con.execute("CREATE TABLE master AS SELECT * EXCLUDE (arrival) FROM arrivals LIMIT 0")
    master = db_api.register("master")
    batches = math.ceil(rows / batch_size)
    stride = math.ceil(batches / max_scored)
    scored: list[tuple[int, int, float]] = []  # (master records, batch records, seconds)
    pairs = 0
    for index in range(batches):
        con.execute(
            "CREATE OR REPLACE TABLE batch AS SELECT * EXCLUDE (arrival) FROM arrivals "
            f"WHERE arrival >= {index * batch_size} AND arrival < {(index + 1) * batch_size}"
        )
        if index % stride == 0 and index > 0:
            began = time.perf_counter()
            predictions = linker.inference.predict_between(
                db_api.register("batch"), master, warning_mode="never"
            )
            pairs += con.execute(
                f"SELECT count(*) FROM {predictions.physical_name}"
            ).fetchall()[0][0]
            seconds = time.perf_counter() - began
            predictions.drop_table_from_database_and_remove_from_cache()
            scored.append((index * batch_size, min(batch_size, rows - index * batch_size),
                           seconds))
        con.execute("INSERT INTO master SELECT * FROM batch")
    return _incremental_result(rows, batch_size, batches, scored, pairs)


def _incremental_result(
    rows: int, batch_size: int, batches: int, scored: list[tuple[int, int, float]], pairs: int
) -> dict[str, Any]:
    scored_records = sum(n for _, n, _ in scored)
    scored_seconds = sum(s for _, _, s in scored)
    # scored batches stand for the master sizes around them; the first (empty master) is never
    # scored: it has nothing to link to
    estimated_seconds = scored_seconds * (rows - batch_size) / scored_records if scored else 0.0
    step = max(1, math.ceil(len(scored) / _CURVE_POINTS))
    curve = []
    for start in range(0, len(scored), step):
        group = scored[start:start + step]
        curve.append({
            "master_records": group[0][0],
            "records_per_second": round(sum(n for _, n, _ in group) /
                                        sum(s for _, _, s in group), 1),
        })
    return {
        "records": rows,
        "batch_records": batch_size,
        "batches": batches,
        "scored_batches": len(scored),
        "scored_pairs": pairs,
        "seconds_per_batch": round(scored_seconds / len(scored), 4) if scored else None,
        "estimated_seconds": round(estimated_seconds, 1),
        "records_per_second": round(scored_records / scored_seconds, 1) if scored else None,
        "curve": curve,
    }


def _linker_over(
    records: Path, model: Path
) -> tuple[duckdb.DuckDBPyConnection, DuckDBAPI, Linker, int]:
    """An in-memory DuckDB holding `records` as model records (table `records`), and a Splink
    linker over them with the model's settings; also the row count."""
    con = duckdb.connect()
    register_model_records(con, pq.read_table(records), "records")
    settings = {k: v for k, v in CompiledModel.from_json(model).model.items() if k != "metadata"}
    db_api = DuckDBAPI(connection=con)
    linker = Linker(db_api.register("records"), settings, log_level=None)
    rows = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    return con, db_api, linker, rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one Splink anchor; prints one JSON object.")
    kinds = parser.add_subparsers(dest="kind", required=True)
    batch = kinds.add_parser("batch", help="predict + cluster_pairwise_predictions_at_threshold")
    batch.add_argument("--truth", type=Path, required=True)
    batch.add_argument("--threshold", type=float, required=True)
    incremental = kinds.add_parser("incremental", help="predict_between vs the growing master")
    incremental.add_argument("--batch", type=int, default=1000)
    incremental.add_argument("--max-scored", type=int, default=120)
    for sub in (batch, incremental):
        sub.add_argument("--records", type=Path, required=True, help="canonical records Parquet")
        sub.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args(argv)
    if args.kind == "batch":
        result = batch_anchor(args.records, args.truth, args.threshold, args.model)
    else:
        result = incremental_anchor(args.records, args.batch, args.max_scored, args.model)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
