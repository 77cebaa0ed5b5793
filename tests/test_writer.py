"""Behaviour of ``BatchWriter``: batching, flush and close, overflow, failures, metrics."""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import freezegun
import pytest
from conftest import BlockingSink

from batchlog import (
    BatchlogError,
    BatchWriter,
    CapacityTooSmallError,
    InvalidFlushIntervalError,
    InvalidQueueSizeError,
    MissingFlushFunctionError,
    QueueFullError,
    WriterClosedError,
    _intake,
)
from batchlog._report import StderrReporter

#: Real seconds to wait for another thread before failing (generous: busy 2-core CI).
WAIT = 10.0


def ignore_errors(exc: Exception, batch: list[Any]) -> None:
    """An ``on_error`` that keeps failure reports off stderr."""


def block_and_fill(writer: BatchWriter[Any], blocking_sink: Any, waiting: int) -> None:
    """Put one record in the (capacity 1) writer's blocked sink, then ``waiting`` behind it."""
    writer.add("in-flight")
    assert blocking_sink.entered.wait(WAIT)
    for number in range(waiting):
        assert writer.try_add(f"waiting-{number}")


def unique_name(prefix: str) -> str:
    """Return a writer name no other test uses, to find its thread."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True, "3"])
def test_invalid_capacity_raises_capacity_too_small(capacity, sink):
    """A capacity that is not an int >= 1 raises CapacityTooSmallError, a ValueError."""
    with pytest.raises(CapacityTooSmallError, match="capacity") as info:
        BatchWriter(capacity, 1.0, sink)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, BatchlogError)


@pytest.mark.parametrize("flush_fn", [None, 42])
def test_missing_flush_fn_raises_missing_flush_function(flush_fn):
    """A flush_fn that is None or not callable raises MissingFlushFunctionError, a TypeError."""
    with pytest.raises(MissingFlushFunctionError, match="flush_fn") as info:
        BatchWriter(10, 1.0, flush_fn)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, BatchlogError)


@pytest.mark.parametrize(
    "flush_interval", [0, 0.0009, -1, math.nan, math.inf, "5", timedelta(microseconds=999)]
)
def test_invalid_flush_interval_raises_invalid_flush_interval(flush_interval, sink):
    """An interval below 1 ms, not finite or not a time raises InvalidFlushIntervalError."""
    with pytest.raises(InvalidFlushIntervalError, match="flush_interval") as info:
        BatchWriter(10, flush_interval, sink)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, BatchlogError)


def test_flush_interval_accepts_timedelta(make_writer, sink):
    """A timedelta interval is accepted and read as seconds."""
    writer = make_writer(sink, flush_interval=timedelta(milliseconds=250))
    assert writer.flush_interval == 0.25


def test_smallest_valid_settings_are_accepted(make_writer, sink):
    """capacity 1, a 1 ms interval and max_queue_size == capacity are all valid."""
    writer = make_writer(sink, capacity=1, flush_interval=0.001, max_queue_size=1)
    assert (writer.capacity, writer.flush_interval, writer.max_queue_size) == (1, 0.001, 1)


@pytest.mark.parametrize("max_queue_size", [4, 0, -1])
def test_max_queue_size_below_capacity_raises_value_error(max_queue_size, sink):
    """max_queue_size below capacity raises InvalidQueueSizeError, a ValueError."""
    with pytest.raises(InvalidQueueSizeError, match="max_queue_size") as info:
        BatchWriter(5, 1.0, sink, max_queue_size=max_queue_size)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, BatchlogError)


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((0, 0, None), {"max_queue_size": -1}, CapacityTooSmallError),
        ((1, 0, None), {"max_queue_size": -1}, MissingFlushFunctionError),
        ((5, 0, print), {"max_queue_size": 1}, InvalidFlushIntervalError),
        ((5, 1.0, print), {"max_queue_size": 1}, InvalidQueueSizeError),
    ],
    ids=["capacity-first", "flush_fn-second", "interval-third", "queue-size-last"],
)
def test_construction_errors_are_checked_in_contract_order(args, kwargs, expected):
    """With several bad arguments, the error for the earliest in the contract's order wins."""
    with pytest.raises(BatchlogError) as info:
        BatchWriter(*args, **kwargs)
    assert expected is type(info.value)


# --------------------------------------------------------------------------- size batching


def test_full_batch_is_delivered_without_waiting_for_interval(make_writer, sink, clock):
    """capacity waiting records go to the sink at once, though no time passes."""
    writer = make_writer(sink, capacity=3, flush_interval=5.0, clock=clock)
    for record in range(3):
        writer.add(record)
    assert sink.wait_for_batches(1)
    assert sink.batches == [[0, 1, 2]]
    assert clock.now() == 0.0


def test_no_batch_exceeds_capacity_and_order_is_preserved(make_writer, sink):
    """Many records arrive in batches of at most capacity, in the order they were added."""
    writer = make_writer(sink, capacity=7)
    for record in range(1000):
        writer.add(record)
    assert writer.flush(timeout=WAIT)
    assert all(1 <= len(batch) <= 7 for batch in sink.batches)
    assert list(range(1000)) == sink.records


def test_records_from_many_threads_are_delivered_once_in_per_thread_order(make_writer, sink):
    """Concurrent adders lose nothing, duplicate nothing, and keep each thread's order."""
    writer = make_writer(sink, capacity=7)
    threads_count, per_thread = 4, 250
    barrier = threading.Barrier(threads_count)

    def produce(thread_number: int) -> None:
        barrier.wait(WAIT)
        for number in range(per_thread):
            writer.add((thread_number, number))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert writer.flush(timeout=WAIT)
    for thread_number in range(threads_count):
        seen = [number for (origin, number) in sink.records if origin == thread_number]
        assert list(range(per_thread)) == seen
    assert threads_count * per_thread == len(sink.records)


