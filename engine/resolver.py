"""Resolve one micro-batch against the master in one DuckDB transaction.

    dedupe -> xref fast path -> candidates (blocking index and within the batch) -> scores (the
    compiled Splink model) -> stored scored pairs -> neighbourhood (engine.resolution.neighbourhood)
    -> decide (engine.resolution.graph, pure) -> change set applied (engine.resolution.changes)

A record already in `links` is skipped, so replaying a batch after a crash changes nothing. The
xref fast path sends a record whose `(feed, source_key)` is known to that key's child without
scoring, unless the child is provisional (an open review item), or holds that key alone and the
record brings values the key has not had (the key's first record may have been too poor to link):
then the record is resolved with its neighbourhood, so that later evidence can settle the item or
join the fragment.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.candidates import (
    ADD_TERM_FREQUENCIES_SQL,
    HELD_VALUES,
    CandidateFinder,
    count_term_frequencies_sql,
    ensure_blocking_index,
    index_records_sqls,
    term_frequency_shares_sql,
    with_shares_sql,
)
from engine.config import EngineConfig
from engine.feed_positions import FeedPosition, save_feed_positions
from engine.intake import DeadLetter
from engine.master_store import MasterStoreError, scalar
from engine.parsed_statements import ParsedStatements
from engine.record_locator import LOCATOR_TABLES, XREF_KEY, RecordLocator, records_of
from engine.resolution.changes import CHANGE_TABLES, ChangeWriter, Provenance
from engine.resolution.graph import ChangeSet, Neighbourhood, decide
from engine.resolution.neighbourhood import HOOD_TABLES, SupportLookup, read_neighbourhood
from engine.resolution.prior import WEIGHT_SHIFT, MasterPopulation, shifted_probability_sql
from engine.stage_clock import StageClock
from engine.term_frequencies import HeldTermFrequencies
from engine.xref_map import lookup_columns_sql, pack_child_ids, unpack_child_ids
from linkage_models.scoring import CompiledModel
from streams.canonical import Update, updates_to_arrow

_DEAD_LETTER_SCHEMA = pa.schema(
    [("feed", pa.string()), ("file", pa.string()), ("line", pa.int64()),
     ("raw", pa.string()), ("error", pa.string())]
)


@dataclass(frozen=True)
class PreparedBatch:
    """A micro-batch's items by kind, its updates already one Arrow table: built on the thread
    that reads the feeds while the previous batch is resolved (engine.master_sink.BatchPipeline),
    ~3.6 us an update off the writer's path."""

    updates: pa.Table
    dead: list[DeadLetter]
    positions: list[FeedPosition]

    @classmethod
    def of(cls, items: list[Update | DeadLetter | FeedPosition]) -> PreparedBatch:
        return cls(
            updates_to_arrow([i for i in items if isinstance(i, Update)]),
            [i for i in items if isinstance(i, DeadLetter)],
            [i for i in items if isinstance(i, FeedPosition)],
        )

    @classmethod
    def joined(cls, batches: list[PreparedBatch]) -> PreparedBatch:
        """`batches` (consecutive, in stream order) as one batch."""
        if len(batches) == 1:
            return batches[0]
        return cls(
            # one chunk: DuckDB reads a table of many small chunks slower (a following writer
            # joins a batch per read of the feeds, every few milliseconds)
            pa.concat_tables([b.updates for b in batches]).combine_chunks(),
            [d for b in batches for d in b.dead],
            [p for b in batches for p in b.positions],
        )

    @property
    def items(self) -> int:
        """How many feed lines it holds (its updates and dead letters)."""
        return self.updates.num_rows + len(self.dead)


@dataclass
class BatchOutcome:
    """What one batch did (counts of this batch only; `review` counts the batch's records that
    went to review, `merged_children` the children it merged away)."""

    updates: int = 0
    duplicates: int = 0
    xref: int = 0
    linked: int = 0
    new_children: int = 0
    review: int = 0
    bridge: int = 0
    merged_children: int = 0
    redone: int = 0
    dead_letters: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)  # engine.stage_clock.STAGES


