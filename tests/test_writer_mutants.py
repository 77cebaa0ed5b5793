"""Tests that kill the core's mutants (tests/mutation/) the other writer tests let live.

Each test names the mutants it kills. They reach into the core (``writer._intake``,
``writer._worker``) where the public API cannot show the step under test: a slot an
adder holds, a wake-up, a grace wait. No test sleeps to wait for a thread: each waits
for an event or a condition, with ``WAIT`` as the backstop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import operator
import threading
import uuid
from typing import Any, Callable

import pytest
from conftest import WAIT, BlockingSink, RecordingSink

import batchlog._intake
import batchlog._lifecycle
import batchlog._worker
from batchlog import BatchWriter, WriterClosedError
from batchlog._intake import _KEEP_FREE, Intake
from batchlog.testing import FakeClock

# --------------------------------------------------------------------------- helpers


class Interrupted(KeyboardInterrupt):
    """An asynchronous exception landing inside an add, as Ctrl-C would."""


class AppendHook:
    """Stands in for the intake's ``_append_record``: holds or breaks chosen records.

    ``hold(record)``: the add that took a slot for it stops before appending, until
    ``release(record)`` (a slow adder). ``interrupt(record)``: the add raises
    ``Interrupted`` before appending (its slot is lost). ``interrupt_after(record)``: the
    add appends, then raises ``Interrupted`` before it can wake the worker.
    """

    def __init__(self, intake: Intake[Any]) -> None:
        self._append = intake._queue.append
        self._held: dict[Any, tuple[threading.Event, threading.Event]] = {}
        self._before: set[Any] = set()
        self._after: set[Any] = set()
        intake._append_record = self

    def hold(self, record: Any) -> threading.Event:
        """Hold ``record``'s add; return the event set once the add is held."""
        entered = threading.Event()
        self._held[record] = (entered, threading.Event())
        return entered

    def release(self, record: Any) -> None:
        self._held[record][1].set()

    def interrupt(self, record: Any) -> None:
        self._before.add(record)

    def interrupt_after(self, record: Any) -> None:
        self._after.add(record)

    def __call__(self, record: Any) -> None:
        if record in self._before:
            raise Interrupted
        if record in self._held:
            entered, gate = self._held[record]
            entered.set()
            assert gate.wait(WAIT), "a held add was never released"
        self._append(record)
        if record in self._after:
            raise Interrupted


class Adder(threading.Thread):
    """Calls ``writer.add(record)`` on its own thread and keeps what it raised."""

    def __init__(self, writer: BatchWriter[Any], record: Any) -> None:
        super().__init__(daemon=True)
        self.writer = writer
        self.record = record
        self.error: BaseException | None = None
        self.returned = threading.Event()

    def run(self) -> None:
        try:
            self.writer.add(self.record)
        except BaseException as exc:  # noqa: BLE001 -- the test looks at any outcome
            self.error = exc
        self.returned.set()

    def finish(self) -> BaseException | None:
        assert self.returned.wait(WAIT), f"add({self.record!r}) did not return"
        self.join(WAIT)
        return self.error


class CountingOwner:
    """Stands between the intake and its worker, counting the intake's wake-ups.

    A blocked add wakes the worker just before it sleeps, once it is registered as a
    waiter: ``woken_from(thread)`` tells when ``thread`` has got that far.
    """

    def __init__(self, worker: Any) -> None:
        self._worker = worker
        self._cond = threading.Condition()
        self._callers: set[int] = set()
        self.wakes = 0

    def wake(self) -> None:
        with self._cond:
            self.wakes += 1
            self._callers.add(threading.get_ident())
            self._cond.notify_all()
        self._worker.wake()

    def woken_from(self, thread: threading.Thread) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: thread.ident in self._callers, WAIT)

    def on_sink_thread(self) -> bool:
        return self._worker.on_sink_thread()

    def can_run(self) -> bool:
        return self._worker.can_run()

    def drain_here(self) -> None:
        self._worker.drain_here()

    def drain_elsewhere(self) -> bool:
        return self._worker.drain_elsewhere()

    def wait_budget(self) -> float | None:
        return self._worker.wait_budget()


def count_wakes(writer: BatchWriter[Any]) -> CountingOwner:
    owner = writer._intake._owner = CountingOwner(writer._worker)
    return owner


