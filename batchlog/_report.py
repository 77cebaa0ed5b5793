"""Reports of sink failures on ``sys.stderr``, rate-limited so a broken sink cannot flood it."""

from __future__ import annotations

import sys
import time
import traceback

from ._sync import new_lock

__all__ = ["StderrReporter", "write_line"]


class StderrReporter:
    """Writes at most ``burst`` reports per ``period`` seconds, then says how many it skipped."""

    __slots__ = ("_burst", "_lock", "_period", "_sent", "_suppressed", "_window_start")

    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        self._burst = burst
        self._period = period
        self._lock = new_lock()
        self._window_start = -float("inf")
        self._sent = 0
        self._suppressed = 0

    def report(self, message: str, exc: BaseException | None = None) -> None:
        """Write ``message`` (and ``exc``'s traceback) unless this window's burst is spent."""
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self._period:
                suppressed, self._suppressed = self._suppressed, 0
                self._window_start, self._sent = now, 0
            else:
                suppressed = 0
            if self._sent >= self._burst:
                self._suppressed += 1
                return
            self._sent += 1
        parts = []
        if suppressed:
            parts.append(f"batchlog: {suppressed} similar reports were suppressed\n")
        parts.append(f"batchlog: {message}\n")
        if exc is not None:
            try:
                parts.extend(traceback.format_exception(type(exc), exc, exc.__traceback__))
            except BaseException:  # noqa: BLE001 -- an exception whose str() raises, say
                parts.append(f"{type(exc).__name__} (its message could not be shown)\n")
        write_line("".join(parts).rstrip("\n"))


def write_line(line: str) -> None:
    """Write one line to ``sys.stderr`` as it is now (nothing, if there is none or it broke)."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):  # stderr closed or broken: nowhere left to report
        pass
