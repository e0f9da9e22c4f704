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
    configuration keeps the trained prior), its children counted now."""
    return MasterPopulation().weight_shift(con, model, config, pending_records)


class MasterPopulation:
    """The children a master holds (not merged), for one engine's batches: counted once, then
    kept in step with the children its batches create and merge, and counted again whenever
    someone else may have written (a person's act, a purge) or a batch rolled back: call
    `begin_batch` before a batch writes (it says whether anyone else wrote, for what else the
    engine holds of the master: engine.term_frequencies), `weight_shift` for its prior,
    `batch_wrote` after.

    Counting reads `children`: a busy batch at 1M children paid 6-8 ms for it, more as a
    following session goes on (the rows each batch rewrites stay in the table, deleted, until
    the next checkpoint, and every count reads them). Whether anyone else wrote is read from
    what DuckDB keeps without a scan: every write of a child's row, a person's act included,
    draws a `row_no` from `child_row_seq`, and a purge deletes records, whose count DuckDB
    keeps; so the two, read after this engine's last batch and before its next one writes, are
    the same only if no one else has written children in between."""

    def __init__(self) -> None:
        self._children: int | None = None
        self._after_last_batch: tuple[int, int | None] | None = None
        self._records_at_start: int | None = None  # of the batch begun, until it wrote
        self._child_rows_drawn = False  # see _records_and_last_child_row

    @property
    def children(self) -> int | None:
        """The children as last counted and kept in step since (None: not counted yet)."""
        return self._children

    def begin_batch(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Before this engine's batch writes anything: whether anyone else wrote since its last
        batch (then the children are counted again); False before a first batch, or after a
        rollback, when there is nothing held to be stale."""
        now = self._records_and_last_child_row(con)
        others_wrote = self._after_last_batch not in (None, now)
        if others_wrote:
            self.forget()
        self._records_at_start = now[0]
        return others_wrote

    def weight_shift(self, con: duckdb.DuckDBPyConnection, model: CompiledModel,
                     config: ScoringConfig, pending_records: int = 0) -> float:
        """The shift for the master on `con` with `pending_records` about to join it (0 when
        the configuration keeps the trained prior). Pending records count as children in the
        master's own proportion of children to records (all of them in an empty master), both
        as they were when the batch began (`begin_batch`; read now outside a batch)."""
        if not config.prior_follows_population:
            return 0.0
        if self._children is None:
            self._children = _count_children(con)
        children, records = self._children, self._records_at_start
        if records is None:  # not within a batch: read now
            records = self._records_and_last_child_row(con)[0]
        pending_children = pending_records * children / records if records else pending_records
        return weight_shift(model, round(children + pending_children))

    def batch_wrote(self, con: duckdb.DuckDBPyConnection, children_added: int) -> None:
        """This engine's batch, in its transaction after its writes, added `children_added`
        children (new ones less the merged)."""
        if self._children is not None:  # else the next batch counts them
            self._children += children_added
        self._after_last_batch = self._records_and_last_child_row(con)
        self._records_at_start = None

    def forget(self) -> None:
        """Count again (a batch rolled back, or someone else wrote)."""
        self._children = self._after_last_batch = self._records_at_start = None

    def _records_and_last_child_row(self, con: duckdb.DuckDBPyConnection
                                    ) -> tuple[int, int | None]:
        """The records the master holds and the last `row_no` drawn for a child's row (None:
        none yet, or a master without the sequence), both kept by DuckDB (no scan). The
        sequence is read from `duckdb_sequences()` until it has drawn a value, then by
        `currval` (~0.4 ms against ~0.9 ms, at every batch's start and end): `currval` of a
        sequence that never drew fails, which would abort the batch's transaction."""
        if self._child_rows_drawn:
            return tuple(con.execute("""
                SELECT (SELECT count(*) FROM records), currval('child_row_seq')
            """).fetchall()[0])
        state = tuple(con.execute("""
            SELECT (SELECT count(*) FROM records),
                   (SELECT last_value FROM duckdb_sequences()
                    WHERE sequence_name = 'child_row_seq' AND database_name = current_database()
                      AND schema_name = 'main')
        """).fetchall()[0])
        self._child_rows_drawn = state[1] is not None
        return state


def _count_children(con: duckdb.DuckDBPyConnection) -> int:
    # a table's row count is kept by DuckDB, and `status = 'merged'` reads only the blocks whose
    # statistics admit a merged child: 2.6 ms at 1M children, where `status <> 'merged'` scans
    # every block (5.7 ms; `status` is never NULL)
    return con.execute("""
        SELECT (SELECT count(*) FROM children)
               - (SELECT count(*) FROM children WHERE status = 'merged')
    """).fetchall()[0][0]


# The named parameter that `shifted_probability_sql` reads the shift from.
WEIGHT_SHIFT = "weight_shift"


def shifted_probability_sql(weight: str) -> str:
    """SQL for the match probability of the match weight `weight` shifted by the statement's
    parameter `$weight_shift` (a float): the statement's text then stays the same from one
    batch to the next, and is parsed once (engine.parsed_statements)."""
    return f"(1.0 / (1.0 + pow(2.0, -(({weight}) + ${WEIGHT_SHIFT}))))"

