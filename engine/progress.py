"""Progress for people: a live status line while the engine runs (plain periodic lines when stderr
is not a terminal, e.g. in CI or under a service manager)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from engine.resolver import BatchOutcome
from engine.stage_clock import STAGES, StageClock


@dataclass
class RunProgress:
    """Accumulates batch outcomes and shows updates/s, children, reviews and dead letters."""

    console: Console = field(default_factory=lambda: Console(stderr=True))
    plain_every_s: float = 10.0
    updates: int = 0
    new_children: int = 0
    review: int = 0
    dead_letters: int = 0
    batches: int = 0
    stages: StageClock = field(default_factory=StageClock)
    started: float = field(default_factory=time.monotonic)
    _last_plain: float = 0.0

    def __call__(self, outcome: BatchOutcome) -> None:
        self.batches += 1
        self.stages.add(outcome.stage_seconds)
        self.updates += outcome.updates
        self.new_children += outcome.new_children
        self.review += outcome.review
        self.dead_letters += outcome.dead_letters
        self._show()

    def ready(self, message: str) -> None:
        """The master is open and its in-memory indexes built (minutes at national size):
        said once, on its own line, before the first batch."""
        self.console.print(message, highlight=False)
        self.started = time.monotonic()  # the rate counts from here

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.updates:,} updates ({self.updates / elapsed:,.0f}/s) · "
            f"{self.new_children:,} new children · {self.review:,} for review · "
            f"{self.dead_letters:,} dead letters"
        )

    def profile(self) -> dict[str, object]:
        """Where the batches' time went (`run --profile`): per resolver stage the seconds, the
        milliseconds per batch and the share of all stages' time."""
        total = sum(self.stages.seconds.values()) or 1e-9
        batches = max(self.batches, 1)
        return {
            "batches": self.batches,
            "stages": {
                name: {
                    "seconds": round(self.stages.seconds[name], 3),
                    "ms_per_batch": round(self.stages.seconds[name] * 1000 / batches, 1),
                    "share": round(self.stages.seconds[name] / total, 3),
                }
                for name in STAGES
            },
        }

    def _show(self) -> None:
        if self.console.is_terminal:
            self.console.print(self.line(), end="\r", highlight=False)
            return
        now = time.monotonic()
        if now - self._last_plain >= self.plain_every_s:
            self._last_plain = now
            self.console.print(self.line(), highlight=False)

    def finish(self) -> None:
        if self.console.is_terminal:
            self.console.print(" " * 100, end="\r")


@contextmanager
def progress_bar(console: Console, description: str) -> Iterator[Callable[[int, int], None]]:
    """Yields `advance(done, total)`, which drives a transient rich progress bar."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)