class StubOwner:
    """An owner for an intake tested alone: no worker, wake-ups counted."""

    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1

    def on_sink_thread(self) -> bool:
        return False

    def can_run(self) -> bool:
        return True

    def drain_here(self) -> None:
        """Never called: the stub says a worker can run."""

    def drain_elsewhere(self) -> bool:
        """Never called: the stub says a worker can run."""
        return False

    def wait_budget(self) -> float | None:
        return None


#: Seconds of the close grace in tests that watch it: longer than any other wait of theirs.
LONG_GRACE = 12 * WAIT


def watch_grace(writer: BatchWriter[Any]) -> threading.Event:
    """Return an event set once the worker waits out the close grace.

    That is the one wait the worker makes with the intake sealed for longer than
    ``LONG_GRACE / 2``. The worker's wake-up is replaced by one of the same kind that
    watches its waits (and the worker woken from the one it waits on now).
    """
    worker = writer._worker
    intake = writer._intake
    grace = threading.Event()

    class Watched(type(worker._wake_event)):  # type: ignore[misc]
        def wait(self, timeout: float | None = None) -> bool:
            if intake.sealed and timeout is not None and timeout > LONG_GRACE / 2:
                grace.set()
            return super().wait(timeout)

    old = worker._wake_event
    worker._wake_event = Watched()
    old.set()
    return grace


def fill(writer: BatchWriter[Any], blocking_sink: BlockingSink, waiting: int) -> None:
    """Put one record in the (capacity 1) writer's blocked sink, then ``waiting`` behind it."""
    writer.add("in-flight")
    assert blocking_sink.entered.wait(WAIT)
    for number in range(waiting):
        assert writer.try_add(f"waiting-{number}")


def to_window_of_a_record_added_at_1(clock: FakeClock) -> None:
    """Let the worker go idle at 0 (re-checking at 5) and move to 1.

    A record added now has its window end at 6, a deadline no idle wait has.
    """
    assert clock.wait_for_sleep(after=0)
    clock.advance(1.0)


# --------------------------------------------------------------------------- wake-ups


def test_offered_full_batch_is_delivered_without_waiting_for_interval(make_writer, sink, clock):
    """offer() wakes the worker for a full batch as add() does (kills I02)."""
    writer = make_writer(sink, capacity=3, flush_interval=5.0, clock=clock)
    to_window_of_a_record_added_at_1(clock)
    assert writer.offer(0)
    assert clock.wait_for_deadline(6.0)  # armed at capacity, waiting for the window
    assert writer.offer(1)
    assert writer.offer(2)
    assert sink.wait_for_batches(1)
    assert sink.batches == [[0, 1, 2]]
    assert clock.now() == 1.0


def test_one_wake_up_per_batch(make_writer, sink, clock):
    """The first record and the one that fills the batch wake the worker, no other (I04)."""
    writer = make_writer(sink, capacity=10, flush_interval=5.0, clock=clock)
    owner = count_wakes(writer)
    to_window_of_a_record_added_at_1(clock)
    for record in range(5):
        writer.add(record)
    assert clock.wait_for_deadline(6.0)  # woken once, waiting for the window
    assert owner.wakes == 1
    for record in range(5, 10):
        writer.add(record)
    assert sink.wait_for_batches(1)
    assert owner.wakes == 2
    assert sink.batches == [list(range(10))]


def test_adds_while_the_worker_delivers_do_not_wake_it(make_writer, blocking_sink, clock):
    """A worker woken by a flush is disarmed: adds during its batch signal nothing.

    Kills I49 and W05 (disarm missing).
    """
    writer = make_writer(blocking_sink, capacity=10, flush_interval=5.0, clock=clock)
    to_window_of_a_record_added_at_1(clock)
    writer.add("a")
    assert clock.wait_for_deadline(6.0)  # armed at capacity, waiting for the window
    owner = count_wakes(writer)
    assert writer.flush(timeout=0) is False  # wakes it by the event, not by a signal
    assert blocking_sink.entered.wait(WAIT)
    for record in range(10):
        writer.add(record)
    assert owner.wakes == 0
    blocking_sink.release()
    assert writer.flush(timeout=WAIT)
    assert blocking_sink.records == ["a", *range(10)]


