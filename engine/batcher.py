"""The micro-batcher: closes a batch at a size bound or at a deadline counted from its first item.

Bytewax's `collect` restarts its timeout on every item, so under a steady stream a batch could wait
forever; this batcher's deadline starts when the batch's first item arrives, which bounds latency.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from bytewax.operators import StatefulBatchLogic

Item = TypeVar("Item")


def _every_item(_item: object) -> bool:
    return True


class MicroBatcher(StatefulBatchLogic[list[Item], list[Item], list[Item]], Generic[Item]):
    """Takes chunks (lists) of items and emits lists of at most `max_items` items, each no later
    than `max_latency` after its first item, and no sooner than `max_latency` after the previous
    batch: an item after a quiet spell goes at once, and what arrived while the writer was busy
    with the last batch (longer than `max_latency`) forms the next one without waiting.

    With `max_latency=None` batches close only when full or at the end of the input: a bulk load's
    batches are then a function of the input alone, so a replay after a crash rebuilds them exactly.
    Only items that `counts` are counted towards `max_items`; the others (feed positions) ride
    with the items before them, so a full batch ends with whatever follows its last counted item.
    State is the list of items waiting (snapshotted as a copy, so a resumed run loses none).

    >>> b = MicroBatcher(max_items=2, max_latency=timedelta(seconds=1))
    >>> b.on_batch([[1, 2], [3]])[0]
    [[1, 2]]
    >>> b.on_eof()[0]
    [[3]]
    """

    def __init__(
        self,
        max_items: int,
        max_latency: timedelta | None,
        resume_state: list[Item] | None = None,
        counts: Callable[[Item], bool] = _every_item,
    ) -> None:
        self.max_items = max_items
        self.max_latency = max_latency
        self.counts = counts
        self.pending: list[Item] = list(resume_state or [])
        self.counted = sum(map(counts, self.pending))
        self.last_emitted: datetime | None = None
        self.deadline = self._deadline()

    def on_batch(self, chunks: list[list[Item]]) -> tuple[list[list[Item]], bool]:
        was_empty = not self.pending
        for chunk in chunks:
            self.pending.extend(chunk)
            self.counted += sum(map(self.counts, chunk))
        full: list[list[Item]] = []
        while self.counted >= self.max_items:
            cut = self._full_batch_length()
            full.append(self.pending[:cut])
            del self.pending[:cut]
            self.counted -= self.max_items
        if full:
            self.last_emitted = datetime.now(UTC)
        if full or was_empty:
            self.deadline = self._deadline()
        return full, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[list[Item]], bool]:
        if self.deadline is not None and datetime.now(UTC) >= self.deadline:
            return self._flush(), StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[list[Item]], bool]:
        return self._flush(), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.deadline

    def snapshot(self) -> list[Item]:
        return list(self.pending)

    def _full_batch_length(self) -> int:
        """How many waiting items make a full batch: up to the `max_items`-th counted one, and
        the uncounted ones right after it."""
        length, counted = 0, 0
        while counted < self.max_items:
            counted += self.counts(self.pending[length])
            length += 1
        while length < len(self.pending) and not self.counts(self.pending[length]):
            length += 1
        return length

    def _flush(self) -> list[list[Item]]:
        batch, self.pending, self.deadline = self.pending, [], None
        self.counted = 0
        if not batch:
            return []
        self.last_emitted = datetime.now(UTC)
        return [batch]

    def _deadline(self) -> datetime | None:
        """For the batch now waiting (None if none waits): `max_latency` after the previous
        batch, or now if that has passed (the first item has waited at most `max_latency`)."""
        if not self.pending or self.max_latency is None:
            return None
        now = datetime.now(UTC)
        if self.last_emitted is None:
            return now
        return max(now, self.last_emitted + self.max_latency)