# --------------------------------------------------------------------------- time batching


def _add_to_idle_writer(writer, clock, record):
    """Add ``record`` once the worker sleeps idle; return when it waits for the window."""
    assert clock.wait_for_sleep(after=0)  # the worker is idle
    mark = clock.sleeps
    writer.add(record)
    assert clock.wait_for_sleep(after=mark)  # woken by the add, it waits for the window


def test_record_is_delivered_exactly_when_interval_passes(make_writer, sink, clock):
    """A lone record waits until flush_interval has passed, and no longer."""
    writer = make_writer(sink, capacity=10, flush_interval=5.0, clock=clock)
    _add_to_idle_writer(writer, clock, "a")
    assert clock.deadlines == [5.0]
    sleeps = clock.sleeps
    clock.advance(4.9)
    # The fake clock wakes only waits whose deadline passed: the worker still sleeps.
    assert (clock.sleeps, clock.deadlines) == (sleeps, [5.0])
    assert sink.batches == []
    clock.advance(0.1)
    assert sink.wait_for_batches(1)
    assert sink.batches == [["a"]]


def test_later_records_do_not_delay_the_oldest_record(make_writer, sink, clock):
    """The interval runs from the oldest waiting record's arrival, not the newest's."""
    writer = make_writer(sink, capacity=10, flush_interval=5.0, clock=clock)
    _add_to_idle_writer(writer, clock, "a")
    clock.advance(3.0)
    writer.add("b")
    clock.advance(2.0)
    assert sink.wait_for_batches(1)
    assert sink.batches == [["a", "b"]]


def test_record_added_to_idle_writer_waits_at_most_the_interval(make_writer, sink, clock):
    """After an idle spell, a new record waits flush_interval from its own arrival."""
    writer = make_writer(sink, capacity=10, flush_interval=5.0, clock=clock)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    clock.advance(7.0)
    assert clock.wait_for_deadline(12.0, idle=True)  # idle again, re-checking at 7 + 5
    mark = clock.sleeps
    writer.add("b")
    assert clock.wait_for_sleep(after=mark)
    assert clock.deadlines == [12.0]  # b's window: from its arrival at 7
    clock.advance(4.9)
    assert sink.batches == [["a"]]
    clock.advance(0.1)
    assert sink.wait_for_batches(2)
    assert sink.batches == [["a"], ["b"]]


def test_record_added_during_slow_flush_waits_interval_from_its_arrival(
    make_writer, blocking_sink, clock
):
    """Time a record spends waiting behind a slow sink counts toward its interval."""
    writer = make_writer(blocking_sink, capacity=10, flush_interval=5.0, clock=clock)
    writer.add("a")
    assert writer.flush(timeout=0) is False  # ask for ["a"] now, without waiting
    assert blocking_sink.entered.wait(WAIT)
    writer.add("b")
    clock.advance(3.0)
    mark = clock.sleeps
    blocking_sink.release()
    assert clock.wait_for_sleep(after=mark)
    assert blocking_sink.batches == [["a"]]
    clock.advance(2.0)
    assert blocking_sink.wait_for_batches(2)
    assert blocking_sink.batches == [["a"], ["b"]]


def test_passing_intervals_with_empty_buffer_never_call_sink(make_writer, sink, clock):
    """Once the buffer is empty, later intervals produce no calls."""
    writer = make_writer(sink, capacity=10, flush_interval=5.0, clock=clock)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    for _ in range(5):
        mark = clock.sleeps
        clock.advance(5.0)
        assert clock.wait_for_sleep(after=mark)
    assert sink.batches == [["a"]]


# --------------------------------------------------------------------------- empty buffer


def test_flush_on_empty_writer_returns_true_without_calling_sink(make_writer, sink):
    """flush() with nothing accepted succeeds and makes no call."""
    writer = make_writer(sink)
    assert writer.flush(timeout=WAIT) is True
    assert sink.batches == []


def test_close_on_unused_writer_does_not_call_sink(make_writer, sink):
    """close() of a writer that never got a record succeeds and makes no call."""
    writer = make_writer(sink)
    assert writer.close(timeout=WAIT) is True
    assert sink.batches == []


def test_second_flush_with_nothing_new_does_not_call_sink(make_writer, sink):
    """A flush after everything was delivered makes no further call."""
    writer = make_writer(sink)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert writer.flush(timeout=WAIT)
    assert writer.close(timeout=WAIT)
    assert sink.batches == [["a"]]


# --------------------------------------------------------------------------- flush()


def test_flush_delivers_everything_added_before_it(make_writer, sink):
    """flush() hands every accepted record to the sink before returning True."""
    writer = make_writer(sink, capacity=100)
    for record in range(10):
        writer.add(record)
    assert writer.flush(timeout=WAIT) is True
    assert list(range(10)) == sink.records


def test_metrics_count_flushed_records_when_flush_returns(make_writer, sink):
    """When flush() returns True the metrics already count the flushed batches."""
    writer = make_writer(sink, capacity=100)
    for record in range(10):
        writer.add(record)
    assert writer.flush(timeout=WAIT)
    metrics = writer.metrics
    assert (
        metrics.records_added,
        metrics.records_processed,
        metrics.records_in_buffer,
        metrics.flush_count,
    ) == (10, 10, 0, 1)