def test_worker_waiting_for_a_window_has_cleared_its_wake_event(make_writer, sink, clock):
    """The event that woke the worker is cleared before it waits again (kills W06)."""
    writer = make_writer(sink, capacity=10, flush_interval=5.0, clock=clock)
    to_window_of_a_record_added_at_1(clock)
    writer.add("a")
    assert clock.wait_for_deadline(6.0)
    assert not writer._worker._wake_event.is_set()


def test_flush_requests_asked_while_one_waits_are_one(make_writer, blocking_sink):
    """A flush asked for while one waits for the worker joins it (kills R01)."""
    writer = make_writer(blocking_sink, capacity=1)
    writer.add("a")
    assert blocking_sink.entered.wait(WAIT)  # the worker is busy: it takes no request
    writer.add("b")
    requests = writer._worker.requests
    first = requests.flush()
    assert requests.flush() is first
    blocking_sink.release()
    assert first.wait(WAIT)
    assert blocking_sink.records == ["a", "b"]


# --------------------------------------------------------------------------- window timing


def test_record_added_during_a_flush_gets_a_window_from_the_flush(make_writer, blocking_sink):
    """A record arriving while the queue's last batch is delivered waits from then.

    Not from the window of the records before it (kills I27 and W10).
    """
    clock = FakeClock()
    writer = make_writer(blocking_sink, capacity=10, flush_interval=5.0, clock=clock)
    to_window_of_a_record_added_at_1(clock)
    writer.add("a")
    assert clock.wait_for_deadline(6.0)
    clock.advance(3.0)
    assert writer.flush(timeout=0) is False  # ["a"] goes at 4, the queue runs dry
    assert blocking_sink.entered.wait(WAIT)
    writer.add("b")
    blocking_sink.release()
    assert clock.wait_for_deadline(9.0)  # b's window: from the drain at 4, not from 1
    assert blocking_sink.records == ["a"]
    clock.advance(5.0)
    assert blocking_sink.wait_for_batches(2)
    assert blocking_sink.batches == [["a"], ["b"]]


def test_record_whose_add_was_interrupted_before_waking_waits_no_more_than_interval(
    make_writer, sink, clock
):
    """A record appended by an add interrupted before its wake-up keeps its deadline.

    The idle worker finds it at its re-check and counts its window from when it went
    idle, not from when it looked (kills W11).
    """
    writer = make_writer(sink, capacity=10, flush_interval=5.0, clock=clock)
    assert clock.wait_for_deadline(5.0, idle=True)  # idle since 0, re-checking at 5
    hook = AppendHook(writer._intake)
    hook.interrupt_after("a")
    with pytest.raises(Interrupted):
        writer.add("a")
    clock.advance(5.0)
    assert sink.wait_for_batches(1)
    assert sink.batches == [["a"]]


def test_a_full_batch_drains_one_batch_and_leaves_the_rest_their_window(
    make_writer, blocking_sink, clock
):
    """Woken by a full batch, the worker delivers batches of what was full, no more.

    The records left over wait for their window (kills W14).
    """
    writer = make_writer(
        blocking_sink, capacity=10, flush_interval=5.0, max_queue_size=100, clock=clock
    )
    for record in range(10):
        writer.add(record)
    assert blocking_sink.entered.wait(WAIT)
    for record in range(10, 25):
        writer.add(record)
    blocking_sink.release()
    assert clock.wait_for_deadline(5.0)  # the five left wait for the window from 0
    assert [len(batch) for batch in blocking_sink.batches] == [10, 10]
    clock.advance(5.0)
    assert blocking_sink.wait_for_batches(3)
    assert blocking_sink.records == list(range(25))


# --------------------------------------------------------------------------- blocked adders


@pytest.fixture
def no_recheck(monkeypatch):
    """Blocked adds re-check only after ``3 * WAIT``: only a notification frees them."""
    monkeypatch.setattr(batchlog._intake, "_SPACE_RECHECK", 3 * WAIT)


