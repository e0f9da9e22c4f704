"""Bytewax output: the single-writer partition that owns the master DuckDB file.

Every micro-batch goes to one partition (`master`), on whichever worker owns it; that worker opens
the DuckDB file and the model when the partition is built (at the stream's first item: following,
that is the source's `FollowStarted`, so before any line arrives), so in a cluster only one
process ever writes the master. Writes are idempotent per (feed, record_id), so a replay after a
crash (Bytewax recovery is at-least-once) has exactly-once effect; the partition keeps no state.

What else the process serves on the master while it holds it (people's searches and acts: DuckDB
lets one process open the file) is composed by the caller as a `MasterService` factory: the
engine core never imports governance or the web application.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

import duckdb
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from engine.config import EngineConfig
from engine.feed_positions import FeedPosition, FollowStarted
from engine.feed_source import StopSignal
from engine.idle_checkpoint import IdleCheckpointer
from engine.intake import DeadLetter
from engine.master_store import ENGINE_OPEN_WAIT_S, configure_store, open_master
from engine.resolver import BatchOutcome, PreparedBatch, Resolver
from linkage_models.scoring import CompiledModel
from streams.canonical import Update

MASTER_PARTITION = "master"
# How long an exiting process waits for the batch being resolved to roll back.
_ABANDON_WAIT_S = 30.0
Batch = list[Update | DeadLetter | FeedPosition | FollowStarted]


class MasterService(Protocol):
    """Something served on the engine's master connection: batches are written under its
    `write_lock`, and `stop()` ends it when the partition closes."""

    write_lock: contextlib.AbstractContextManager

    def stop(self) -> None: ...


# (the engine's connection, the master's path, the model) -> the running service
ServiceFactory = Callable[[duckdb.DuckDBPyConnection, Path, CompiledModel], MasterService]


class _NoService:
    def __init__(self) -> None:
        self.write_lock = threading.Lock()

    def stop(self) -> None:
        return None


class MasterSink(FixedPartitionedSink[Batch, None]):
    """Resolves each micro-batch into the master; `on_batch` is told each batch's outcome.

    Only the process that `owns_master` offers the partition (in a cluster: process 0), so the
    DuckDB file is opened by that process alone.
    """

    def __init__(
        self,
        db_path: Path,
        model_path: Path,
        config: EngineConfig,
        on_batch: Callable[[BatchOutcome], None] | None = None,
        owns_master: bool = True,
        service: ServiceFactory | None = None,
        on_ready: Callable[[str], None] | None = None,
        follow: bool = False,
        stop: StopSignal | None = None,
    ) -> None:
        """`stop` is set when a batch fails, so that the feeds stop being read."""
        self.stop = stop
        self.db_path = db_path
        self.follow = follow
        self.on_ready = on_ready
        self.model_path = model_path
        self.config = config
        self.on_batch = on_batch
        self.owns_master = owns_master
        self.service = service
        # a failure found as the partition closes: Bytewax would turn an error raised there
        # into a panic, so the run raises it once the dataflow has ended (`raise_failure`)
        self.failures: list[BaseException] = []

    def raise_failure(self) -> None:
        """Raise the failure of a batch resolved after the dataflow's last write, if any."""
        if self.failures:
            raise self.failures[0]

    def list_parts(self) -> list[str]:
        return [MASTER_PARTITION] if self.owns_master else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> MasterWriterPartition:
        con = open_master(self.db_path, wait_s=ENGINE_OPEN_WAIT_S)
        configure_store(con, self.config.store)
        model = CompiledModel.from_json(self.model_path)
        started = time.monotonic()
        # its setup commits before people's acts
        resolver = Resolver(con, model, self.config, following=self.follow)
        if self.on_ready:
            self.on_ready(f"master ready: {resolver.records_indexed:,} records indexed in memory "
                          f"in {time.monotonic() - started:.1f} s")
        service = self.service(con, self.db_path, model) if self.service else _NoService()
        idle = IdleCheckpointer(
            con, Path(f"{self.db_path}.wal"), service.write_lock,
            self.config.store.idle_checkpoint_after_s, self.config.store.idle_checkpoint_min_mb,
        ) if self.follow else None
        pipeline = partial(BatchPipeline, con, on_failure=self.failures.append,
                           following=self.follow, stop=self.stop,
                           min_interval_s=self.config.batch.max_latency_ms / 1000,
                           max_waiting=self.config.batch.max_records)
        return MasterWriterPartition(resolver, service, self.on_batch, idle, pipeline)


