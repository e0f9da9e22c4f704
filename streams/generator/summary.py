"""What one generator run produced: counts for people (the CLI's closing summary) and tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from streams.canonical import FEEDS


def _per_feed() -> dict[str, int]:
    return {feed: 0 for feed in FEEDS}


@dataclass
class GenerateSummary:
    """Records per feed, bad lines and errors by kind, and the life events simulated."""

    children: int = 0  # alive at the snapshot
    persons: int = 0  # every child in the truth (snapshot + births)
    households: int = 0
    twin_sets: int = 0
    triplet_sets: int = 0
    births: int = 0
    deaths: int = 0
    moves: int = 0
    arrivals: int = 0  # children arriving from abroad (no GRO birth)
    emigrations: int = 0  # households leaving
    surname_changes: int = 0
    school_changes: int = 0
    gp_changes: int = 0
    records: dict[str, int] = field(default_factory=_per_feed)  # every line written, bad included
    bad_lines: dict[str, int] = field(default_factory=dict)  # by bad kind
    errors: dict[str, dict[str, int]] = field(default_factory=dict)  # feed -> error kind -> count
    seconds: float = 0.0

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    def error_totals(self) -> dict[str, int]:
        """Error counts by kind over all feeds."""
        totals: dict[str, int] = {}
        for counts in self.errors.values():
            for kind, count in counts.items():
                totals[kind] = totals.get(kind, 0) + count
        return totals

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "total_records": self.total_records,
                "error_totals": self.error_totals()}
