"""``BatchWriter``: collects records from many threads and tasks, hands them to a sink in batches.

How a record travels, and which module owns each step::

    add / try_add / add_async / offer   writer.py: checks arguments, applies the overflow policy
      -> the intake                     _intake.py: takes a slot, appends; the exact bound
      -> the worker                     _worker.py: waits for a full batch, the oldest record's
                                        deadline, a flush() or a close(); times the window
      -> flush_fn(batch)                (no lock held)
      -> counters -> metrics            one small lock, never held while flush_fn runs

Flush and close requests (``_requests.py``) are barriers the callers wait on; exit and fork
(``_lifecycle.py``) reach every open writer. The worker thread holds the worker and the
intake, never this object, so a ``BatchWriter`` nobody references is collected: its
finalizer closes the worker, which delivers what is left and ends its thread.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import weakref
from datetime import timedelta
from typing import TYPE_CHECKING, Callable, Generic, TypeVar

from ._clock import MONOTONIC, Clock
from ._requests import expire_soon
from ._sync import new_lock
from ._validate import MAX_SIZE, check_callable, check_int, check_seconds
from ._worker import DEFAULT_EXIT_TIMEOUT, Worker
from .errors import (
    CapacityTooSmallError,
    InvalidFlushIntervalError,
    InvalidQueueSizeError,
    MissingFlushFunctionError,
)
from .metrics import Metrics
from .overflow import OverflowPolicy, OverflowPolicyLike

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from ._requests import Request

__all__ = ["DEFAULT_EXIT_TIMEOUT", "BatchWriter", "default_max_queue_size", "unique_name"]

T = TypeVar("T")

_MIN_FLUSH_INTERVAL = 0.001
_ROOM_RECHECK = 0.25  # an event loop waiting for room looks again this often
_names = itertools.count(1)
_names_lock = new_lock()


def unique_name(prefix: str) -> str:
    """Return ``prefix`` numbered so that no two default names in a process are equal."""
    with _names_lock:
        return f"{prefix}-{next(_names)}"


def default_max_queue_size(capacity: int) -> int:
    """Return the ``max_queue_size`` used when none is given: ``max(10_000, 10 * capacity)``.

    Capped at ``2**40`` (the largest size accepted).
    """
    return min(MAX_SIZE, max(10_000, 10 * capacity))


def _check_timeout(timeout: object, name: str = "timeout") -> float | None:
    return check_seconds(name, timeout, allow_none=True, type_error=TypeError)


class BatchWriter(Generic[T]):
    """Collects records from any thread or task and hands them to ``flush_fn`` in batches.

    A batch goes to ``flush_fn`` when ``capacity`` records are waiting, when the oldest
    waiting record has waited ``flush_interval``, on ``flush`` and on ``close``.
    ``flush_fn`` runs on the writer's own worker thread, never concurrently with itself,
    and sees records in the order they were accepted. If it returns an awaitable (an
    ``async def`` sink), the writer awaits it on an event loop of its own, run on that
    thread, before the batch counts: returned is delivered, raised is failed; tasks a
    failed batch left on the loop are cancelled. An awaitable ``on_close`` result is
    awaited there too, then the loop is closed.

    Args:
        capacity: Most records per batch (1 to 2**40).
        flush_interval: The longest a record waits, in seconds or as a ``timedelta``
            (>= 0.001 s).
        flush_fn: Called with each batch, a ``list``.
        max_queue_size: Most records held, not counting the batch the sink is processing
            (``capacity`` to 2**40). Default: ``max(10_000, 10 * capacity)``. Nothing is
            reserved up front: memory follows the records held.
        clear_buffers: Reuse one list for every batch and empty it as soon as ``flush_fn``
            returns; ``flush_fn`` must then copy what it keeps.
        logger: Where ``flush_fn`` failures are reported when there is no ``on_error``.
        on_error: Called as ``on_error(exc, batch)`` when ``flush_fn`` raises.
        name: Used in the worker thread's name, in reprs and in reports.
        overflow: What ``offer`` does when the queue is full: ``"block"`` (wait, at most
            ``block_timeout``), ``"drop_newest"`` or ``"drop_oldest"``.
        block_timeout: With ``"block"``, most seconds ``offer`` waits for room.
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
        ValueError: ``capacity`` or ``max_queue_size`` is above 2**40, or ``overflow``
            names no policy.

    A writer nobody references any more is closed (its records delivered, its thread
    ended) when it is garbage-collected.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``offer``, ``overflow`` and ``block_timeout``; no memory reserved up front; async
       sinks are awaited.
    """

    __slots__ = (
        "__weakref__",
        "_finalizer",
        "_intake",
        "_offer",
        "_worker",
        "block_timeout",
        "overflow",
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
        overflow: OverflowPolicyLike = OverflowPolicy.BLOCK,
        block_timeout: float | None = None,
        on_close: Callable[[], object] | None = None,
        close_at_exit: bool = True,
        exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        capacity = check_int("capacity", capacity, low=1, error=CapacityTooSmallError)
        if capacity > MAX_SIZE:
            msg = f"capacity must be an int from 1 to 2**40, not {capacity!r}"
            raise ValueError(msg)
        flush_fn = check_callable(
            "flush_fn",
            flush_fn,
            what="a callable taking one batch (a list)",
            error=MissingFlushFunctionError,
        )
        interval = check_seconds(
            "flush_interval",
            flush_interval,
            low=_MIN_FLUSH_INTERVAL,
            allow_timedelta=True,
            error=InvalidFlushIntervalError,
        )
        if max_queue_size is None:
            max_queue_size = default_max_queue_size(capacity)
        else:
            max_queue_size = check_int(
                f"max_queue_size (at least capacity, {capacity})",
                max_queue_size,
                low=capacity,
                error=InvalidQueueSizeError,
            )
            if max_queue_size > MAX_SIZE:
                msg = (
                    f"max_queue_size must be an int from capacity to 2**40, not {max_queue_size!r}"
                )
                raise ValueError(msg)
        check_callable("on_error", on_error, optional=True)
        check_callable("on_close", on_close, optional=True)
        _check_logger(logger)
        checked_exit_timeout = check_seconds("exit_timeout", exit_timeout)
        self.overflow: OverflowPolicy = OverflowPolicy.parse(overflow)
        self.block_timeout: float | None = _check_timeout(block_timeout, "block_timeout")
        self._worker: Worker[T] = Worker(
            flush_fn,
            capacity=capacity,
            max_queue_size=max_queue_size,
            flush_interval=interval,
            clear_buffers=bool(clear_buffers),
            logger=logger,
            on_error=on_error,
            on_close=on_close,
            name=unique_name("BatchWriter") if name is None else name,
            clock=MONOTONIC if clock is None else clock,
            close_at_exit=bool(close_at_exit),
            exit_timeout=checked_exit_timeout,
        )
        self._intake = self._worker.intake
        self._offer = self._offer_by_policy()
        # Collected without close(): deliver what is left and end the thread. The exit
        # hook, not the finalizer, handles writers still open at interpreter exit.
        self._finalizer = weakref.finalize(self, self._worker.close_unreferenced)
        self._finalizer.atexit = False  # type: ignore[misc]  # typeshed lists no setter
        # Start the worker now, while threads can start: at interpreter exit they cannot
        # (3.12), and a sink run on the exiting thread could not be bounded by a timeout.
        self._worker.start()

    def _offer_by_policy(self) -> Callable[[T], bool]:
        """The intake method that applies ``overflow``, bound in C (no extra frame)."""
        intake = self._intake
        if self.overflow is OverflowPolicy.BLOCK:
            if self.block_timeout is None:
                return intake.offer
            return functools.partial(intake.offer, timeout=self.block_timeout)
        if self.overflow is OverflowPolicy.DROP_NEWEST:
            return intake.offer_now
        return functools.partial(intake.offer_now, evict_oldest=True)

    # ------------------------------------------------------------------ settings

    @property
    def capacity(self) -> int:
        """Most records per batch."""
        return self._worker.capacity

    @property
    def flush_interval(self) -> float:
        """The longest a record waits before its batch goes to the sink, in seconds."""
        return self._worker.flush_interval

    @property
    def max_queue_size(self) -> int:
        """Most records held, not counting the batch the sink is processing."""
        return self._intake.max_queue_size

    @property
    def flush_fn(self) -> Callable[[list[T]], object]:
        """The function each batch is handed to.

        .. versionadded:: 0.2.0
        """
        return self._worker.flush_fn

    @property
    def name(self) -> str:
        """Used in the worker thread's name, in reprs, reports and error messages."""
        return self._worker.name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            msg = f"name must be a str, not {name!r}"
            raise TypeError(msg)
        self._worker.name = name

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (records are no longer accepted)."""
        return self._intake.sealed

    @property
    def logger(self) -> logging.Logger | None:
        """Where ``flush_fn`` failures are reported; may be set from any thread."""
        return self._worker.logger

    @logger.setter
    def logger(self, logger: logging.Logger | None) -> None:
        _check_logger(logger)
        # One attribute store: the worker reads it once per report, never half-written.
        self._worker.logger = logger

    @property
    def close_at_exit(self) -> bool:
        """Whether batchlog's exit hook closes this writer if it is still open."""
        return self._worker.close_at_exit

    @close_at_exit.setter
    def close_at_exit(self, value: bool) -> None:
        self._worker.close_at_exit = bool(value)

    @property
    def exit_timeout(self) -> float:
        """Seconds this writer may take to deliver its records at interpreter exit."""
        return self._worker.exit_timeout

    @exit_timeout.setter
    def exit_timeout(self, seconds: float) -> None:
        self._worker.exit_timeout = check_seconds("exit_timeout", seconds)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"<BatchWriter {self.name!r} capacity={self.capacity} "
            f"flush_interval={self.flush_interval} max_queue_size={self.max_queue_size} "
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
            timeout = _check_timeout(timeout)
        self._intake.add(record, timeout)

    def try_add(self, record: T, *, evict_oldest: bool = False) -> bool:
        """Accept ``record`` if there is room, never waiting.

        Args:
            record: Anything; it is handed to ``flush_fn`` as it is.
            evict_oldest: When full, discard the oldest waiting record (counted in
                ``records_evicted``) and accept this one.

        Returns:
            Whether the record was accepted; a refused one is counted as dropped.
        """
        if evict_oldest:
            return self._intake.try_add(record, evict_oldest=True)
        return self._intake.try_add(record)

    @property
    def offer(self) -> Callable[[T], bool]:
        """``offer(record) -> bool``: hand a record over by the writer's ``overflow`` policy.

        ``"block"`` waits for room (at most ``block_timeout``), ``"drop_newest"`` refuses
        the record when full, ``"drop_oldest"`` evicts the oldest waiting one. It never
        raises for a refusal: it returns whether the record was accepted, and a refused one
        is counted as dropped. A record offered by the sink itself (``flush_fn`` logging
        through the handler or processor that feeds it) is dropped, so a sink cannot feed
        itself forever. This is the one way in of the front doors (``BatchingHandler``,
        ``BatchingProcessor``).

        A property that returns the function, bound once for the writer's policy, so a
        front door that keeps it (``offer = writer.offer``) pays one call per record.

        .. versionadded:: 0.2.0
        """
        return self._offer

    def count_drop(self) -> None:
        """Count one record as dropped that the caller refused before offering it.

        For front doors: a record that could not even be prepared (a log message whose
        arguments do not fit its format) is counted in ``metrics.records_dropped``.

        .. versionadded:: 0.2.0
        """
        self._intake.count_drop()

    def in_sink(self) -> bool:
        """Whether the calling thread is running this writer's ``flush_fn`` right now.

        .. versionadded:: 0.2.0
        """
        worker = self._worker
        return worker.sink_running and worker.sink_thread == threading.get_ident()

    async def add_async(self, record: T, timeout: float | None = None) -> None:
        """Accept ``record`` like ``add``, waiting for room without blocking the loop.

        A cancelled call has not added the record.

        Raises:
            QueueFullError: The queue stayed full for ``timeout`` seconds.
            WriterClosedError: The writer is closed.
        """
        timeout = _check_timeout(timeout)
        intake = self._intake
        if intake.accept(record):
            return
        import asyncio  # here, not at import: asyncio brings in socket and ssl

        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            intake.check_can_wait(timeout)
            entry = intake.room_future(loop)
            try:
                if intake.accept(record):
                    return
                intake.wake_owner()
                wait = _ROOM_RECHECK
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                timer = expire_soon(loop, entry[1], wait)
                try:
                    await entry[1]
                finally:
                    if timer is not None:
                        timer.cancel()
                if intake.accept(record):
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    intake.refuse(timeout)
            finally:
                intake.forget_room_future(entry)

    # ------------------------------------------------------------------ flush and close

    def flush(self, timeout: float | None = None) -> bool:
        """Hand every record accepted before this call to ``flush_fn`` and wait for it.

        Flushes asked for while one is still waiting for the worker share it, so many
        calls (a flood of ``flush_level`` records) cost one request.

        Args:
            timeout: Most seconds to wait; None waits as long as it takes.

        Returns:
            True once ``flush_fn`` has returned or raised for all of them (``metrics``
            already counts those batches) and each failure among them has been reported
            (``on_error`` has returned); False if the timeout passed first, if the
            worker ended before it got to them, or if called from inside ``flush_fn``
            or ``on_error`` (the flush then happens after the current batch).

        .. versionchanged:: 0.2.0
           Also waits for the report of a failed batch (``on_error``), not only for
           ``flush_fn``.
        """
        timeout = _check_timeout(timeout)
        if self._nothing_unfinished():
            return True
        worker = self._worker
        return worker.await_request(self._flush_request(), timeout)

    def _flush_request(self) -> Request:
        worker = self._worker
        if self._intake.sealed:
            return worker.requests.close
        return worker.requests.flush()

    def _nothing_unfinished(self) -> bool:
        intake = self._intake
        with intake.lock:
            return intake.all_done()

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
        return self._worker.close(_check_timeout(timeout))

    async def flush_async(self, timeout: float | None = None) -> bool:
        """Like ``flush``, waiting without blocking the event loop."""
        timeout = _check_timeout(timeout)
        if self._nothing_unfinished():
            return True
        return await self._worker.await_request_async(self._flush_request(), timeout)

    async def aclose(self, timeout: float | None = None) -> bool:
        """Like ``close``, waiting without blocking the event loop."""
        timeout = _check_timeout(timeout)
        worker = self._worker
        worker.begin_close()
        return await worker.await_request_async(worker.requests.close, timeout)

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

    @property
    def metrics(self) -> Metrics:
        """A consistent snapshot of the counters; never waits for a running flush."""
        intake = self._intake
        with intake.lock:
            in_buffer = intake.in_buffer()
            dropped = intake.dropped
            evicted = intake.evicted
            processed, failed, flush_count, flush_errors, last, longest, total = (
                self._worker.counts()
            )
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
            reopened=0,
        )


def _check_logger(logger: object) -> None:
    if logger is not None and not isinstance(logger, logging.Logger):
        msg = f"logger must be a logging.Logger or None, not {logger!r}"
        raise TypeError(msg)
