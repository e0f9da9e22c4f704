"""The prior follows the population (DESIGN.md principle 6).

A Splink model's prior λ is the chance that two records picked at random are one child, estimated
on a training snapshot of R₀ records holding C₀ children (k₀ = R₀/C₀ records each). With k records
per child, λ = (k − 1)/(R − 1) ≈ 1/C: the prior is about one over the number of children, so a
master holding C children has λ(C) = λ₀ · C₀ / C. The same agreement pattern is weaker evidence of
a match among more children — at 1M children a popular first name, a sex and a date of birth are
often shared by two children, at 20k rarely — and keeping λ₀ would crowd the review band and let
near-matches cross the link threshold.

Children, not records: a first load reads one feed after another, so the master passes through
states of one record per child (all of Child Benefit before any birth). Scaled by records, λ would
then be up to 8× (3 bits) too lenient exactly while most children are being created; scaled by
children it follows the population whatever the feeds' order. C₀ is the model's
`trained_on_children` (R₀ / (1 + λ₀(R₀ − 1)), what λ₀ itself says the snapshot held).

In match weights (log2 odds) the change is a shift of every pair's weight by
log2(λ/(1−λ)) − log2(λ₀/(1−λ₀)) ≈ −log2(C / C₀), applied to the scores the model's SQL gives. The
prior is never raised above λ₀: a master smaller than the training snapshot is one being filled
(a first load), whose population is at least the one the model was trained on. A model that does
not say how many records it was trained on keeps its prior.
"""

from __future__ import annotations

import duckdb

from engine.config import ScoringConfig
from linkage_models.scoring import CompiledModel


def population_prior(model: CompiledModel, children: int) -> float | None:
    """λ for a master of `children` children (None: the trained prior)."""
    trained_on = model.trained_on_children
    if not trained_on or children <= trained_on:
        return None
    return model.probability_two_random_records_match * trained_on / children


def weight_shift(model: CompiledModel, children: int) -> float:
    """What the population prior adds to every match weight the model's SQL gives (≤ 0)."""
    return model.prior_weight_change(population_prior(model, children))


def master_weight_shift(con: duckdb.DuckDBPyConnection, model: CompiledModel,
                        config: ScoringConfig, pending_records: int = 0) -> float:
    """The shift for the master on `con` with `pending_records` about to join it (0 when the
    configuration keeps the trained prior). Pending records count as children in the master's
    own proportion of children to records (all of them in an empty master)."""
    if not config.prior_follows_population:
        return 0.0
    # a table's row count is kept by DuckDB, and `status = 'merged'` reads only the blocks whose
    # statistics admit a merged child: 2.6 ms at 1M children, where `status <> 'merged'` scans
    # every block (5.7 ms; `status` is never NULL)
    children, records = con.execute("""
        SELECT (SELECT count(*) FROM children)
               - (SELECT count(*) FROM children WHERE status = 'merged'),
               (SELECT count(*) FROM records)
    """).fetchall()[0]
    pending_children = pending_records * children / records if records else pending_records
    return weight_shift(model, round(children + pending_children))


def probability_sql(weight: str, shift: float) -> str:
    """SQL for the match probability of the match weight `weight` shifted by `shift`."""
    if shift == 0:
        return f"(1.0 / (1.0 + pow(2.0, -({weight}))))"
    return f"(1.0 / (1.0 + pow(2.0, -(({weight}) + {shift!r}))))"
