"""When batches go: the fake clock wakes only due waits, the window starts at the first
record and nothing moves it, a real window is neither early nor late, and adders wake the
worker about once per batch, not once per record."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import WAIT, BlockingSink, OwnerProxy, RecordingSink

from batchlog import BatchWriter
from batchlog.testing import FakeClock


class ClockedSink(RecordingSink):
    """Records each batch and the clock's time when it arrived."""

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock
        self.times: list[float] = []

    def __call__(self, batch: list[Any]) -> None:
        self.times.append(self.clock.now())
        self._record(batch)


class MonotonicNow:
    def now(self) -> float:
        return time.monotonic()


def wait_for_window(clock: FakeClock, writer: BatchWriter[Any], record: object) -> None:
    """Add ``record`` to an idle writer and wait until the worker waits for its window.

    Not ``wait_for_deadline(flush_interval)`` alone: the idle wait begun at the same fake
    time has that very deadline too (``wait_for_deadline`` tells them apart: see below).
    """
    assert clock.wait_for_sleep(after=0)  # idle
    assert clock.sleeps == 1
    writer.add(record)
    assert clock.wait_for_sleep(after=1)  # woken by the record, now waiting for its window
    assert clock.deadlines == [clock.now() + writer.flush_interval]


def test_wait_for_deadline_tells_a_window_from_an_idle_wait(make_writer: Any) -> None:
    """With no record added, no wait for a record's window is in progress."""
    clock = FakeClock()
    make_writer(RecordingSink(), capacity=10, flush_interval=5.0, clock=clock)
    assert clock.wait_for_sleep(after=0)  # idle, nothing added
    assert not clock.wait_for_deadline(5.0, timeout=0.5)


def test_advancing_below_a_deadline_wakes_no_waiter() -> None:
    """advance() sets the event of a due wait only, synchronously."""
    clock = FakeClock()
    early, late = threading.Event(), threading.Event()
    results: dict[str, bool] = {}
    waiters = [
        threading.Thread(target=lambda: results.update(early=clock.wait(early, 2.0))),
        threading.Thread(target=lambda: results.update(late=clock.wait(late, 5.0))),
    ]
    for waiter in waiters:
        waiter.start()
    assert clock.wait_for_deadline(2.0)
    assert clock.wait_for_deadline(5.0)
    clock.advance(1.9)
    assert (early.is_set(), late.is_set()) == (False, False)
    assert sorted(clock.deadlines, key=float) == [2.0, 5.0]
    clock.advance(0.1)  # exactly the first deadline
    assert (early.is_set(), late.is_set()) == (True, False)
    waiters[0].join(WAIT)
    assert results == {"early": False}  # it timed out (fake time), it was not signalled
    assert clock.deadlines == [5.0]
    clock.advance(3.0)
    waiters[1].join(WAIT)
    assert results == {"early": False, "late": False}


def test_a_writer_waiting_for_its_window_stays_asleep_below_the_deadline(
    make_writer: Any,
) -> None:
    """advance() short of the window leaves the worker's wait alone; reaching it delivers."""
    clock = FakeClock()
    sink = ClockedSink(clock)
    writer = make_writer(sink, capacity=10, flush_interval=5.0, clock=clock)
    wait_for_window(clock, writer, "a")
    sleeps, deadlines = clock.sleeps, clock.deadlines
    clock.advance(4.999)
    assert (sleeps, deadlines) == (clock.sleeps, clock.deadlines)
    assert sink.batches == []
    clock.advance(0.001)
    assert sink.wait_for_batches(1)
    assert (sink.batches, sink.times) == ([["a"]], [5.0])


def test_the_window_starts_at_the_first_record_and_many_adders_do_not_move_it(
    make_writer: Any,
) -> None:
    """Eight threads add into the window opened at t=0: one batch, at exactly t=5."""
    clock = FakeClock()
    sink = ClockedSink(clock)
    writer = make_writer(sink, capacity=1_000, flush_interval=5.0, clock=clock)
    wait_for_window(clock, writer, "first")
    clock.advance(3.0)
    start = threading.Barrier(8)

    def add_many(thread: int) -> None:
        start.wait(WAIT)
        for index in range(50):
            writer.add((thread, index))

    adders = [threading.Thread(target=add_many, args=(thread,)) for thread in range(8)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join(WAIT)
    assert clock.deadlines == [5.0]  # still the first record's window
    clock.advance(1.999)
    assert sink.batches == []
    clock.advance(0.001)
    assert sink.wait_for_batches(1)
    assert sink.times == [pytest.approx(5.0)]
    assert len(sink.batches[0]) == 1 + 8 * 50
    assert sink.batches[0][0] == "first"


def test_a_real_window_is_not_cut_short_and_not_overrun(make_writer: Any) -> None:
    """With the real clock, a record arrives no sooner than flush_interval after its add."""
    sink = ClockedSink(MonotonicNow())
    writer = make_writer(sink, capacity=100, flush_interval=0.2)
    added = time.monotonic()
    writer.add("a")
    assert sink.wait_for_batches(1, timeout=WAIT)
    waited = sink.times[0] - added
    assert waited >= 0.2
    assert waited < WAIT


def test_a_burst_wakes_the_worker_at_most_once_per_batch(
    make_writer: Any, blocking_sink: BlockingSink
) -> None:
    """10,000 records while the sink is busy, capacity 100: at most ~100 wake-ups."""
    writer = make_writer(blocking_sink, capacity=100, max_queue_size=20_000)
    for index in range(100):
        writer.add(index)
    assert blocking_sink.entered.wait(WAIT)  # the worker is held in the sink
    intake = writer._intake
    proxy = OwnerProxy(intake._owner)
    intake._owner = proxy
    for index in range(100, 10_100):
        writer.add(index)
    blocking_sink.release()
    assert writer.flush(timeout=WAIT) is True
    assert list(range(10_100)) == blocking_sink.records
    assert proxy.wakes <= 10_000 // 100 + 3


def test_a_free_running_burst_wakes_the_worker_about_once_per_batch(make_writer: Any) -> None:
    """Adds racing a free worker: each wake-up is one the worker asked for, one per wait."""
    sink = RecordingSink()
    writer = make_writer(sink, capacity=100, max_queue_size=20_000)
    intake = writer._intake
    proxy = OwnerProxy(intake._owner)
    intake._owner = proxy
    for index in range(10_000):
        writer.add(index)
    assert writer.flush(timeout=WAIT) is True
    assert list(range(10_000)) == sink.records
    # The worker waits at most twice per batch (idle for the first record, then for
    # the rest of the batch), and asks for one wake-up per wait.
    assert proxy.wakes <= 2 * len(sink.batches) + 3
    assert proxy.wakes <= 2 * 10_000 // 100 + 3
