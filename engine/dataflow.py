"""The engine's Bytewax dataflow and how it is run (one worker, several, or a cluster).

    feeds (chunks of lines, one partition) -> parse (Update | DeadLetter per line)
        -> micro-batch (one key) -> master (one partition: resolve + upsert)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from bytewax.testing import run_main

from engine.batcher import MicroBatcher
from engine.config import EngineConfig
from engine.feed_source import FeedFilesSource, StopSignal
from engine.intake import FeedParser
from engine.master_sink import MASTER_PARTITION, MasterSink, ServiceFactory
from engine.resolver import BatchOutcome
from streams.canonical import FEEDS


@dataclass(frozen=True)
class RunOptions:
    """Where and how `contactpoint run` runs."""

    feeds_dir: Path
    db_path: Path
    model_path: Path
    config: EngineConfig
    registered_feeds: tuple[str, ...] = FEEDS
    follow: bool = False
    workers: int = 1
    process_id: int | None = None
    addresses: tuple[str, ...] = ()
    # What the engine process also serves on the master (the CLI composes governance here).
    service: ServiceFactory | None = None

    @property
    def owns_master(self) -> bool:
        """Whether this process writes the master (in a cluster, process 0 does)."""
        return self.process_id in (None, 0)

    @property
    def recovery_dir(self) -> Path:
        """Bytewax's recovery store lives beside the master file."""
        return self.db_path.with_name(self.db_path.name + ".recovery")


def build_flow(
    options: RunOptions,
    stop: StopSignal,
    on_batch: Callable[[BatchOutcome], None] | None = None,
) -> Dataflow:
    config = options.config
    flow = Dataflow("contactpoint")
    source = FeedFilesSource(
        options.feeds_dir,
        options.registered_feeds,
        follow=options.follow,
        lines_per_read=config.source.lines_per_read,
        poll_interval=timedelta(milliseconds=config.source.poll_interval_ms),
        stop=stop,
        offered=options.owns_master,
    )
    chunks = op.input("feeds", flow, source)
    parsed = op.map("parse", chunks, FeedParser(frozenset(options.registered_feeds)).parse_chunk)
    keyed = op.key_on("to_master", parsed, lambda _item: MASTER_PARTITION)
    # A latency bound matters only while following; a bulk load batches by size alone.
    max_latency = timedelta(milliseconds=config.batch.max_latency_ms) if options.follow else None
    size = config.batch.max_records
    batches = op.stateful_batch(
        "micro_batch", keyed, lambda state: MicroBatcher(size, max_latency, state)
    )
    sink = MasterSink(
        options.db_path, options.model_path, config, on_batch, owns_master=options.owns_master,
        service=options.service,
    )
    op.output("master", batches, sink)
    return flow


def run_flow(flow: Dataflow, options: RunOptions) -> None:
    """Run to the end of the feeds (or until stopped, with `follow`), with recovery if enabled."""
    recovery = _recovery_config(options)
    epoch = timedelta(seconds=options.config.recovery.snapshot_interval_s)
    if options.addresses:
        cli_main(
            flow,
            workers_per_process=options.workers,
            process_id=options.process_id,
            addresses=list(options.addresses),
            epoch_interval=epoch,
            recovery_config=recovery,
        )
    elif options.workers > 1:
        cli_main(
            flow, workers_per_process=options.workers, epoch_interval=epoch,
            recovery_config=recovery,
        )
    else:
        run_main(flow, epoch_interval=epoch, recovery_config=recovery)


def _recovery_config(options: RunOptions) -> RecoveryConfig | None:
    if not options.config.recovery.enabled:
        return None
    if options.owns_master and not options.recovery_dir.exists():
        options.recovery_dir.mkdir(parents=True)
        init_db_dir(options.recovery_dir, 1)
    return RecoveryConfig(options.recovery_dir)