def test_flush_with_timeout_returns_false_while_sink_blocks(make_writer, blocking_sink):
    """flush(timeout) is False while the sink holds a batch, True once it lets go."""
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)
    writer.add("b")
    assert writer.flush(timeout=0.05) is False
    blocking_sink.release()
    assert writer.flush(timeout=WAIT) is True
    assert blocking_sink.records == ["a", "b"]
    assert writer.metrics.records_processed == 2


# --------------------------------------------------------------------------- close()


def test_close_delivers_everything_and_returns_true(make_writer, sink):
    """close() hands every accepted record to the sink and returns True."""
    writer = make_writer(sink, capacity=3)
    for record in range(5):
        writer.add(record)
    assert writer.close(timeout=WAIT) is True
    assert sink.records == [0, 1, 2, 3, 4]
    assert writer.metrics.records_processed == 5


def test_close_is_idempotent(make_writer, sink):
    """A second close() returns True and delivers nothing twice."""
    writer = make_writer(sink)
    writer.add("a")
    assert writer.close(timeout=WAIT) is True
    assert writer.close(timeout=WAIT) is True
    assert sink.batches == [["a"]]


def test_concurrent_close_calls_all_return_true(make_writer, blocking_sink):
    """close() called from several threads at once returns True in each."""
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)
    closers = 4
    barrier = threading.Barrier(closers + 1)
    results: list[bool] = []

    def close() -> None:
        barrier.wait(WAIT)
        results.append(writer.close(timeout=WAIT))

    threads = [threading.Thread(target=close) for _ in range(closers)]
    for thread in threads:
        thread.start()
    barrier.wait(WAIT)
    blocking_sink.release()
    for thread in threads:
        thread.join(WAIT)
    assert [True] * closers == results
    assert blocking_sink.batches == [["a"]]


def test_close_with_timeout_returns_false_promptly_when_sink_hangs(make_writer, blocking_sink):
    """close(timeout=0.1) gives up soon when the sink never returns."""
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)
    started = time.monotonic()
    assert writer.close(timeout=0.1) is False
    assert time.monotonic() - started < 5.0


def test_close_after_a_timed_out_close_returns_true(make_writer, blocking_sink):
    """A later close() waits for the sink it earlier gave up on, then returns True."""
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)
    writer.add("b")
    assert writer.close(timeout=0.05) is False
    blocking_sink.release()
    assert writer.close(timeout=WAIT) is True
    assert blocking_sink.records == ["a", "b"]


def test_add_after_close_raises_writer_closed_and_counts_drop(make_writer, sink):
    """add() on a closed writer raises WriterClosedError and counts the record as dropped."""
    writer = make_writer(sink)
    writer.close(timeout=WAIT)
    with pytest.raises(WriterClosedError):
        writer.add("late")
    assert writer.metrics.records_dropped == 1


def test_try_add_after_close_returns_false_and_counts_drop(make_writer, sink):
    """try_add() on a closed writer returns False and counts the record as dropped."""
    writer = make_writer(sink)
    writer.add("a")
    writer.close(timeout=WAIT)
    assert writer.try_add("late") is False
    assert writer.try_add("later", evict_oldest=True) is False
    assert writer.metrics.records_dropped == 2
    assert sink.batches == [["a"]]


def test_add_async_after_close_raises_writer_closed(make_writer, sink):
    """add_async() on a closed writer raises WriterClosedError and counts a drop."""
    writer = make_writer(sink)
    writer.close(timeout=WAIT)
    with pytest.raises(WriterClosedError):
        asyncio.run(writer.add_async("late"))
    assert writer.metrics.records_dropped == 1


def test_close_ends_worker_thread(make_writer, sink):
    """After close() the worker thread ends."""
    writer = make_writer(sink)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    worker = sink.threads[0]
    assert writer.close(timeout=WAIT)
    worker.join(WAIT)
    assert not worker.is_alive()


def test_close_with_bad_timeout_leaves_writer_open(make_writer, sink):
    """close() with an invalid timeout raises before closing anything."""
    writer = make_writer(sink)
    with pytest.raises(ValueError, match="timeout"):
        writer.close(timeout=-1)
    assert writer.closed is False
    writer.add("still open")


# --------------------------------------------------------------------------- full queue


def test_add_with_timeout_on_full_queue_raises_queue_full(make_writer, blocking_sink):
    """add(timeout) on a queue that stays full raises QueueFullError, a TimeoutError."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    block_and_fill(writer, blocking_sink, 1)
    with pytest.raises(QueueFullError) as info:
        writer.add("refused", timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert writer.metrics.records_dropped == 1


def test_add_without_timeout_waits_until_room_is_made(make_writer, blocking_sink):
    """add() on a full queue returns once the sink makes room, and the record arrives."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    block_and_fill(writer, blocking_sink, 1)
    returned = threading.Event()

    def add() -> None:
        writer.add("patient")
        returned.set()

    adder = threading.Thread(target=add)
    adder.start()
    assert not returned.wait(0.05)  # still waiting for room
    blocking_sink.release()
    assert returned.wait(WAIT)
    adder.join(WAIT)
    assert writer.flush(timeout=WAIT)
    assert blocking_sink.records == ["in-flight", "waiting-0", "patient"]
    assert writer.metrics.records_dropped == 0