class Resolver:
    """Owns the master connection; `resolve(items)` applies one micro-batch atomically."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, model: CompiledModel, config: EngineConfig,
        following: bool = False,
    ) -> None:
        """Rebuilds the master's blocking index first if it was built for another model.
        `following`: hold more of the master in memory for small batches' sake (a bulk load's
        big batches gain little from it, and its RSS has none to spare): `xref`
        (engine.xref_map, ~100 MB at 1M children), the records' values of the model
        columns with many distinct values (engine.record_values, ~330 MB) and the term
        frequencies (engine.term_frequencies, ~10 MB)."""
        self.con = con = ParsedStatements(con)
        self.model = model
        self.config = config
        tf_min = config.scoring.tf_min_values
        self._candidates = CandidateFinder(model, hold_values=following)
        self._locator = RecordLocator(hold_xref=following)
        self._index_known_sqls = index_records_sqls(model, "known_records", "known_indexed")
        self._score_sql = model.score_sql("left_tf", "right_tf", "pairs", weights_only=True)
        self._tf_count_sql = count_term_frequencies_sql(model, "batch")
        # the shares of the values of the candidates and the new records (`right_records`
        # holds both), read from `term_frequencies` once for both sides
        self._tf_shares_sql = (term_frequency_shares_sql(model, "right_records", tf_min)
                               if model.tf_columns else None)
        self._held_tf = (HeldTermFrequencies(model.tf_columns, tf_min)
                         if following and model.tf_columns else None)
        self._left_tf_sql = with_shares_sql(model, "batch_new", "batch_tf_shares")
        self._right_tf_sql = with_shares_sql(model, "right_records", "batch_tf_shares")
        self._support = SupportLookup(
            con, model, config.decision.merge_support_threshold, tf_min, with_new=True,
            locator=self._locator, held_tf=self._held_tf,
        )
        self._writer = ChangeWriter(model, config, self._locator)
        self.population = MasterPopulation()  # its children, for the prior
        self._drops_batch_tables = not following  # see _drop_batch_tables
        self._batch_id = 0  # the batch being resolved
        self._last_batch_id = 0  # the last batch committed (only this resolver writes batches)
        with self._transaction():
            ensure_blocking_index(con, model)
            self._candidates.load(con)
            self._locator.load(con)
            self._last_batch_id = scalar(con, "SELECT coalesce(max(batch_id), 0) FROM batches")

    def warm_cache(self) -> None:
        """For a following engine, before its first line: read once the columns a batch reads
        from scattered rows (children's whole rows, the records' columns not held in memory,
        the stored pairs), so that DuckDB's cache holds their blocks before the first line
        arrives instead of filling during the first batches: at 1M children ~0.6 s at start,
        and a first batch of 400 of the follow session's lines 530 -> 400 ms (the next ones
        ~250 ms). The term frequencies it holds are read too (~0.1 s)."""
        columns = {
            "children": [c for (c,) in self.con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'children' "
                "AND database_name = current_database() AND schema_name = 'main'").fetchall()],
            "records": ["record_no", "child_id", *(
                c for c in self.model.record_columns if c not in HELD_VALUES)],
            "scored_pairs": ["pair_no", "uid_a", "uid_b", "probability"],
        }
        for table, names in columns.items():
            self.con.execute(f"SELECT {', '.join(f'max({c})' for c in names)} FROM {table}"
                             ).fetchall()
        if self._held_tf is not None:
            self._held_tf.load(self.con)

    @property
    def records_indexed(self) -> int:
        """Records the in-memory indexes hold (engine.record_locator)."""
        return len(self._locator.by_uid)

    def resolve(
        self, items: list[Update | DeadLetter | FeedPosition] | PreparedBatch
    ) -> BatchOutcome:
        batch = items if isinstance(items, PreparedBatch) else PreparedBatch.of(items)
        outcome = BatchOutcome()
        clock = StageClock()
        started_at = datetime.now(UTC)
        with self._transaction(clock):
            self._batch_id = self._last_batch_id + 1
            with clock.stage("intake"):
                outcome.dead_letters = self._write_dead_letters(batch.dead)
            if batch.updates.num_rows:
                self._resolve_updates(batch.updates, outcome, clock)
            with clock.stage("write"):
                save_feed_positions(self.con, batch.positions)
            self._record_batch(batch.updates.num_rows + len(batch.dead), outcome, started_at,
                               clock)
        self._last_batch_id = self._batch_id
        outcome.stage_seconds = dict(clock.seconds)
        return outcome

    @contextlib.contextmanager
    def _transaction(self, clock: StageClock | None = None) -> Iterator[None]:
        """One DuckDB transaction: committed (a load's temporary tables dropped first:
        `_drop_batch_tables`), or rolled back (which undoes the batch's tables) and reported as
        MasterStoreError."""
        self.con.begin()
        try:
            yield
            with clock.stage("commit") if clock else contextlib.nullcontext():
                if self._drops_batch_tables:
                    self._drop_batch_tables()
                self.con.commit()
        except duckdb.Error as err:
            self._forget_uncommitted()
            raise MasterStoreError(f"writing the master failed: {_first_line(err)}") from err
        except BaseException:  # e.g. KeyboardInterrupt mid-batch: leave no transaction open
            self._forget_uncommitted()
            raise

    def _forget_uncommitted(self) -> None:
        """Roll the batch back, and forget what the in-memory state learnt from it."""
        self._rollback()
        self._locator.forget_uncommitted()
        self.population.forget()
        if self._held_tf is not None:
            self._held_tf.forget()

    def _resolve_updates(
        self, updates: pa.Table, outcome: BatchOutcome, clock: StageClock
    ) -> None:
        if self.population.begin_batch(self.con) and self._held_tf is not None:
            self._held_tf.forget()
        with clock.stage("intake"):
            outcome.updates = self._take_new_updates(updates)
        outcome.duplicates = updates.num_rows - outcome.updates
        if not outcome.updates:
            return
        with clock.stage("xref"):
            outcome.xref = self._resolve_known_identifiers(outcome.updates)
        if outcome.updates > outcome.xref:
            changes, hood = self._decide_new_records(outcome.updates - outcome.xref, clock)
        else:  # every record went to its key's child: nothing was scored, no child to redo
            changes, hood = ChangeSet(), Neighbourhood({})
        with clock.stage("write"):
            self._writer.apply(
                self.con, changes, hood, Provenance("engine", self.model.version, self._batch_id),
                known="known_indexed",
            )
        _count_outcome(changes, hood, outcome)
        self.population.batch_wrote(self.con, outcome.new_children - outcome.merged_children)

    def _decide_new_records(self, new_records: int, clock: StageClock
                            ) -> tuple[ChangeSet, Neighbourhood]:
        """Score the `new_records` records of `batch_new` and decide them with their
        neighbourhood."""
        with clock.stage("candidates"):
            self._candidates.find(self.con)
        with clock.stage("scores"):
            self._score_new_records(new_records)
        with clock.stage("neighbourhood"):
            hood = read_neighbourhood(self.con, with_new=True, redo=self.config.decision.redo,
                                      locator=self._locator)
        with clock.stage("decide"):
            return decide(hood, self.config.decision, self._support), hood

    def _take_new_updates(self, updates: pa.Table) -> int:
        """Table `batch`: the updates not yet in `links` (nor so in `records`, which holds the
        same records), each (feed, record_id) once; their values counted in the term
        frequencies. Returns how many."""
        con = self.con
        con.register("incoming", updates)
        # a record twice in one batch: its earliest event (a window DuckDB needs ~2 ms to plan,
        # so only when there is a twice-sent record to drop)
        once = "" if _each_record_once(updates) else """
            QUALIFY row_number() OVER (PARTITION BY feed, record_id ORDER BY event_time) = 1"""
        taken = self._create(f"""
            CREATE OR REPLACE TEMP TABLE batch AS
            SELECT feed || ':' || record_id AS unique_id, * FROM incoming {once}
        """)
        con.unregister("incoming")
        taken -= self._drop_records_seen()
        if self._held_tf is None:
            con.execute(self._tf_count_sql)
        else:
            con.register("batch_tf_counts", self._held_tf.count(con, "batch"))
            con.execute(ADD_TERM_FREQUENCIES_SQL)
            con.unregister("batch_tf_counts")
        return taken

    def _drop_records_seen(self) -> int:
        """Delete from `batch` the records the master holds already: those the in-memory index
        may have seen (by a hash of `unique_id`), confirmed by their row in `records`. Returns
        how many."""
        self._locator.begin_batch(self.con)
        keys = self.con.execute("SELECT hash(unique_id) AS key FROM batch").fetchnumpy()["key"]
        _, record_numbers = self._locator.by_uid.find(keys)
        if not len(record_numbers):
            return 0
        self.con.register("maybe_seen", pa.table({"record_no": record_numbers.astype("int64")}))
        seen = self._create("""
            DELETE FROM batch WHERE unique_id IN (
                SELECT unique_id FROM records
                WHERE record_no IN (SELECT record_no FROM maybe_seen))
        """)
        self.con.unregister("maybe_seen")
        return seen

    def _resolve_known_identifiers(self, updates: int) -> int:
        """Records whose (feed, source_key) is already linked go to that child: no scoring.
        They join the record index at once, so the batch's new records can match them.
        `batch_xref`: every record of the batch whose key is in xref, with that key's child;
        `batch_new`: the others, if any (of the batch's `updates` records). Returns how many
        records went to their key's child."""
        con = self.con
        with_key = self._find_known_keys()
        fresh = self._fresh_values_of_lone_keys() if with_key else ""
        known = self._create(f"""
            CREATE OR REPLACE TEMP TABLE known_records AS
            SELECT x.child_id, b.* FROM batch b JOIN batch_xref x USING (unique_id)
            WHERE x.child_id NOT IN (
                SELECT child_id FROM review_queue WHERE resolved_at IS NULL)
            {fresh}
        """)
        # without records to index, only the (empty) table `known_indexed` the writer reads
        self._run(self._index_known_sqls if known else self._index_known_sqls[:1])
        if known < updates:
            con.execute("""
                CREATE OR REPLACE TEMP TABLE batch_new AS
                SELECT * FROM batch WHERE unique_id NOT IN (SELECT unique_id FROM known_records)
            """)
        return known

    def _find_known_keys(self) -> int:
        """Table `batch_xref`: the batch's records whose key is in `xref`, with that key's
        child. Returns how many."""
        held = self._locator.xref_children
        if held is None:
            keys = self._locator.xref_of(self.con, f"SELECT {XREF_KEY} FROM batch",
                                         "batch_xref_nos")
            return self._create(f"""
                CREATE OR REPLACE TEMP TABLE batch_xref AS
                SELECT b.unique_id, b.feed, b.source_key, x.child_id FROM batch b
                JOIN {keys} x ON x.feed = b.feed AND x.source_key = b.source_key
            """)
        keyed = self.con.sql(f"""
            SELECT unique_id, feed, source_key, {lookup_columns_sql()} FROM batch
            WHERE source_key IS NOT NULL
        """).to_arrow_table()
        found, children = held.children_of(keyed["hi"].to_numpy(), keyed["lo"].to_numpy())
        known = keyed.select(["unique_id", "feed", "source_key"]).filter(pa.array(found))
        self.con.register("batch_xref_arrow", known.append_column(
            "child_id", pa.array(unpack_child_ids(children[found]), pa.string())))
        self.con.execute("CREATE OR REPLACE TEMP TABLE batch_xref AS "
                         "SELECT * FROM batch_xref_arrow")
        self.con.unregister("batch_xref_arrow")
        return known.num_rows

    def _fresh_values_of_lone_keys(self) -> str:
        """A child that holds one key alone may be a fragment (its first record too poor to
        link): a record of that key bringing values the key has not had is compared, not sent
        there unscored. Table `batch_fresh_values`: those records of the batch; returns the
        condition that keeps them out of the fast path."""
        con = self.con
        compared = [c for c in self.model.scored_columns if c != "unique_id"]
        held, lone = self._lone_key_children()
        if not lone:
            return ""
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE batch_fresh_values AS
            WITH seen AS (SELECT feed, source_key, hash({", ".join(compared)}) AS h FROM {held} r
                          WHERE child_id IN (SELECT child_id FROM lone_key_children))
            SELECT b.unique_id FROM batch b
            JOIN batch_xref x USING (unique_id) JOIN lone_key_children USING (child_id)
            ANTI JOIN seen s ON s.feed = b.feed AND s.source_key = b.source_key
                            AND s.h = hash({", ".join(f"b.{c}" for c in compared)})
        """)
        return "AND x.unique_id NOT IN (SELECT unique_id FROM batch_fresh_values)"

    def _lone_key_children(self) -> tuple[str, int]:
        """Table `lone_key_children`: the children of the batch's known keys that hold one key
        alone, counted in the xref map if held, else by key or by a scan of `xref`, whichever
        reads less. Returns a FROM item holding the records of (at least) those children, and
        how many they are."""
        if self._locator.xref_children is not None:
            lone = self._lone_key_children_in_memory()
        elif (self._count("(SELECT DISTINCT child_id FROM batch_xref)")
              * XREF_ROWS_SCANNED_PER_CHILD >= len(self._locator.xref)):
            lone = self._lone_key_children_by_scan()
        else:
            return self._lone_key_children_by_key()
        return records_of(self._locator, self.con, "child_id",
                          "SELECT child_id FROM lone_key_children", "xref_child_records"), lone

    def _lone_key_children_in_memory(self) -> int:
        """Table `lone_key_children` from the xref map's key counts; how many."""
        children = [c for (c,) in self.con.execute(
            "SELECT DISTINCT child_id FROM batch_xref").fetchall()]
        counts = self._locator.xref_children.key_counts(pack_child_ids(children))
        lone = [c for c, n in zip(children, counts, strict=True) if n == 1]
        self.con.execute("CREATE OR REPLACE TEMP TABLE lone_key_children AS "
                         "SELECT unnest(?::VARCHAR[]) AS child_id", [lone])
        return len(lone)

    def _lone_key_children_by_key(self) -> tuple[str, int]:
        """Table `lone_key_children` for a few children, found by key: each xref row names a
        child that holds a record of its key (a move sets it to a moved record's child), so a
        child's xref rows are those of its records' keys that name it. Returns a FROM item
        holding the records of the batch's xref children, and how many children are lone."""
        con = self.con
        held = records_of(self._locator, con, "child_id", "SELECT child_id FROM batch_xref",
                          "xref_child_records")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE xref_child_keys AS
            SELECT DISTINCT child_id, feed, source_key FROM {held} r
            WHERE child_id IN (SELECT child_id FROM batch_xref) AND source_key IS NOT NULL
        """)
        rows = self._locator.xref_of(con, f"SELECT {XREF_KEY} FROM xref_child_keys",
                                     "xref_child_key_nos")
        lone = self._create(f"""
            CREATE OR REPLACE TEMP TABLE lone_key_children AS
            SELECT x.child_id FROM {rows} x
            JOIN xref_child_keys k USING (child_id, feed, source_key)
            GROUP BY x.child_id HAVING count(*) = 1
        """)
        return held, lone

    def _lone_key_children_by_scan(self) -> int:
        """Table `lone_key_children` for many children, from one scan of `xref` (their rows lie
        scattered: reading them by number reads most blocks anyway); how many."""
        return self._create("""
            CREATE OR REPLACE TEMP TABLE lone_key_children AS
            SELECT x.child_id FROM xref x
            WHERE x.child_id IN (SELECT child_id FROM batch_xref)
            GROUP BY x.child_id HAVING count(*) = 1
        """)

    def _score_new_records(self, new_records: int) -> None:
        """`scored_edges`: each new record's pairs at or above the review threshold, with the
        indexed records (`child_id` their child) and the batch's other new records (NULL);
        stored in `scored_pairs`. `hood_seeds`: the children they touch. `new_records`: how many
        records `batch_new` holds."""
        con = self.con
        if self._held_tf is not None:
            con.register("batch_tf_shares_arrow", self._held_tf.shares(con, "right_records"))
            con.execute("CREATE OR REPLACE TEMP TABLE batch_tf_shares AS "
                        "SELECT * FROM batch_tf_shares_arrow")
            con.unregister("batch_tf_shares_arrow")
        elif self._tf_shares_sql:
            con.execute(f"CREATE OR REPLACE TEMP TABLE batch_tf_shares AS {self._tf_shares_sql}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE left_tf AS {self._left_tf_sql}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE right_tf AS {self._right_tf_sql}")
        kept = min(self.config.decision.review_threshold,
                   self.config.decision.merge_support_threshold)
        shift = self.population.weight_shift(con, self.model, self.config.scoring, new_records)
        self._support.weight_shift = shift
        probability = shifted_probability_sql("s.match_weight")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE scored_edges AS
            SELECT s.unique_id_l, s.unique_id_r, r.child_id, {probability} AS match_probability
            FROM ({self._score_sql}) s
            JOIN right_records r ON r.unique_id = s.unique_id_r
            WHERE {probability} >= {kept}
        """, {WEIGHT_SHIFT: shift})
        con.execute("""
            INSERT INTO scored_pairs (uid_a, uid_b, probability)
            SELECT least(unique_id_l, unique_id_r), greatest(unique_id_l, unique_id_r),
                   match_probability
            FROM scored_edges
        """)
        con.execute("""
            CREATE OR REPLACE TEMP TABLE hood_seeds AS
            SELECT DISTINCT child_id FROM scored_edges WHERE child_id IS NOT NULL
            UNION
            SELECT x.child_id FROM batch_new b JOIN batch_xref x USING (unique_id)
        """)

    def _run(self, statements: list[str]) -> None:
        for statement in statements:
            self.con.execute(statement)

    def _record_batch(self, items: int, outcome: BatchOutcome, started_at: datetime,
                      clock: StageClock) -> None:
        """The batch's row; `committed_at` is taken last, just before the commit."""
        stage_ms = {name: round(seconds * 1000, 1) for name, seconds in clock.seconds.items()}
        self.con.execute(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self._batch_id, started_at, datetime.now(UTC), items, outcome.updates,
             outcome.new_children, outcome.review, outcome.dead_letters, json.dumps(stage_ms)],
        )

    def _write_dead_letters(self, dead: list[DeadLetter]) -> int:
        if not dead:
            return 0
        table = pa.table(
            {name: [getattr(d, name) for d in dead] for name in _DEAD_LETTER_SCHEMA.names},
            schema=_DEAD_LETTER_SCHEMA,
        )
        self.con.register("dead_batch", table)
        before = self._count("dead_letters")
        self.con.execute("""
            INSERT INTO dead_letters
            SELECT feed, file, line, raw, error, now() FROM dead_batch
            ON CONFLICT DO NOTHING
        """)
        self.con.unregister("dead_batch")
        return self._count("dead_letters") - before

    def _drop_batch_tables(self) -> None:
        """Drop the batch's temporary tables, in one call (~50 statements cost 4x more; a
        batch makes about half of them, and dropping one that is not there costs as much).

        A load drops them: they hold its 100,000-record batches. A following engine keeps them
        until its next batch replaces them (every statement that makes one replaces it, and
        every read of one follows its making in the same batch): a few hundred rows each, and
        dropping them took ~2.7 ms of a 1M batch's commit stage (docs/scale.md, "Midday,
        2026-12-05")."""
        made = {name for (name,) in self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()}
        drops = [f"DROP TABLE {name}" for name in _BATCH_TABLES if name in made]
        if drops:
            self.con.execute("; ".join(drops))

    def _rollback(self) -> None:
        """Undo the batch; a failed commit has already ended the transaction, and a fatal error
        (disk full during a checkpoint) has closed the database: nothing is left to undo."""
        with contextlib.suppress(duckdb.TransactionException, duckdb.FatalException):
            self.con.rollback()

    def _count(self, table: str) -> int:
        return scalar(self.con, f"SELECT count(*) FROM {table}")

    def _create(self, sql: str) -> int:
        """Run a `CREATE TABLE AS`, `INSERT` or `DELETE` and return how many rows it wrote (as
        DuckDB says: a `count(*)` after it would be one more statement to plan)."""
        return self.con.execute(sql).fetchall()[0][0]


