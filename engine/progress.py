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


@dataclass
class RunProgress:
    """Accumulates batch outcomes and shows updates/s, children, reviews and dead letters."""

    console: Console = field(default_factory=lambda: Console(stderr=True))
    plain_every_s: float = 10.0
    updates: int = 0
    new_children: int = 0
    review: int = 0
    dead_letters: int = 0
    started: float = field(default_factory=time.monotonic)
    _last_plain: float = 0.0

    def __call__(self, outcome: BatchOutcome) -> None:
        self.updates += outcome.updates
        self.new_children += outcome.new_children
        self.review += outcome.review
        self.dead_letters += outcome.dead_letters
        self._show()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.updates:,} updates ({self.updates / elapsed:,.0f}/s) · "
            f"{self.new_children:,} new children · {self.review:,} for review · "
            f"{self.dead_letters:,} dead letters"
        )

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
