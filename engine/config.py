"""Engine settings: decision thresholds, micro-batch bounds, survivorship — defaults in one place.

Override any of them with a TOML file (`contactpoint run --config engine.toml`), e.g.::

    [decision]
    link_threshold = 0.99
    review_threshold = 0.5

    [batch]
    max_records = 100000
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_origin, get_type_hints


class ConfigError(ValueError):
    """A configuration file or value that the engine cannot run with."""


@dataclass(frozen=True)
class DecisionConfig:
    """Match-probability thresholds for the decision per update (see README "Decisions")."""

    link_threshold: float = 0.95
    review_threshold: float = 0.30
    # A bridge merges two children only if some pair of their own records scores at least this.
    merge_support_threshold: float = 0.30
    # A record matching two children that cannot be one child is ambiguous only if its match
    # weights (log2 Bayes factor) against them are within this margin; a clearly stronger match
    # (by 2**6 = 64 times the evidence, by default) wins.
    ambiguity_margin_bits: float = 6.0
    # Redo: a batch also decides again the open review items next to the children it touches
    # (and beside every child they were candidates for). Off only to measure what it costs.
    redo: bool = True
    # Feeds whose source key is one person's alone: a child never holds two of one feed's keys.
    # (The census is not one: a pupil can be issued a new UPN at a change of school.)
    exclusive_key_feeds: tuple[str, ...] = ("gro", "dwp", "nhs")


@dataclass(frozen=True)
class ScoringConfig:
    """Term-frequency adjustments start once a column has this many values in the master; the
    prior follows the population unless `prior_follows_population` is off (engine.resolution.
    prior: a master larger than the model's training snapshot lowers the prior in proportion)."""

    tf_min_values: int = 10_000
    prior_follows_population: bool = True


@dataclass(frozen=True)
class BatchConfig:
    """A batch holds at most `max_records` feed lines. A bulk load's batches hold that many
    (engine.batcher); a following engine's hold what arrived while the previous batch was
    resolved (engine.master_sink.BatchPipeline), up to that many."""

    # A backlog (a first load, a census, catching up after downtime) is resolved in large
    # set-based passes, which pay the master's per-batch costs (scans, checkpoints) less often
    # and decide more of a child's records together (docs/scale.md); following, batches stay
    # as small as the writer keeps up.
    max_records: int = 100000


@dataclass(frozen=True)
class StoreConfig:
    """DuckDB checkpoints the master after every `checkpoint_threshold_mb` of write-ahead log.
    A checkpoint's cost is mostly fixed, not in proportion to the log: it rewrites every row
    group a batch's moves touched in `links`, `records` and `xref`, and a few thousand moves are
    spread over all of them (at 1M children, 2–7 s for a batch of 2,000 updates or of 50,000).
    So checkpoints are rare: 640 MB is two to three 100k-record batches of a first load (200k
    updates at 1M: 74 s with a checkpoint after each 50k batch, 48 s with none; the whole 1M
    load 8,170 updates/s with 640 MB, 7,919/s with 512 MB, peak RSS 2.81 GiB). The log not yet
    checkpointed costs memory (about 0.8× its size) and is replayed at the next start after a
    crash (3 s for 273 MB at 1M) (DuckDB's default is 16 MB).
    DuckDB's memory (its cache of the master's blocks, a batch's joins, spilling to disk beyond)
    is held to `memory_limit_mb`: its default, 80% of the machine, lets the cache grow with the
    master, so the engine's memory would follow the master's size rather than the batch's.
    1,408 MB leaves room for the engine's in-memory key indexes (engine.key_index: 0.51 GB at 1M
    children) and for the next batch of a bulk load, parsed while one is resolved
    (engine.master_sink.BatchPipeline): a 1M-children load peaked at 2.90 GiB at 7,373
    updates/s, against 3.01 GiB at 7,331/s with 1,536 MB (docs/scale.md, 2026-12-03).
    A following engine's DuckDB is held to `following_memory_limit_mb` instead: its batches
    read a few hundred scattered rows of the whole master each, whose blocks come to ~2 GB at
    1M children, so what the cache holds of them is what its batches cost, and it parses no
    100,000-line batch beside the one it resolves. Following 1,000 lines/s on the 1M master,
    1,750 MB against 1,408: p99 604 and 695 ms against 708 and 731 (docs/scale.md,
    "Midmorning, 2026-12-05"). 1,840 MB since the key indexes are packed, the ~140 MiB they
    freed: a long session at 1M should level off near ~2,930 MiB ("Late morning, 2026-12-05")."""

    checkpoint_threshold_mb: int = 640
    memory_limit_mb: int = 1408
    following_memory_limit_mb: int = 1840
    # Following, a checkpoint once no batch came for this long and the log holds this much
    # (engine.idle_checkpoint): its stall falls in a pause of the feeds, not on the next line.
    idle_checkpoint_after_s: float = 2.0
    idle_checkpoint_min_mb: float = 64.0


@dataclass(frozen=True)
class SourceConfig:
    """How feed files are read: lines per read, and how often `--follow` polls for new lines.
    Following on Linux, the source also looks every `watch_interval_ms` whether the kernel saw a
    feed file change, and reads at once if so (engine.feed_watch; 0: poll only): a quiet line is
    read ~2 ms after it is written instead of ~25 ms."""

    lines_per_read: int = 2000
    poll_interval_ms: int = 50
    watch_interval_ms: int = 5


# Source trust per field group: higher wins under the "trusted" rule (ties broken by recency).
DEFAULT_SOURCE_TRUST: dict[str, int] = {"gro": 4, "nhs": 3, "census": 2, "dwp": 1}
# Ranks run from 0 to this (engine.survivorship writes a rank as one character of its keys).
MAX_SOURCE_TRUST = 1000


@dataclass(frozen=True)
class SurvivorshipConfig:
    """Which golden fields take the most trusted source's value and which the latest one."""

    source_trust: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SOURCE_TRUST))
    trusted_fields: tuple[str, ...] = (
        "first_name", "middle_names", "sex", "date_of_birth", "nhs_number",
    )
    latest_fields: tuple[str, ...] = (
        "surname", "preferred_first_name", "preferred_surname", "former_surname",
        "date_of_death", "address_line1", "address_line2", "town", "postcode", "upn",
        "parent_forenames", "parent_surname", "claimant_nino", "school_urn", "gp_practice_code",
    )