def test_close_releases_blocked_add_with_writer_closed(make_writer, blocking_sink):
    """An add() waiting for room raises WriterClosedError when the writer is closed."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    block_and_fill(writer, blocking_sink, 1)
    errors: list[BaseException] = []
    finished = threading.Event()

    def add() -> None:
        try:
            writer.add("blocked")
        except BaseException as exc:  # noqa: BLE001 -- hand any outcome to the test
            errors.append(exc)
        finished.set()

    adder = threading.Thread(target=add)
    adder.start()
    assert not finished.wait(0.05)  # still waiting for room
    writer.close(timeout=0.05)
    assert finished.wait(WAIT)
    adder.join(WAIT)
    assert [WriterClosedError] == [type(error) for error in errors]
    blocking_sink.release()
    assert writer.close(timeout=WAIT)
    assert "blocked" not in blocking_sink.records
    assert writer.metrics.records_dropped == 1


def test_try_add_on_full_queue_returns_false_and_counts_drop(make_writer, blocking_sink):
    """try_add() on a full queue returns False at once and counts a drop."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    block_and_fill(writer, blocking_sink, 1)
    assert writer.try_add("refused") is False
    assert writer.metrics.records_dropped == 1
    blocking_sink.release()
    assert writer.flush(timeout=WAIT)
    assert "refused" not in blocking_sink.records


def test_try_add_evict_oldest_discards_oldest_waiting_record(make_writer, blocking_sink):
    """evict_oldest drops the oldest waiting record (not the in-flight one) for the new one."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=2)
    block_and_fill(writer, blocking_sink, 2)
    assert writer.try_add("newest", evict_oldest=True) is True
    metrics = writer.metrics
    assert (metrics.records_evicted, metrics.records_dropped) == (1, 0)
    blocking_sink.release()
    assert writer.flush(timeout=WAIT)
    assert blocking_sink.records == ["in-flight", "waiting-1", "newest"]


def test_max_queue_size_bounds_waiting_records_exactly(make_writer, blocking_sink):
    """Behind a batch in flight, exactly max_queue_size more records are accepted."""
    writer = make_writer(blocking_sink, capacity=2, max_queue_size=5)
    writer.add("flight-0")
    writer.add("flight-1")
    assert blocking_sink.entered.wait(WAIT)
    accepted = [writer.try_add(number) for number in range(5)]
    assert accepted == [True] * 5
    assert writer.try_add("one too many") is False
    blocking_sink.release()
    assert writer.close(timeout=WAIT)
    assert blocking_sink.records == ["flight-0", "flight-1", 0, 1, 2, 3, 4]


def test_records_in_buffer_counts_in_flight_and_waiting(make_writer, blocking_sink):
    """records_in_buffer includes the batch the sink holds and the records waiting."""
    writer = make_writer(blocking_sink, capacity=2, max_queue_size=5)
    writer.add("flight-0")
    writer.add("flight-1")
    assert blocking_sink.entered.wait(WAIT)
    for number in range(3):
        writer.add(number)
    assert writer.metrics.records_in_buffer == 5


# --------------------------------------------------------------------------- no lock during flush


def test_metrics_do_not_wait_for_running_sink(make_writer, blocking_sink):
    """metrics returns at once while the sink holds a batch."""
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)
    assert writer.metrics.records_in_buffer == 1


def test_add_does_not_wait_for_running_sink(make_writer, blocking_sink):
    """add() with room returns at once while the sink holds a batch."""
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)
    writer.add("b", timeout=WAIT)
    assert writer.metrics.records_in_buffer == 2


def test_try_add_does_not_wait_for_running_sink(make_writer, blocking_sink):
    """try_add() with room returns True at once while the sink holds a batch."""
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)
    assert writer.try_add("b") is True


def test_logger_can_be_set_while_sink_runs(make_writer, blocking_sink, log_capture):
    """Setting writer.logger does not wait for the sink holding a batch."""
    logger, _ = log_capture
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)
    writer.logger = logger
    assert logger is writer.logger


# --------------------------------------------------------------------------- reentrancy


def test_sink_can_add_to_its_own_writer(make_writer):
    """A record the sink adds to its own writer is accepted and delivered later."""
    delivered: list[Any] = []

    def sink(batch: list[Any]) -> None:
        delivered.extend(batch)
        if batch == ["a"]:
            writer.add("echo")

    writer = make_writer(sink, capacity=1)
    writer.add("a")
    assert writer.flush(timeout=WAIT) is True
    assert writer.flush(timeout=WAIT) is True
    assert delivered == ["a", "echo"]


def test_sink_can_try_add_to_its_own_writer(make_writer):
    """try_add() from the sink on its own writer with room returns True."""
    delivered: list[Any] = []
    outcome: list[bool] = []

    def sink(batch: list[Any]) -> None:
        delivered.extend(batch)
        if batch == ["a"]:
            outcome.append(writer.try_add("echo"))

    writer = make_writer(sink, capacity=1)
    writer.add("a")
    assert writer.flush(timeout=WAIT) is True
    assert writer.flush(timeout=WAIT) is True
    assert outcome == [True]
    assert delivered == ["a", "echo"]


def test_add_on_worker_thread_with_full_queue_raises_at_once(make_writer):
    """add() from the sink on a full queue raises QueueFullError instead of waiting."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def sink(batch: list[Any]) -> None:
        if batch != ["a"]:
            return
        writer.add("fills the queue")
        started = time.monotonic()
        try:
            writer.add("no room")
        except BaseException as exc:  # noqa: BLE001 -- hand any outcome to the test
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started
        done.set()

    writer = make_writer(sink, capacity=1, max_queue_size=1)
    writer.add("a")
    assert done.wait(WAIT)
    assert isinstance(outcome.get("error"), QueueFullError)
    assert outcome["seconds"] < 5.0
    assert writer.flush(timeout=WAIT)
    assert writer.metrics.records_dropped == 1