@pytest.mark.usefixtures("no_recheck")
def test_blocked_add_is_notified_when_room_is_made(make_writer, blocking_sink):
    """The worker's take notifies an add waiting for room (kills I16, I29, I30)."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    owner = count_wakes(writer)
    fill(writer, blocking_sink, 1)
    adder = Adder(writer, "patient")
    adder.start()
    assert owner.woken_from(adder)  # registered as a waiter, about to sleep
    blocking_sink.release()
    assert adder.finish() is None
    assert writer.flush(timeout=WAIT)
    assert blocking_sink.records == ["in-flight", "waiting-0", "patient"]


@pytest.mark.usefixtures("no_recheck")
def test_close_wakes_a_blocked_add_at_once(make_writer, blocking_sink):
    """Sealing wakes a blocked add, before the sink lets go of its batch (kills I40)."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    owner = count_wakes(writer)
    fill(writer, blocking_sink, 1)
    adder = Adder(writer, "blocked")
    adder.start()
    assert owner.woken_from(adder)  # registered as a waiter, about to sleep
    assert writer.close(timeout=0) is False  # the sink still holds "in-flight"
    assert isinstance(adder.finish(), WriterClosedError)
    blocking_sink.release()
    assert writer.close(timeout=WAIT)
    assert writer.metrics.records_dropped == 1


@pytest.mark.usefixtures("no_recheck")
def test_blocked_add_async_is_resolved_when_room_is_made(make_writer, blocking_sink):
    """An add_async waiting for room is resolved by the worker's take (kills I22)."""
    writer = make_writer(blocking_sink, capacity=1, max_queue_size=1)
    owner = count_wakes(writer)
    fill(writer, blocking_sink, 1)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            asyncio.run(writer.add_async("patient"))
        except BaseException as exc:  # noqa: BLE001 -- the test looks at any outcome
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert owner.woken_from(thread)  # its future registered, about to wait
    blocking_sink.release()
    thread.join(WAIT)
    assert outcome == [None]
    assert writer.flush(timeout=WAIT)
    assert blocking_sink.records == ["in-flight", "waiting-0", "patient"]


# --------------------------------------------------------------------------- slots: the bound


def test_slots_given_back_beyond_keep_free_go_back_to_the_source():
    """The intake keeps at most _KEEP_FREE free slots; the rest are unmade again.

    And the bound stays exact over a full cycle (kills I32, I33, I34, I35).
    """
    size = 2 * _KEEP_FREE + 100
    intake: Intake[int] = Intake(10, size, "slots", StubOwner())
    for cycle in range(2):
        accepted = sum(intake.try_add(number) for number in range(size + 5))
        assert accepted == size, f"cycle {cycle}"
        batch: list[int] = []
        assert intake.take(size, batch) == (size, True)
        assert batch == list(range(size))
        intake.in_flight = 0
        assert len(intake._slots) == _KEEP_FREE
        assert operator.length_hint(intake._unmade) == size - _KEEP_FREE
        assert intake.in_buffer() == 0


def test_take_says_whether_it_emptied_the_queue():
    """take returns how many it moved and whether none is left."""
    intake: Intake[int] = Intake(10, 100, "take", StubOwner())
    for number in range(5):
        assert intake.try_add(number)
    batch: list[int] = []
    assert intake.take(3, batch) == (3, False)
    assert intake.take(3, batch) == (2, True)
    assert intake.take(3, batch) == (0, True)
    assert batch == [0, 1, 2, 3, 4]


def test_sealed_intake_counts_no_slot_held():
    """After sealing, every slot is accounted for: none seems held by an adder."""
    intake: Intake[int] = Intake(10, 3000, "sealed", StubOwner())
    for number in range(1500):  # two chunks made, some free slots left in the deque
        assert intake.try_add(number)
    batch: list[int] = []
    intake.take(500, batch)
    intake.seal()
    with intake.lock:
        assert (intake.held(), intake.in_buffer()) == (0, 1500)
    intake.take(2000, batch)
    intake.in_flight = 0
    with intake.lock:
        assert (intake.held(), intake.in_buffer()) == (0, 0)
    assert intake.try_add(-1) is False


# --------------------------------------------------------------------------- reclaim at close


