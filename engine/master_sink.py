"""Bytewax output: the single-writer partition that owns the master DuckDB file.

Every micro-batch goes to one partition (`master`), on whichever worker owns it; that worker opens
the DuckDB file and the model when the partition is built, so in a cluster only one process ever
writes the master. Writes are idempotent per (feed, record_id), so a replay after a crash
(Bytewax recovery is at-least-once) has exactly-once effect; the partition keeps no state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import duckdb
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from engine.config import EngineConfig
from engine.governance.service import ServiceHandle, start_service
from engine.intake import DeadLetter
from engine.master_store import (
    MasterStoreError,
    checkpoint_and_vacuum,
    configure_checkpoints,
    open_master,
)
from engine.resolver import BatchOutcome, Resolver
from linkage_models.scoring import CompiledModel
from streams.canonical import Update

MASTER_PARTITION = "master"
Batch = list[Update | DeadLetter]


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
        following: bool = False,
    ) -> None:
        self.db_path = db_path
        self.model_path = model_path
        self.config = config
        self.on_batch = on_batch
        self.owns_master = owns_master
        self.following = following

    def list_parts(self) -> list[str]:
        return [MASTER_PARTITION] if self.owns_master else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> MasterWriterPartition:
        con = open_master(self.db_path)
        configure_checkpoints(con, self.config.store, vacuum=not self.following)
        model = CompiledModel.from_json(self.model_path)
        # Search and administrative acts are served by this process while it holds the master.
        service = start_service(con, self.db_path, model)
        resolver = Resolver(con, model, self.config)
        vacuum_every = self.config.store.vacuum_interval_s if self.following else None
        return MasterWriterPartition(resolver, service, self.on_batch, vacuum_every)


class MasterWriterPartition(StatefulSinkPartition[Batch, None]):
    """Resolves batches; with `vacuum_every` (seconds: following), vacuums the master that often
    and at the end (without it, every checkpoint vacuums: engine.config.StoreConfig)."""

    def __init__(
        self,
        resolver: Resolver,
        service: ServiceHandle,
        on_batch: Callable[[BatchOutcome], None] | None,
        vacuum_every: float | None = None,
    ) -> None:
        self.resolver = resolver
        self.service = service
        self.on_batch = on_batch
        self.vacuum_every = vacuum_every
        self._last_vacuum = time.monotonic()

    def write_batch(self, values: list[Batch]) -> None:
        for batch in values:
            with self.service.write_lock:  # a shield or retention act never races a batch
                outcome = self.resolver.resolve(batch)
                if self._vacuum_due():
                    self._vacuum()
            if self.on_batch is not None:
                self.on_batch(outcome)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        with self.service.write_lock:
            if self.vacuum_every is not None:
                self._vacuum()
        self.service.stop()
        self.resolver.con.close()

    def _vacuum_due(self) -> bool:
        return (
            self.vacuum_every is not None
            and time.monotonic() - self._last_vacuum >= self.vacuum_every
        )

    def _vacuum(self) -> None:
        try:
            checkpoint_and_vacuum(self.resolver.con)
        except duckdb.Error as err:
            raise MasterStoreError(f"checkpointing the master failed: {err}") from err
        self._last_vacuum = time.monotonic()
