"""The writer's sense of time, injectable so tests can drive it without sleeping."""

from __future__ import annotations

import threading
import time

from typing_extensions import Protocol

__all__ = ["MONOTONIC", "Clock", "MonotonicClock"]


class Clock(Protocol):
    """Where a writer reads the time and waits for its wake-up event.

    ``wait(event, timeout)`` returns when ``event`` is set or ``timeout`` seconds of this
    clock's time have passed; it may return early (the writer re-checks its deadlines).
    """

    def now(self) -> float:
        """Return seconds on a monotonic scale."""

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; return whether it is set."""


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``threading.Event.wait``."""

    __slots__ = ()

    def now(self) -> float:
        """Return ``time.monotonic``."""
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait on ``event`` in real time."""
        return event.wait(timeout)


MONOTONIC = MonotonicClock()