def test_slot_lost_to_an_interrupted_add_is_reclaimed_at_close(make_writer, sink, log_capture):
    """Close takes back a slot an interrupted add lost, counts its record dropped, says so.

    Kills I43, I44, W33, W34.
    """
    logger, captured = log_capture
    writer = make_writer(sink, logger=logger)
    hook = AppendHook(writer._intake)
    writer.add("a")
    hook.interrupt("lost")
    with pytest.raises(Interrupted):
        writer.add("lost")
    assert writer.close(timeout=WAIT)
    assert sink.records == ["a"]
    metrics = writer.metrics
    assert (metrics.records_dropped, metrics.records_processed, metrics.records_in_buffer) == (
        1,
        1,
        0,
    )
    assert writer._intake.reclaimed == 1
    assert any("took back 1 queue slot" in record.getMessage() for record in captured.records)


def test_slow_adds_finishing_after_close_are_refused_and_counted_once(make_writer, sink):
    """Adds that held their slots past the close are refused on arrival, each dropped once.

    Kills I06, I07, I08, I46, I47, I52, W44.
    """
    writer = make_writer(sink)
    hook = AppendHook(writer._intake)
    adders = []
    for record in ("slow-1", "slow-2"):
        entered = hook.hold(record)
        adder = Adder(writer, record)
        adder.start()
        assert entered.wait(WAIT)
        adders.append(adder)
    assert writer.close(timeout=WAIT)  # the grace passes: both slots are reclaimed
    assert writer.metrics.records_dropped == 2
    for adder in adders:
        hook.release(adder.record)
        assert isinstance(adder.finish(), WriterClosedError)
        assert len(writer._intake) == 0
    metrics = writer.metrics
    assert (metrics.records_dropped, metrics.records_in_buffer, metrics.records_added) == (2, 0, 0)
    assert sink.records == []


class ReleaseOnReclaim(logging.Handler):
    """Lets a held add append when the worker reports the reclaim (before it finishes)."""

    def __init__(self, hook: AppendHook, record: Any, adder: Adder) -> None:
        super().__init__()
        self.hook, self.record, self.adder = hook, record, adder

    def emit(self, record: logging.LogRecord) -> None:
        if "took back" in record.getMessage():
            self.hook.release(self.record)
            self.adder.finish()


def test_record_appended_after_its_reclaim_but_before_the_end_is_delivered(make_writer, sink):
    """A reclaimed add that appends while the worker still drains was only slow.

    Its record is delivered and no longer counted as dropped (kills I28, I45).
    """
    writer = make_writer(sink)
    hook = AppendHook(writer._intake)
    entered = hook.hold("slow")
    adder = Adder(writer, "slow")
    logger = logging.getLogger(f"batchlog-tests.mutants-{uuid.uuid4().hex}")
    logger.propagate = False
    handler = ReleaseOnReclaim(hook, "slow", adder)
    logger.addHandler(handler)
    writer.logger = logger
    adder.start()
    assert entered.wait(WAIT)
    try:
        assert writer.close(timeout=WAIT)
    finally:
        logger.removeHandler(handler)
    assert adder.error is None
    assert sink.records == ["slow"]
    metrics = writer.metrics
    assert (metrics.records_dropped, metrics.records_processed, metrics.records_in_buffer) == (
        0,
        1,
        0,
    )
    assert writer._intake.reclaimed == 0


def test_close_waits_for_an_add_holding_a_slot_within_the_grace(make_writer, sink, monkeypatch):
    """Close waits for an add that took a slot; its append ends the wait at once.

    Kills W32 and I42 (held slot ignored) and W35 (the grace wait is not woken).
    """
    monkeypatch.setattr(batchlog._worker, "CLOSE_GRACE", LONG_GRACE)
    writer = make_writer(sink)
    hook = AppendHook(writer._intake)
    grace = watch_grace(writer)
    entered = hook.hold("slow")
    adder = Adder(writer, "slow")
    adder.start()
    assert entered.wait(WAIT)
    closed: list[bool] = []
    closer = threading.Thread(target=lambda: closed.append(writer.close(timeout=WAIT)))
    closer.start()
    assert grace.wait(WAIT)
    assert not writer._worker.requests.close.done
    hook.release("slow")
    assert adder.finish() is None
    closer.join(WAIT)
    assert closed == [True]
    assert sink.records == ["slow"]
    assert writer.metrics.records_dropped == 0


# --------------------------------------------------------------------------- the worker ending


