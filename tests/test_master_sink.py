"""The writer's pipeline: a bulk load's batches resolved one at a time while the next is
gathered, a following engine's resolved together once the writer is free, in order, and nothing
resolved after a failure (its feed positions would pass over the failed batch); a following
engine's master planned without the optimizers its small batches do without, given its own
memory limit, and checkpointed without compacting until it stops."""

import contextlib
import dataclasses
import signal
import threading
import time
from pathlib import Path

import duckdb
import pytest

from engine.config import EngineConfig, StoreConfig
from engine.feed_positions import FeedPosition
from engine.intake import DeadLetter
from engine.master_sink import BatchPipeline, MasterSink
from engine.master_store import FOLLOWING_DISABLED_OPTIMIZERS, configure_store, end_following
from engine.resolver import PreparedBatch
from linkage_models.scoring import DEFAULT_MODEL_PATH
from streams.canonical import updates_to_arrow


def batch(number: int, lines: int = 1) -> PreparedBatch:
    """A batch of `lines` dead letters, told apart by its position's line `number`."""
    dead = [DeadLetter("gro", "gro/a.jsonl", number, "{", "not JSON")] * lines
    return PreparedBatch(updates_to_arrow([]), dead, [FeedPosition("gro/a.jsonl", 0, number)])


def numbers(batch: PreparedBatch) -> list[int]:
    return [p.line for p in batch.positions]


class Writer:
    """What the pipeline's writer resolved (each batch's numbers), one batch at a time; a
    batch waits for `release` while `hold` is set."""

    def __init__(self) -> None:
        self.resolved: list[list[int]] = []
        self.started = threading.Event()
        self.hold, self.release = threading.Event(), threading.Event()
        self._running = threading.Semaphore(1)

    def __call__(self, batch: PreparedBatch) -> None:
        assert self._running.acquire(blocking=False), "two batches resolved at once"
        self.started.set()
        if self.hold.is_set():
            self.release.wait(10)
        if numbers(batch) == [-1]:
            self._running.release()
            raise RuntimeError("writing the master failed: disk full")
        time.sleep(0.002)
        self.resolved.append(numbers(batch))
        self._running.release()

    def let_go(self) -> None:
        """The batch held, and every later one, goes on."""
        self.hold.clear()
        self.release.set()


def busy_pipeline(con, writer: Writer, failures: list[BaseException], max_waiting: int
                  ) -> BatchPipeline:
    """A following pipeline whose writer resolves batch 1 until `writer.let_go()`."""
    pipeline = BatchPipeline(con, writer, failures.append, max_waiting)
    writer.hold.set()
    pipeline.submit(batch(1))
    assert writer.started.wait(10)
    return pipeline


@pytest.fixture
def writer() -> Writer:
    return Writer()


@pytest.fixture
def failures() -> list[BaseException]:
    return []


@pytest.fixture
def con():
    con = duckdb.connect()
    yield con
    con.close()


def test_a_bulk_load_resolves_its_batches_one_at_a_time_in_the_order_submitted(
    con, writer: Writer, failures: list[BaseException]
):
    pipeline = BatchPipeline(con, writer, failures.append)
    for number in range(20):
        pipeline.submit(batch(number))
    pipeline.finish()
    assert writer.resolved == [[number] for number in range(20)]


def test_submit_returns_while_the_batch_is_resolved(
    con, writer: Writer, failures: list[BaseException]
):
    pipeline = BatchPipeline(con, writer, failures.append)
    writer.hold.set()
    pipeline.submit(batch(1))
    assert writer.started.wait(10)  # resolving on the writer's thread while this one goes on
    writer.release.set()
    pipeline.finish()
    assert writer.resolved == [[1]]


def test_following_what_arrives_while_a_batch_is_resolved_is_resolved_next_together(
    con, writer: Writer, failures: list[BaseException]
):
    pipeline = busy_pipeline(con, writer, failures, max_waiting=10)
    for number in range(2, 6):  # none of these waits: they hold 8 lines, room for 10
        pipeline.submit(batch(number, lines=2))
    writer.let_go()
    pipeline.finish()
    assert writer.resolved == [[1], [2, 3, 4, 5]]


def test_following_a_submit_waits_while_the_batches_waiting_hold_max_waiting_lines(
    con, writer: Writer, failures: list[BaseException]
):
    pipeline = busy_pipeline(con, writer, failures, max_waiting=4)
    pipeline.submit(batch(2, lines=3))
    third = threading.Thread(target=pipeline.submit, args=(batch(3, lines=2),))
    third.start()
    third.join(0.2)
    assert third.is_alive()  # 3 + 2 lines would pass 4
    writer.let_go()
    third.join(10)
    pipeline.finish()
    assert writer.resolved == [[1], [2], [3]]


@pytest.mark.parametrize("max_waiting", [None, 10], ids=["bulk load", "following"])
def test_a_failure_is_handed_on_at_once_and_nothing_after_it_is_resolved(
    con, writer: Writer, failures: list[BaseException], max_waiting: int | None
):
    pipeline = BatchPipeline(con, writer, failures.append, max_waiting)
    pipeline.submit(batch(-1))
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [str(f) for f in failures] == ["writing the master failed: disk full"]
    pipeline.submit(batch(2))
    pipeline.finish()
    assert writer.resolved == []
    assert len(failures) == 1


