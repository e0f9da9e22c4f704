"""The bulk load's pipeline: one batch resolved while the next is gathered, in order, and
nothing resolved after a failure (its feed positions would pass over the failed batch)."""

import threading
import time

import duckdb
import pytest

from engine.master_sink import BatchPipeline


@pytest.fixture
def failures() -> list[BaseException]:
    return []


@pytest.fixture
def pipeline(failures: list[BaseException]):
    con = duckdb.connect()
    pipeline = BatchPipeline(con, failures.append)
    yield pipeline
    con.close()


def test_batches_are_resolved_one_at_a_time_in_the_order_submitted(pipeline: BatchPipeline):
    resolved: list[int] = []
    running = threading.Semaphore(1)

    def batch(number: int):
        def resolve() -> None:
            assert running.acquire(blocking=False), "two batches resolved at once"
            time.sleep(0.01)
            resolved.append(number)
            running.release()
        return resolve

    for number in range(20):
        pipeline.submit(batch(number))
    pipeline.finish()
    assert resolved == list(range(20))


def test_submit_returns_while_the_batch_is_resolved(pipeline: BatchPipeline):
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)

    pipeline.submit(slow)
    assert started.wait(10)  # resolving on the writer's thread while this one goes on
    release.set()
    pipeline.finish()


def failing() -> None:
    raise RuntimeError("writing the master failed: disk full")


def test_a_failure_stops_later_batches_and_is_raised_to_the_dataflow(
    pipeline: BatchPipeline, failures: list[BaseException]
):
    resolved: list[str] = []
    pipeline.submit(failing)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.submit(lambda: resolved.append("next"))
    pipeline.finish()
    assert resolved == []
    assert [str(f) for f in failures] == ["writing the master failed: disk full"]


def test_the_last_batchs_failure_is_handed_on_when_the_pipeline_finishes(
    pipeline: BatchPipeline, failures: list[BaseException]
):
    pipeline.submit(failing)
    pipeline.finish()
    assert [str(f) for f in failures] == ["writing the master failed: disk full"]
