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
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import duckdb
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from engine.config import EngineConfig
from engine.feed_positions import FeedPosition, FollowStarted
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
    ) -> None:
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
        configure_store(con, self.config.store, following=self.follow)
        model = CompiledModel.from_json(self.model_path)
        started = time.monotonic()
        # its setup commits before people's acts
        resolver = Resolver(con, model, self.config, following=self.follow)
        if self.follow:
            resolver.warm_cache()
        if self.on_ready:
            self.on_ready(f"master ready: {resolver.records_indexed:,} records indexed in memory "
                          f"in {time.monotonic() - started:.1f} s")
        service = self.service(con, self.db_path, model) if self.service else _NoService()
        idle = IdleCheckpointer(
            con, Path(f"{self.db_path}.wal"), service.write_lock,
            self.config.store.idle_checkpoint_after_s, self.config.store.idle_checkpoint_min_mb,
        ) if self.follow else None
        # Following, a batch is resolved as it closes (its latency is the point); a backlog's
        # next batch is read and parsed while this one is resolved.
        writer = None if self.follow else BatchPipeline(resolver.con, self.failures.append)
        return MasterWriterPartition(resolver, service, self.on_batch, idle, writer)


class MasterWriterPartition(StatefulSinkPartition[Batch, None]):
    def __init__(
        self,
        resolver: Resolver,
        service: MasterService,
        on_batch: Callable[[BatchOutcome], None] | None,
        idle: IdleCheckpointer | None = None,
        pipeline: BatchPipeline | None = None,
    ) -> None:
        self.resolver = resolver
        self.service = service
        self.on_batch = on_batch
        self.idle = idle
        self.pipeline = pipeline

    def write_batch(self, values: list[Batch]) -> None:
        for batch in values:
            if all(isinstance(item, FollowStarted) for item in batch):
                continue  # it only had Bytewax build this partition: nothing to write
            if self.pipeline is None:
                self._resolve(batch)
            else:  # prepared here, while the writer resolves the previous batch
                prepared = PreparedBatch.of(batch)
                self.pipeline.submit(lambda prepared=prepared: self._resolve(prepared))

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.finish()
        if self.idle is not None:
            self.idle.stop()
        self.service.stop()
        self.resolver.con.close()

    def _resolve(self, batch: Batch | PreparedBatch) -> None:
        with self.service.write_lock:  # a person's act never races a batch
            outcome = self.resolver.resolve(batch)
            if self.idle is not None:
                self.idle.wrote()
        if self.on_batch is not None:
            self.on_batch(outcome)


class BatchPipeline:
    """Resolves one batch at a time on a thread of its own, so that Bytewax reads and parses the
    next batch meanwhile (DuckDB releases Python's lock while it works): a bulk load's time
    between batches (reading, parsing, ~13% of it at 100k children, ~28% at 1M) overlaps the
    resolving.

    Batches are resolved in the order submitted, each after the previous one committed; at most
    one is being resolved while the next is gathered, so memory holds two batches, not more.
    After a failure no later batch is resolved (its feed positions would pass over the failed
    batch's lines); the failure is raised at the next `submit`, or given to `on_failure` if
    `finish` finds it (the last batch failed). A process that exits meanwhile (a second Ctrl-C)
    interrupts the batch being resolved, which then rolls back: the next run reads its lines
    again."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, on_failure: Callable[[BaseException], None]
    ) -> None:
        self._con = con
        self._on_failure = on_failure
        self._work: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=1)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="master-writer", daemon=True)
        self._thread.start()
        atexit.register(self._abandon)

    def submit(self, resolve: Callable[[], None]) -> None:
        """Resolve `resolve`'s batch once the previous one is done (waits for it)."""
        self._work.join()
        self._raise_failure()
        self._work.put(resolve)

    def finish(self) -> None:
        """Wait for the last batch and stop the thread; a failure goes to `on_failure`."""
        self._work.join()
        self._work.put(None)
        self._thread.join()
        atexit.unregister(self._abandon)
        if self._failure is not None:
            self._on_failure(self._failure)

    def _run(self) -> None:
        while (resolve := self._work.get()) is not None:
            try:
                if self._failure is None:
                    resolve()
            except BaseException as err:  # raised in the dataflow's thread, not lost here
                self._failure = err
            finally:
                self._work.task_done()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _abandon(self) -> None:
        """At exit with the thread still running: no further batch, the current one rolled
        back."""
        if not self._thread.is_alive():
            return
        self._failure = self._failure or RuntimeError("the process exited")
        self._con.interrupt()
        with contextlib.suppress(queue.Full):
            self._work.put(None, timeout=_ABANDON_WAIT_S)
        self._thread.join(timeout=_ABANDON_WAIT_S)
