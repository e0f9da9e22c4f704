"""The micro-batcher closes batches by size and by a deadline: at most `max_latency` after the
first item, at least `max_latency` after the previous batch."""

import time
from datetime import timedelta

from engine.batcher import MicroBatcher


def test_full_batches_are_emitted_at_the_size_bound():
    batcher = MicroBatcher(max_items=3, max_latency=timedelta(seconds=60))
    emitted, _ = batcher.on_batch([list(range(7))])
    assert emitted == [[0, 1, 2], [3, 4, 5]]
    assert batcher.snapshot() == [6]


def test_deadline_starts_at_the_first_item_and_is_not_pushed_back():
    batcher = MicroBatcher(max_items=100, max_latency=timedelta(milliseconds=50))
    batcher.on_batch([[1]])
    first_deadline = batcher.notify_at()
    time.sleep(0.01)
    batcher.on_batch([[2]])
    assert batcher.notify_at() == first_deadline
    time.sleep(0.05)
    assert batcher.on_notify()[0] == [[1, 2]]
    assert batcher.notify_at() is None


def test_eof_flushes_and_an_empty_batcher_emits_nothing():
    batcher = MicroBatcher(max_items=10, max_latency=timedelta(seconds=1))
    assert batcher.on_eof()[0] == []
    batcher.on_batch([["a"]])
    assert batcher.on_eof()[0] == [["a"]]


def test_resumed_batcher_keeps_the_waiting_items():
    batcher = MicroBatcher(max_items=10, max_latency=timedelta(seconds=1))
    batcher.on_batch([["a", "b"]])
    resumed = MicroBatcher(10, timedelta(seconds=1), batcher.snapshot())
    assert resumed.on_eof()[0] == [["a", "b"]]


def test_without_a_latency_bound_batches_close_only_when_full_or_at_the_end():
    batcher = MicroBatcher(max_items=2, max_latency=None)
    assert batcher.on_batch([[1]]) == ([], False)
    assert batcher.notify_at() is None
    assert batcher.on_batch([[2, 3]])[0] == [[1, 2]]
    assert batcher.on_eof()[0] == [[3]]


def test_a_quiet_input_emits_no_empty_batches_and_asks_for_no_wake_up():
    batcher = MicroBatcher(10, timedelta(milliseconds=1))
    batcher.on_batch([["a"]])
    time.sleep(0.005)
    assert batcher.on_notify()[0] == [["a"]]
    assert batcher.notify_at() is None
    time.sleep(0.005)
    assert batcher.on_notify()[0] == []
    assert batcher.on_eof()[0] == []


def test_an_item_after_a_quiet_spell_goes_at_once_and_batches_are_max_latency_apart():
    latency = timedelta(milliseconds=40)
    batcher = MicroBatcher(max_items=100, max_latency=latency)
    batcher.on_batch([["first"]])
    assert batcher.on_notify()[0] == [["first"]]
    emitted_at = batcher.last_emitted
    batcher.on_batch([["second"]])
    assert batcher.notify_at() == emitted_at + latency
    assert batcher.on_notify()[0] == []
    time.sleep(0.05)
    assert batcher.on_notify()[0] == [["second"]]


def test_what_arrived_while_the_writer_was_busy_goes_without_waiting():
    batcher = MicroBatcher(max_items=100, max_latency=timedelta(milliseconds=20))
    batcher.on_batch([["a"]])
    assert batcher.on_notify()[0] == [["a"]]
    time.sleep(0.03)  # the writer resolves the batch for longer than max_latency
    batcher.on_batch([["b", "c"]])
    assert batcher.on_notify()[0] == [["b", "c"]]


def test_uncounted_items_ride_with_the_items_before_them():
    """Feed positions are not counted: a full batch ends with the position after its last line."""
    batcher = MicroBatcher(max_items=2, max_latency=None, counts=lambda item: item.isdigit())
    emitted, _ = batcher.on_batch([["1", "2", "p", "3"], ["4", "q", "5"]])
    assert emitted == [["1", "2", "p"], ["3", "4", "q"]]
    assert batcher.snapshot() == ["5"]
