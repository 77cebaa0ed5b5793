"""The SIGTERM handler's start and the watch's signal sent again: the start lock.

In-process: a handler object that is never installed, and a ``send`` that records.
"""

from __future__ import annotations

import signal

import pytest

from batchlog import _lifecycle


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> _lifecycle._SigtermHandler:
    monkeypatch.setattr(_lifecycle, "_START_WAIT", 0.05)
    return _lifecycle._SigtermHandler()


def test_the_watch_sends_while_the_handler_has_not_started(handler):
    sent = []
    assert handler.send_unless_started(lambda: sent.append(1)) is True
    assert (sent, handler.sent_again) == ([1], True)
    handler.started = True
    assert handler.send_unless_started(lambda: sent.append(2)) is False
    assert sent == [1]


def test_nothing_is_sent_again_where_sigterm_was_ignored_before(handler):
    handler.previous = signal.SIG_IGN
    assert handler.send_unless_started(lambda: None) is False


def test_a_start_lock_left_held_by_an_interrupted_start_is_replaced(handler):
    """A Ctrl-C between the start's acquire and release leaves the lock held: the watch
    gives up on it after _START_WAIT and sends with a fresh one, which the next start
    does not wait for."""
    left = handler._start_lock
    left.acquire()  # as the interrupted start left it
    sent = []
    assert handler.send_unless_started(lambda: sent.append(1)) is True
    assert sent == [1]
    assert handler._start_lock is not left
    assert not handler._start_lock.locked()
    handler._wait_for_a_send()  # returns at once: the fresh lock is free
    assert not handler._start_lock.locked()


def test_the_start_lock_is_released_when_sending_fails(handler):
    def failing_send() -> None:
        raise ProcessLookupError

    with pytest.raises(ProcessLookupError):
        handler.send_unless_started(failing_send)
    assert not handler._start_lock.locked()
