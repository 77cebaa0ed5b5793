"""BaseException from each piece of user code the worker calls, and a worker that ends anyway.

The sink, ``on_error``, ``on_close`` and the reporting logger may each raise
``KeyboardInterrupt``, ``SystemExit`` or any other ``BaseException``: the worker reports it,
keeps delivering, and ``flush``/``close`` complete. When the worker thread ends all the same
(an exception injected into the thread itself), every waiter is released, later adds are
refused with a clear message, and the records that were waiting count as failed.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from typing import Any

import pytest
from conftest import WAIT, OwnerProxy, RecordingSink

from batchlog import BatchWriter, WriterClosedError
from batchlog.testing import FakeClock


class CustomBaseError(BaseException):
    """A BaseException that is neither an interrupt nor SystemExit."""


RAISED = [KeyboardInterrupt, SystemExit, CustomBaseError]


class RaisingOnce:
    """Raises ``error`` on its first call (after recording the batch), then records."""

    def __init__(self, error: type[BaseException]) -> None:
        self.error = error
        self.calls = 0
        self.sink = RecordingSink()

    def __call__(self, *args: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            msg = "raised by the test"
            raise self.error(msg)
        if args and isinstance(args[0], list):
            self.sink(args[0])


class RaisingHandler(logging.Handler):
    """A handler whose emit raises ``error`` every time."""

    def __init__(self, error: type[BaseException]) -> None:
        super().__init__()
        self.error = error
        self.calls = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.calls += 1
        msg = "the logger's handler raised"
        raise self.error(msg)


def failing_sink(batch: list[Any]) -> None:
    msg = f"sink refused {batch!r}"
    raise ValueError(msg)


def _deliver_two_batches(writer: BatchWriter[Any]) -> None:
    writer.add("first")
    assert writer.flush(timeout=WAIT) is True
    writer.add("second")
    assert writer.flush(timeout=WAIT) is True


@pytest.mark.parametrize("error", RAISED)
def test_a_sink_raising_a_base_exception_fails_its_batch_and_the_worker_goes_on(
    error: type[BaseException], capfd: pytest.CaptureFixture[str], make_writer: Any
) -> None:
    """The batch counts as failed, stderr names the exception, the next batch arrives."""
    sink = RaisingOnce(error)
    writer = make_writer(sink, name=f"sink-raises-{error.__name__}")
    _deliver_two_batches(writer)
    assert writer._worker.running()
    assert sink.sink.batches == [["second"]]
    metrics = writer.metrics
    assert (
        metrics.records_failed,
        metrics.records_processed,
        metrics.flush_count,
        metrics.flush_errors,
    ) == (1, 1, 2, 1)
    assert writer.close(timeout=WAIT) is True
    err = capfd.readouterr().err
    assert f"writer 'sink-raises-{error.__name__}'" in err
    assert "flush_fn raised on a batch of 1 records" in err
    assert error.__name__ in err


@pytest.mark.parametrize("error", RAISED)
def test_on_error_raising_a_base_exception_is_reported_and_the_worker_goes_on(
    error: type[BaseException], capfd: pytest.CaptureFixture[str], make_writer: Any
) -> None:
    """on_error's own BaseException goes to stderr; batches keep being handed over."""
    on_error = RaisingOnce(error)
    calls: list[Any] = []

    def sink(batch: list[Any]) -> None:
        calls.append(list(batch))
        failing_sink(batch)

    writer = make_writer(sink, on_error=on_error, name="on-error-raises")
    _deliver_two_batches(writer)
    assert writer._worker.running()
    assert calls == [["first"], ["second"]]
    assert on_error.calls == 2
    assert writer.metrics.records_failed == 2
    assert writer.close(timeout=WAIT) is True
    err = capfd.readouterr().err
    assert "on_error raised while handling a failed batch of 1 records" in err
    assert error.__name__ in err


@pytest.mark.parametrize("error", RAISED)
def test_on_close_raising_a_base_exception_is_reported_and_close_completes(
    error: type[BaseException], capfd: pytest.CaptureFixture[str], make_writer: Any
) -> None:
    """close() delivers, calls on_close, reports what it raised and returns True."""
    sink = RecordingSink()
    on_close = RaisingOnce(error)
    writer = make_writer(sink, on_close=on_close, name="on-close-raises")
    writer.add("last")
    assert writer.close(timeout=WAIT) is True
    assert writer.close(timeout=WAIT) is True
    assert sink.batches == [["last"]]
    assert on_close.calls == 1
    assert writer.metrics.records_processed == 1
    err = capfd.readouterr().err
    assert "on_close raised" in err
    assert error.__name__ in err


