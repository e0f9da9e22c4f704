"""The prior follows the population (DESIGN.md principle 6).

A Splink model's prior λ is the chance that two records picked at random are one child, estimated
on the training snapshot of N₀ records. For a population of persons with a similar number of
records each, the number of true pairs grows like N while the number of pairs grows like N², so
λ ∝ 1/N: a master holding N records has λ(N) = λ₀ · N₀ / N. The same agreement pattern is weaker
evidence of a match among more candidates — at 1M children a near-match is one of 50 times more
possible children than at 20k — and keeping λ₀ would crowd the review band and let near-matches
cross the link threshold.

In match weights (log2 odds) the change is a shift of every pair's weight by
log2(λ/(1−λ)) − log2(λ₀/(1−λ₀)) ≈ −log2(N / N₀), applied to the scores the model's SQL gives. The
prior is never raised above λ₀: a master smaller than the training snapshot is one being filled
(a first load), whose population is at least the one the model was trained on. A model that does
not say how many records it was trained on keeps its prior.
"""

from __future__ import annotations

import duckdb

from engine.config import ScoringConfig
from linkage_models.scoring import CompiledModel


def population_prior(model: CompiledModel, master_records: int) -> float | None:
    """λ for a master of `master_records` records (None: the trained prior)."""
    trained_on = model.trained_on_records
    if not trained_on or master_records <= trained_on:
        return None
    return model.probability_two_random_records_match * trained_on / master_records


def weight_shift(model: CompiledModel, master_records: int) -> float:
    """What the population prior adds to every match weight the model's SQL gives (≤ 0)."""
    return model.prior_weight_change(population_prior(model, master_records))


def master_weight_shift(con: duckdb.DuckDBPyConnection, model: CompiledModel,
                        config: ScoringConfig, pending_records: int = 0) -> float:
    """The shift for the master on `con` with `pending_records` about to join it (0 when the
    configuration keeps the trained prior)."""
    if not config.prior_follows_population:
        return 0.0
    records = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
    return weight_shift(model, records + pending_records)


def probability_sql(weight: str, shift: float) -> str:
    """SQL for the match probability of the match weight `weight` shifted by `shift`."""
    if shift == 0:
        return f"(1.0 / (1.0 + pow(2.0, -({weight}))))"
    return f"(1.0 / (1.0 + pow(2.0, -(({weight}) + {shift!r}))))"