class BreakingClock(FakeClock):
    """A fake clock whose ``now`` raises ``SystemExit`` once broken (the worker dies)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def now(self) -> float:
        if self.broken:
            raise SystemExit("the clock broke")
        return super().now()


def test_worker_ending_on_an_error_counts_the_rest_failed_and_refuses_adds(capsys):
    """A worker killed by user code (here its clock) ends every wait and says so.

    The records waiting count as failed, close reports failure, later adds are refused
    naming why (kills W38, W39, W40, W41, W42).
    """
    clock = BreakingClock()
    sink = RecordingSink()
    # Not make_writer: its teardown fails a writer whose close is not a success.
    writer: BatchWriter[Any] = BatchWriter(10, 5.0, sink, clock=clock)
    to_window_of_a_record_added_at_1(clock)
    for record in range(3):
        writer.add(record)
    assert clock.wait_for_deadline(6.0)
    clock.broken = True
    clock.advance(5.0)
    ended = writer._worker.requests.close
    assert ended._done.wait(WAIT)
    assert ended.ok is False
    assert writer.close(timeout=WAIT) is False
    metrics = writer.metrics
    assert (metrics.records_failed, metrics.records_processed, metrics.records_in_buffer) == (
        3,
        0,
        0,
    )
    with pytest.raises(WriterClosedError, match="stopped: its worker ended on SystemExit"):
        writer.add("after")
    assert "3 records still waiting count as failed" in capsys.readouterr().err
    assert sink.records == []


# --------------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_on_error_raising_base_exception_does_not_stop_the_worker(
    make_writer, log_capture, exc_type
):
    """on_error raising SystemExit or KeyboardInterrupt is reported (kills W26)."""
    logger, captured = log_capture
    delivered: list[Any] = []

    def sink(batch: list[Any]) -> None:
        if batch == ["bad"]:
            raise ValueError(batch)
        delivered.extend(batch)

    def on_error(exc: Exception, batch: list[Any]) -> None:
        raise exc_type

    writer = make_writer(sink, capacity=1, on_error=on_error, logger=logger)
    writer.add("bad")
    assert writer.flush(timeout=WAIT)
    writer.add("good")
    assert writer.flush(timeout=WAIT)
    assert delivered == ["good"]
    assert [exc_type] == [type(record.exc_info[1]) for record in captured.records]


def test_sink_base_exception_is_reported_not_given_to_on_error(make_writer, log_capture):
    """on_error takes Exceptions; a sink's KeyboardInterrupt is reported (kills W29)."""
    logger, captured = log_capture
    calls: list[BaseException] = []

    def sink(batch: list[Any]) -> None:
        raise KeyboardInterrupt

    writer = make_writer(
        sink, capacity=1, on_error=lambda exc, batch: calls.append(exc), logger=logger
    )
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert calls == []
    assert [KeyboardInterrupt] == [type(record.exc_info[1]) for record in captured.records]
    assert writer.metrics.records_failed == 1


class RaisingHandler(logging.Handler):
    """A logging handler that raises ``SystemExit`` from ``emit``."""

    def emit(self, record: logging.LogRecord) -> None:
        raise SystemExit("the handler broke")


def test_failure_reported_to_a_logger_is_not_also_on_stderr(make_writer, log_capture, capsys):
    """A report the logger took goes nowhere else (kills W30)."""
    logger, captured = log_capture

    def sink(batch: list[Any]) -> None:
        raise ValueError("sink broke")

    writer = make_writer(sink, capacity=1, logger=logger)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert len(captured.records) == 1
    assert capsys.readouterr().err == ""


def test_logger_raising_base_exception_is_reported_to_stderr(make_writer, capsys):
    """A logger whose handler raises SystemExit does not stop the worker (kills W31)."""
    logger = logging.getLogger(f"batchlog-tests.raising-{uuid.uuid4().hex}")
    logger.propagate = False
    handler = RaisingHandler()
    logger.addHandler(handler)
    try:

        def sink(batch: list[Any]) -> None:
            if batch == ["bad"]:
                raise ValueError("sink broke")

        writer = make_writer(sink, capacity=1, logger=logger)
        writer.add("bad")
        assert writer.flush(timeout=WAIT)
        writer.add("good")
        assert writer.flush(timeout=WAIT)
        assert writer.metrics.records_processed == 1
        assert "logger failed" in capsys.readouterr().err
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_on_close_raising_base_exception_is_reported(make_writer, sink, log_capture, exc_type):
    """on_close raising SystemExit or KeyboardInterrupt: close still succeeds (kills W36)."""
    logger, captured = log_capture

    def on_close() -> None:
        raise exc_type

    writer = make_writer(sink, on_close=on_close, logger=logger)
    writer.add("a")
    assert writer.close(timeout=WAIT) is True
    assert sink.records == ["a"]
    assert [exc_type] == [type(record.exc_info[1]) for record in captured.records]


