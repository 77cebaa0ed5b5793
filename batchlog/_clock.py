"""The writer's sense of time, injectable so tests can drive it without sleeping."""

from __future__ import annotations

import time

from typing_extensions import Protocol

__all__ = ["MONOTONIC", "Clock", "MonotonicClock", "Waitable"]


class Waitable(Protocol):
    """What the worker waits on: a ``threading.Event``, or batchlog's lock-based wake-up."""

    def wait(self, timeout: float | None) -> bool:
        """Wait at most ``timeout`` seconds; return whether it was set."""

    def set(self) -> None:
        """Wake the waiter."""

    def is_set(self) -> bool:
        """Whether it is set."""


class Clock(Protocol):
    """Where a writer reads the time and waits for its wake-up event.

    ``wait(event, timeout)`` returns when ``event`` is set or ``timeout`` seconds of this
    clock's time have passed; it may return early (the writer re-checks its deadlines).
    """

    def now(self) -> float:
        """Return seconds on a monotonic scale."""

    def wait(self, event: Waitable, timeout: float | None, *, idle: bool = False) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; return whether it is set.

        ``idle`` marks the worker's wait with an empty queue (a re-check), as opposed to a
        wait for a batch's window; a test clock may tell them apart.
        """


class MonotonicClock:
    """The real clock: ``time.monotonic`` and the event's own ``wait``."""

    __slots__ = ()

    def now(self) -> float:
        """Return ``time.monotonic``."""
        return time.monotonic()

    def wait(self, event: Waitable, timeout: float | None, *, idle: bool = False) -> bool:  # noqa: ARG002 -- the real clock waits the same either way
        """Wait on ``event`` in real time."""
        return event.wait(timeout)


MONOTONIC = MonotonicClock()
