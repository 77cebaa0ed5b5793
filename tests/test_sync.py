"""The core's locks: where ``with`` can leave a lock held, a left-behind one is taken over."""

from __future__ import annotations

import ctypes
import functools
import sys
import threading

import pytest

from batchlog import _sync

# PyThreadState_SetAsyncExc(ident, exc): the exception is raised in that thread at its next
# check point, as a Ctrl-C's KeyboardInterrupt is.
_request_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)


def with_skips_exit_after_enter() -> bool:
    """Whether an interrupt right after a C ``__enter__`` returns skips ``__exit__``.

    ``__enter__`` is a C callable that asks for a KeyboardInterrupt in this thread, so the
    exception arrives at the first check point after it returns: inside the ``with`` (then
    ``__exit__`` runs) or, on 3.14 (CPython gh-148874), at the end of the call to
    ``__enter__`` itself, before the block's handler is in force.
    """
    exited = []

    class Probe:
        __enter__ = staticmethod(
            functools.partial(_request_async_exc, threading.get_ident(), KeyboardInterrupt)
        )

        def __exit__(self, *exc_info: object) -> None:
            exited.append(True)

    try:
        with Probe():
            for _ in range(10):  # calls are check points: the exception lands by the last
                len(())
    except KeyboardInterrupt:
        pass
    else:  # pragma: no cover -- the interrupt always arrives
        raise AssertionError("the requested KeyboardInterrupt never arrived")
    return not exited


def test_new_lock_can_be_taken_over_wherever_with_can_skip_exit():
    """On an interpreter with the gap, the core's locks are ones a waiter takes over.

    3.11 to 3.13 have none and get plain locks. 3.14 keeps stealable ones even once a
    3.14.x fixes gh-148874: which release does is not known here.
    """
    lock = _sync.new_lock()
    if with_skips_exit_after_enter():
        assert isinstance(lock, _sync.StealableLock)
    if (3, 11) <= sys.version_info < (3, 14):
        assert type(lock) is type(threading.Lock())
    else:
        assert isinstance(lock, _sync.StealableLock)


def test_a_stealable_lock_left_held_is_taken_over_after_leaked_after(monkeypatch):
    """A lock nobody releases (its holder was interrupted) lets the next waiter in."""
    monkeypatch.setattr(_sync, "LEAKED_AFTER", 0.01)
    lock = _sync.StealableLock()
    lock.acquire()  # left behind: the holder's ``with`` was cut short
    with lock:
        assert lock.locked()
    assert not lock.locked()
    with lock:  # and it works as a lock afterwards
        assert lock.locked()
    assert not lock.locked()


@pytest.mark.parametrize("kwargs", [{"blocking": False}, {"timeout": 0}, {"timeout": 0.001}])
def test_a_stealable_lock_is_not_taken_over_by_a_short_try(monkeypatch, kwargs):
    """Only a wait of LEAKED_AFTER or longer takes a held lock over."""
    monkeypatch.setattr(_sync, "LEAKED_AFTER", 60.0)
    lock = _sync.StealableLock()
    lock.acquire()
    assert lock.acquire(**kwargs) is False
    lock.release()
    assert lock.acquire(**kwargs) is True
    lock.release()
