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
from engine.idle_checkpoint import IdleCheckpointer
from engine.intake import DeadLetter
from engine.master_store import ENGINE_OPEN_WAIT_S, configure_store, open_master
from engine.resolver import BatchOutcome, Resolver
from linkage_models.scoring import CompiledModel
from streams.canonical import Update

MASTER_PARTITION = "master"
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
        resolver = Resolver(con, model, self.config)  # its setup commits before people's acts
        if self.on_ready:
            self.on_ready(f"master ready: {resolver.records_indexed:,} records indexed in memory "
                          f"in {time.monotonic() - started:.1f} s")
        service = self.service(con, self.db_path, model) if self.service else _NoService()
        idle = IdleCheckpointer(
            con, Path(f"{self.db_path}.wal"), service.write_lock,
            self.config.store.idle_checkpoint_after_s, self.config.store.idle_checkpoint_min_mb,
        ) if self.follow else None
        return MasterWriterPartition(resolver, service, self.on_batch, idle)


class MasterWriterPartition(StatefulSinkPartition[Batch, None]):
    def __init__(
        self,
        resolver: Resolver,
        service: MasterService,
        on_batch: Callable[[BatchOutcome], None] | None,
        idle: IdleCheckpointer | None = None,
    ) -> None:
        self.resolver = resolver
        self.service = service
        self.on_batch = on_batch
        self.idle = idle

    def write_batch(self, values: list[Batch]) -> None:
        for batch in values:
            if all(isinstance(item, FollowStarted) for item in batch):
                continue  # it only had Bytewax build this partition: nothing to write
            with self.service.write_lock:  # a person's act never races a batch
                outcome = self.resolver.resolve(batch)
                if self.idle is not None:
                    self.idle.wrote()
            if self.on_batch is not None:
                self.on_batch(outcome)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        if self.idle is not None:
            self.idle.stop()
        self.service.stop()
        self.resolver.con.close()