def test_sink_offering_to_its_own_writer_is_refused(make_writer):
    """A record the sink offers to its own writer is dropped, not fed back (kills W25)."""
    offered: list[bool] = []
    writers: list[BatchWriter[Any]] = []

    def sink(batch: list[Any]) -> None:
        if batch == ["a"]:
            offered.append(writers[0].offer("again"))

    writer = make_writer(sink, capacity=1)
    writers.append(writer)
    writer.add("a")
    assert writer.flush(timeout=WAIT)
    assert offered == [False]
    assert writer.metrics.records_dropped == 1


# --------------------------------------------------------------------------- unreferenced


def test_unreferenced_writer_wakes_its_worker_to_deliver():
    """A writer collected while its worker waits for a window: the worker delivers now.

    Kills W37 (begin_close does not wake the worker).
    """
    sink = RecordingSink()
    clock = FakeClock()
    writer: BatchWriter[Any] = BatchWriter(10, 5.0, sink, clock=clock)
    to_window_of_a_record_added_at_1(clock)
    writer.add("a")
    assert clock.wait_for_deadline(6.0)  # the worker waits for the window
    worker = writer._worker
    del writer
    gc.collect()
    assert sink.wait_for_records(1)
    assert sink.records == ["a"]
    assert worker.requests.close.wait(WAIT)


# --------------------------------------------------------------------------- no thread


@pytest.fixture
def threadless(monkeypatch) -> Callable[..., BatchWriter[Any]]:
    """Make writers whose worker thread cannot start, as at interpreter exit."""
    made: list[BatchWriter[Any]] = []

    def make(sink: Callable[[list[Any]], object], **kwargs: Any) -> BatchWriter[Any]:
        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

        with monkeypatch.context() as patch:
            patch.setattr(threading.Thread, "start", refuse)
            writer: BatchWriter[Any] = BatchWriter(10, 60.0, sink, **kwargs)
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close(timeout=WAIT)


@pytest.mark.parametrize("standby", [True, False], ids=["standby", "no-standby"])
def test_without_a_worker_thread_records_are_delivered_without_waiting_for_one(
    threadless, monkeypatch, standby
):
    """No worker thread can start (as at exit): the first record, a flush and a close
    deliver on the standby thread started before (so the caller never runs a sink that
    could hang it), or, where there is no standby either, right on the calling thread.

    Kills W47, W48, W49.
    """
    if not standby:
        monkeypatch.setattr(batchlog._lifecycle, "run_on_standby", lambda job: False)
    sink = RecordingSink()
    writer = threadless(sink)
    writer.add("a")  # the first record wakes a worker that cannot start
    assert sink.wait_for_records(1)
    writer.add("b")
    assert writer.flush(timeout=WAIT) is True
    assert sink.records == ["a", "b"]
    writer.add("c")
    assert writer.close(timeout=WAIT) is True
    assert sink.records == ["a", "b", "c"]
    expected = {"batchlog-standby"} if standby else {threading.current_thread().name}
    assert {thread.name for thread in sink.threads} == expected


# --------------------------------------------------------------------------- durations


def test_longest_flush_is_kept_when_a_shorter_one_follows(make_writer, clock):
    """max_flush_duration is the longest, not the last (kills W20)."""
    durations = iter([4.0, 2.0])

    def sink(batch: list[Any]) -> None:
        clock.advance(next(durations))

    writer = make_writer(sink, capacity=1, clock=clock)
    writer.add("a")
    writer.add("b")
    assert writer.flush(timeout=WAIT)
    metrics = writer.metrics
    assert (metrics.last_flush_duration, metrics.max_flush_duration) == (2.0, 4.0)