@dataclass(frozen=True)
class EngineConfig:
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    survivorship: SurvivorshipConfig = field(default_factory=SurvivorshipConfig)

    @classmethod
    def from_toml(cls, path: Path) -> EngineConfig:
        """Defaults overridden by the sections of a TOML file (see `from_sections`)."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        try:
            return cls.from_sections(data)
        except ConfigError as err:
            raise ConfigError(f"config {path}: {err}") from None

    @classmethod
    def from_sections(cls, data: dict[str, Any]) -> EngineConfig:
        """Defaults overridden by `{section: {key: value}}`; an unknown section or key, or a
        value of the wrong type or out of range, is a ConfigError naming `section.key`."""
        config = cls()
        for section, values in data.items():
            if section in _RETIRED_SECTIONS:
                raise ConfigError(f"[{section}] is {_RETIRED_SECTIONS[section]}")
            if section not in {f.name for f in fields(cls)} or not isinstance(values, dict):
                raise ConfigError(f"unknown section [{section}]")
            for key in values:
                if f"{section}.{key}" in _RETIRED_KEYS:
                    raise ConfigError(f"{section}.{key} is {_RETIRED_KEYS[f'{section}.{key}']}")
            current = getattr(config, section)
            known = get_type_hints(type(current))
            unknown = set(values) - set(known)
            if unknown:
                raise ConfigError(f"unknown key(s) {sorted(unknown)} in [{section}]")
            checked = {
                key: _checked(f"{section}.{key}", value, known[key])
                for key, value in values.items()
            }
            config = replace(config, **{section: replace(current, **checked)})
        config.validate()
        return config

    def validate(self) -> None:
        """Every bounded setting within its range, and the thresholds in order."""
        for section in fields(self):
            for key, value in vars(getattr(self, section.name)).items():
                in_range, expected = _RANGES.get(f"{section.name}.{key}", (None, ""))
                if in_range is not None and not in_range(value):
                    raise ConfigError(f"{section.name}.{key} must be {expected}, got {value!r}")
        d = self.decision
        if not d.review_threshold <= d.link_threshold:
            raise ConfigError("decision.review_threshold must not exceed decision.link_threshold")


def _checked(name: str, value: Any, hint: Any) -> Any:
    """`value` as the setting's type (an integer is also a number; a TOML array, a tuple), or a
    ConfigError saying what was expected and what was given."""
    origin = get_origin(hint)
    if hint is float and _is_integer_or_float(value):
        return float(value)
    if hint is int and _is_integer(value):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if origin is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if origin is dict and isinstance(value, dict) and all(map(_is_integer, value.values())):
        return dict(value)
    raise ConfigError(f"{name} must be {_expected(hint)}, got {_toml_type(value)} {value!r}")


def _expected(hint: Any) -> str:
    if get_origin(hint) is tuple:
        return "a list of strings"
    if get_origin(hint) is dict:
        return "a table of integers"
    return {float: "a number", int: "an integer", bool: "true or false"}[hint]


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_integer_or_float(value: Any) -> bool:
    return _is_integer(value) or isinstance(value, float)


def _toml_type(value: Any) -> str:
    """What a TOML value is, in TOML's words."""
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a float",
             list: "an array", dict: "a table"}
    return names.get(type(value), "a date or time")


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f"at least {low}"


_PROBABILITY = ((lambda v: 0 < v < 1), "a probability between 0 and 1 (exclusive)")
_RANKS = ((lambda ranks: all(0 <= r <= MAX_SOURCE_TRUST for r in ranks.values())),
          f"ranks from 0 to {MAX_SOURCE_TRUST}")

# The allowed range of every bounded setting (types are the dataclasses' own annotations).
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "decision.link_threshold": _PROBABILITY,
    "decision.review_threshold": _PROBABILITY,
    "decision.merge_support_threshold": _PROBABILITY,
    "scoring.tf_min_values": _at_least(0),
    "batch.max_records": _at_least(1),
    "store.checkpoint_threshold_mb": _at_least(1),
    "store.memory_limit_mb": _at_least(256),
    "store.following_memory_limit_mb": _at_least(256),
    "store.idle_checkpoint_after_s": _at_least(0.1),
    "store.idle_checkpoint_min_mb": _at_least(0),
    "source.lines_per_read": _at_least(1),
    "source.poll_interval_ms": _at_least(1),
    "source.watch_interval_ms": _at_least(0),
    "survivorship.source_trust": _RANKS,
}

# Sections and keys older engines read, and why they are gone.
_RETIRED_SECTIONS = {
    "recovery": "no longer a setting: the master holds its own feed positions and every run "
                "resumes from them (docs/operations.md); remove the section",
}
_RETIRED_KEYS = {
    "batch.max_latency_ms": "no longer a setting: while following, a batch takes every line that "
                            "arrived while the previous one was resolved, and starts as soon as "
                            "it committed (README: How an update is resolved); remove it",
}
