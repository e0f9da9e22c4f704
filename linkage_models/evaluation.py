"""Evaluation against truth: the master's links (`evaluate_links`), a model's pair scores over a
threshold sweep (`threshold_sweep`), and two or more models on the same records and truth
(`compare_models`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from linkage_models.blocking import register_blocked_pairs
from linkage_models.charts import offline_charts_html
from linkage_models.records import register_model_records
from linkage_models.scoring import CompiledModel
from linkage_models.truth import count_pairs, register_truth
from streams.generator import MULTIPLE_BIRTHS_FILE


@dataclass(frozen=True)
class PairwiseScore:
    """Pairwise precision, recall and F1 from pair counts (1.0 when a denominator is 0)."""

    precision: float
    recall: float
    f1: float

    @classmethod
    def from_counts(cls, true_positive: int, predicted: int, actual: int) -> PairwiseScore:
        """Scores of `predicted` pairs, `true_positive` of them right, vs `actual` true pairs."""
        precision = true_positive / predicted if predicted else 1.0
        recall = true_positive / actual if actual else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(precision, recall, f1)


@dataclass(frozen=True)
class Evaluation:
    """How the master's children compare with the true persons (DESIGN.md `evaluate`)."""

    precision: float
    recall: float
    f1: float
    true_children: int  # distinct persons among the linked records
    found_children: int  # distinct child_id among the linked records
    false_merges: int  # children holding records of more than one person
    missed_links: int  # persons whose records are split over more than one child
    records: int  # good truth records with a links row
    unlinked_records: int  # good truth records with no links row (not in pairwise figures)
    # children holding records of two or more twins/triplets of one set (None: no
    # multiple_births.csv beside the truth file)
    multiple_birth_merges: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as a JSON-ready dict."""
        return asdict(self)


def evaluate_links(con: duckdb.DuckDBPyConnection, truth_csv: Path) -> Evaluation:
    """Pairwise precision/recall/F1 of the master's `links(feed, record_id, child_id, …)`
    against truth (good rows only), plus child-level counts; set-based SQL throughout."""
    truth = register_truth(con, truth_csv, "evaluation_truth")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE evaluation_records AS
        SELECT t.person_id, l.child_id
        FROM {truth} t JOIN links l USING (feed, record_id)
        """
    )
    score = PairwiseScore.from_counts(
        true_positive=count_pairs(con, "evaluation_records", "person_id, child_id"),
        predicted=count_pairs(con, "evaluation_records", "child_id"),
        actual=count_pairs(con, "evaluation_records", "person_id"),
    )
    counts = con.execute(
        f"""
        SELECT
          (SELECT count(DISTINCT person_id) FROM evaluation_records),
          (SELECT count(DISTINCT child_id) FROM evaluation_records),
          (SELECT count(*) FROM (SELECT child_id FROM evaluation_records
                                 GROUP BY child_id HAVING count(DISTINCT person_id) > 1)),
          (SELECT count(*) FROM (SELECT person_id FROM evaluation_records
                                 GROUP BY person_id HAVING count(DISTINCT child_id) > 1)),
          (SELECT count(*) FROM evaluation_records),
          (SELECT count(*) FROM {truth}) - (SELECT count(*) FROM evaluation_records)
        """
    ).fetchall()[0]
    merges = _multiple_birth_merges(con, truth_csv.with_name(MULTIPLE_BIRTHS_FILE))
    return Evaluation(score.precision, score.recall, score.f1, *counts, merges)


def _multiple_birth_merges(con: duckdb.DuckDBPyConnection, path: Path) -> int | None:
    """Children holding records of two or more persons of one multiple-birth set."""
    if not path.is_file():
        return None
    return con.execute(
        """
        SELECT count(*) FROM (
            SELECT e.child_id FROM evaluation_records e
            JOIN read_csv(?, header = true, all_varchar = true) m USING (person_id)
            GROUP BY e.child_id, m.set_id HAVING count(DISTINCT e.person_id) > 1
        )
        """,
        [str(path)],
    ).fetchall()[0][0]


