"""``BatchWriter``: collects records from many threads and tasks, hands them to a sink in batches.

How a record travels::

    add / try_add / add_async           (caller's thread: take a slot, append, maybe signal)
      -> _queue (a deque)               (bounded exactly by max_queue_size free-slot tokens)
      -> worker thread                  (waits for a full batch, the oldest record's deadline,
                                         a flush() or a close())
      -> flush_fn(batch)                (no lock of ours held)
      -> counters -> metrics            (one small lock, never held while flush_fn runs)

The hot path takes no lock. It pops a token from ``_slots`` and appends the record to
``_queue``; both are ``collections.deque`` operations, documented as thread-safe, so the exact
bound holds on free-threaded Python too. Tokens go back to ``_slots`` when the worker takes
records off the queue. A caller signals the worker only when the worker asked for it (it is
idle, or a batch just filled up), so most adds do no more than those two deque operations.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import sys
import threading
import time
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, Callable, Generic, NoReturn, TypeVar

from . import _lifecycle
from ._clock import MONOTONIC, Clock
from ._report import StderrReporter
from .errors import (
    CapacityTooSmallError,
    InvalidFlushIntervalError,
    InvalidQueueSizeError,
    MissingFlushFunctionError,
    QueueFullError,
    WriterClosedError,
)
from .metrics import Metrics

if TYPE_CHECKING:
    import asyncio
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["DEFAULT_EXIT_TIMEOUT", "BatchWriter", "default_max_queue_size", "unique_name"]

T = TypeVar("T")

#: Seconds an unclosed writer may spend delivering its records at interpreter exit.
DEFAULT_EXIT_TIMEOUT = 10.0

_NEVER = sys.maxsize  # a queue length no adder reaches: "do not signal me"
_MIN_FLUSH_INTERVAL = 0.001
_IDLE_RECHECK = 0.25  # an idle worker re-checks the queue this often, in case a signal is lost
_CLOSE_RECHECK = 0.01  # while closing, how often to look for an adder that held a slot
_names = itertools.count(1)
_names_lock = threading.Lock()


def unique_name(prefix: str) -> str:
    """Return ``prefix`` numbered so that no two default names in a process are equal."""
    with _names_lock:
        return f"{prefix}-{next(_names)}"


def default_max_queue_size(capacity: int) -> int:
    """Return the ``max_queue_size`` used when none is given: ``max(10_000, 10 * capacity)``."""
    return max(10_000, 10 * capacity)


class _Request:
    """A flush or close that callers wait for, from threads or from event loops."""

    __slots__ = ("_done", "_futures", "_lock")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def complete(self) -> None:
        with self._lock:
            self._done.set()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            _resolve_soon(loop, future)

    def future(self) -> asyncio.Future[None]:
        """Return a future of the running loop that completes with this request."""
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._done.is_set():
                self._futures.append((loop, future))
                return future
        future.set_result(None)
        return future


def _resolve_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
        loop.call_soon_threadsafe(resolve)


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        msg = f"timeout must be a number of seconds or None, not {timeout!r}"
        raise TypeError(msg)
    if math.isnan(timeout) or timeout < 0:
        msg = f"timeout must not be negative, not {timeout!r}"
        raise ValueError(msg)
    return float(timeout)


def _check_capacity(capacity: object) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        msg = f"capacity must be an int of at least 1, not {capacity!r}"
        raise CapacityTooSmallError(msg)
    return capacity


def _check_interval(flush_interval: object) -> float:
    if isinstance(flush_interval, timedelta):
        seconds = flush_interval.total_seconds()
    elif isinstance(flush_interval, (int, float)) and not isinstance(flush_interval, bool):
        seconds = float(flush_interval)
    else:
        msg = (
            "flush_interval must be a number of seconds or a timedelta, "
            f"not {flush_interval!r}"
        )
        raise InvalidFlushIntervalError(msg)
    if not (seconds >= _MIN_FLUSH_INTERVAL and math.isfinite(seconds)):
        msg = (
            f"flush_interval must be a finite time of at least {_MIN_FLUSH_INTERVAL} s, "
            f"not {flush_interval!r}"
        )
        raise InvalidFlushIntervalError(msg)
    return seconds


def _check_queue_size(max_queue_size: object, capacity: int) -> int:
    if max_queue_size is None:
        return default_max_queue_size(capacity)
    if (
        isinstance(max_queue_size, bool)
        or not isinstance(max_queue_size, int)
        or max_queue_size < capacity
    ):
        msg = (
            f"max_queue_size must be an int of at least capacity ({capacity}), "
            f"not {max_queue_size!r}"
        )
        raise InvalidQueueSizeError(msg)
    return max_queue_size


class BatchWriter(Generic[T]):
    """Collects records from any thread or task and hands them to ``flush_fn`` in batches.

    A batch goes to ``flush_fn`` when ``capacity`` records are waiting, when the oldest
    waiting record has waited ``flush_interval``, on ``flush`` and on ``close``.
    ``flush_fn`` runs on the writer's own worker thread (started by the first record),
    never concurrently with itself, and sees records in the order they were accepted.

    Args:
        capacity: Most records per batch (>= 1).
        flush_interval: The longest a record waits, in seconds or as a ``timedelta``
            (>= 0.001 s).
        flush_fn: Called with each batch, a ``list``.
        max_queue_size: Most records held, not counting the batch the sink is processing
            (>= ``capacity``). Default: ``max(10_000, 10 * capacity)``. Each slot costs
            8 bytes, reserved up front.
        clear_buffers: Reuse one list for every batch and empty it as soon as ``flush_fn``
            returns; ``flush_fn`` must then copy what it keeps.
        logger: Where ``flush_fn`` failures are reported when there is no ``on_error``.
        on_error: Called as ``on_error(exc, batch)`` when ``flush_fn`` raises.
        name: Used in the worker thread's name, in reprs and in reports.
        on_close: Called once, on the thread that delivered the last batch, after
            ``close`` has delivered everything (to close the sink, say). Its exceptions
            are reported, not raised.
        close_at_exit: Whether batchlog's exit hook closes this writer if it is still
            open. False when something else closes it at exit (``BatchingHandler`` leaves
            it to ``logging.shutdown()``, which runs after other exit hooks had their say).
        exit_timeout: Seconds this writer may take to deliver its records at interpreter
            exit if it was never closed.
        clock: Where the writer reads time; for tests (see ``batchlog.testing``).

    Raises:
        CapacityTooSmallError: ``capacity`` is not an int >= 1.
        MissingFlushFunctionError: ``flush_fn`` is None or not callable.
        InvalidFlushIntervalError: ``flush_interval`` is below 0.001 s or not a time.
        InvalidQueueSizeError: ``max_queue_size`` is below ``capacity`` (a ``ValueError``).

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "__weakref__",
        "_append_record",
        "_at_exit",
        "_buffer",
        "_capacity",
        "_clear_buffers",
        "_clock",
        "_close_request",
        "_closed",
        "_drop_marks",
        "_dropped",
        "_evicted",
        "_failed",
        "_first_arrival",
        "_flush_count",
        "_flush_errors",
        "_flush_fn",
        "_flush_interval",
        "_in_flight",
        "_last_duration",
        "_lock",
        "_logger",
        "_max_duration",
        "_max_queue_size",
        "_on_close",
        "_on_error",
        "_pending",
        "_pop_slot",
        "_processed",
        "_queue",
        "_reporter",
        "_signal_at",
        "_sink_running",
        "_sink_thread",
        "_slots",
        "_space",
        "_space_futures",
        "_stolen",
        "_total_duration",
        "_wake",
        "_worker",
        "_worker_unavailable",
        "close_at_exit",
        "exit_timeout",
        "name",
    )

    def __init__(
        self,
        capacity: int,
        flush_interval: float | timedelta,
        flush_fn: Callable[[list[T]], object],
        *,
        max_queue_size: int | None = None,
        clear_buffers: bool = False,
        logger: logging.Logger | None = None,
        on_error: Callable[[Exception, list[T]], object] | None = None,
        name: str | None = None,
        on_close: Callable[[], object] | None = None,
        close_at_exit: bool = True,
        exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        self._capacity = _check_capacity(capacity)
        if flush_fn is None or not callable(flush_fn):
            msg = f"flush_fn must be a callable taking one batch (a list), not {flush_fn!r}"
            raise MissingFlushFunctionError(msg)
        self._flush_interval = _check_interval(flush_interval)
        self._max_queue_size = _check_queue_size(max_queue_size, self._capacity)
        if on_error is not None and not callable(on_error):
            msg = f"on_error must be callable or None, not {on_error!r}"
            raise TypeError(msg)
        if on_close is not None and not callable(on_close):
            msg = f"on_close must be callable or None, not {on_close!r}"
            raise TypeError(msg)
        if logger is not None and not isinstance(logger, logging.Logger):
            msg = f"logger must be a logging.Logger or None, not {logger!r}"
            raise TypeError(msg)
        checked_exit_timeout = _check_timeout(exit_timeout)
        if checked_exit_timeout is None or not math.isfinite(checked_exit_timeout):
            msg = f"exit_timeout must be a finite number of seconds, not {exit_timeout!r}"
            raise ValueError(msg)
        if name is None:
            name = unique_name("BatchWriter")
        self.name: str = name
        self.exit_timeout: float = checked_exit_timeout
        self.close_at_exit: bool = bool(close_at_exit)
        self._flush_fn = flush_fn
        self._clear_buffers = bool(clear_buffers)
        self._logger = logger
        self._on_error = on_error
        self._on_close = on_close
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._reporter = StderrReporter()
        self._closed = False
        self._at_exit = False
        self._init_state()
        _lifecycle.track(self)
        # Start the worker now, while threads can start: at interpreter exit they cannot
        # (3.12), and a sink run on the exiting thread could not be bounded by a timeout.
        self._ensure_worker()

    def _init_state(self) -> None:
        """Set every piece of mutable state to "new and empty"; also used after fork."""
        self._lock = threading.Lock()
        self._space = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._queue: deque[T] = deque()
        self._slots: deque[None] = deque(itertools.repeat(None, self._max_queue_size))
        self._pop_slot = self._slots.pop
        self._append_record = self._queue.append
        self._buffer: list[T] = []
        self._space_futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._pending: list[_Request] = []
        self._close_request = _Request()
        self._signal_at = 1  # the first record signals (after fork it starts the worker)
        self._first_arrival: float | None = None
        self._worker: threading.Thread | None = None
        self._worker_unavailable = False
        self._sink_thread: int | None = None
        # True while flush_fn runs: front doors then check whether the sink itself is
        # logging (a hint read without the lock; the thread check that follows decides).
        self._sink_running = False
        self._stolen = 0
        self._in_flight = 0
        self._processed = 0
        self._failed = 0
        self._evicted = 0
        self._dropped = 0
        self._drop_marks: deque[None] = deque()
        self._flush_count = 0
        self._flush_errors = 0
        self._last_duration = 0.0
        self._max_duration = 0.0
        self._total_duration = 0.0

    # ------------------------------------------------------------------ settings

    @property
    def capacity(self) -> int:
        """Most records per batch."""
        return self._capacity

    @property
    def flush_interval(self) -> float:
        """The longest a record waits before its batch goes to the sink, in seconds."""
        return self._flush_interval

    @property
    def max_queue_size(self) -> int:
        """Most records held, not counting the batch the sink is processing."""
        return self._max_queue_size

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (records are no longer accepted)."""
        return self._closed

    @property
    def logger(self) -> logging.Logger | None:
        """Where ``flush_fn`` failures are reported; may be set from any thread."""
        with self._lock:
            return self._logger

    @logger.setter
    def logger(self, logger: logging.Logger | None) -> None:
        if logger is not None and not isinstance(logger, logging.Logger):
            msg = f"logger must be a logging.Logger or None, not {logger!r}"
            raise TypeError(msg)
        with self._lock:
            self._logger = logger

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<BatchWriter {self.name!r} capacity={self._capacity} "
            f"flush_interval={self._flush_interval} max_queue_size={self._max_queue_size} "
            f"{state}>"
        )

    # ------------------------------------------------------------------ adding

    def add(self, record: T, timeout: float | None = None) -> None:
        """Accept ``record``, waiting while the queue is full.

        Args:
            record: Anything; it is handed to ``flush_fn`` as it is.
            timeout: Most seconds to wait for room; None waits as long as it takes.

        Raises:
            QueueFullError: The queue stayed full for ``timeout`` seconds, or the call was
                made on the writer's own worker thread while full (never waits there).
            WriterClosedError: The writer is closed.

        Either way the refused record is counted in ``metrics.records_dropped``.
        """
        if timeout is not None:
            _check_timeout(timeout)
        # Closing takes every free slot, so a closed writer needs no check here.
        try:
            self._pop_slot()
        except IndexError:
            pass  # the slow path runs outside this block, so no IndexError is chained
        else:
            self._append_record(record)
            if len(self._queue) >= self._signal_at:
                self._signal()
            return
        self._add_slow(record, timeout)

    def try_add(self, record: T, *, evict_oldest: bool = False) -> bool:
        """Accept ``record`` if there is room, never waiting.

        Args:
            record: Anything; it is handed to ``flush_fn`` as it is.
            evict_oldest: When full, discard the oldest waiting record (counted in
                ``records_evicted``) and accept this one.

        Returns:
            Whether the record was accepted; a refused one is counted as dropped.
        """
        try:
            self._pop_slot()
        except IndexError:
            pass
        else:
            self._append_record(record)
            if len(self._queue) >= self._signal_at:
                self._signal()
            return True
        return self._try_add_slow(record, evict_oldest=evict_oldest)

    async def add_async(self, record: T, timeout: float | None = None) -> None:
        """Accept ``record`` like ``add``, waiting for room without blocking the loop.

        A cancelled call has not added the record.

        Raises:
            QueueFullError: The queue stayed full for ``timeout`` seconds.
            WriterClosedError: The writer is closed.
        """
        timeout = _check_timeout(timeout)
        if self._accept(record):
            return
        import asyncio  # here, not at import: asyncio brings in socket and ssl

        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                self._count_drop()
                raise WriterClosedError(self._closed_message())
            if self._on_sink_thread() or not self._ensure_worker():
                self._refuse_full()
            future: asyncio.Future[None] = loop.create_future()
            with self._space:
                if self._accept(record):
                    return
                self._space_futures.append((loop, future))
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                if self._accept(record):
                    return
                self._refuse_full(timeout)
            finally:
                with self._space:
                    if (loop, future) in self._space_futures:
                        self._space_futures.remove((loop, future))

    def _accept(self, record: T) -> bool:
        """Append ``record`` if the writer is open and a slot is free; count nothing else."""
        if self._closed:
            return False
        try:
            self._pop_slot()
        except IndexError:
            return False
        self._append(record)
        return True

    def _append(self, record: T) -> None:
        """Append ``record``, for which a slot was taken, and signal the worker if it asked."""
        self._append_record(record)
        if len(self._queue) >= self._signal_at:
            self._signal()

    def _add_slow(self, record: T, timeout: float | None) -> None:
        timeout = _check_timeout(timeout)
        if self._closed:
            self._count_drop()
            raise WriterClosedError(self._closed_message())
        if self._accept(record):
            return
        if timeout == 0 or self._on_sink_thread():
            self._refuse_full(timeout)
        if not self._ensure_worker():
            # No thread can run the sink (interpreter exit): make room on this thread.
            self._request_flush()
            self._drain_inline()
            if self._accept(record):
                return
            self._refuse_full(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        got_slot = False
        with self._space:
            while not self._closed:
                try:
                    self._slots.pop()
                except IndexError:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._space.wait(remaining)
                else:
                    got_slot = True
                    break
        if got_slot:
            self._append(record)
            return
        if self._closed:
            self._count_drop()
            raise WriterClosedError(self._closed_message())
        self._refuse_full(timeout)

    def _try_add_slow(self, record: T, *, evict_oldest: bool) -> bool:
        # No second try at a free slot: the fast path just failed, and an IndexError
        # costs more than the rest of this call (_evict_for looks again, under the lock).
        if self._closed:
            self._count_drop()
            return False
        if evict_oldest and self._evict_for(record):
            return True
        self._count_drop()
        return False

    def _evict_for(self, record: T) -> bool:
        """Put ``record`` in the place of the oldest waiting one; False if none can go.

        Under the lock, so the worker (which takes batches and frees their slots under it)
        and other evicting callers cannot empty the queue between our look and our append.
        """
        with self._lock:
            if self._closed:
                return False
            try:
                self._pop_slot()  # the worker may have freed a slot since we looked
            except IndexError:
                try:
                    self._queue.popleft()  # its slot passes to the new record
                except IndexError:  # every slot is with an adder that has not appended yet
                    return False
                self._evicted += 1
            self._append_record(record)
        if len(self._queue) >= self._signal_at:
            self._signal()
        return True

    def _refuse_full(self, timeout: float | None = 0.0) -> NoReturn:
        self._count_drop()
        if self._on_sink_thread():
            msg = (
                f"{self.name}: the queue is full and this is the writer's own worker "
                "thread, which never waits; the record was dropped"
            )
        else:
            msg = f"{self.name}: the queue stayed full for {timeout} s; the record was dropped"
        raise QueueFullError(msg)

    def _count_drop(self) -> None:
        # No lock: refusals come in storms from many threads at once, and a lock taken for
        # each would convoy them. A deque append is thread-safe; readers fold the marks.
        self._drop_marks.append(None)

    def _dropped_so_far(self) -> int:
        """Fold the drop marks into the count and return it; call with ``_lock`` held."""
        marks = self._drop_marks
        waiting = len(marks)
        if waiting:
            # Pop exactly the marks counted (in C); marks appended meanwhile stay for later.
            deque(itertools.starmap(marks.pop, itertools.repeat((), waiting)), maxlen=0)
            self._dropped += waiting
        return self._dropped

    def _closed_message(self) -> str:
        return f"{self.name} is closed; the record was dropped"

    def _on_sink_thread(self) -> bool:
        return self._sink_thread == threading.get_ident()

    # ------------------------------------------------------------------ waking the worker

    def _signal(self) -> None:
        """Wake the worker, which asked for it (idle, or waiting for a full batch)."""
        if self._signal_at == 1:
            self._first_arrival = self._clock.now()
        if self._worker is None and not self._ensure_worker():
            # No thread can run the sink (the interpreter is exiting): deliver right here,
            # like a plain handler would, so nothing waits for a worker that never comes.
            if not self._on_sink_thread():
                self._request_flush()
                self._drain_inline()
            return
        if not self._wake.is_set():
            self._wake.set()

    def _ensure_worker(self) -> bool:
        """Start the worker thread if needed; return whether one is running."""
        worker = self._worker
        if worker is not None:
            return worker.is_alive()
        with self._lock:
            if self._worker is not None:
                return self._worker.is_alive()
            if self._worker_unavailable or self._closed or self._at_exit:
                return False
            if not threading.main_thread().is_alive():
                # The interpreter is shutting down: start no thread (3.12+ forbids it); the
                # exit hook or the next flush/close delivers on the calling thread.
                return False
            thread = threading.Thread(
                target=self._run_worker, name=f"batchlog-{self.name}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                self._worker_unavailable = True
                return False
            self._worker = thread
            return True

    def _worker_running(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive()

    # ------------------------------------------------------------------ the worker

    def _run_worker(self) -> None:
        """The worker thread: deliver batches until the writer is closed and drained."""
        with self._lock:
            self._sink_thread = threading.get_ident()
        window_start: float | None = None  # a lower bound on the oldest record's arrival
        clock = self._clock
        capacity = self._capacity
        while True:
            with self._lock:
                requests, self._pending = self._pending, []
                closing = self._closed
            if closing:
                self._drain_for_close(requests)
                return
            if requests:
                window_start = self._drain(len(self._queue), window_start)
                for request in requests:
                    request.complete()
                continue
            size = len(self._queue)
            if size >= capacity:
                window_start = self._drain(capacity, window_start)
                continue
            if size == 0:
                window_start = self._wait_while_idle()
                continue
            if window_start is None:
                arrival = self._first_arrival
                window_start = clock.now() if arrival is None else arrival
            remaining = window_start + self._flush_interval - clock.now()
            if remaining <= 0:
                window_start = self._drain(capacity, window_start)
                continue
            self._wake.clear()
            self._signal_at = capacity
            if len(self._queue) < capacity and not self._pending:
                clock.wait(self._wake, remaining)
            self._signal_at = _NEVER

    def _wait_while_idle(self) -> float | None:
        """Sleep until a record arrives; return when it arrived (or a safe earlier time)."""
        idle_since = self._clock.now()
        self._first_arrival = None
        self._wake.clear()
        self._signal_at = 1
        if not self._queue and not self._pending and not self._closed:
            self._clock.wait(self._wake, max(self._flush_interval, _IDLE_RECHECK))
        self._signal_at = _NEVER
        if not self._queue:
            return None
        arrival = self._first_arrival
        # Without a signal (lost, or the record came as we woke) assume it waited since idle.
        return idle_since if arrival is None else arrival

    def _drain(self, count: int, window_start: float | None) -> float | None:
        """Deliver up to ``count`` waiting records in batches; return the next window start."""
        while count > 0:
            started = self._clock.now()
            batch, emptied = self._take(min(count, self._capacity))
            if batch:
                count -= len(batch)
                self._deliver(batch)
            if emptied:
                # What is left arrived after the queue ran dry, so after ``started``.
                return started
        return window_start

    def _take(self, limit: int) -> tuple[list[T], bool]:
        """Move up to ``limit`` records from the queue into a batch; free their slots."""
        batch: list[T] = self._buffer if self._clear_buffers else []
        queue = self._queue
        with self._lock:
            # Only this method and evictions remove records, both under this lock, so
            # ``taken`` records are surely there: pop them in C, not one by one in Python.
            waiting = len(queue)
            taken = min(limit, waiting)
            if taken:
                batch.extend(itertools.starmap(queue.popleft, itertools.repeat((), taken)))
                self._in_flight = taken
                self._dropped_so_far()  # keep the marks few
                if self._closed:
                    self._stolen += taken  # closing: keep the slots, nothing more gets in
                else:
                    self._slots.extend(itertools.repeat(None, taken))
        if taken:
            self._notify_space()
        return batch, taken == waiting

    def _notify_space(self) -> None:
        """Wake adders waiting for room (threads and event loops)."""
        with self._space:
            self._space.notify_all()
            futures, self._space_futures = self._space_futures, []
        for loop, future in futures:
            _resolve_soon(loop, future)

    def _deliver(self, batch: list[T]) -> None:
        """Call the sink with ``batch`` (no lock held) and count the outcome."""
        clock = self._clock
        size = len(batch)
        failure: BaseException | None = None
        started = clock.now()
        self._sink_running = True
        try:
            self._flush_fn(batch)
        except BaseException as exc:  # noqa: BLE001 -- a failing sink must not kill the worker
            failure = exc
        finally:
            self._sink_running = False
        duration = clock.now() - started
        with self._lock:
            self._in_flight = 0
            self._flush_count += 1
            if failure is None:
                self._processed += size
            else:
                self._failed += size
                self._flush_errors += 1
            self._last_duration = duration
            self._total_duration += duration
            self._max_duration = max(duration, self._max_duration)
        if failure is not None:
            self._report_failure(failure, batch)
            if not isinstance(failure, Exception) and not self._is_worker_thread():
                if self._clear_buffers:
                    batch.clear()
                raise failure  # KeyboardInterrupt and the like belong to the calling thread
        if self._clear_buffers:
            batch.clear()

    def _is_worker_thread(self) -> bool:
        worker = self._worker
        return worker is not None and worker.ident == threading.get_ident()

    def _report_failure(self, failure: BaseException, batch: list[T]) -> None:
        on_error = self._on_error
        if on_error is not None and isinstance(failure, Exception):
            try:
                on_error(failure, batch)
            except Exception as error_handler_failure:  # noqa: BLE001 -- report, never raise
                self._report(
                    f"on_error raised while handling a failed batch of {len(batch)} records",
                    error_handler_failure,
                )
            else:
                return
        self._report(f"flush_fn raised on a batch of {len(batch)} records", failure)

    def _report(self, message: str, failure: BaseException) -> None:
        logger = self.logger
        if logger is not None:
            try:
                logger.error(
                    "batchlog writer %r: %s",
                    self.name,
                    message,
                    exc_info=(type(failure), failure, failure.__traceback__),
                )
            except Exception as logger_failure:  # noqa: BLE001 -- fall back to stderr
                self._reporter.report(f"writer {self.name!r}: logger failed", logger_failure)
            else:
                return
        self._reporter.report(f"writer {self.name!r}: {message}", failure)

    def _drain_for_close(self, requests: list[_Request]) -> None:
        """Deliver everything accepted, take every slot so nothing more gets in, finish."""
        while True:
            with self._lock:
                self._steal_free_slots()
                all_slots_back = self._stolen == self._max_queue_size
            if all_slots_back and not self._queue:
                break
            if self._queue:
                self._drain(len(self._queue), None)
                continue
            # An adder holds a slot but has not appended yet: wait for its record.
            self._wake.clear()
            self._signal_at = 1
            if not self._queue:
                self._wake.wait(_CLOSE_RECHECK)
            self._signal_at = _NEVER
        with self._lock:
            requests += self._pending
            self._pending = []
        on_close = self._on_close
        if on_close is not None:
            try:
                on_close()
            except Exception as close_failure:  # noqa: BLE001 -- report, never raise
                self._report("on_close raised", close_failure)
        for request in requests:
            request.complete()
        self._close_request.complete()
        self._notify_space()

    def _steal_free_slots(self) -> None:
        """Take every free slot so no add gets in; call with ``_lock`` held, once closed."""
        pop = self._slots.pop
        stolen = 0
        try:
            while True:
                pop()  # one by one: adders may pop concurrently, so len() cannot be trusted
                stolen += 1
        except IndexError:
            pass
        self._stolen += stolen

    def _drain_inline(self) -> None:
        """Run the sink on this thread, since no worker thread can run (interpreter exit).

        Handles every pending request; if another thread is already draining, returns at
        once (that thread sees the caller's request before it stops).
        """
        with self._lock:
            if self._sink_thread is not None:
                claimed = False  # another thread is draining and will see our request
            else:
                self._sink_thread = threading.get_ident()
                claimed = True
        if not claimed:
            return
        try:
            while True:
                with self._lock:
                    requests, self._pending = self._pending, []
                    closing = self._closed and not self._close_request.done
                    if not requests and not closing:
                        self._sink_thread = None
                        return
                if closing:
                    self._drain_for_close(requests)
                    continue
                self._drain(len(self._queue), None)
                for pending in requests:
                    pending.complete()
        except BaseException:
            with self._lock:
                self._sink_thread = None
            raise

    # ------------------------------------------------------------------ flush and close

    def _request_flush(self) -> _Request:
        request = _Request()
        with self._lock:
            if self._closed:
                return self._close_request
            self._pending.append(request)
        return request

    def _nothing_unfinished(self) -> bool:
        with self._lock:
            return self._in_buffer() == 0

    def flush(self, timeout: float | None = None) -> bool:
        """Hand every record accepted before this call to ``flush_fn`` and wait for it.

        Args:
            timeout: Most seconds to wait; None waits as long as it takes.

        Returns:
            True once ``flush_fn`` has returned or raised for all of them (``metrics``
            already counts those batches); False if the timeout passed first, or if called
            from inside ``flush_fn`` (the flush then happens after the current batch).
        """
        timeout = _check_timeout(timeout)
        if self._nothing_unfinished():
            return True
        request = self._request_flush()
        return self._await_request(request, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting records, hand every accepted one to ``flush_fn``, end the worker.

        Idempotent and thread-safe: later calls wait the same way and never raise. Called
        from inside ``flush_fn`` it returns False at once; the worker finishes the close
        after the current batch.

        Args:
            timeout: Most seconds to wait; None waits as long as it takes.

        Returns:
            True when all of that finished within the timeout.
        """
        timeout = _check_timeout(timeout)
        self._begin_close()
        return self._await_request(self._close_request, timeout)

    def _begin_close(self) -> None:
        with self._lock:
            first = not self._closed
            self._closed = True
            self._steal_free_slots()
        if first:
            self._notify_space()  # waiting adders now refuse their records
        self._wake.set()

    def _await_request(self, request: _Request, timeout: float | None) -> bool:
        if request.done:
            return True
        if self._on_sink_thread():
            self._wake.set()
            return False
        if self._worker_running():
            self._wake.set()
            return request.wait(timeout)
        self._drain_inline()
        return request.wait(timeout)

    async def flush_async(self, timeout: float | None = None) -> bool:
        """Like ``flush``, waiting without blocking the event loop."""
        timeout = _check_timeout(timeout)
        if self._nothing_unfinished():
            return True
        return await self._await_request_async(self._request_flush(), timeout)

    async def aclose(self, timeout: float | None = None) -> bool:
        """Like ``close``, waiting without blocking the event loop."""
        timeout = _check_timeout(timeout)
        self._begin_close()
        return await self._await_request_async(self._close_request, timeout)

    async def _await_request_async(self, request: _Request, timeout: float | None) -> bool:
        import asyncio

        if request.done:
            return True
        if self._on_sink_thread():
            self._wake.set()
            return False
        if not self._worker_running():
            self._drain_inline()  # only where no thread can start: interpreter exit
            return request.done
        self._wake.set()
        try:
            await asyncio.wait_for(request.future(), timeout)
        except asyncio.TimeoutError:
            return request.done
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ metrics

    def _in_buffer(self) -> int:
        """Records accepted and not finished; call with ``_lock`` held."""
        return self._max_queue_size - len(self._slots) - self._stolen + self._in_flight

    @property
    def metrics(self) -> Metrics:
        """A consistent snapshot of the counters; never waits for a running flush."""
        with self._lock:
            in_buffer = self._in_buffer()
            processed = self._processed
            failed = self._failed
            evicted = self._evicted
            dropped = self._dropped_so_far()
            flush_count = self._flush_count
            flush_errors = self._flush_errors
            last = self._last_duration
            longest = self._max_duration
            total = self._total_duration
        return Metrics(
            records_added=processed + failed + evicted + in_buffer,
            records_dropped=dropped,
            records_evicted=evicted,
            records_processed=processed,
            records_failed=failed,
            records_in_buffer=in_buffer,
            flush_count=flush_count,
            flush_errors=flush_errors,
            last_flush_duration=last,
            avg_flush_duration=total / flush_count if flush_count else 0.0,
            max_flush_duration=longest,
            total_flush_time=total,
        )

    # ------------------------------------------------------------------ process lifecycle

    def _begin_exit(self) -> None:
        """At interpreter exit: start closing, and never start a thread from now on."""
        with self._lock:
            self._at_exit = True
        self._begin_close()

    def _finish_exit(self, timeout: float) -> bool:
        return self._await_request(self._close_request, timeout)

    def _reset_after_fork(self) -> None:
        """In a forked child: empty, zeroed and working; the parent delivers its records."""
        self._init_state()
        self._at_exit = False
        if self._closed:
            self._stolen = self._max_queue_size
            self._slots.clear()
            self._close_request.complete()
