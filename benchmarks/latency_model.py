"""`python -m benchmarks.latency_model [--intercept MS] [--per-update MS] [--gap MS] …`: the
append → commit latencies a following engine would show for a given batch cost, without running
it. A model, not a measurement: it says which part of a batch's cost the follow p99 comes from
(docs/scale.md, "Early morning, 2026-12-05"), so that a change can be judged before it is built.

Lines arrive evenly at `--rate` a second for `--seconds`. The writer is never idle while lines
wait (engine.master_sink.BatchPipeline): as a batch commits, the next one takes every line that
arrived meanwhile, and starts `--gap` ms later (the commit and the hand-over). A batch of `n`
lines costs

    (intercept + per_update · n + heavy_ms if it moves a record) · (1 + growth · t / seconds)
    · (1 + noise · N(0, 1))

where a batch moves a record (a redo: the costly batches of the follow session) with chance
1 − (1 − 1 / heavy_every)ⁿ, `t` is when it starts, and `growth` is how much dearer the same batch
is at the end of the session than at its start. Each line's latency is its batch's end less its
arrival.

A part of a batch may run ahead (`--ahead-intercept`, `--ahead-per-update`: a pipeline, not
built, that would resolve the next batch's first stages beside the current batch's last ones).
That part of the next batch is then gathered and started so that it would end as the current
batch ends (judged by the current batch's own), and the rest of the batch starts once both have
ended; a line waits for both parts. Without it the writer is the one thread it is today.

Or several writers may resolve batches side by side (`--writers`, not built: each would have to
find what the batch beside it wrote that it should have seen, and resolve its batch again if
so). A writer starts a batch once it is free and once the last batch started has had its share
of its cost (its cost / writers), so that their batches are staggered; it takes every line that
arrived and no other writer took. Each batch costs `--contention` times as much (the writers
share two cores), and a share of them (`--redo-share`) is resolved twice, one after the other.

Prints p50, p95, p99 and max as JSON; the defaults are the 1M master's, measured (replayed
batches and the follow session of 2026-12-05: p50 / p99 389–434 / 603–697 ms measured, 411–423 /
623–667 ms modelled, five seeds).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass

from benchmarks.follow import percentiles_ms


@dataclass(frozen=True)
class BatchCost:
    """What a following batch costs, in ms (see the module's docstring)."""

    intercept_ms: float = 173.0
    per_update_ms: float = 0.22
    gap_ms: float = 21.0
    growth: float = 0.13
    heavy_every: float = 770.0
    heavy_ms: float = 49.0
    noise: float = 0.08
    ahead_intercept_ms: float = 0.0
    ahead_per_update_ms: float = 0.0
    contention: float = 1.0
    redo_share: float = 0.0

    def batch_ms(self, lines: int, started_s: float, seconds: float, rng: random.Random
                 ) -> float:
        heavy = rng.random() < 1 - (1 - 1 / self.heavy_every) ** lines
        cost = self.intercept_ms + self.per_update_ms * lines + (self.heavy_ms if heavy else 0)
        return self._spread(cost, started_s, seconds, rng)

    def ahead_ms(self, lines: int, started_s: float, seconds: float, rng: random.Random
                 ) -> float:
        cost = self.ahead_intercept_ms + self.ahead_per_update_ms * lines
        return self._spread(cost, started_s, seconds, rng) if cost else 0.0

    def _spread(self, cost: float, started_s: float, seconds: float, rng: random.Random
                ) -> float:
        return (cost * (1 + self.growth * started_s / seconds)
                * max(0.0, 1 + rng.gauss(0, self.noise)))


def follow_latencies_ms(cost: BatchCost, rate: float = 1000.0, seconds: float = 30.0,
                        seed: int = 1) -> list[float]:
    """Each line's modelled latency, in arrival order."""
    rng = random.Random(seed)
    interval_ms = 1000.0 / rate
    total = int(rate * seconds)
    latencies: list[float] = []
    now_ms, taken = 0.0, 0  # now_ms: when the next batch is gathered
    writer_free_ms = 0.0
    while taken < total:
        arrived = min(total, int(now_ms / interval_ms) + 1)
        if arrived == taken:  # nothing waiting: the next line starts the next batch
            now_ms = taken * interval_ms
            continue
        lines = arrived - taken
        ahead_ms = cost.ahead_ms(lines, now_ms / 1000, seconds, rng)
        ahead_end_ms = now_ms + ahead_ms
        started_ms = max(ahead_end_ms, writer_free_ms)
        end_ms = started_ms + cost.batch_ms(lines, started_ms / 1000, seconds, rng)
        latencies.extend(end_ms - line * interval_ms for line in range(taken, arrived))
        taken, writer_free_ms = arrived, end_ms + cost.gap_ms
        # the next batch's part run ahead is to end as this batch ends (judged by this one's)
        now_ms = max(ahead_end_ms, writer_free_ms - ahead_ms)
    return latencies


def side_by_side_latencies_ms(cost: BatchCost, writers: int, rate: float = 1000.0,
                              seconds: float = 30.0, seed: int = 1) -> list[float]:
    """Each line's modelled latency, in arrival order, with `writers` writers (see the
    module's docstring; no part run ahead)."""
    rng = random.Random(seed)
    interval_ms = 1000.0 / rate
    total = int(rate * seconds)
    latencies: list[float] = []
    free_ms = [0.0] * writers  # when each writer can start its next batch
    taken, next_start_ms = 0, 0.0  # next_start_ms: the staggering's earliest next start
    while taken < total:
        writer = min(range(writers), key=free_ms.__getitem__)
        started_ms = max(free_ms[writer], next_start_ms, taken * interval_ms)
        arrived = min(total, int(started_ms / interval_ms) + 1)
        lines = arrived - taken
        batch_ms = cost.batch_ms(lines, started_ms / 1000, seconds, rng) * cost.contention
        if rng.random() < cost.redo_share:
            batch_ms *= 2
        end_ms = started_ms + batch_ms
        latencies.extend(end_ms - line * interval_ms for line in range(taken, arrived))
        taken, free_ms[writer] = arrived, end_ms + cost.gap_ms
        next_start_ms = started_ms + batch_ms / writers
    return latencies


# Each option of the command line: the BatchCost field it sets, and what it is.
_OPTIONS = (
    ("--intercept", "intercept_ms", "ms a batch costs before its lines (with --ahead-intercept: "
                                    "the part that does not run ahead)"),
    ("--per-update", "per_update_ms", "ms each line adds"),
    ("--gap", "gap_ms", "ms from one batch's end to the next one's start"),
    ("--growth", "growth", "how much dearer a batch is at the session's end, 0.13 = 13%%"),
    ("--heavy-every", "heavy_every", "lines per record moved (a redo)"),
    ("--heavy-ms", "heavy_ms", "ms a batch that moves a record costs more"),
    ("--noise", "noise", "relative spread of a batch's cost"),
    ("--ahead-intercept", "ahead_intercept_ms", "ms more that would run ahead, beside the "
                                                "previous batch (a pipeline; 0: none)"),
    ("--ahead-per-update", "ahead_per_update_ms", "ms a line adds to the part run ahead"),
    ("--contention", "contention", "with --writers: how much dearer each batch is beside the "
                                   "others, 1.2 = 20%%"),
    ("--redo-share", "redo_share", "with --writers: the share of batches resolved twice"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.latency_model",
        description="The follow latencies (p50, p95, p99, max) a batch cost model gives; a "
                    "model, not a measurement (defaults: the 1M master, 2026-12-05).")
    defaults = BatchCost()
    for option, field, meaning in _OPTIONS:
        parser.add_argument(option, type=float, dest=field, metavar="N",
                            default=getattr(defaults, field),
                            help=f"{meaning} (default %(default)s)")
    parser.add_argument("--rate", type=float, default=1000.0, help="lines a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--writers", type=int, default=1,
                        help="writers resolving batches side by side (not built; default 1)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.heavy_every < 1 or args.writers < 1:
        parser.error("--rate and --seconds must be positive, --heavy-every and --writers at "
                     "least 1")
    cost = BatchCost(**{field: getattr(args, field) for _, field, _ in _OPTIONS})
    if args.writers > 1 and (cost.ahead_intercept_ms or cost.ahead_per_update_ms):
        parser.error("--writers and a part run ahead (--ahead-…) are two models: give one")
    latencies = (side_by_side_latencies_ms(cost, args.writers, args.rate, args.seconds,
                                           args.seed)
                 if args.writers > 1 else
                 follow_latencies_ms(cost, args.rate, args.seconds, args.seed))
    print(json.dumps({"model": asdict(cost), "rate": args.rate, "seconds": args.seconds,
                      "writers": args.writers}
                     | {f"{k}_ms": v for k, v in percentiles_ms(latencies).items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