def test_try_add_on_worker_thread_with_full_queue_returns_false(make_writer):
    """try_add() from the sink on a full queue returns False and counts a drop."""
    outcome: list[bool] = []

    def sink(batch: list[Any]) -> None:
        if batch == ["a"]:
            outcome.append(writer.try_add("fills the queue"))
            outcome.append(writer.try_add("no room"))

    writer = make_writer(sink, capacity=1, max_queue_size=1)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert writer.flush(timeout=WAIT)
    assert outcome == [True, False]
    assert writer.metrics.records_dropped == 1


def test_flush_inside_sink_returns_false_at_once(make_writer):
    """flush() called by the sink on its own writer returns False without deadlocking."""
    outcome: dict[str, Any] = {}

    def sink(batch: list[Any]) -> None:
        if batch == ["a"]:
            started = time.monotonic()
            outcome["result"] = writer.flush(timeout=WAIT)
            outcome["seconds"] = time.monotonic() - started

    writer = make_writer(sink, capacity=1)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert outcome["result"] is False
    assert outcome["seconds"] < 5.0


def test_close_inside_sink_returns_false_and_writer_finishes_closing(make_writer):
    """close() called by the sink returns False; the writer then closes, delivering all."""
    delivered: list[Any] = []
    outcome: list[bool] = []
    inner_close_done = threading.Event()

    def sink(batch: list[Any]) -> None:
        delivered.extend(batch)
        if batch == ["a"]:
            outcome.append(writer.close(timeout=WAIT))
            inner_close_done.set()

    writer = make_writer(sink, capacity=1)
    writer.add("a")
    assert inner_close_done.wait(WAIT)
    assert writer.close(timeout=WAIT) is True
    assert outcome == [False]
    assert delivered == ["a"]
    with pytest.raises(WriterClosedError):
        writer.add("late")


def test_metrics_inside_sink_count_the_batch_in_flight(make_writer):
    """metrics read by the sink return and count its batch as in the buffer."""
    seen: list[int] = []

    def sink(batch: list[Any]) -> None:
        seen.append(writer.metrics.records_in_buffer)

    writer = make_writer(sink, capacity=2)
    writer.add("a")
    writer.add("b")
    assert writer.flush(timeout=WAIT)
    assert seen == [2]


# --------------------------------------------------------------------------- failures


def test_failed_batch_counts_as_failed_not_processed(make_writer):
    """A raising sink's batch counts in records_failed and flush_errors, not processed."""

    def sink(batch: list[Any]) -> None:
        raise ValueError("sink exploded")

    writer = make_writer(sink, capacity=10, on_error=ignore_errors)
    for record in range(3):
        writer.add(record)
    assert writer.flush(timeout=WAIT)
    metrics = writer.metrics
    assert (
        metrics.records_failed,
        metrics.records_processed,
        metrics.flush_errors,
        metrics.flush_count,
    ) == (3, 0, 1, 1)


def test_on_error_receives_exception_and_batch(make_writer):
    """on_error is called with the sink's exception and the failed batch."""
    error = ValueError("sink exploded")
    calls: list[tuple[Exception, list[Any]]] = []

    def sink(batch: list[Any]) -> None:
        raise error

    writer = make_writer(sink, on_error=lambda exc, batch: calls.append((exc, list(batch))))
    writer.add("a")
    writer.add("b")
    assert writer.flush(timeout=WAIT)
    assert [(error, ["a", "b"])] == calls


def test_on_error_takes_the_place_of_logger(make_writer, log_capture):
    """With on_error given, a failure is not also logged."""
    logger, captured = log_capture

    def sink(batch: list[Any]) -> None:
        raise ValueError("sink exploded")

    writer = make_writer(sink, on_error=ignore_errors, logger=logger)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert captured.records == []


def test_raising_on_error_is_reported_to_logger(make_writer, log_capture):
    """An exception from on_error is logged (with exc_info) instead of raised."""
    logger, captured = log_capture
    on_error_failure = RuntimeError("on_error broke")

    def sink(batch: list[Any]) -> None:
        raise ValueError("sink exploded")

    def on_error(exc: Exception, batch: list[Any]) -> None:
        raise on_error_failure

    writer = make_writer(sink, on_error=on_error, logger=logger)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert on_error_failure in [record.exc_info[1] for record in captured.records]


def test_raising_on_error_is_reported_to_stderr_without_logger(make_writer, capsys):
    """Without a logger, an exception from on_error goes to stderr with its traceback."""

    def sink(batch: list[Any]) -> None:
        raise ValueError("sink exploded")

    def on_error(exc: Exception, batch: list[Any]) -> None:
        raise RuntimeError("on_error broke")

    writer = make_writer(sink, on_error=on_error, name=unique_name("on-error"))
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    err = capsys.readouterr().err
    assert "RuntimeError: on_error broke" in err
    assert writer.name in err


def test_worker_keeps_delivering_after_on_error_raises(make_writer, log_capture):
    """A raising on_error does not stop later batches from being delivered."""
    logger, _ = log_capture
    delivered: list[Any] = []

    def sink(batch: list[Any]) -> None:
        if batch == ["bad"]:
            raise ValueError("sink exploded")
        delivered.extend(batch)

    def on_error(exc: Exception, batch: list[Any]) -> None:
        raise RuntimeError("on_error broke")

    writer = make_writer(sink, capacity=1, on_error=on_error, logger=logger)
    writer.add("bad")
    assert writer.flush(timeout=WAIT)
    writer.add("good")
    assert writer.flush(timeout=WAIT)
    assert delivered == ["good"]
    assert writer.metrics.records_processed == 1