@pytest.mark.parametrize("interrupts", [1, 3])
def test_an_interrupt_while_finishing_abandons_what_waits_and_is_handed_on_not_raised(
    con, writer: Writer, failures: list[BaseException], interrupts: int
):
    """A second Ctrl-C while the run ends (Bytewax closing the sink, the last batch still being
    resolved): raised from `finish` it would abort the process inside Bytewax. So would a third
    one, arriving while the batch under way is abandoned."""
    def on_signal(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # as the CLI's handler does the second time

    pipeline = BatchPipeline(con, writer, failures.append, max_waiting=100)
    writer.hold.set()
    pipeline.submit(batch(1))
    assert writer.started.wait(10)
    pipeline.submit(batch(2))
    main = threading.get_ident()

    def interrupt_then_let_go() -> None:
        for _ in range(interrupts):
            time.sleep(0.2)  # the main thread is waiting in `finish`, then in its abandon
            signal.pthread_kill(main, signal.SIGUSR1)
        time.sleep(0.2)
        writer.let_go()

    interrupter = threading.Thread(target=interrupt_then_let_go)
    escaped = False
    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        interrupter.start()
        try:
            pipeline.finish()
        except KeyboardInterrupt:
            escaped = True
    finally:
        while interrupter.is_alive():  # its later interrupts, if one left `finish`
            with contextlib.suppress(KeyboardInterrupt):
                interrupter.join()
        signal.signal(signal.SIGUSR1, previous)
    assert not escaped, "an interrupt left `finish`"
    assert [type(f) for f in failures] == [KeyboardInterrupt]
    assert writer.resolved == [[1]]  # the batch under way ends (here: no rollback to make)


@pytest.mark.parametrize("follow", [False, True], ids=["bulk load", "following"])
def test_only_a_following_engine_plans_without_some_optimizers_and_has_its_memory_limit(
    tmp_path: Path, follow: bool
):
    store = StoreConfig(memory_limit_mb=300, following_memory_limit_mb=400)
    config = dataclasses.replace(EngineConfig(), store=store)
    sink = MasterSink(tmp_path / "m.duckdb", DEFAULT_MODEL_PATH, config, follow=follow)
    partition = sink.build_part("master", "master", None)
    try:
        (disabled, memory_limit), = partition.resolver.con.execute(
            "SELECT current_setting('disabled_optimizers'), current_setting('memory_limit')"
        ).fetchall()
    finally:
        partition.close()
    expected = set(FOLLOWING_DISABLED_OPTIMIZERS) if follow else set()
    assert {name for name in disabled.split(",") if name} == expected
    # and its DuckDB has the memory a following engine is given, a load the other
    assert memory_limit == _memory_limit_of(400 if follow else 300)


def test_a_following_engine_compacts_as_it_stops_within_a_loads_memory_limit(tmp_path: Path):
    # the compaction at close rewrites row groups: on top of a following engine's full cache
    # it raised a 1M engine's RSS above anything it reached following
    store = StoreConfig(memory_limit_mb=300, following_memory_limit_mb=400)
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    configure_store(con, store, following=True)
    end_following(con, store)
    (memory_limit,), = con.execute("SELECT current_setting('memory_limit')").fetchall()
    assert memory_limit == _memory_limit_of(300)


def _memory_limit_of(megabytes: int) -> str:
    """How DuckDB states a memory limit of `megabytes` MB."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{megabytes}MB'")
    return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def _stored_rows(con: duckdb.DuckDBPyConnection) -> int:
    """Rows table `scratch` holds in storage, deleted ones not yet compacted away included."""
    (rows,), = con.execute(
        "SELECT sum(count) FROM pragma_storage_info('scratch') "
        "WHERE column_name = 'n' AND segment_type <> 'VALIDITY'").fetchall()
    return rows


@pytest.mark.parametrize("follow", [False, True], ids=["bulk load", "following"])
def test_a_following_engine_checkpoints_without_compacting_and_compacts_as_it_stops(
    tmp_path: Path, follow: bool
):
    # DuckDB reads row groups a checkpoint compacted far slower until the master is opened
    # again (engine.master_store.configure_store): a following engine leaves deleted rows
    # where they are until it stops
    db = tmp_path / "m.duckdb"
    partition = MasterSink(db, DEFAULT_MODEL_PATH, EngineConfig(), follow=follow).build_part(
        "master", "master", None)
    con = partition.resolver.con
    con.execute("CREATE TABLE scratch AS SELECT range AS n FROM range(400000)")
    con.execute("CHECKPOINT")
    con.execute("DELETE FROM scratch WHERE n % 10 < 6")
    con.execute("CHECKPOINT")
    while_running = _stored_rows(con)
    con.execute("DELETE FROM scratch WHERE n = 7")  # the log holds a change at close
    partition.close()
    with duckdb.connect(str(db)) as reopened:
        after_stop = _stored_rows(reopened)
    # (DuckDB compacts as many row groups as its rules allow, not always all of them)
    assert (while_running == 400_000) == follow
    assert after_stop < 400_000
