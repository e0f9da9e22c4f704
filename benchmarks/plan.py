"""What a benchmark run measures and its bounds: every default of `python -m benchmarks` here."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
CACHE_DIR = REPO / "data" / "bench"


@dataclass(frozen=True)
class FollowPlan:
    """The `run --follow` latency phase: the newest lines of the feeds are held back from the
    bulk load and appended at `rate` lines/s for up to `seconds` (fewer lines if they would be
    more than `max_share` of the feeds: small sizes get a shorter phase). Then, the engine
    still following and idle, `quiet_updates` more held-back lines are appended one at a
    time, each once the engine is idle again and at least `quiet_gap_s` after the previous
    one: the latency of a single update on a quiet master."""

    rate: int = 1000
    seconds: float = 30.0
    max_share: float = 0.10
    quiet_updates: int = 20
    quiet_gap_s: float = 0.5
    quiet_max_wait_s: float = 10.0  # per line: the next one goes even if the engine is busy
    # idle = below this share of one core for `idle_settle_s` (engine started / caught up)
    idle_below: float = 0.15
    idle_settle_s: float = 1.0
    # `run` says it is ready once its master is open and indexed (following, at start-up)...
    ready_line_max_s: float = 120.0
    # ...then ready = idle: on a master just bulk-loaded the engine's service first builds the
    # search index in the background (~2 min at 1M children, on both cores); lines appended
    # meanwhile would measure that one-off build, not following (reported as `ready_seconds`)
    ready_max_s: float = 600.0
    drain_max_s: float = 120.0
    # an engine config (TOML) the engine runs with (`run --config`), e.g. a low
    # `store.checkpoint_threshold_mb` to measure following across DuckDB's checkpoints
    engine_config: Path | None = None


@dataclass(frozen=True)
class AnchorPlan:
    """Bounds of the Splink anchors (each runs in its own subprocess)."""

    # both anchors are skipped above this many feed lines: their canonical snapshot is read
    # whole into memory (a 3M-children size, 23M lines, would not fit in 24 GiB)
    max_feed_lines: int = 8_000_000

    # batch predict + cluster is skipped above this many records (memory and time)
    batch_max_records: int = 3_000_000
    batch_timeout_s: float = 900.0
    # predict_between in batches of `incremental_batch` records against the growing master;
    # at most `incremental_max_scored` batches are scored, spread evenly over the growth (the
    # others are only appended), and the total time is estimated from them
    incremental_batch: int = 1000
    incremental_max_scored: int = 120
    incremental_timeout_s: float = 900.0


@dataclass(frozen=True)
class BenchPlan:
    """A whole benchmark run: sizes, seed, where data is cached and results go."""

    sizes: tuple[int, ...] = (10_000, 100_000)
    seed: int = 1
    cache_dir: Path = CACHE_DIR
    out_dir: Path = RESULTS_DIR
    skip_anchors: bool = False
    follow: FollowPlan = FollowPlan()
    anchors: AnchorPlan = AnchorPlan()
    engine_timeout_s: float = 3600.0
    evaluate_timeout_s: float = 600.0
    python: str = sys.executable

    def size_dir(self, children: int) -> Path:
        """The cache folder of one size: generated feeds, truth, snapshot, run files."""
        return self.cache_dir / str(children)


@dataclass(frozen=True)
class SoakPlan:
    """`python -m benchmarks.soak`: a warm master, then `run --follow` fed at `rate` lines/s for
    `minutes`; RSS and latency sampled per minute. The lines are the newest of the feeds of
    `children` children (about 7.7 lines per child); at least `warm_share` of them stay in the
    bulk load that warms the master (a shorter soak if the feeds are too small). At the defaults
    the warm master holds 470,000 records and the soak adds 300,000: a stream into a standing
    index rather than an index built from almost nothing."""

    minutes: float = 10.0
    rate: int = 500
    children: int = 100_000
    seed: int = 1
    warm_share: float = 0.2
    cache_dir: Path = CACHE_DIR
    out_dir: Path = RESULTS_DIR
    engine_timeout_s: float = 3600.0
    python: str = sys.executable