def test_failure_without_on_error_is_logged_with_exc_info_and_name(make_writer, log_capture):
    """Without on_error, the logger gets an ERROR record with exc_info and the writer's name."""
    logger, captured = log_capture
    error = ValueError("sink exploded")

    def sink(batch: list[Any]) -> None:
        raise error

    writer = make_writer(sink, logger=logger, name=unique_name("logged"))
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    [record] = captured.records
    assert record.levelno == logging.ERROR
    assert error is record.exc_info[1]
    assert writer.name in record.getMessage()


def test_failure_without_on_error_or_logger_goes_to_stderr(make_writer, capsys):
    """Without on_error or logger, stderr gets the traceback and the writer's name."""

    def sink(batch: list[Any]) -> None:
        raise ValueError("sink exploded")

    writer = make_writer(sink, name=unique_name("stderr"))
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "ValueError: sink exploded" in err
    assert writer.name in err


def test_stderr_failure_reports_are_rate_limited(make_writer, capsys):
    """Many failures in a short time produce fewer stderr reports than failures."""

    def sink(batch: list[Any]) -> None:
        raise ValueError("sink exploded")

    writer = make_writer(sink, capacity=1)
    failures = 20
    for record in range(failures):
        writer.add(record)
    assert writer.flush(timeout=WAIT)
    assert failures == writer.metrics.flush_errors
    reports = capsys.readouterr().err.count("ValueError: sink exploded")
    assert 1 <= reports < failures


def test_reporter_writes_at_most_burst_reports_per_period(capsys):
    """Within one period the reporter writes only ``burst`` reports."""
    with freezegun.freeze_time("2024-01-01", tick=False):
        reporter = StderrReporter(burst=2, period=60.0)
        for number in range(5):
            reporter.report(f"failure {number}")
    err = capsys.readouterr().err
    assert err == "batchlog: failure 0\nbatchlog: failure 1\n"


def test_reporter_says_how_many_were_suppressed_after_period(capsys):
    """The first report after the period says how many reports were suppressed."""
    with freezegun.freeze_time("2024-01-01", tick=False) as frozen:
        reporter = StderrReporter(burst=2, period=60.0)
        for number in range(5):
            reporter.report(f"failure {number}")
        capsys.readouterr()
        frozen.tick(timedelta(seconds=59))
        reporter.report("still suppressed")
        assert capsys.readouterr().err == ""
        frozen.tick(timedelta(seconds=1))
        reporter.report("later")
    err = capsys.readouterr().err
    assert "4 similar reports were suppressed" in err
    assert "batchlog: later\n" in err


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_worker_survives_sink_raising_base_exception(make_writer, log_capture, exc_type):
    """A sink raising SystemExit or KeyboardInterrupt does not kill the worker."""
    logger, captured = log_capture
    delivered: list[Any] = []

    def sink(batch: list[Any]) -> None:
        if batch == ["fatal"]:
            raise exc_type
        delivered.extend(batch)

    writer = make_writer(sink, capacity=1, logger=logger)
    writer.add("fatal")
    assert writer.flush(timeout=WAIT)
    writer.add("after")
    assert writer.flush(timeout=WAIT)
    assert delivered == ["after"]
    assert (writer.metrics.records_failed, writer.metrics.records_processed) == (1, 1)
    assert [exc_type] == [type(record.exc_info[1]) for record in captured.records]


def test_logger_set_from_another_thread_is_used_for_next_failure(make_writer, make_log_capture):
    """writer.logger set on another thread receives the next failure report."""
    first_logger, first = make_log_capture()
    second_logger, second = make_log_capture()

    def sink(batch: list[Any]) -> None:
        raise ValueError("sink exploded")

    writer = make_writer(sink, capacity=1, logger=first_logger)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    setter = threading.Thread(target=setattr, args=(writer, "logger", second_logger))
    setter.start()
    setter.join(WAIT)
    writer.add("b")
    assert writer.flush(timeout=WAIT)
    assert (len(first.records), len(second.records)) == (1, 1)


# --------------------------------------------------------------------------- clear_buffers


def test_without_clear_buffers_sink_may_keep_each_batch(make_writer):
    """With clear_buffers=False each batch is a fresh list that stays intact."""
    kept: list[list[Any]] = []
    writer = make_writer(kept.append, capacity=2, clear_buffers=False)
    writer.add(0)
    writer.add(1)
    assert writer.flush(timeout=WAIT)
    writer.add(2)
    writer.add(3)
    assert writer.flush(timeout=WAIT)
    assert kept == [[0, 1], [2, 3]]
    assert kept[0] is not kept[1]


def test_with_clear_buffers_the_same_list_is_reused(make_writer):
    """With clear_buffers=True every batch is the same list object."""
    seen: list[list[Any]] = []
    contents: list[list[Any]] = []

    def sink(batch: list[Any]) -> None:
        seen.append(batch)
        contents.append(list(batch))

    writer = make_writer(sink, capacity=2, clear_buffers=True)
    writer.add(0)
    writer.add(1)
    assert writer.flush(timeout=WAIT)
    writer.add(2)
    writer.add(3)
    assert writer.flush(timeout=WAIT)
    assert contents == [[0, 1], [2, 3]]
    assert seen[0] is seen[1]


def test_with_clear_buffers_the_list_is_emptied_after_sink_returns(make_writer):
    """With clear_buffers=True the batch list is empty once flush_fn has returned."""
    seen: list[list[Any]] = []
    writer = make_writer(seen.append, capacity=5, clear_buffers=True)
    for record in range(3):
        writer.add(record)
    assert writer.flush(timeout=WAIT)
    assert seen == [[]]


