"""Process-wide duties of writers: drain at interpreter exit, start afresh after fork.

Hooks are installed when the first writer is made, never at import time.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from typing import Any

from typing_extensions import Protocol

__all__ = ["Managed", "track"]


class Managed(Protocol):
    """What the process-wide hooks need of a writer."""

    exit_timeout: float
    close_at_exit: bool

    def _begin_exit(self) -> None: ...

    def _finish_exit(self, timeout: float) -> bool: ...

    def _reset_after_fork(self) -> None: ...


_registry_lock = threading.Lock()
_writers: weakref.WeakSet[Any] = weakref.WeakSet()
_hooks_installed = False


def track(writer: Managed) -> None:
    """Remember ``writer`` so that exit and fork reach it; install the hooks once."""
    global _hooks_installed  # noqa: PLW0603 -- one process-wide flag, guarded by the lock
    with _registry_lock:
        _writers.add(writer)
        if not _hooks_installed:
            _hooks_installed = True
            atexit.register(_drain_at_exit)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_reset_in_child)


def _live_writers() -> list[Managed]:
    with _registry_lock:
        return list(_writers)


def _drain_at_exit() -> None:
    """Hand every unclosed writer's records to its sink, waiting at most its exit_timeout."""
    writers = [writer for writer in _live_writers() if writer.close_at_exit]
    for writer in writers:
        writer._begin_exit()
    start = time.monotonic()
    for writer in writers:
        remaining = max(0.0, writer.exit_timeout - (time.monotonic() - start))
        writer._finish_exit(remaining)


def _reset_in_child() -> None:
    """In a forked child: fresh locks, empty queues, zeroed counters, no worker yet."""
    global _registry_lock  # noqa: PLW0603 -- a lock held in the parent at fork is unusable
    _registry_lock = threading.Lock()
    for writer in list(_writers):
        writer._reset_after_fork()
