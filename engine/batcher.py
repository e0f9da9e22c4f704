"""The micro-batcher: closes a batch at a size bound, and while following as soon as it is read.

A bulk load's batches close only when full or at the end of the input: they are then a function
of the input alone, so a replay after a crash rebuilds them exactly. A following engine's batches
are formed by its writer (engine.master_sink.BatchPipeline), which resolves together whatever
arrived while it resolved the previous batch: holding lines here would only delay them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from bytewax.operators import StatefulBatchLogic

Item = TypeVar("Item")


def _every_item(_item: object) -> bool:
    return True


class MicroBatcher(StatefulBatchLogic[list[Item], list[Item], list[Item]], Generic[Item]):
    """Takes chunks (lists) of items and emits lists of at most `max_items` items: full ones as
    they fill, and, when `following`, what is left of each call's chunks at once; else the rest
    at the end of the input.

    Only items that `counts` are counted towards `max_items`; the others (feed positions) ride
    with the items before them, so a full batch ends with whatever follows its last counted item.
    State is the list of items waiting (snapshotted as a copy, so a resumed run loses none).

    >>> b = MicroBatcher(max_items=2, following=False)
    >>> b.on_batch([[1, 2], [3]])[0]
    [[1, 2]]
    >>> b.on_eof()[0]
    [[3]]
    """

    def __init__(
        self,
        max_items: int,
        following: bool,
        resume_state: list[Item] | None = None,
        counts: Callable[[Item], bool] = _every_item,
    ) -> None:
        self.max_items = max_items
        self.following = following
        self.counts = counts
        self.pending: list[Item] = list(resume_state or [])
        self.counted = sum(map(counts, self.pending))

    def on_batch(self, chunks: list[list[Item]]) -> tuple[list[list[Item]], bool]:
        for chunk in chunks:
            self.pending.extend(chunk)
            self.counted += sum(map(self.counts, chunk))
        batches: list[list[Item]] = []
        while self.counted >= self.max_items:
            cut = self._full_batch_length()
            batches.append(self.pending[:cut])
            del self.pending[:cut]
            self.counted -= self.max_items
        if self.following:
            batches.extend(self._flush())
        return batches, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[list[Item]], bool]:
        return self._flush(), StatefulBatchLogic.RETAIN

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
        batch, self.pending, self.counted = self.pending, [], 0
        return [batch] if batch else []
