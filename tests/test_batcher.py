"""The micro-batcher closes batches by size; a bulk load's rest at the end of the input, a
following engine's as soon as it is read (its writer joins what arrives while it is busy)."""

from engine.batcher import MicroBatcher


def test_full_batches_are_emitted_at_the_size_bound():
    batcher = MicroBatcher(max_items=3, following=False)
    emitted, _ = batcher.on_batch([list(range(7))])
    assert emitted == [[0, 1, 2], [3, 4, 5]]
    assert batcher.snapshot() == [6]


def test_a_bulk_loads_batches_close_only_when_full_or_at_the_end():
    batcher = MicroBatcher(max_items=2, following=False)
    assert batcher.on_batch([[1]]) == ([], False)
    assert batcher.notify_at() is None
    assert batcher.on_batch([[2, 3]])[0] == [[1, 2]]
    assert batcher.on_eof()[0] == [[3]]


def test_following_what_is_read_goes_at_once_in_batches_of_at_most_max_items():
    batcher = MicroBatcher(max_items=3, following=True)
    assert batcher.on_batch([["a"]])[0] == [["a"]]
    assert batcher.on_batch([["b", "c"], ["d", "e"]])[0] == [["b", "c", "d"], ["e"]]
    assert batcher.snapshot() == []
    assert batcher.notify_at() is None


def test_eof_flushes_and_an_empty_batcher_emits_nothing():
    batcher = MicroBatcher(max_items=10, following=False)
    assert batcher.on_eof()[0] == []
    batcher.on_batch([["a"]])
    assert batcher.on_eof()[0] == [["a"]]
    assert MicroBatcher(max_items=10, following=True).on_batch([])[0] == []


def test_resumed_batcher_keeps_the_waiting_items():
    batcher = MicroBatcher(max_items=10, following=False)
    batcher.on_batch([["a", "b"]])
    resumed = MicroBatcher(10, False, batcher.snapshot())
    assert resumed.on_eof()[0] == [["a", "b"]]


def test_uncounted_items_ride_with_the_items_before_them():
    """Feed positions are not counted: a full batch ends with the position after its last line."""
    batcher = MicroBatcher(max_items=2, following=False, counts=lambda item: item.isdigit())
    emitted, _ = batcher.on_batch([["1", "2", "p", "3"], ["4", "q", "5"]])
    assert emitted == [["1", "2", "p"], ["3", "4", "q"]]
    assert batcher.snapshot() == ["5"]
