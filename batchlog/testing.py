"""Helpers for testing code that uses batchlog, without sleeping.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told to, for driving a writer's time-based flushes.

    Pass it as ``BatchWriter(..., clock=clock)``. The worker's timed waits end only when
    ``advance`` moves time (or a record or request wakes the worker)::

        clock = FakeClock()
        writer = BatchWriter(10, 5.0, sink, clock=clock)
        writer.add("a")
        clock.wait_for_sleep(after=0)   # the worker now waits for the 5 s deadline
        mark = clock.sleeps
        clock.advance(5.0)
        clock.wait_for_sleep(after=mark)  # the worker delivered ["a"] and sleeps again
    """

    __slots__ = ("_cond", "_events", "_now", "_sleepers", "_sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._cond = threading.Condition()
        self._events: set[threading.Event] = set()
        self._sleepers = 0
        self._sleeps = 0

    def now(self) -> float:
        """Return the current fake time, in seconds."""
        with self._cond:
            return self._now

    @property
    def sleeps(self) -> int:
        """How many waits have begun so far."""
        with self._cond:
            return self._sleeps

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every waiter to look at it."""
        if seconds < 0:
            msg = f"a clock only moves forward; seconds must be >= 0, not {seconds!r}"
            raise ValueError(msg)
        with self._cond:
            self._now += seconds
            events = list(self._events)
        for event in events:
            event.set()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait until ``event`` is set; fake timeouts end only through ``advance``."""
        with self._cond:
            if timeout is not None and timeout <= 0:
                return event.is_set()
            self._events.add(event)
            self._sleepers += 1
            self._sleeps += 1
            self._cond.notify_all()
        try:
            return event.wait(60.0)  # real-time backstop so a broken test fails, not hangs
        finally:
            with self._cond:
                self._sleepers -= 1
                self._events.discard(event)

    def wait_for_sleep(self, after: int, timeout: float = 10.0) -> bool:
        """Wait (real time) until a wait begins after the ``after``-th; return if it did."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._sleeps > after and self._sleepers > 0, timeout
            )