@pytest.mark.parametrize("error", RAISED)
def test_a_logger_raising_a_base_exception_falls_back_to_stderr(
    error: type[BaseException], capfd: pytest.CaptureFixture[str], make_writer: Any
) -> None:
    """A report whose logger raises goes to stderr; the worker survives, flush completes."""
    handler = RaisingHandler(error)
    logger = logging.getLogger(f"batchlog-tests.raising-logger-{error.__name__}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        writer = make_writer(failing_sink, logger=logger, name="logger-raises")
        _deliver_two_batches(writer)
        assert writer._worker.running()
        assert handler.calls == 2
        assert writer.metrics.flush_errors == 2
        assert writer.close(timeout=WAIT) is True
    finally:
        logger.removeHandler(handler)
    err = capfd.readouterr().err
    assert "writer 'logger-raises': logger failed" in err
    assert error.__name__ in err


def _inject(thread: threading.Thread, error: type[BaseException]) -> None:
    """Ask the interpreter to raise ``error`` in ``thread`` at its next check point."""
    assert thread.ident is not None
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    done = set_async_exc(ctypes.c_ulong(thread.ident), ctypes.py_object(error))
    assert done == 1


def test_when_the_worker_thread_itself_ends_every_waiter_is_released(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """SystemExit in the idle worker: blocked add and flush(None) return, later adds refused."""
    clock = FakeClock()
    sink = RecordingSink()
    writer: BatchWriter[int] = BatchWriter(
        2, 60.0, sink, max_queue_size=2, name="worker-ends", clock=clock
    )
    try:
        worker_thread = writer._worker._thread
        assert worker_thread is not None
        assert clock.wait_for_sleep(after=0, timeout=WAIT)  # idle: waiting for a record
        # Adds must not wake it yet: the waiters below get in place first.
        adder_waiting = threading.Event()
        intake = writer._intake
        intake._owner = OwnerProxy(intake._owner, on_wake=adder_waiting.set, forward=False)
        _inject(worker_thread, SystemExit)
        outcomes: dict[str, object] = {}
        writer.add(1)
        writer.add(2)  # full now, and the worker not woken

        def blocked_add() -> None:
            try:
                writer.add(3)
            except WriterClosedError as exc:
                outcomes["add"] = exc
            else:
                outcomes["add"] = "accepted"

        def flush() -> None:
            outcomes["flush"] = writer.flush(timeout=None)

        adder = threading.Thread(target=blocked_add, name="blocked-adder")
        adder.start()
        assert adder_waiting.wait(WAIT)  # it woke the (swallowed) worker, then waits
        flusher = threading.Thread(target=flush, name="flusher")
        flusher.start()  # its wake-up reaches the worker, which meets the SystemExit
        for thread in (adder, flusher, worker_thread):
            thread.join(WAIT)
            assert not thread.is_alive(), f"{thread.name} was never released"
        assert isinstance(outcomes["add"], WriterClosedError)
        assert outcomes["flush"] is False

        with pytest.raises(WriterClosedError, match="worker ended on SystemExit"):
            writer.add(4)
        assert writer.try_add(5) is False
        started = time.monotonic()
        writer.close(timeout=WAIT)
        assert time.monotonic() - started < WAIT / 2
        assert sink.batches == []
        metrics = writer.metrics
        # Counts the test kept: 2 accepted and never delivered; 3 refused (3, 4, 5).
        assert {
            "added": metrics.records_added,
            "failed": metrics.records_failed,
            "processed": metrics.records_processed,
            "in_buffer": metrics.records_in_buffer,
            "dropped": metrics.records_dropped,
        } == {"added": 2, "failed": 2, "processed": 0, "in_buffer": 0, "dropped": 3}
        assert "the worker ended on SystemExit" in capfd.readouterr().err
    finally:
        writer.close(timeout=WAIT)


def test_flush_waits_for_on_error_of_a_failed_batch_not_only_for_the_sink() -> None:
    """A flush that returns True has seen every failure reported: ``on_error`` returned.

    The worker counts a failed batch before it calls ``on_error``; a flush arriving in
    between (here: while ``on_error`` is held) must not take the writer for idle.
    """
    entered = threading.Event()
    release = threading.Event()
    handled: list[list[str]] = []

    def failing_sink(batch: list[str]) -> None:
        raise ValueError("the collector refused the batch")

    def on_error(error: Exception, records: list[str]) -> None:
        entered.set()
        assert release.wait(WAIT)
        handled.append(list(records))

    writer: BatchWriter[str] = BatchWriter(10, 60.0, failing_sink, on_error=on_error)
    try:
        writer.add("lost?")
        flushing = threading.Thread(target=writer.flush, args=(WAIT,))
        flushing.start()
        assert entered.wait(WAIT)
        # The batch is counted as failed already; its report is not over.
        assert writer.metrics.records_failed == 1
        assert writer.flush(timeout=0) is False
        release.set()
        assert writer.flush(timeout=WAIT) is True
        assert handled == [["lost?"]]
        flushing.join(WAIT)
        assert not flushing.is_alive()
    finally:
        release.set()
        writer.close(timeout=WAIT)


def test_flush_from_inside_on_error_returns_false_at_once() -> None:
    """``on_error`` runs on the worker: a flush there cannot wait for itself."""
    results: list[bool] = []
    writer: BatchWriter[str] = BatchWriter(
        10,
        60.0,
        lambda batch: 1 / 0,
        on_error=lambda error, records: results.append(writer.flush(timeout=WAIT)),
    )
    try:
        writer.add("x")
        assert writer.flush(timeout=WAIT) is True
        assert results == [False]
    finally:
        writer.close(timeout=WAIT)