@dataclass(frozen=True)
class SweepPolicy:
    """How `threshold_sweep` suggests thresholds (match weights on a grid)."""

    # the link threshold: the lowest whose pairs are at least this precise
    link_precision: float = 0.999
    # the review threshold: the lowest at which the pairs between it and the link
    # threshold still hold at least this share of true pairs (worth a person's look)
    review_band_precision: float = 0.2
    weight_grid: tuple[float, float, float] = (-10.0, 30.0, 0.25)  # start, stop, step


@dataclass(frozen=True)
class Sweep:
    """Pairwise scores of all blocked pairs over thresholds, with suggested thresholds."""

    records: int
    blocked_pairs: int
    true_pairs: int  # pairs of records of one person (truth), blocked or not
    true_pairs_blocked: int
    blocking_recall: float  # share of true pairs the prediction blocking rules find
    link_threshold: float  # match probability
    review_threshold: float  # match probability
    at_link: PairwiseScore
    at_review: PairwiseScore
    points: list[dict[str, float]] = field(repr=False)  # one per threshold on the grid

    def to_dict(self) -> dict[str, Any]:
        """The sweep as a JSON-ready dict."""
        return asdict(self)


def threshold_sweep(
    records: pa.Table | duckdb.DuckDBPyRelation,
    truth_csv: Path,
    model_path: Path,
    out_html: Path,
    policy: SweepPolicy | None = None,
) -> Sweep:
    """Score all blocked pairs of canonical `records` with the model, sweep the match
    threshold, write an offline HTML precision–recall chart to `out_html`, and suggest link
    and review thresholds. Also reports blocking recall."""
    policy = policy or SweepPolicy()
    model = CompiledModel.from_json(model_path)
    con = duckdb.connect()
    records_n, true_pairs = _register_records_and_truth(con, records, truth_csv, [model])
    points, blocked, blocked_true = _model_points(con, model, true_pairs, policy)
    link, review = _suggest_thresholds(points, policy)
    sweep = Sweep(
        records=records_n,
        blocked_pairs=blocked,
        true_pairs=true_pairs,
        true_pairs_blocked=blocked_true,
        blocking_recall=blocked_true / true_pairs if true_pairs else 1.0,
        link_threshold=link["match_probability"],
        review_threshold=review["match_probability"],
        at_link=_score_at(link),
        at_review=_score_at(review),
        points=points,
    )
    Path(out_html).write_text(_sweep_report(sweep, model.version), encoding="utf-8")
    return sweep


# Match probabilities at which `compare_models` tabulates each model's pairwise scores.
COMPARE_THRESHOLDS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)


def compare_models(
    records: pa.Table | duckdb.DuckDBPyRelation,
    truth_csv: Path,
    model_paths: list[Path],
    out_html: Path,
    policy: SweepPolicy | None = None,
) -> dict[str, Any]:
    """Score the blocked pairs of canonical `records` with each model (its own blocking rules
    and parameters) against the same truth: per model its blocking recall, pairwise
    precision/recall/F1 at each of COMPARE_THRESHOLDS and its best F1; one offline HTML chart
    of precision, recall and F1 by threshold, all models on it, written to `out_html`."""
    policy = policy or SweepPolicy()
    models = [CompiledModel.from_json(path) for path in model_paths]
    con = duckdb.connect()
    records_n, true_pairs = _register_records_and_truth(con, records, truth_csv, models)
    compared: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for path, model in zip(model_paths, models, strict=True):
        points, blocked, blocked_true = _model_points(con, model, true_pairs, policy)
        label = f"{path.name} ({model.version})"
        curves += [{**point, "model": label} for point in points]
        compared.append({
            "model": str(path),
            "model_version": model.version,
            "blocked_pairs": blocked,
            "blocking_recall": blocked_true / true_pairs if true_pairs else 1.0,
            "thresholds": [
                {"threshold": threshold, **asdict(_score_at_probability(points, threshold))}
                for threshold in COMPARE_THRESHOLDS
            ],
            "best_f1": max(points, key=lambda p: p["f1"]),
        })
    Path(out_html).write_text(_comparison_report(curves, records_n, true_pairs), "utf-8")
    return {"records": records_n, "true_pairs": true_pairs, "models": compared}


