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
from pathlib import Path
from typing import Protocol

import duckdb
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from engine.config import EngineConfig
from engine.feed_positions import FeedPosition, FollowStarted
from engine.feed_source import StopSignal
from engine.idle_checkpoint import IdleCheckpointer
from engine.intake import DeadLetter
from engine.master_store import (
    ENGINE_OPEN_WAIT_S,
    configure_store,
    end_following,
    open_master,
)
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
        self.db_path = db_path
        self.stop = stop
        self.follow = follow
        self.on_ready = on_ready
        self.model_path = model_path
        self.config = config
        self.on_batch = on_batch
        self.owns_master = owns_master
        self.service = service
        # a batch that failed on the writer's thread: the source is stopped (`stop`) and the
        # run raises it once the dataflow has ended (`raise_failure`)
        self.failures: list[BaseException] = []

    def raise_failure(self) -> None:
        """Raise the failure of a batch, if one failed."""
        if self.failures:
            raise self.failures[0]

    def _failed(self, err: BaseException) -> None:
        self.failures.append(err)
        if self.stop is not None:
            self.stop.set()

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
        # Following, what arrives while a batch is resolved is resolved next, together.
        max_waiting = self.config.batch.max_records if self.follow else None
        return MasterWriterPartition(resolver, service, self.on_batch, self._failed,
                                     idle, max_waiting)


class MasterWriterPartition(StatefulSinkPartition[Batch, None]):
    """Hands each batch, prepared on Bytewax's thread, to the writer (`BatchPipeline`, with
    `max_waiting`), which resolves it under the service's write lock."""

    def __init__(
        self,
        resolver: Resolver,
        service: MasterService,
        on_batch: Callable[[BatchOutcome], None] | None,
        on_failure: Callable[[BaseException], None],
        idle: IdleCheckpointer | None = None,
        max_waiting: int | None = None,
    ) -> None:
        self.resolver = resolver
        self.service = service
        self.on_batch = on_batch
        self.idle = idle
        self.pipeline = BatchPipeline(resolver.con, self._resolve, on_failure, max_waiting)

    def write_batch(self, values: list[Batch]) -> None:
        for batch in values:
            if all(isinstance(item, FollowStarted) for item in batch):
                continue  # it only had Bytewax build this partition: nothing to write
            self.pipeline.submit(PreparedBatch.of(batch))

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.pipeline.finish()
        if self.idle is not None:  # following
            self.idle.stop()
            end_following(self.resolver.con, self.resolver.config.store)
        self.service.stop()
        self.resolver.con.close()

    def _resolve(self, batch: PreparedBatch) -> None:
        with self.service.write_lock:  # a person's act never races a batch
            outcome = self.resolver.resolve(batch)
            if self.idle is not None:
                self.idle.wrote()
        if self.on_batch is not None:
            self.on_batch(outcome)


class BatchPipeline:
    """Resolves batches on a thread of its own, so that Bytewax reads and parses the next ones
    meanwhile (DuckDB releases Python's lock while it works), in the order submitted, each after
    the previous one committed.

    A bulk load (`max_waiting=None`) resolves one batch at a time as submitted: `submit` waits
    until the previous batch is resolved, so memory holds two batches (one resolved, one
    gathered), and its time between batches (reading, parsing, ~13% of it at 100k children,
    ~28% at 1M) overlaps the resolving.
    A following engine (`max_waiting` updates) resolves together, as one batch, whatever was
    submitted while it resolved the previous one: the writer starts the next batch as soon as
    one commits, on lines already read and parsed, and a higher rate makes larger batches
    (group commit). `submit` waits only while the batches waiting hold `max_waiting` items.

    A failure goes to `on_failure` at once (from the writer's thread), and no later batch is
    resolved: its feed positions would pass over the failed batch's lines. A process that exits
    meanwhile (a second Ctrl-C) interrupts the batch being resolved, which then rolls back: the
    next run reads its lines again."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, resolve: Callable[[PreparedBatch], None],
        on_failure: Callable[[BaseException], None], max_waiting: int | None = None,
    ) -> None:
        self._con = con
        self._resolve = resolve
        self._on_failure = on_failure
        self._max_waiting = max_waiting
        self._changed = threading.Condition()
        self._waiting: list[PreparedBatch] = []
        self._busy = False  # resolving a batch taken from `_waiting`
        self._finishing = False
        self._failure: BaseException | None = None
        # set when the writer's thread ends; waited on rather than joining the thread: a join
        # interrupted by a signal marks the thread stopped while it still runs (CPython 3.11)
        self._stopped = threading.Event()
        threading.Thread(target=self._run, name="master-writer", daemon=True).start()
        atexit.register(self._abandon)

    def submit(self, batch: PreparedBatch) -> None:
        """Hand `batch` to the writer (waits while there is no room: see the class); after a
        failure, nothing more is resolved."""
        with self._changed:
            self._changed.wait_for(lambda: self._failure is not None or self._has_room(batch))
            if self._failure is None:
                self._waiting.append(batch)
                self._changed.notify_all()

    def finish(self) -> None:
        """Resolve what waits, and stop the thread. Interrupted meanwhile (a second Ctrl-C),
        roll back the batch being resolved, resolve no other, and hand the interrupt to
        `on_failure` instead of raising it: Bytewax calls this from its close of the sink, and
        an exception raised there aborts the process (SIGABRT, a Rust backtrace, no "interrupted"
        line)."""
        with self._changed:
            self._finishing = True
            self._changed.notify_all()
        try:
            self._stopped.wait()
        except KeyboardInterrupt as interrupt:
            self._abandon_through_interrupts()
            self._on_failure(interrupt)
        atexit.unregister(self._abandon)

    def _abandon_through_interrupts(self) -> None:
        """`_abandon`, begun again if a further interrupt (a third Ctrl-C) breaks into it: it
        must not leave `finish` either."""
        while True:
            try:
                self._abandon()
                return
            except KeyboardInterrupt:
                continue

    def _has_room(self, batch: PreparedBatch) -> bool:
        if not self._waiting:
            return self._max_waiting is not None or not self._busy
        if self._max_waiting is None:
            return False
        waiting = sum(b.items for b in self._waiting)
        return waiting + batch.items <= self._max_waiting

    def _run(self) -> None:
        try:
            while batches := self._next_batches():
                self._resolve_joined(batches)
        finally:
            self._stopped.set()

    def _resolve_joined(self, batches: list[PreparedBatch]) -> None:
        try:
            if self._failure is None:
                self._resolve(PreparedBatch.joined(batches))
        except BaseException as err:
            self._failure = err
            self._on_failure(err)
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()

    def _next_batches(self) -> list[PreparedBatch]:
        """Every batch waiting, once there is one (none: finished)."""
        with self._changed:
            self._changed.wait_for(lambda: self._waiting or self._finishing)
            batches, self._waiting = self._waiting, []
            self._busy = bool(batches)
            self._changed.notify_all()
            return batches

    def _abandon(self) -> None:
        """At exit with the writer still running, or interrupted while finishing: no further
        batch, the current one rolled back."""
        if self._stopped.is_set():
            return
        with self._changed:
            self._failure = self._failure or RuntimeError("the process exited")
            self._waiting.clear()
            self._finishing = True
            self._changed.notify_all()
        self._con.interrupt()
        self._stopped.wait(timeout=_ABANDON_WAIT_S)
