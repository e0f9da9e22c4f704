"""The writer's pipeline: batches resolved on a thread of their own while the next lines are
gathered, in order, and nothing resolved after a failure (its feed positions would pass over the
failed batch). A bulk load's batches one at a time; following, all that waits as one batch."""

import threading
import time
from collections.abc import Callable

import duckdb
import pytest

from engine.feed_positions import FeedPosition
from engine.feed_source import StopSignal
from engine.master_sink import BatchPipeline
from engine.resolver import PreparedBatch
from streams.canonical import updates_to_arrow


def batch(number: int) -> PreparedBatch:
    """An empty batch that carries its number as a feed position's line."""
    return PreparedBatch(updates_to_arrow([]), [], [FeedPosition(f"f{number}.jsonl", 0, number)])


def numbers(batch: PreparedBatch) -> list[int]:
    return [position.line for position in batch.positions]


@pytest.fixture
def failures() -> list[BaseException]:
    return []


@pytest.fixture
def pipeline_of(failures: list[BaseException]):
    con = duckdb.connect()
    made: list[BatchPipeline] = []

    def make(resolve: Callable[[PreparedBatch], None], **following) -> BatchPipeline:
        made.append(BatchPipeline(con, resolve, failures.append, **following))
        return made[-1]

    yield make
    con.close()


def test_batches_are_resolved_one_at_a_time_in_the_order_submitted(pipeline_of):
    resolved: list[list[int]] = []
    running = threading.Semaphore(1)

    def resolve(batch: PreparedBatch) -> None:
        assert running.acquire(blocking=False), "two batches resolved at once"
        time.sleep(0.01)
        resolved.append(numbers(batch))
        running.release()

    pipeline = pipeline_of(resolve)
    for number in range(20):
        pipeline.submit(batch(number))
    pipeline.finish()
    assert resolved == [[number] for number in range(20)]


def test_submit_returns_while_the_batch_is_resolved(pipeline_of):
    started, release = threading.Event(), threading.Event()

    def slow(_batch: PreparedBatch) -> None:
        started.set()
        release.wait(10)

    pipeline = pipeline_of(slow)
    pipeline.submit(batch(1))
    assert started.wait(10)  # resolving on the writer's thread while this one goes on
    release.set()
    pipeline.finish()


def test_following_the_batches_that_waited_are_resolved_as_one_in_order(pipeline_of):
    """What came while the writer was busy is one batch, as the lines that arrived during a
    batch were when Bytewax waited for the writer."""
    resolved: list[list[int]] = []
    started, release = threading.Event(), threading.Event()

    def resolve(batch: PreparedBatch) -> None:
        resolved.append(numbers(batch))
        started.set()
        release.wait(10)

    pipeline = pipeline_of(resolve, following=True, max_waiting=1000)
    pipeline.submit(batch(0))
    assert started.wait(10)
    for number in range(1, 6):
        pipeline.submit(batch(number))  # returns at once: the writer is busy
    release.set()
    pipeline.finish()
    assert resolved == [[0], [1, 2, 3, 4, 5]]


def test_following_batches_start_no_sooner_than_the_interval_apart(pipeline_of):
    """(`batch.max_latency_ms`; a pipeline that finishes resolves what waits at once.)"""
    starts: list[float] = []
    second = threading.Event()

    def resolve(_batch: PreparedBatch) -> None:
        starts.append(time.monotonic())
        if len(starts) == 2:
            second.set()

    pipeline = pipeline_of(resolve, following=True, min_interval_s=0.2, max_waiting=1000)
    pipeline.submit(batch(0))
    time.sleep(0.05)
    pipeline.submit(batch(1))
    assert second.wait(10)
    pipeline.finish()
    assert starts[1] - starts[0] >= 0.2


def failing(_batch: PreparedBatch) -> None:
    raise RuntimeError("writing the master failed: disk full")


def test_a_failure_stops_later_batches_and_is_raised_to_the_dataflow(
    pipeline_of, failures: list[BaseException]
):
    resolved: list[list[int]] = []

    def resolve(batch: PreparedBatch) -> None:
        if numbers(batch) == [0]:
            failing(batch)
        resolved.append(numbers(batch))

    pipeline = pipeline_of(resolve)
    pipeline.submit(batch(0))
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.submit(batch(1))
    pipeline.finish()
    assert resolved == []
    assert [str(f) for f in failures] == ["writing the master failed: disk full"]


def test_the_last_batchs_failure_is_handed_on_when_the_pipeline_finishes(
    pipeline_of, failures: list[BaseException]
):
    pipeline = pipeline_of(failing)
    pipeline.submit(batch(0))
    pipeline.finish()
    assert [str(f) for f in failures] == ["writing the master failed: disk full"]


def test_a_followed_streams_failure_stops_the_feeds_being_read(
    pipeline_of, failures: list[BaseException]
):
    """Raised at once, not at a followed feed's next line, which may be hours away."""
    stop = StopSignal()
    pipeline = pipeline_of(failing, following=True, max_waiting=1000, stop=stop)
    pipeline.submit(batch(0))
    deadline = time.monotonic() + 10
    while not stop.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stop.is_set()
    pipeline.finish()
    assert [str(f) for f in failures] == ["writing the master failed: disk full"]