# --------------------------------------------------------------------------- metrics


def test_metrics_invariant_holds_after_mixed_operations(make_writer, new_gate):
    """added == processed + failed + evicted + in_buffer through drops, evictions, failures."""
    gate = new_gate()
    entered = threading.Event()

    def sink(batch: list[Any]) -> None:
        entered.set()
        gate.wait(WAIT)
        if batch == ["c"]:
            raise ValueError("c is bad")

    writer = make_writer(sink, capacity=1, max_queue_size=2, on_error=ignore_errors)
    snapshots = [writer.metrics]
    writer.add("a")
    assert entered.wait(WAIT)
    snapshots.append(writer.metrics)
    assert writer.try_add("b")
    assert writer.try_add("c")
    assert not writer.try_add("d")
    snapshots.append(writer.metrics)
    assert writer.try_add("e", evict_oldest=True)
    with pytest.raises(QueueFullError):
        writer.add("f", timeout=0)
    snapshots.append(writer.metrics)
    gate.set()
    assert writer.close(timeout=WAIT)
    final = writer.metrics
    snapshots.append(final)
    for metrics in snapshots:
        assert metrics.records_added == (
            metrics.records_processed
            + metrics.records_failed
            + metrics.records_evicted
            + metrics.records_in_buffer
        )
    assert (
        final.records_added,
        final.records_processed,
        final.records_failed,
        final.records_evicted,
        final.records_in_buffer,
        final.records_dropped,
    ) == (4, 2, 1, 1, 0, 2)


def test_flush_durations_are_measured_with_writer_clock(make_writer, clock):
    """Flush durations come from the writer's clock: exact with a FakeClock."""
    durations = iter([2.0, 4.0])

    def sink(batch: list[Any]) -> None:
        clock.advance(next(durations))

    writer = make_writer(sink, capacity=1, clock=clock)
    writer.add("a")
    writer.add("b")
    assert writer.flush(timeout=WAIT)
    metrics = writer.metrics
    assert (
        metrics.flush_count,
        metrics.last_flush_duration,
        metrics.avg_flush_duration,
        metrics.max_flush_duration,
        metrics.total_flush_time,
    ) == (2, 4.0, 3.0, 4.0, 6.0)


def test_metrics_snapshot_does_not_change_afterwards(make_writer, sink):
    """A Metrics value is a snapshot: later activity does not change it."""
    writer = make_writer(sink)
    before = writer.metrics
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert (before.records_added, before.records_processed) == (0, 0)
    assert writer.metrics.records_added == 1


# ------------------------------------------------------------- asyncio and context managers


def test_add_async_and_flush_async_deliver(make_writer, sink):
    """Records added with add_async are delivered by flush_async, which returns True."""
    writer = make_writer(sink)

    async def main() -> bool:
        await writer.add_async("a")
        await writer.add_async("b", timeout=WAIT)
        return await writer.flush_async(timeout=WAIT)

    assert asyncio.run(main()) is True
    assert sink.records == ["a", "b"]


def test_aclose_delivers_and_returns_true(make_writer, sink):
    """aclose() delivers everything, closes the writer and returns True."""
    writer = make_writer(sink)

    async def main() -> bool:
        await writer.add_async("a")
        return await writer.aclose(timeout=WAIT)

    assert asyncio.run(main()) is True
    assert writer.closed
    assert sink.records == ["a"]


def test_async_with_closes_writer_on_exit(make_writer, sink):
    """``async with`` yields the writer and closes it on exit, delivering everything."""
    writer = make_writer(sink)

    async def main() -> Any:
        async with writer as entered:
            await entered.add_async("a")
        return entered

    assert asyncio.run(main()) is writer
    assert writer.closed
    assert sink.records == ["a"]


def test_with_closes_writer_on_exit(make_writer, sink):
    """``with`` yields the writer and closes it on exit, delivering everything."""
    with make_writer(sink) as writer:
        writer.add("a")
    assert writer.closed
    assert sink.records == ["a"]