def _register_records_and_truth(
    con: duckdb.DuckDBPyConnection, records: pa.Table | duckdb.DuckDBPyRelation,
    truth_csv: Path, models: list[CompiledModel],
) -> tuple[int, int]:
    """Tables `sweep_records` (with every model's tf columns) and `sweep_truth`; returns the
    number of records and of true pairs among them."""
    tf_columns = sorted({column for model in models for column in model.tf_columns})
    register_model_records(con, records, "sweep_records", tf_columns)
    register_truth(con, truth_csv, "sweep_truth")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE sweep_people AS SELECT t.person_id FROM sweep_truth t "
        "JOIN sweep_records r USING (unique_id)"
    )
    records_n = con.execute("SELECT count(*) FROM sweep_records").fetchall()[0][0]
    return records_n, count_pairs(con, "sweep_people", "person_id")


def _model_points(
    con: duckdb.DuckDBPyConnection, model: CompiledModel, true_pairs: int,
    policy: SweepPolicy,
) -> tuple[list[dict[str, float]], int, int]:
    """The model's sweep points over its blocked pairs of `sweep_records`, with the number of
    blocked pairs and of true pairs among them."""
    register_blocked_pairs(con, "sweep_records", model.blocking_rules, "sweep_pairs")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE sweep_scores AS
        SELECT s.match_weight, coalesce(tl.person_id = tr.person_id, false) AS is_match
        FROM ({model.score_sql('sweep_records', 'sweep_records', 'sweep_pairs')}) s
        LEFT JOIN sweep_truth tl ON tl.unique_id = s.unique_id_l
        LEFT JOIN sweep_truth tr ON tr.unique_id = s.unique_id_r
        """
    )
    blocked, blocked_true = con.execute(
        "SELECT count(*), count(*) FILTER (is_match) FROM sweep_scores"
    ).fetchall()[0]
    return _sweep_points(con, true_pairs, policy), blocked, blocked_true


def _sweep_points(
    con: duckdb.DuckDBPyConnection, true_pairs: int, policy: SweepPolicy
) -> list[dict[str, float]]:
    """Per grid match weight: pairs at or above it, true ones, precision, recall, F1."""
    start, stop, step = policy.weight_grid
    last = round((stop - start) / step)
    rows = con.execute(
        """
        WITH bins AS (
          SELECT least(CAST(floor((match_weight - $start) / $step) AS BIGINT), $last) AS i,
                 count(*) AS pairs, count(*) FILTER (is_match) AS true_pairs
          FROM sweep_scores GROUP BY ALL)
        SELECT $start + g.i * $step,
               coalesce(sum(b.pairs) OVER above, 0), coalesce(sum(b.true_pairs) OVER above, 0)
        FROM range(0, $last + 1) g(i) LEFT JOIN bins b USING (i)
        WINDOW above AS (ORDER BY g.i DESC)
        ORDER BY g.i
        """,
        {"start": start, "step": step, "last": last},
    ).fetchall()
    points = []
    for weight, pairs, true_positive in rows:
        score = PairwiseScore.from_counts(true_positive, pairs, true_pairs)
        points.append({
            "match_weight": weight,
            "match_probability": 2**weight / (1 + 2**weight),
            "pairs": pairs,
            "true_pairs": true_positive,
            **asdict(score),
        })
    return points


def _suggest_thresholds(
    points: list[dict[str, float]], policy: SweepPolicy
) -> tuple[dict[str, float], dict[str, float]]:
    """The link point (lowest precise enough, else best F1) and the review point."""
    precise = [p for p in points if p["precision"] >= policy.link_precision]
    link = precise[0] if precise else max(points, key=lambda p: p["f1"])
    review = link
    for point in reversed([p for p in points if p["match_weight"] < link["match_weight"]]):
        band_pairs = point["pairs"] - link["pairs"]
        band_true = point["true_pairs"] - link["true_pairs"]
        if band_pairs and band_true / band_pairs < policy.review_band_precision:
            break
        review = point
    return link, review


def _score_at(point: dict[str, float]) -> PairwiseScore:
    """The pairwise score recorded at a sweep point."""
    return PairwiseScore(point["precision"], point["recall"], point["f1"])


def _score_at_probability(points: list[dict[str, float]], threshold: float) -> PairwiseScore:
    """The score of pairs at or above match probability `threshold`: the first grid point at
    or above it (the grid is fine: 0.25 of match weight)."""
    above = [p for p in points if p["match_probability"] >= threshold - 1e-12]
    return _score_at(above[0] if above else points[-1])


def _comparison_report(curves: list[dict[str, Any]], records: int, true_pairs: int) -> str:
    """Offline HTML: precision, recall and F1 by threshold, one colour per model."""
    values = [{**p, "threshold": round(p["match_probability"], 6)} for p in curves]
    chart = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": values},
        "transform": [{"fold": ["precision", "recall", "f1"], "as": ["measure", "value"]}],
        "mark": "line",
        "encoding": {
            "x": {"field": "match_weight", "type": "quantitative",
                  "title": "threshold (match weight; probability in the tooltip)"},
            "y": {"field": "value", "type": "quantitative", "scale": {"zero": False}},
            "color": {"field": "model", "type": "nominal"},
            "strokeDash": {"field": "measure", "type": "nominal"},
            "tooltip": [{"field": f, "type": t} for f, t in (
                ("model", "nominal"), ("measure", "nominal"), ("value", "quantitative"),
                ("threshold", "quantitative"), ("pairs", "quantitative"))],
        },
        "width": 600,
        "height": 400,
    }
    return offline_charts_html(
        "Models compared on the same truth",
        [("Pairwise precision, recall and F1 by threshold", chart)],
        intro=f"{records:,} records, {true_pairs:,} true pairs; each model scores the pairs "
        "its own blocking rules find.",
    )


def _sweep_report(sweep: Sweep, model_version: str) -> str:
    """Offline HTML: precision–recall curve and precision/recall by threshold."""
    values = [{**p, "threshold": round(p["match_probability"], 6)} for p in sweep.points]
    tooltip = [
        {"field": f, "type": "quantitative"}
        for f in ("match_weight", "threshold", "precision", "recall", "f1", "pairs")
    ]
    curve = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": values},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "recall", "type": "quantitative", "scale": {"zero": False}},
            "y": {"field": "precision", "type": "quantitative", "scale": {"zero": False}},
            "order": {"field": "match_weight"},
            "tooltip": tooltip,
        },
        "width": 500,
        "height": 400,
    }
    by_threshold = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": values},
        "transform": [{"fold": ["precision", "recall", "f1"], "as": ["measure", "value"]}],
        "mark": "line",
        "encoding": {
            "x": {"field": "match_weight", "type": "quantitative"},
            "y": {"field": "value", "type": "quantitative", "scale": {"zero": False}},
            "color": {"field": "measure", "type": "nominal"},
            "tooltip": tooltip,
        },
        "width": 500,
        "height": 300,
    }
    summary = {k: v for k, v in sweep.to_dict().items() if k != "points"}
    return offline_charts_html(
        f"Threshold sweep, model {model_version}",
        [("Precision–recall", curve), ("By match weight", by_threshold)],
        intro=str(summary),
    )
