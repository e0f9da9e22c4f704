"""Engine settings: decision thresholds, micro-batch bounds, survivorship — defaults in one place.

Override any of them with a TOML file (`contactpoint run --config engine.toml`), e.g.::

    [decision]
    link_threshold = 0.99
    review_threshold = 0.5

    [batch]
    max_records = 20000
    max_latency_ms = 50
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


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
    # Feeds whose source key is one person's alone: a child never holds two of one feed's keys.
    # (The census is not one: a pupil can be issued a new UPN at a change of school.)
    exclusive_key_feeds: tuple[str, ...] = ("gro", "dwp", "nhs")


@dataclass(frozen=True)
class ScoringConfig:
    """Term-frequency adjustments start once a column has this many values in the master."""

    tf_min_values: int = 10_000


@dataclass(frozen=True)
class BatchConfig:
    """A batch closes at `max_records` items or, while following, at most `max_latency_ms` after
    its first item and at least that long after the previous batch (engine.batcher)."""

    max_records: int = 20000
    max_latency_ms: int = 50


@dataclass(frozen=True)
class StoreConfig:
    """DuckDB checkpoints the master after every `checkpoint_threshold_mb` of write-ahead log:
    small and often, so that a batch never waits long for one (DuckDB's default is 16 MB)."""

    checkpoint_threshold_mb: int = 2


@dataclass(frozen=True)
class SourceConfig:
    """How feed files are read: lines per read, and how often `--follow` polls for new lines."""

    lines_per_read: int = 2000
    poll_interval_ms: int = 50


@dataclass(frozen=True)
class RecoveryConfig:
    """Bytewax recovery: snapshot interval (seconds of work replayed at most after a crash)."""

    enabled: bool = True
    snapshot_interval_s: float = 5.0


# Source trust per field group: higher wins under the "trusted" rule (ties broken by recency).
DEFAULT_SOURCE_TRUST: dict[str, int] = {"gro": 4, "nhs": 3, "census": 2, "dwp": 1}


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
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    survivorship: SurvivorshipConfig = field(default_factory=SurvivorshipConfig)

    @classmethod
    def from_toml(cls, path: Path) -> EngineConfig:
        """Defaults overridden by the sections of a TOML file; unknown keys are errors."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        config = cls()
        for section, values in data.items():
            if section not in {f.name for f in fields(cls)} or not isinstance(values, dict):
                raise ConfigError(f"unknown config section [{section}] in {path}")
            current = getattr(config, section)
            known = {f.name for f in fields(current)}
            unknown = set(values) - known
            if unknown:
                raise ConfigError(f"unknown key(s) {sorted(unknown)} in [{section}] of {path}")
            config = replace(config, **{section: replace(current, **values)})
        config.validate()
        return config

    def validate(self) -> None:
        d = self.decision
        if not 0 < d.review_threshold <= d.link_threshold < 1:
            raise ConfigError("thresholds must satisfy 0 < review_threshold <= link_threshold < 1")
        if self.batch.max_records < 1 or self.batch.max_latency_ms < 1:
            raise ConfigError("batch.max_records and batch.max_latency_ms must be positive")
        if self.store.checkpoint_threshold_mb < 1:
            raise ConfigError("store.checkpoint_threshold_mb must be positive")