def test_add_async_waits_for_room_without_blocking_event_loop(make_writer, blocking_sink):
    """While add_async waits on a full queue, other tasks on the loop keep running."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    block_and_fill(writer, blocking_sink, 1)

    async def main() -> int:
        waiter = asyncio.create_task(writer.add_async("patient"))
        progress = 0
        for _ in range(10):
            await asyncio.sleep(0)
            progress += 1
        assert not waiter.done()
        blocking_sink.release()
        await asyncio.wait_for(waiter, WAIT)
        return progress

    assert asyncio.run(main()) == 10
    assert writer.flush(timeout=WAIT)
    assert blocking_sink.records == ["in-flight", "waiting-0", "patient"]


def test_cancelled_add_async_adds_no_record(make_writer, blocking_sink):
    """A cancelled add_async leaves no record behind, even once room is made."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    block_and_fill(writer, blocking_sink, 1)
    added_before = writer.metrics.records_added

    async def main() -> None:
        waiter = asyncio.create_task(writer.add_async("cancelled"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
    assert added_before == writer.metrics.records_added
    blocking_sink.release()
    assert writer.close(timeout=WAIT)
    assert "cancelled" not in blocking_sink.records
    assert added_before == writer.metrics.records_added


def test_add_async_with_timeout_on_full_queue_raises_queue_full(make_writer, blocking_sink):
    """add_async(timeout) on a queue that stays full raises QueueFullError and counts a drop."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    block_and_fill(writer, blocking_sink, 1)
    with pytest.raises(QueueFullError):
        asyncio.run(writer.add_async("refused", timeout=0.05))
    assert writer.metrics.records_dropped == 1


# --------------------------------------------------------------------------- names and threads


def test_repr_contains_name(make_writer, sink):
    """repr() shows the writer's name."""
    writer = make_writer(sink, name="orders")
    assert "orders" in repr(writer)


def test_default_names_are_distinct(make_writer, sink):
    """Writers made without a name get different names."""
    assert make_writer(sink).name != make_writer(sink).name


def test_sink_runs_on_daemon_worker_thread_named_for_writer(make_writer, sink):
    """The sink runs on a daemon thread whose name contains the writer's name."""
    name = unique_name("orders")
    writer = make_writer(sink, name=name)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    workers = [thread for thread in threading.enumerate() if name in thread.name]
    assert sink.threads == workers
    assert workers[0].daemon
    assert threading.current_thread() is not workers[0]


def test_worker_thread_starts_with_the_writer_and_ends_with_close(make_writer, sink):
    """The worker starts at construction (threads may not start at exit) and ends on close."""
    name = unique_name("eager")
    writer = make_writer(sink, name=name)
    (worker,) = [thread for thread in threading.enumerate() if name in thread.name]
    assert writer.close(timeout=WAIT)
    worker.join(WAIT)
    assert not worker.is_alive()


# --------------------------------------------------------------------------- timeout arguments


def call_with_timeout(writer: BatchWriter[Any], method: str, timeout: Any) -> object:
    """Call ``method`` of ``writer`` with ``timeout``, running coroutines to completion."""
    if method == "add":
        return writer.add("record", timeout=timeout)
    if method == "add_async":
        return asyncio.run(writer.add_async("record", timeout=timeout))
    if method == "flush":
        return writer.flush(timeout=timeout)
    if method == "flush_async":
        return asyncio.run(writer.flush_async(timeout=timeout))
    if method == "close":
        return writer.close(timeout=timeout)
    return asyncio.run(writer.aclose(timeout=timeout))


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [(-1, ValueError), (math.nan, ValueError), ("x", TypeError)],
    ids=["negative", "nan", "string"],
)
@pytest.mark.parametrize("method", ["add", "add_async", "flush", "flush_async", "close", "aclose"])
def test_bad_timeout_raises_naming_timeout(make_writer, sink, method, timeout, expected):
    """A negative, NaN or non-numeric timeout raises ValueError/TypeError naming timeout."""
    writer = make_writer(sink)
    with pytest.raises(expected, match="timeout"):
        call_with_timeout(writer, method, timeout)


# An adder takes its slot and appends its record in two lock-free steps. An evicting add
# landing between them finds no free slot and no record to evict; these tests stand in for
# that adder by taking the slot themselves and appending (or not) when the evicting add
# lets other threads run.


def _full_with_a_slot_held() -> tuple[BatchWriter[str], Any, Any]:
    """capacity 1, max_queue_size 1: one batch held in the sink, the only slot held too."""
    sink = BlockingSink()
    writer: BatchWriter[str] = BatchWriter(1, 3600.0, sink, max_queue_size=1)
    writer.add("in the sink")
    assert sink.entered.wait(WAIT)
    intake = writer._intake
    intake._pop_slot()  # the adder's first step: its slot is taken, its record not there
    assert not intake._slots
    assert not len(intake)
    assert not operator.length_hint(intake._unmade)
    return writer, sink, intake


def test_an_evicting_add_lets_an_adder_between_its_two_steps_finish(monkeypatch) -> None:
    """The evicting add yields; the adder appends; its record is the one evicted."""
    writer, sink, intake = _full_with_a_slot_held()
    yields = []

    def adder_finishes() -> None:
        yields.append(1)
        if len(yields) == 1:
            intake._append_record("the adder's")  # the adder's second step

    monkeypatch.setattr(_intake, "_yield_to_adders", adder_finishes)
    try:
        assert writer.try_add("evicting", evict_oldest=True) is True
    finally:
        sink.release()
        assert writer.close(timeout=WAIT) is True
    assert len(yields) == 1
    assert sink.records == ["in the sink", "evicting"]
    metrics = writer.metrics
    assert (metrics.records_evicted, metrics.records_dropped) == (1, 0)


@pytest.mark.parametrize("limit", ["count", "time"])
def test_an_evicting_add_gives_up_on_an_adder_that_never_appends(monkeypatch, limit) -> None:
    """An adder interrupted between its steps: the evicting add refuses after its yields,
    counted as dropped, and the adder's record is still accepted when it does append.

    The yields stop after ``_EVICT_YIELDS`` of them ("count"), or once ``_EVICT_PATIENCE``
    has passed, after the first ("time": with the GIL one yield can take a whole switch
    interval, 5 ms).
    """
    writer, sink, intake = _full_with_a_slot_held()
    now = [0.0]
    yields = []

    def yield_to_adders() -> None:
        yields.append(1)
        if limit == "time":
            now[0] += 0.005

    monkeypatch.setattr(_intake, "_monotonic", lambda: now[0])
    monkeypatch.setattr(_intake, "_yield_to_adders", yield_to_adders)
    if limit == "count":
        monkeypatch.setattr(_intake, "_EVICT_PATIENCE", 3600.0)
    try:
        assert writer.try_add("evicting", evict_oldest=True) is False
        assert len(yields) == (_intake._EVICT_YIELDS if limit == "count" else 1)
        assert writer.metrics.records_dropped == 1
        assert intake._append("the adder's, late") is True
    finally:
        sink.release()
        assert writer.close(timeout=WAIT) is True
    assert sink.records == ["in the sink", "the adder's, late"]
    assert writer.metrics.records_evicted == 0
