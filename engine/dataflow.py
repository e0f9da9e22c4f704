"""The engine's Bytewax dataflow and how it is run (one worker, several, or a cluster).

    feeds (chunks of lines, one partition) -> parse (Update | DeadLetter per line, then the
        chunk's FeedPosition) -> micro-batch (one key) -> master (one partition: resolve + upsert,
        positions saved in the batch's transaction)

The run starts at the feed positions the master holds; Bytewax's own recovery store is not used:
everything it would hold (source positions, a batch being gathered) follows from the master's
positions, and a store that disagrees with the master (copied from another master, or from later
in time) could only skip lines or bring in foreign ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.run import cli_main
from bytewax.testing import run_main

from engine.batcher import MicroBatcher
from engine.config import EngineConfig
from engine.feed_positions import FileOffsets, is_feed_line, load_feed_positions
from engine.feed_source import FeedFilesSource, StopSignal
from engine.intake import FeedParser
from engine.master_sink import MASTER_PARTITION, MasterSink, ServiceFactory
from engine.master_store import ENGINE_OPEN_WAIT_S, open_master
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


@dataclass(frozen=True)
class EngineFlow:
    """The dataflow, and its sink (which holds a failure found as the dataflow ended)."""

    dataflow: Dataflow
    sink: MasterSink


def build_flow(
    options: RunOptions,
    stop: StopSignal,
    on_batch: Callable[[BatchOutcome], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> EngineFlow:
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
        start=_master_positions(options),
        chunk_boundary=config.batch.max_records,
        watch_interval=timedelta(milliseconds=config.source.watch_interval_ms)
        if config.source.watch_interval_ms else None,
    )
    chunks = op.input("feeds", flow, source)
    parsed = op.map("parse", chunks, FeedParser(frozenset(options.registered_feeds)).parse_chunk)
    keyed = op.key_on("to_master", parsed, lambda _item: MASTER_PARTITION)
    size = config.batch.max_records
    batches = op.stateful_batch(
        "micro_batch", keyed,
        lambda state: MicroBatcher(size, options.follow, state, counts=is_feed_line),
    )
    sink = MasterSink(
        options.db_path, options.model_path, config, on_batch, owns_master=options.owns_master,
        service=options.service, on_ready=on_ready, follow=options.follow, stop=stop,
    )
    op.output("master", batches, sink)
    return EngineFlow(flow, sink)


def run_flow(engine_flow: EngineFlow, options: RunOptions) -> None:
    """Run to the end of the feeds (or until stopped, with `follow`); a batch that failed to
    reach the master is raised (MasterStoreError)."""
    flow = engine_flow.dataflow
    if options.addresses:
        cli_main(
            flow,
            workers_per_process=options.workers,
            process_id=options.process_id,
            addresses=list(options.addresses),
        )
    elif options.workers > 1:
        cli_main(flow, workers_per_process=options.workers)
    else:
        run_main(flow)
    engine_flow.sink.raise_failure()


def _master_positions(options: RunOptions) -> FileOffsets:
    """Where the master says each feed file was read up to (only its owner reads the feeds)."""
    if not options.owns_master:
        return {}
    con = open_master(options.db_path, wait_s=ENGINE_OPEN_WAIT_S)
    try:
        return load_feed_positions(con)
    finally:
        con.close()
