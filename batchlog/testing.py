"""Helpers for testing code that uses batchlog, without sleeping.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._clock import Waitable

__all__ = ["FakeClock"]

#: Real seconds a fake wait lasts at most, so a broken test fails instead of hanging.
_BACKSTOP = 60.0
#: Fake times closer than this are the same deadline (sums of floats round).
_SAME_TIME = 1e-9


class _Sleeper:
    """One wait in progress: the event it waits for and its deadline in fake time."""

    __slots__ = ("deadline", "event", "idle", "timed_out")

    def __init__(self, event: Waitable, deadline: float | None, *, idle: bool) -> None:
        self.event = event
        self.deadline = deadline
        self.idle = idle
        self.timed_out = False


class FakeClock:
    """A clock that moves only when told to, for driving a writer's time-based flushes.

    Pass it as ``BatchWriter(..., clock=clock)``. A wait ends when its event is set (a
    record or a request woke the worker) or when ``advance`` moves time to or past its
    deadline; ``advance`` wakes no other waiter::

        clock = FakeClock()
        writer = BatchWriter(10, 5.0, sink, clock=clock)
        writer.add("a")
        clock.wait_for_sleep(after=0)   # the worker now waits for the 5 s deadline
        mark = clock.sleeps
        clock.advance(5.0)
        clock.wait_for_sleep(after=mark)  # the worker delivered ["a"] and sleeps again

    .. versionchanged:: 0.2.0
       ``advance`` wakes only the waits whose deadline passed.
    """

    __slots__ = ("_cond", "_now", "_sleepers", "_sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._cond = threading.Condition()
        self._sleepers: list[_Sleeper] = []
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

    @property
    def deadlines(self) -> list[float | None]:
        """The fake deadline of each wait in progress (None: no timeout)."""
        with self._cond:
            return [sleeper.deadline for sleeper in self._sleepers]

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``; wake the waits whose deadline it reached."""
        if seconds < 0:
            msg = f"a clock only moves forward; seconds must be >= 0, not {seconds!r}"
            raise ValueError(msg)
        with self._cond:
            self._now += seconds
            due = [
                sleeper
                for sleeper in self._sleepers
                if sleeper.deadline is not None and sleeper.deadline <= self._now
            ]
            for sleeper in due:
                sleeper.timed_out = True
        for sleeper in due:
            sleeper.event.set()

    def wait(self, event: Waitable, timeout: float | None, *, idle: bool = False) -> bool:
        """Wait until ``event`` is set (True) or fake time reaches the timeout (False).

        ``idle`` marks the worker's re-check of an empty queue (see ``wait_for_deadline``).
        """
        with self._cond:
            if timeout is not None and timeout <= 0:
                return event.is_set()
            deadline = None if timeout is None else self._now + timeout
            sleeper = _Sleeper(event, deadline, idle=idle)
            self._sleepers.append(sleeper)
            self._sleeps += 1
            self._cond.notify_all()
        try:
            signaled = event.wait(_BACKSTOP)
        finally:
            with self._cond:
                self._sleepers.remove(sleeper)
        return signaled and not sleeper.timed_out

    def wait_for_deadline(
        self, deadline: float, timeout: float = 10.0, *, idle: bool = False
    ) -> bool:
        """Wait (real time) until a wait in progress ends at fake time ``deadline``.

        By default only a wait for a batch's window counts: after ``writer.add(...)`` at
        fake time 0 with a 5 s interval, ``wait_for_deadline(5.0)`` returns once the worker
        waits for that record's window. With ``idle=True`` only the worker's re-check of an
        empty queue counts (its deadline is ``max(flush_interval, 0.25)`` after it began).

        .. versionadded:: 0.2.0
        """
        with self._cond:
            return self._cond.wait_for(
                lambda: any(
                    sleeper.idle == idle
                    and sleeper.deadline is not None
                    and abs(sleeper.deadline - deadline) < _SAME_TIME
                    for sleeper in self._sleepers
                ),
                timeout,
            )

    def wait_for_sleep(self, after: int, timeout: float = 10.0) -> bool:
        """Wait (real time) until a wait begins after the ``after``-th; return if it did."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._sleeps > after and bool(self._sleepers), timeout
            )
