"""Process-wide duties of writers: drain at interpreter exit, start afresh after fork.

The registry holds every open writer's worker (strongly: a writer nobody references any
more is closed by its finalizer, and its worker stays here until it delivered the rest).
Hooks are installed when the first writer is made, never at import time.
"""

from __future__ import annotations

import atexit
import os
import time
from typing import Any

from typing_extensions import Protocol

from ._sync import new_lock

__all__ = ["Managed", "drain_at_exit", "forget", "live", "track"]


class Managed(Protocol):
    """What the process-wide hooks need of a writer's worker."""

    exit_timeout: float
    close_at_exit: bool

    def begin_exit(self) -> None:
        """Start closing; start no thread from now on."""

    def finish_exit(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the close to finish."""

    def reset_after_fork(self) -> None:
        """Become empty and zeroed in a forked child."""


_registry_lock = new_lock()
_open: dict[int, Any] = {}  # id(worker) -> worker, in the order they were made
_hooks_installed = False


def track(worker: Managed) -> None:
    """Remember ``worker`` until it finished, so that exit and fork reach it."""
    global _hooks_installed  # noqa: PLW0603 -- one process-wide flag, guarded by the lock
    with _registry_lock:
        _open[id(worker)] = worker
        if not _hooks_installed:
            _hooks_installed = True
            atexit.register(drain_at_exit)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_reset_in_child)


def forget(worker: Managed) -> None:
    """``worker`` finished (closed and drained): exit and fork no longer concern it."""
    with _registry_lock:
        _open.pop(id(worker), None)


def live() -> list[Managed]:
    """Every worker that has not finished, oldest first."""
    with _registry_lock:
        return list(_open.values())


def drain_at_exit() -> None:
    """Hand every unclosed writer's records to its sink, waiting at most its exit_timeout.

    The timeouts run together, from the moment exit began, not one after another.
    """
    workers = [worker for worker in live() if worker.close_at_exit]
    for worker in workers:
        worker.begin_exit()
    start = time.monotonic()
    for worker in workers:
        remaining = max(0.0, worker.exit_timeout - (time.monotonic() - start))
        worker.finish_exit(remaining)


def _reset_in_child() -> None:
    """In a forked child: fresh locks, empty queues, zeroed counters, no worker yet."""
    global _registry_lock  # noqa: PLW0603 -- a lock held in the parent at fork is unusable
    _registry_lock = new_lock()
    for worker in list(_open.values()):
        worker.reset_after_fork()
