"""Where a batch's time goes: seconds per stage of the resolver, for `run --profile` and the
benchmarks' per-stage cost curves.

    clock = StageClock()
    with clock.stage("candidates"):
        ...
    clock.seconds  # {"candidates": 0.031}
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

# The resolver's stages, in the order a batch passes them (DESIGN.md: feed -> canonical update ->
# micro-batch -> candidates -> scores -> decisions -> change set -> store).
STAGES: tuple[str, ...] = (
    "intake", "xref", "candidates", "scores", "neighbourhood", "decide", "write", "commit",
)


class StageClock:
    """Seconds spent in each named stage (summed when a stage is entered more than once)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - began

    def add(self, other: dict[str, float]) -> None:
        """Add another clock's (or a batch's) seconds to these."""
        self.seconds.update(other)