# A batch's lone keys are found by scanning `xref` once its children with a known key, times
# this, reach the rows `xref` holds: reading a few children's keys by key touches a block of
# `records` and of `xref` per record, and from about 3 children a scan of a 1M-children master's
# 2.9M xref rows (~30 ms) costs less (xref stage, one batch of the follow session's lines at
# 1M, by key -> by scan: 1 update 25 -> 39 ms, 2: 39 -> 44, 4: 56 -> 49, 12: 109 -> 66,
# 50: 176 -> 89, 500: 283 -> 129; `benchmarks.batch_profile --newest`, 2026-12-03). At 100k
# children a scan is the cheaper from one child, at 11M from about 30: never dearer than by key.
XREF_ROWS_SCANNED_PER_CHILD = 1_000_000


_BATCH_TABLES = (
    "batch", "batch_xref", "batch_xref_nos", "xref_child_records", "xref_child_keys",
    "xref_child_key_nos", "lone_key_children", "batch_fresh_values",
    "known_records", "known_indexed", "batch_new", "batch_keys",
    "index_pairs", "right_records", "pairs", "batch_tf_shares", "left_tf", "right_tf",
    "scored_edges",
    *HOOD_TABLES, *CHANGE_TABLES, *LOCATOR_TABLES,
)


def _each_record_once(updates: pa.Table) -> bool:
    """Whether no `(feed, record_id)` comes twice in `updates`."""
    if updates.num_rows < 2:
        return True
    uids = pc.binary_join_element_wise(updates["feed"], updates["record_id"], ":")
    return pc.count_distinct(uids).as_py() == updates.num_rows


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


def _count_outcome(changes: ChangeSet, hood: Neighbourhood, outcome: BatchOutcome) -> None:
    new = [p for p in changes.placements if hood.records[p.unique_id].child_id is None]
    decisions = Counter(p.decision for p in new)
    outcome.redone = len(changes.placements) - len(new)
    outcome.linked = outcome.xref + decisions["link"] + decisions["bridge"]
    outcome.new_children = len(changes.new_children)
    outcome.review = decisions["review"]
    outcome.bridge = decisions["bridge"]
    outcome.merged_children = len(changes.merged)