class MasterWriterPartition(StatefulSinkPartition[Batch, None]):
    def __init__(
        self,
        resolver: Resolver,
        service: MasterService,
        on_batch: Callable[[BatchOutcome], None] | None,
        idle: IdleCheckpointer | None,
        pipeline: Callable[[Callable[[PreparedBatch], None]], BatchPipeline],
    ) -> None:
        """`pipeline(resolve)`: the writer's thread, resolving with `resolve`."""
        self.resolver = resolver
        self.service = service
        self.on_batch = on_batch
        self.idle = idle
        self.pipeline = pipeline(self.resolve)

    def write_batch(self, values: list[Batch]) -> None:
        for batch in values:
            if all(isinstance(item, FollowStarted) for item in batch):
                continue  # it only had Bytewax build this partition: nothing to write
            # prepared here, while the writer resolves the previous batch
            self.pipeline.submit(PreparedBatch.of(batch))

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.pipeline.finish()
        if self.idle is not None:
            self.idle.stop()
        self.service.stop()
        self.resolver.con.close()

    def resolve(self, batch: PreparedBatch) -> None:
        with self.service.write_lock:  # a person's act never races a batch
            outcome = self.resolver.resolve(batch)
            if self.idle is not None:
                self.idle.wrote()
        if self.on_batch is not None:
            self.on_batch(outcome)


class BatchPipeline:
    """Resolves batches on a thread of its own, so that Bytewax reads and parses the next lines
    meanwhile (DuckDB releases Python's lock while it works).

    A bulk load (`following=False`): its time between batches (reading, parsing, ~13% of it at
    100k children, ~28% at 1M) overlaps the resolving. Batches are resolved in the order
    submitted, each after the previous one committed; at most one is being resolved while the
    next is gathered, so memory holds two batches, not more.

    Following (`following=True`): `submit` hands a batch over at once, and the writer resolves
    every batch handed over since its last one as one batch (in the order submitted, which is
    the feeds' order), no sooner than `min_interval` after the last one started. So the lines
    that arrived while a batch was resolved are read and parsed meanwhile, not after its commit
    (~10 ms of a busy 1M-children batch's cycle, 2026-12-04), and the next batch takes them all,
    as it took them when Bytewax waited for the writer. `submit` waits only while
    `max_waiting` updates wait already (a backlog waits in the feed files, not in memory).

    After a failure no later batch is resolved (its feed positions would pass over the failed
    batch's lines); the failure is raised at the next `submit`, or given to `on_failure` if
    `finish` finds it (the last batch failed), and `stop` is set (the source stops reading,
    rather than wait for a followed feed's next line). A process that exits meanwhile (a second
    Ctrl-C) interrupts the batch being resolved, which then rolls back: the next run reads its
    lines again, as it does the lines of batches that waited."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, resolve: Callable[[PreparedBatch], None],
        on_failure: Callable[[BaseException], None], following: bool = False,
        min_interval_s: float = 0.0, max_waiting: int = 0, stop: StopSignal | None = None,
    ) -> None:
        self._con = con
        self._stop = stop
        self._resolve = resolve
        self._on_failure = on_failure
        self._following = following
        self._min_interval_s = min_interval_s
        self._max_waiting = max_waiting
        self._waiting: list[PreparedBatch] = []
        self._busy = False
        self._finishing = False
        self._last_start = float("-inf")
        self._changed = threading.Condition()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="master-writer", daemon=True)
        self._thread.start()
        atexit.register(self._abandon)

    def submit(self, batch: PreparedBatch) -> None:
        """Resolve `batch` after those submitted before (a bulk load waits for the previous
        one; following, only while `max_waiting` updates wait)."""
        with self._changed:
            self._changed.wait_for(lambda: self._failure is not None or self._has_room())
            self._raise_failure()
            self._waiting.append(batch)
            self._changed.notify_all()

    def finish(self) -> None:
        """Wait for the batches submitted and stop the thread; a failure goes to `on_failure`."""
        with self._changed:
            self._finishing = True
            self._changed.notify_all()
        self._thread.join()
        atexit.unregister(self._abandon)
        if self._failure is not None:
            self._on_failure(self._failure)

    def _has_room(self) -> bool:
        if not self._following:
            return not self._waiting and not self._busy
        return sum(b.updates.num_rows for b in self._waiting) < self._max_waiting

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._resolve(batch)
            except BaseException as err:  # raised in the dataflow's thread, not lost here
                self._failure = err
                if self._stop is not None:  # a followed stream ends now, not at its next line
                    self._stop.set()
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _next_batch(self) -> PreparedBatch | None:
        """The batches waiting, as one once `min_interval` has passed since the last started
        (None: finished, or failed)."""
        with self._changed:
            while True:
                if self._failure is not None or (self._finishing and not self._waiting):
                    return None
                wait_s = self._last_start + self._min_interval_s - time.monotonic()
                if self._waiting and (wait_s <= 0 or self._finishing):
                    break
                self._changed.wait(wait_s if self._waiting else None)
            taken = self._waiting[:] if self._following else self._waiting[:1]
            del self._waiting[:len(taken)]
            self._busy = True
            self._last_start = time.monotonic()
            self._changed.notify_all()
        return PreparedBatch.merged(taken)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _abandon(self) -> None:
        """At exit with the thread still running: no further batch, the current one rolled
        back."""
        if not self._thread.is_alive():
            return
        with self._changed:
            self._failure = self._failure or RuntimeError("the process exited")
            self._changed.notify_all()
        self._con.interrupt()
        self._thread.join(timeout=_ABANDON_WAIT_S)
