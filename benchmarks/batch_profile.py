"""`python -m benchmarks.batch_profile --master FILE --feeds DIR [--batch-size 1] [--batches 40]`:
where one batch's time goes, statement by statement, on a copy of a loaded master.

With `--newest N`, the updates are the `N` newest lines of the feeds `DIR` (the lines
`python -m benchmarks` held back from the master's bulk load and appends while following), in the
order they are appended: the follow session's own updates, resolved in batches of the size its
batches reach. Otherwise they are made from lines sampled from the feeds `DIR` the master was
loaded from (seeded):
most keep their source key with a new record id (an update of a child the master knows, as most
followed lines are), `--new-key-share` of them get a new key as well (a record to score). They are
resolved in batches of `--batch-size` by this checkout's resolver in this process (no Bytewax, no
feed reading), on a copy of the master (the file given is never written). Reported per batch
(median after the first two, which warm DuckDB's cache): resolver time, per stage
(`batches.stage_ms`' stages) and, with `--statements`, the SQL statements that cost most, each with
the time DuckDB takes to plan it (its `EXPLAIN`, run before it; planning, not data, is most of a
small batch's cost: docs/scale.md "Where a batch's time goes"). With `--checkpoint-every N`, the
copy is checkpointed after every N batches, as DuckDB does every few minutes of following, and
the batches before and after the first checkpoint are reported apart.

`python -m benchmarks.batch_profile --load DIR [--batch-size 100000]`: a bulk load's statements
instead: every line of the feeds `DIR`, in the order a bulk load reads them (by period, then feed),
resolved in batches of `--batch-size` into a new master in a temporary folder; the statements are
reported over the batches of the load's second half, where the master is largest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.feeds import hold_back_newest
from benchmarks.measure import copy_master
from engine.config import EngineConfig
from engine.feed_source import feed_files_in_order
from engine.master_store import configure_store, open_master
from engine.resolver import Resolver
from linkage_models.scoring import DEFAULT_MODEL_PATH, CompiledModel
from streams.adapters import parse_line
from streams.canonical import FEEDS, BadRecord, Update

# each feed's own key field (the update keeps it, or gets a new one)
_KEY_FIELDS = {"gro": "registration_id", "dwp": "child_reference", "nhs": "nhs_number",
               "census": "upn"}
_PLANNED = ("CREATE", "INSERT", "SELECT", "UPDATE", "DELETE")
_WARM_BATCHES = 2


class TimedConnection:
    """A DuckDB connection whose statements are timed (and, if `explain`, planned first)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, explain: bool) -> None:
        self._con = con
        self._explain = explain
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.planning: dict[str, list[float]] = defaultdict(list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def execute(self, sql: str | duckdb.Statement, *args: Any) -> duckdb.DuckDBPyConnection:
        label = " ".join(getattr(sql, "query", sql).split())[:100]  # text, or parsed
        if self._explain and label.upper().startswith(_PLANNED) and ";" not in label:
            began = time.perf_counter()
            self._con.execute(f"EXPLAIN {getattr(sql, 'query', sql)}", *args).fetchall()
            self.planning[label].append(time.perf_counter() - began)
        began = time.perf_counter()
        result = self._con.execute(sql, *args)
        self.seconds[label].append(time.perf_counter() - began)
        return result

    def commit(self) -> None:
        began = time.perf_counter()
        self._con.commit()
        self.seconds["COMMIT"].append(time.perf_counter() - began)


def sample_updates(feeds: Path, count: int, new_key_share: float, seed: int) -> list[Update]:
    """`count` updates from lines of `feeds`, each with a new record id, some with a new key."""
    rng = random.Random(seed)
    files = sorted(feeds.glob("*/*.jsonl"))
    lines = []
    for path in rng.sample(files, min(8, len(files))):
        texts = path.read_text(encoding="utf-8", errors="replace").splitlines()
        lines += [(path.parent.name, t) for t in rng.sample(texts, min(len(texts), count))]
    rng.shuffle(lines)
    updates: list[Update] = []
    for feed, text in lines:
        record = _json_object(text)
        if record is None or not isinstance(record.get("record_id"), str):
            continue
        record["record_id"] += f"-profile{len(updates)}"
        key = _KEY_FIELDS.get(feed)
        if key and isinstance(record.get(key), str) and rng.random() < new_key_share:
            record[key] = f"9{record[key][1:]}" if feed == "nhs" else record[key] + "9"
        try:
            updates.append(parse_line(feed, json.dumps(record)))
        except BadRecord:
            continue
        if len(updates) == count:
            break
    return updates


def newest_updates(feeds: Path, count: int) -> list[Update]:
    """The `count` newest lines of `feeds` (by event time), oldest first, as updates."""
    with tempfile.TemporaryDirectory() as work:
        lines = hold_back_newest(feeds, count, Path(work) / "bulk").held_back
    updates = []
    for line in lines:
        with contextlib.suppress(BadRecord):
            updates.append(parse_line(line.feed, line.text))
    return updates


def profile(master: Path, updates: list[Update], batch_size: int, explain: bool,
            following: bool = True, checkpoint_every: int | None = None) -> dict[str, Any]:
    """Resolve `updates` in batches of `batch_size` on a copy of `master` (holding in memory
    what following holds, if `following`), checkpointing the copy after every
    `checkpoint_every` batches (untimed), as DuckDB does once the log reaches its threshold."""
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / "master.duckdb"
        copy_master(master, copy)
        config = EngineConfig()
        con = open_master(copy, wait_s=5)
        configure_store(con, config.store, following=following)
        timed = TimedConnection(con, explain)
        began = time.perf_counter()
        resolver = Resolver(timed, CompiledModel.from_json(DEFAULT_MODEL_PATH), config,
                            following=following)
        ready_s = time.perf_counter() - began
        timed.seconds.clear()
        totals, stages, checkpoints = [], defaultdict(list), []
        for start in range(0, len(updates), batch_size):
            began = time.perf_counter()
            outcome = resolver.resolve(updates[start:start + batch_size])
            totals.append(time.perf_counter() - began)
            for stage, seconds in outcome.stage_seconds.items():
                stages[stage].append(seconds)
            if checkpoint_every and len(totals) % checkpoint_every == 0:
                began = time.perf_counter()
                con.execute("CHECKPOINT")
                checkpoints.append(time.perf_counter() - began)
        con.close()
    batches = len(totals)
    return {
        "batch_size": batch_size,
        "batches": batches,
        "ready_seconds": round(ready_s, 1),
        "median_ms": _median_ms(totals),
        "stages_median_ms": {stage: _median_ms(s) for stage, s in stages.items()},
    } | _checkpoints_report(totals, checkpoint_every, checkpoints) | _statements_report(
        timed, batches, explain)


def _checkpoints_report(totals: list[float], every: int | None, seconds: list[float]
                        ) -> dict[str, Any]:
    """With checkpoints: the batches' median before the first one and after it, and each
    checkpoint's seconds."""
    if not every:
        return {}
    return {
        "checkpoint_every": every,
        "checkpoint_seconds": [round(s, 2) for s in seconds],
        "median_ms_before_first_checkpoint": _median_ms(totals[:every]),
        "median_ms_after_first_checkpoint": _median_ms(totals[every:]) if seconds else None,
    }


def feed_updates_in_order(feeds: Path) -> list[Update]:
    """Every good line of the feeds `feeds`, in the order a bulk load into a new master reads
    them (its registered feeds are sorted by name)."""
    updates = []
    for feed, path in feed_files_in_order(feeds, tuple(sorted(FEEDS))):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(BadRecord):
                updates.append(parse_line(feed, line))
    return updates


def profile_load(updates: list[Update], batch_size: int, explain: bool) -> dict[str, Any]:
    """Load `updates` in batches of `batch_size` into a new master; statements of the batches
    that start in the second half of the load."""
    with tempfile.TemporaryDirectory() as work:
        config = EngineConfig()
        con = open_master(Path(work) / "master.duckdb", wait_s=5)
        configure_store(con, config.store)
        timed = TimedConnection(con, explain)
        resolver = Resolver(timed, CompiledModel.from_json(DEFAULT_MODEL_PATH), config)
        timed.seconds.clear()
        second_half = range(len(updates) // 2, len(updates))
        began, timed_batches, timed_s = time.perf_counter(), 0, 0.0
        for start in range(0, len(updates), batch_size):
            if start not in second_half:
                resolver.resolve(updates[start:start + batch_size])
                timed.seconds.clear()
                continue
            batch_began = time.perf_counter()
            resolver.resolve(updates[start:start + batch_size])
            timed_s += time.perf_counter() - batch_began
            timed_batches += 1
        con.close()
    return {
        "batch_size": batch_size,
        "updates": len(updates),
        "seconds": round(time.perf_counter() - began, 1),
        "timed_batches": timed_batches,
        "timed_ms_per_batch": round(timed_s / max(timed_batches, 1) * 1000, 1),
    } | _statements_report(timed, max(timed_batches, 1), explain)


def _statements_report(timed: TimedConnection, batches: int, explain: bool) -> dict[str, Any]:
    return {
        "statements_per_batch": round(sum(map(len, timed.seconds.values())) / batches, 1),
        "statements": [
            {"sql": label, "ms_per_batch": round(sum(s) / batches * 1000, 1),
             "runs_per_batch": round(len(s) / batches, 2),
             "planning_ms_per_batch": round(sum(timed.planning.get(label, [])) / batches * 1000,
                                            1) if explain else None}
            for label, s in sorted(timed.seconds.items(), key=lambda item: -sum(item[1]))[:30]
        ],
    }


def _median_ms(seconds: list[float]) -> float:
    warm = seconds[_WARM_BATCHES:] or seconds
    return round(statistics.median(warm) * 1000, 1)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_profile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", type=Path, help="a loaded master (copied)")
    parser.add_argument("--feeds", type=Path,
                        help="the feeds the master was loaded from (lines are sampled)")
    parser.add_argument("--load", type=Path, metavar="FEEDS",
                        help="instead: load these feeds into a new master, in bulk batches")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="updates per batch (default 1; 100000 with --load)")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--new-key-share", type=float, default=0.15)
    parser.add_argument("--newest", type=int, metavar="N",
                        help="resolve the N newest lines of --feeds (the full feeds the bulk "
                             "load held them back from) instead of sampled lines")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--statements", action="store_true",
                        help="also time DuckDB's planning of each statement (EXPLAIN)")
    parser.add_argument("--checkpoint-every", type=int, metavar="N",
                        help="checkpoint the copy after every N batches (untimed), as DuckDB "
                             "does whenever the log passes its threshold in a long session")
    parser.add_argument("--as-bulk-load", action="store_true",
                        help="read xref and the candidates' values from the master, as a bulk "
                             "load does, instead of holding them in memory as following does")
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 100_000 if args.load else 1
    if args.batch_size < 1 or args.batches < 1:
        parser.error("--batch-size and --batches must be at least 1")
    if args.load:
        updates = feed_updates_in_order(args.load)
        if not updates:
            parser.error(f"no feed lines found under {args.load}")
        print(json.dumps(profile_load(updates, args.batch_size, args.statements), indent=2))
        return 0
    if args.master is None or args.feeds is None:
        parser.error("give --master and --feeds (or --load FEEDS)")
    if not args.master.is_file():
        parser.error(f"no master at {args.master}")
    updates = (newest_updates(args.feeds, args.newest)[:args.batch_size * args.batches]
               if args.newest else
               sample_updates(args.feeds, args.batch_size * args.batches, args.new_key_share,
                              args.seed))
    if not updates:
        parser.error(f"no feed lines found under {args.feeds}")
    print(json.dumps(profile(args.master, updates, args.batch_size, args.statements,
                             following=not args.as_bulk_load,
                             checkpoint_every=args.checkpoint_every), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
