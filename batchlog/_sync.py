"""Waiting and waking that an interrupt cannot wedge, built on bare locks.

``threading.Event`` and ``threading.Condition`` are Python code around a lock: an exception
raised asynchronously (Ctrl-C, a signal handler) can land inside ``Condition.__enter__``
after the lock was taken and before any ``with`` can release it, and that lock is then held
forever, by nobody: the next ``Event.set()`` hangs, and with it the worker and exit. Every
thread that logs may take such an exception, so nothing they call waits or wakes through
those classes. A ``threading.Lock`` (a C object) is safe: ``acquire`` and ``release`` are
single C calls, and ``with lock:`` installs its cleanup with the acquire.

Under gevent or eventlet, patched after batchlog was imported (gunicorn patches in each
worker after the fork), a wait must park the greenlet, not block the hub: every lock a
thread sleeps on is made when it starts waiting, from the ``threading`` module then in
force, and thread identities are looked up with ``threading.get_ident()`` on every call.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

__all__ = [
    "LEAKED_AFTER",
    "Latch",
    "RoomWaiters",
    "StealableLock",
    "Wakeup",
    "new_lock",
]

#: Seconds after which a lock still held was left behind by an interrupted thread (3.9,
#: 3.10, 3.14+): batchlog's critical sections last microseconds.
LEAKED_AFTER = 2.0

_LATCH_RECHECK = 0.5  # a latch waiter looks at the flag this often, should a waiter wedge the gate


def _acquire(lock: threading.Lock, timeout: float | None) -> bool:
    if timeout is None:
        return lock.acquire()
    return lock.acquire(timeout=min(max(timeout, 0.0), threading.TIMEOUT_MAX))


class StealableLock:
    """A lock that an interrupt cannot leave held forever, for Python 3.9, 3.10 and 3.14+.

    Those interpreters can deliver an asynchronous exception while a ``with`` block holds
    the lock but no handler that would call its ``__exit__`` is in force: 3.9 and 3.10 after
    the body and before ``__exit__`` (at ``POP_BLOCK``); 3.14 right after ``__enter__``
    returned, in the check that ends the ``CALL`` to it (CPython gh-148874). The lock is
    then held by a thread that has left the block. A lock still held after ``LEAKED_AFTER``
    seconds was left so: the thread waiting for it takes it over. (On 3.11 to 3.13 one
    ``BEFORE_WITH`` instruction calls ``__enter__`` and sets up the handler, ``with`` on a
    ``threading.Lock`` has no gap, and ``new_lock`` gives a plain lock.)
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:  # noqa: FBT001, FBT002 -- threading.Lock's signature
        """Acquire like ``threading.Lock.acquire``; a left-behind lock is taken over."""
        if not blocking or 0 <= timeout < LEAKED_AFTER:
            return self._lock.acquire(blocking, timeout)
        if self._lock.acquire(timeout=LEAKED_AFTER):
            return True
        return True  # held for LEAKED_AFTER: left behind by an interrupt; it is ours now

    def release(self) -> None:
        """Release the lock."""
        self._lock.release()

    def locked(self) -> bool:
        """Whether the lock is held."""
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        try:  # noqa: SIM105 -- as in Wakeup.set
            self._lock.release()
        except RuntimeError:  # taken over by a thread that had waited LEAKED_AFTER
            pass


def new_lock() -> Any:
    """A lock for state shared with threads that may be interrupted (any thread that logs).

    Made from the ``threading`` module in force now, so a lock made after gevent or
    eventlet patched it is theirs.
    """
    if (3, 11) <= sys.version_info < (3, 14):
        return threading.Lock()
    return StealableLock()


class Wakeup:
    """A wake-up call for one waiting thread (the worker); any thread may send it.

    The lock is held while no wake-up is pending; ``set`` releases it, ``wait`` takes it
    (so a wait consumes the wake-up), ``clear`` drops a pending one.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Wake the waiter (or the next wait); a second call before it wakes does nothing."""
        try:  # noqa: SIM105 -- a bare try: suppress() would add a Python frame per wake-up
            self._lock.release()
        except RuntimeError:  # already pending
            pass

    def clear(self) -> None:
        """Drop a pending wake-up."""
        self._lock.acquire(blocking=False)

    def is_set(self) -> bool:
        """Whether a wake-up is pending."""
        return not self._lock.locked()

    def wait(self, timeout: float | None) -> bool:
        """Wait at most ``timeout`` seconds (None: no limit); return whether woken."""
        return _acquire(self._lock, timeout)


class Latch:
    """Opens once; any number of threads wait for it to open.

    Each wait sleeps on a lock of its own, made when it starts waiting from the
    ``threading`` module then in force: a latch made before gevent or eventlet patched
    ``threading`` (in a forked worker, say) still parks a greenlet without blocking the hub.
    """

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = False
        self._waiters = RoomWaiters()

    @property
    def is_open(self) -> bool:
        """Whether ``open`` was called."""
        return self._open

    def open(self) -> None:
        """Let every present and future waiter through."""
        self._open = True
        self._waiters.wake_all()

    def wait(self, timeout: float | None) -> bool:
        """Wait at most ``timeout`` seconds (None: no limit) for it to open; return if it did.

        A waiter also looks at the flag every half second, should a wake-up be lost to an
        interrupt between setting the flag and waking the waiters.
        """
        if self._open:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = self._waiters.register()
        try:
            while not self._open:
                wait = _LATCH_RECHECK
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return self._open
                    wait = min(wait, remaining)
                self._waiters.sleep(waiter, wait)
        finally:
            self._waiters.leave(waiter)
        return True


class RoomWaiters:
    """Threads waiting for room in the queue; the worker wakes them all when it frees slots.

    Each waiting call has its own lock, held while it waits; ``wake_all`` releases them.
    The set is guarded by a bare lock, and a waiter always takes itself out when it stops
    waiting, so memory follows the threads waiting now.
    """

    __slots__ = ("_lock", "_waiting")

    def __init__(self) -> None:
        self._lock = new_lock()
        self._waiting: set[threading.Lock] = set()

    def __bool__(self) -> bool:
        """Whether any thread waits (a hint, read without the lock)."""
        return bool(self._waiting)

    def register(self) -> threading.Lock:
        """Start waiting: return this caller's lock (held), to ``sleep`` on and ``leave``."""
        waiter = threading.Lock()
        waiter.acquire()
        with self._lock:
            self._waiting.add(waiter)
        return waiter

    def sleep(self, waiter: threading.Lock, timeout: float) -> None:
        """Sleep until woken or ``timeout`` seconds passed; stay registered."""
        if waiter.acquire(timeout=timeout):
            with self._lock:
                self._waiting.add(waiter)  # woken: wake_all took it out; wait on

    def leave(self, waiter: threading.Lock) -> None:
        """Stop waiting."""
        with self._lock:
            self._waiting.discard(waiter)

    def wake_all(self) -> None:
        """Wake every waiting thread (each looks for room again)."""
        with self._lock:
            waiting, self._waiting = self._waiting, set()
        for waiter in waiting:
            try:  # noqa: SIM105 -- as in Wakeup.set
                waiter.release()
            except RuntimeError:  # it woke by its timeout meanwhile and is not waiting
                pass
