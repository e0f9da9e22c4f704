"""The bulk load's pipeline: one batch resolved while the next is gathered, in order, and
nothing resolved after a failure (its feed positions would pass over the failed batch); a
following engine's master planned without the optimizers its small batches do without."""

import threading
import time
from pathlib import Path

import duckdb
import pytest

from engine.config import EngineConfig
from engine.master_sink import BatchPipeline, MasterSink
from engine.master_store import FOLLOWING_DISABLED_OPTIMIZERS
from linkage_models.scoring import DEFAULT_MODEL_PATH


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


@pytest.mark.parametrize("follow", [False, True], ids=["bulk load", "following"])
def test_only_a_following_engine_plans_without_the_optimizers_its_batches_do_without(
    tmp_path: Path, follow: bool
):
    sink = MasterSink(tmp_path / "m.duckdb", DEFAULT_MODEL_PATH, EngineConfig(), follow=follow)
    partition = sink.build_part("master", "master", None)
    try:
        (disabled,), = partition.resolver.con.execute(
            "SELECT current_setting('disabled_optimizers')").fetchall()
    finally:
        partition.close()
    expected = set(FOLLOWING_DISABLED_OPTIMIZERS) if follow else set()
    assert {name for name in disabled.split(",") if name} == expected
