"""The worker: the loop that hands batches to the sink, its timing, counters and reports.

It runs on its own thread (or, where no thread can start, as at interpreter exit, on the
thread that flushes or closes). The thread holds the worker and its intake, never the
``BatchWriter`` in front of them, so a writer nobody references can be collected: its
finalizer closes the worker, which delivers what is left and ends.

Every call of user code (the sink, ``on_error``, ``on_close``, the reporting logger) is
guarded against ``BaseException``: whatever it raises (``SystemExit`` and
``KeyboardInterrupt`` too) is counted and reported, and the worker goes on. Should the
thread end anyway (an exception raised into it asynchronously), ``_end`` releases every
waiter and seals the intake, so later adds refuse with a clear ``WriterClosedError`` and no
flush or close waits forever.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable, Generic, TypeVar

from . import _lifecycle
from ._intake import Intake
from ._report import StderrReporter
from ._requests import Request, Requests, expire_soon
from ._sinkloop import SinkLoop, is_awaitable
from ._sync import Wakeup
from .errors import FailedRecordsError

if TYPE_CHECKING:
    import logging

    from ._clock import Clock

__all__ = ["CLOSE_GRACE", "DEFAULT_EXIT_TIMEOUT", "Worker"]

T = TypeVar("T")

#: Seconds an unclosed writer may spend delivering its records at interpreter exit.
DEFAULT_EXIT_TIMEOUT = 10.0
#: Seconds closing waits for an add that took a slot to append its record; an add that
#: holds one longer was interrupted, and its slot is reclaimed (the record counted dropped).
CLOSE_GRACE = 0.1
_IDLE_RECHECK = 0.25  # an idle worker looks at the queue this often, in case a wake-up is lost


class Worker(Generic[T]):
    """Delivers the intake's records to ``flush_fn`` in batches; counts and reports."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_clear_buffers",
        "_clock",
        "_counts_lock",
        "_failed",
        "_flush_count",
        "_flush_errors",
        "_last_duration",
        "_max_duration",
        "_on_close",
        "_processed",
        "_reporter",
        "_thread",
        "_thread_unavailable",
        "_total_duration",
        "_wake_event",
        "at_exit",
        "capacity",
        "close_at_exit",
        "exit_timeout",
        "flush_fn",
        "flush_interval",
        "given_up",
        "intake",
        "logger",
        "on_error",
        "requests",
        "sink_loop",
        "sink_running",
        "sink_thread",
        "unreferenced",
    )

    def __init__(
        self,
        flush_fn: Callable[[list[T]], object],
        *,
        capacity: int,
        max_queue_size: int,
        flush_interval: float,
        clear_buffers: bool,
        logger: logging.Logger | None,
        on_error: Callable[[Exception, list[T]], object] | None,
        on_close: Callable[[], object] | None,
        name: str,
        clock: Clock,
        close_at_exit: bool,
        exit_timeout: float,
    ) -> None:
        self.flush_fn = flush_fn
        self.capacity = capacity
        self.flush_interval = flush_interval
        self._clear_buffers = clear_buffers
        self.logger = logger
        self.on_error = on_error
        self._on_close = on_close
        self._clock = clock
        self.close_at_exit = close_at_exit
        self.exit_timeout = exit_timeout
        self._reporter = StderrReporter()
        #: Where an async sink's batches are awaited (see _sinkloop).
        self.sink_loop = SinkLoop()
        self.intake: Intake[T] = Intake(capacity, max_queue_size, name, self)
        self._reset(closed=False)
        _lifecycle.track(self)

    def _reset(self, *, closed: bool) -> None:
        """Every piece of mutable state, new and empty; also used in a forked child."""
        self._counts_lock = self.intake.lock
        # The one list every batch uses with clear_buffers; new after fork, since a batch
        # the parent had in flight is the parent's to deliver.
        self._buffer: list[T] = []
        self.requests = Requests()
        if closed:
            self.requests.close.complete()
        # Not a threading.Event: adders set it, and an interrupt in Event.set can leave the
        # Event's lock held forever (see _sync).
        self._wake_event = Wakeup()
        self._thread: threading.Thread | None = None
        self._thread_unavailable = False
        self.at_exit = False
        #: The process shut down and stopped waiting for this writer (see _lifecycle).
        self.given_up = False
        #: The BatchWriter in front was garbage-collected: close (see close_unreferenced).
        self.unreferenced = False
        self.sink_thread: int | None = None
        # True while flush_fn runs: front doors then check whether the sink itself is
        # logging (a hint read without the lock; the thread check that follows decides).
        self.sink_running = False
        self._processed = 0
        self._failed = 0
        self._flush_count = 0
        self._flush_errors = 0
        self._last_duration = 0.0
        self._max_duration = 0.0
        self._total_duration = 0.0

    @property
    def name(self) -> str:
        """The writer's name: in the thread's name, in reports and error messages."""
        return self.intake.name

    @name.setter
    def name(self, name: str) -> None:
        self.intake.name = name

    # ------------------------------------------------------------------ what the intake asks

    def wake(self) -> None:
        """Wake the worker (starting its thread if there is none yet)."""
        if self._thread is None and not self.start():
            # No worker thread can start (the interpreter is exiting): deliver on the
            # standby thread, started before exit, so a hung sink cannot hang the caller;
            # where there is none, right here, as a plain handler would.
            if not self.on_sink_thread() and not _lifecycle.run_on_standby(self.drain_here):
                self.drain_here()
            return
        self._wake_event.set()

    def on_sink_thread(self) -> bool:
        """Whether the calling thread is the one running the sink."""
        return self.sink_thread == threading.get_ident()

    def can_run(self) -> bool:
        """Whether a worker thread runs or could be started now."""
        thread = self._thread
        if thread is not None:
            return thread.is_alive()
        return self.start()

    def drain_here(self) -> None:
        """Make room on the calling thread: deliver what waits (no thread can run)."""
        self.requests.flush()
        self.drain_inline()

    def drain_elsewhere(self) -> bool:
        """Make room on the standby thread (no worker thread can run); False if none."""
        self.requests.flush()
        return _lifecycle.run_on_standby(self.drain_inline)

    def wait_budget(self) -> float | None:
        """Seconds a wait may last while the process shuts down (None: not shutting down)."""
        return _lifecycle.shutdown_budget(self)

    # ------------------------------------------------------------------ the thread

    def start(self) -> bool:
        """Start the worker thread if needed; return whether one is running."""
        thread = self._thread
        if thread is not None:
            return thread.is_alive()
        with self._counts_lock:
            if self._thread is not None:
                return self._thread.is_alive()
            if self._thread_unavailable or self.at_exit or self.requests.close.done:
                return False
            if not threading.main_thread().is_alive():
                # The interpreter is shutting down: start no thread (3.12+ forbids it); the
                # exit hook or the next flush or close delivers on the calling thread.
                return False
            thread = threading.Thread(target=self._run, name=f"batchlog-{self.name}", daemon=True)
            # Made now, by the threading module in force when the worker starts: under
            # gevent patched after a fork, the worker is a greenlet and must sleep as one.
            self._wake_event = Wakeup()
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                self._thread_unavailable = True
                return False
            self._thread = thread
            return True

    def running(self) -> bool:
        """Whether the worker thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self) -> None:
        """The worker thread: deliver batches until closed and drained, whatever happens."""
        self.sink_thread = threading.get_ident()
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 -- the worker ends, but never silently
            self._end(exc)
        else:
            self._end(None)
        finally:
            self.sink_thread = None

    def _loop(self) -> None:
        intake = self.intake
        requests = self.requests
        clock = self._clock
        capacity = self.capacity
        window_start: float | None = None  # no record waiting has arrived before this
        while True:
            if self.unreferenced and not intake.sealed:
                self.begin_close()  # asked by the writer's finalizer (see close_unreferenced)
            if intake.sealed:
                self._drain_for_close()
                return
            request = requests.take()
            if request is not None:
                window_start = self._drain(len(intake), window_start)
                request.complete()
                continue
            size = len(intake)
            if size >= capacity:
                window_start = self._drain(capacity, window_start)
                continue
            if size == 0:
                window_start = self._wait_while_idle()
                continue
            if window_start is None:
                window_start = clock.now()
            remaining = window_start + self.flush_interval - clock.now()
            if remaining <= 0:
                window_start = self._drain(capacity, window_start)
                continue
            self._wake_event.clear()
            intake.arm(capacity)
            if len(intake) < capacity and not self._woken_before_clear():
                clock.wait(self._wake_event, remaining)
            intake.disarm()

    def _woken_before_clear(self) -> bool:
        """Whether a wake-up the worker's ``clear()`` may have swallowed is still due.

        Each one leaves its mark before it sets the event: a request, the seal, or the
        writer's finalizer (``unreferenced``). One set between the loop's checks and the
        ``clear()`` is lost, so the wait looks at every mark again after it.
        """
        return bool(self.requests.pending) or self.intake.sealed or self.unreferenced

    def _wait_while_idle(self) -> float | None:
        """Sleep until a record arrives; return the start of its window, or None.

        The worker is the only writer of the window start. Woken by the first record's
        add, it stamps the time it woke, which is at most scheduling later than the
        arrival; woken by its own re-check instead (an add was interrupted before it
        could wake us), it stamps when it went idle, which is surely early enough.
        """
        intake = self.intake
        clock = self._clock
        idle_since = clock.now()
        self._wake_event.clear()
        intake.arm(1)
        woken = False
        if not len(intake) and not self._woken_before_clear():
            woken = clock.wait(self._wake_event, max(self.flush_interval, _IDLE_RECHECK), idle=True)
        intake.disarm()
        if not len(intake):
            return None
        return clock.now() if woken else idle_since

    def _drain(self, count: int, window_start: float | None) -> float | None:
        """Deliver up to ``count`` waiting records in batches; return the next window start."""
        clock = self._clock
        capacity = self.capacity
        while count > 0:
            started = clock.now()
            batch = self._buffer if self._clear_buffers else []
            taken, emptied = self.intake.take(min(count, capacity), batch)
            if taken:
                count -= taken
                self._deliver(batch)
            if emptied:
                # What is left arrived after the queue ran dry, so after ``started``.
                return started
        return window_start

    def _deliver(self, batch: list[T]) -> None:
        """Call the sink with ``batch`` (no lock held), count the outcome, report a failure."""
        clock = self._clock
        size = len(batch)
        failure: BaseException | None = None
        started = clock.now()
        self.sink_running = True
        try:
            result = self.flush_fn(batch)
            if is_awaitable(result):
                self.sink_loop.run(result)
        except BaseException as exc:  # noqa: BLE001 -- a failing sink must not kill the worker
            failure = exc
        finally:
            self.sink_running = False
        duration = clock.now() - started
        failed_records = (
            failure.failed_in(batch) if isinstance(failure, FailedRecordsError) else batch
        )
        # The try starts before the counts: an interrupt landing anywhere after the flag is
        # set (even as the lock's with-block ends) still clears it.
        try:
            with self._counts_lock:
                self.intake.in_flight = 0
                self._flush_count += 1
                if failure is None:
                    self._processed += size
                else:
                    failed = len(failed_records)
                    self._processed += size - failed
                    self._failed += failed
                    self._flush_errors += 1
                    self.intake.reporting = True  # a flush waits for on_error / the report
                self._last_duration = duration
                self._total_duration += duration
                self._max_duration = max(duration, self._max_duration)
            if failure is not None:
                self._report_failure(failure, failed_records, size)
        finally:
            if failure is not None:
                with self._counts_lock:
                    self.intake.reporting = False
            if self._clear_buffers:
                batch.clear()
        if failure is not None and self._must_stop(failure):
            raise failure

    def _must_stop(self, failure: BaseException) -> bool:
        """Whether ``failure`` from user code must end this thread's work.

        Never on the worker thread: no callback can kill it. On another thread (a drain
        at exit), an interrupt or ``SystemExit`` belongs to that thread: let it go on.
        """
        return not isinstance(failure, Exception) and self.sink_thread != self._worker_ident()

    def _worker_ident(self) -> int | None:
        thread = self._thread
        return None if thread is None else thread.ident

    # ------------------------------------------------------------------ reporting

    def _report_failure(self, failure: BaseException, failed: list[T], size: int) -> None:
        """Hand the failed records to ``on_error``, or report them (of a batch of ``size``)."""
        on_error = self.on_error
        if on_error is not None and isinstance(failure, Exception):
            try:
                on_error(failure, failed)
            except BaseException as error_handler_failure:  # noqa: BLE001 -- reported
                self.report(
                    f"on_error raised while handling a failed batch of {len(failed)} records",
                    error_handler_failure,
                )
            return
        if len(failed) == size:
            self.report(f"flush_fn raised on a batch of {size} records", failure)
        else:
            self.report(f"flush_fn failed {len(failed)} of the {size} records of a batch", failure)

    def report(self, message: str, failure: BaseException | None = None) -> None:
        """Report ``message`` to ``logger`` if set, else (or if it fails) to stderr.

        Never raises: what the logger raises is reported to stderr instead.
        """
        logger = self.logger
        if logger is not None:
            try:
                exc_info = (
                    None if failure is None else (type(failure), failure, failure.__traceback__)
                )
                logger.error("batchlog writer %r: %s", self.name, message, exc_info=exc_info)
            except BaseException as logger_failure:  # noqa: BLE001 -- to stderr instead
                self._reporter.report(f"writer {self.name!r}: logger failed", logger_failure)
            else:
                return
        self._reporter.report(f"writer {self.name!r}: {message}", failure)

    # ------------------------------------------------------------------ closing

    def begin_close(self) -> None:
        """Stop accepting and wake the worker to deliver the rest."""
        self.intake.seal()
        self._wake_event.set()

    def close_unreferenced(self) -> None:
        """The writer was garbage-collected: deliver what it holds, then end the thread.

        A finalizer runs wherever a garbage collection pass happens to start, even on the
        worker's own thread inside a section holding the intake's lock: so it takes no
        lock here. It marks the worker and wakes it; the worker (or the standby thread,
        where none runs) closes.
        """
        self.unreferenced = True
        if self.running():
            self._wake_event.set()
        elif not _lifecycle.run_on_standby(self._close_now):
            self._close_now()  # no thread at all (interpreter exit): here

    def _close_now(self) -> None:
        self.begin_close()
        if not self.running():
            self.drain_inline()

    def _drain_for_close(self) -> None:
        """Deliver everything accepted; reclaim slots lost to interrupted adds; finish."""
        intake = self.intake
        grace_ends: float | None = None
        while True:
            intake.seal()  # again: an interrupted close() may have left free slots
            with intake.lock:
                held = intake.held()
            if len(intake):
                self._drain(len(intake), None)
                continue
            if held <= 0:
                break
            # An adder holds a slot but has not appended yet: wait for it, a little.
            now = time.monotonic()
            if grace_ends is None:
                grace_ends = now + CLOSE_GRACE
            if now >= grace_ends:
                lost = intake.reclaim()
                if lost:
                    self.report(
                        f"closing took back {lost} queue slot(s) taken by add calls that "
                        "never appended their record (interrupted, e.g. by Ctrl-C); those "
                        "records count as dropped"
                    )
                continue
            self._wake_event.clear()
            intake.arm(1)
            if not len(intake):
                self._wake_event.wait(grace_ends - now)
            intake.disarm()
        on_close = self._on_close
        try:
            if on_close is not None:
                result = on_close()
                if is_awaitable(result):
                    self.sink_loop.run(result)
        except BaseException as close_failure:  # noqa: BLE001 -- reported
            self.report("on_close raised", close_failure)
        finally:
            try:
                self.sink_loop.close()
            except BaseException as loop_failure:  # noqa: BLE001 -- reported
                self.report("closing the async sink's event loop failed", loop_failure)

    def _end(self, failure: BaseException | None) -> None:
        """However the work ended: seal, count what is left, release every waiter."""
        try:
            if failure is not None:
                self._give_up(failure)
        finally:
            self._finish(ok=failure is None)

    def _give_up(self, failure: BaseException) -> None:
        """The worker ends early: refuse new records, count the waiting ones as failed."""
        intake = self.intake
        intake.seal(f"stopped: its worker ended on {type(failure).__name__}")
        left = 0
        leftover: list[T] = []
        while True:
            taken, _emptied = intake.take(self.capacity, leftover)
            if not taken:
                break
            left += taken
            with self._counts_lock:
                intake.in_flight = 0
                self._failed += taken
            leftover.clear()
        intake.reclaim()
        self._reporter.report(
            f"writer {self.name!r}: the worker ended on {type(failure).__name__}; "
            f"{left} records still waiting count as failed, and no more are accepted",
            failure,
        )

    def _finish(self, *, ok: bool) -> None:
        """Closed and drained (or given up): release every waiter, forget the worker."""
        try:
            self.intake.finish()
        finally:
            self.requests.release_all(ok=ok)
            _lifecycle.forget(self)

    # ------------------------------------------------------------------ waiting

    def close(self, timeout: float | None) -> bool:
        """Begin closing and wait at most ``timeout`` seconds for it to finish."""
        self.begin_close()
        return self.await_request(self.requests.close, timeout)

    def await_request(self, request: Request, timeout: float | None) -> bool:
        """Wait for ``request`` at most ``timeout`` seconds (None: no limit).

        While the process shuts down, the wait is also bounded by this writer's share of
        the shutdown (see ``_lifecycle``); a writer that runs out of it is given up.
        """
        if request.done:
            return request.ok
        if self.on_sink_thread():
            self._wake_event.set()  # called from inside flush_fn: never wait for ourselves
            return False
        budget = _lifecycle.shutdown_budget(self) if timeout != 0 else None
        if budget is not None:
            timeout = budget if timeout is None else min(timeout, budget)
        if self.running():
            self._wake_event.set()
        elif timeout is None or not _lifecycle.run_on_standby(self.drain_inline):
            self.drain_inline()  # no worker thread can run (interpreter exit): here
        finished = request.wait(timeout)
        if budget is not None and not request.done:
            _lifecycle.give_up(self)
        return finished

    async def await_request_async(self, request: Request, timeout: float | None) -> bool:
        """Like ``await_request``, waiting without blocking the event loop."""
        import asyncio

        if request.done:
            return request.ok
        if self.on_sink_thread():
            self._wake_event.set()
            return False
        if not self.running():
            self.drain_inline()  # only where no thread can run: interpreter exit
            return request.done and request.ok
        self._wake_event.set()
        future = request.future()
        timer = expire_soon(asyncio.get_running_loop(), future, timeout)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
        return request.done and request.ok

    def drain_inline(self) -> None:
        """Run the sink on this thread, since no worker thread can run (interpreter exit).

        Handles every pending request; if another thread is already draining, returns at
        once (that thread sees the caller's request before it stops).
        """
        with self._counts_lock:
            if self.sink_thread is not None:
                return  # another thread is draining and will see our request
            self.sink_thread = threading.get_ident()
        try:
            while True:
                intake = self.intake
                closing = intake.sealed and not self.requests.close.done
                request = self.requests.take()
                if request is None and not closing:
                    return
                if closing:
                    try:
                        self._drain_for_close()
                    finally:
                        if request is not None:
                            request.complete()
                        self._finish(ok=True)
                    return
                self._drain(len(intake), None)
                if request is not None:
                    request.complete()
        finally:
            with self._counts_lock:
                self.sink_thread = None

    # ------------------------------------------------------------------ metrics

    def counts(self) -> tuple[int, int, int, int, float, float, float]:
        """processed, failed, flush count, flush errors, last, max, total duration.

        Call with the intake's ``lock`` held, so they agree with its counts.
        """
        return (
            self._processed,
            self._failed,
            self._flush_count,
            self._flush_errors,
            self._last_duration,
            self._max_duration,
            self._total_duration,
        )

    # ------------------------------------------------------------------ process lifecycle

    def begin_exit(self) -> None:
        """At interpreter exit: start closing, and never start a thread from now on."""
        self.at_exit = True
        self.begin_close()

    def finish_exit(self, timeout: float) -> bool:
        """Wait at most ``timeout`` for the close begun by ``begin_exit``."""
        request = self.requests.close
        if request.done:
            return request.ok
        if self.on_sink_thread():
            return False
        if self.running():
            self._wake_event.set()
        elif not _lifecycle.run_on_standby(self.drain_inline):
            self.drain_inline()  # no standby in this process (it could not start)
        return request.wait(timeout)

    def flush_soon(self) -> None:
        """Ask for every accepted record to go to the sink now; do not wait."""
        self.requests.flush()
        self.wake()

    def delivering_thread(self) -> int | None:
        """The thread running the sink now, else the worker thread (None: neither)."""
        sink_thread = self.sink_thread
        return sink_thread if sink_thread is not None else self._worker_ident()

    def undelivered(self) -> int:
        """Records accepted and not yet finished by the sink (waiting or in flight)."""
        with self._counts_lock:
            return self.intake.in_buffer()

    def reset_after_fork(self) -> None:
        """In a forked child: empty, zeroed and working; the parent delivers its records."""
        closed = self.intake.sealed
        self.sink_loop.forget_after_fork()
        self.intake.reset(sealed=closed)
        self._reset(closed=closed)
        if closed:
            _lifecycle.forget(self)  # nothing left to do in the child
        else:
            _lifecycle.track(self)
