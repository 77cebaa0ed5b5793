"""Flush and close requests: barriers that threads and event loops wait on.

A ``Request`` is done once the worker has handed every record it covers to the sink (or
given up on them, when the worker had to end: then ``ok`` is False). ``Requests`` keeps at
most one flush request waiting for the worker: a flush asked for while one is still
waiting joins it, since the worker drains the queue it sees when it takes the request up,
which covers every record accepted before either call. So a stuck sink and a million
``flush()`` calls (``flush_level`` records) cost one request, not a million.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ._sync import Latch, new_lock

if TYPE_CHECKING:
    import asyncio

__all__ = ["Request", "Requests", "expire_soon", "resolve_soon"]


def resolve_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """Complete ``future`` on its own loop, from any thread; a closed loop is ignored."""

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
        loop.call_soon_threadsafe(resolve)


def expire_soon(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], seconds: float | None
) -> asyncio.TimerHandle | None:
    """Resolve ``future`` after ``seconds`` (None: never), so awaiting it is bounded.

    Awaiting the future itself with this timer, rather than ``asyncio.wait_for``, makes no
    coroutine that an interrupt could leave un-awaited. The caller looks at what it waited
    for afterwards, since either the event or the timer resolved it.
    """
    if seconds is None:
        return None

    def expire() -> None:
        if not future.done():
            future.set_result(None)

    return loop.call_later(max(seconds, 0.0), expire)


class Request:
    """A flush or close that callers wait for, from threads or from event loops."""

    __slots__ = ("_done", "_futures", "_lock", "ok")

    def __init__(self) -> None:
        self._done = Latch()  # not an Event: an interrupted waiter must not wedge it
        self._lock = new_lock()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        #: False when the worker ended without handing the covered records to the sink.
        self.ok = True

    @property
    def done(self) -> bool:
        """Whether the request was completed (successfully or not)."""
        return self._done.is_open

    def wait(self, timeout: float | None) -> bool:
        """Wait at most ``timeout`` seconds (None: no limit); return whether it succeeded."""
        return self._done.wait(timeout) and self.ok

    def complete(self, *, ok: bool = True) -> None:
        """Mark the request done and wake every waiter; later calls do nothing."""
        with self._lock:
            if self._done.is_open:
                return
            self.ok = ok
            self._done.open()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            resolve_soon(loop, future)

    def future(self) -> asyncio.Future[None]:
        """Return a future of the running loop that completes with this request."""
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._done.is_open:
                self._futures.append((loop, future))
                return future
        future.set_result(None)
        return future


class Requests:
    """The one flush request waiting for the worker, and the writer's close request."""

    __slots__ = ("_lock", "_pending", "close")

    def __init__(self) -> None:
        self._lock = new_lock()
        self._pending: Request | None = None
        #: Done once the writer is closed and every accepted record was handled.
        self.close = Request()

    def flush(self) -> Request:
        """Return the flush request waiting for the worker, making one if none waits."""
        with self._lock:
            request = self._pending
            if request is None:
                request = self._pending = Request()
            return request

    @property
    def pending(self) -> bool:
        """Whether a flush request waits for the worker (a hint: read without the lock)."""
        return self._pending is not None

    def take(self) -> Request | None:
        """Return the waiting flush request, which the caller now owns, or None."""
        with self._lock:
            request, self._pending = self._pending, None
            return request

    def release_all(self, *, ok: bool) -> None:
        """Complete the waiting flush request and the close request (the worker is done)."""
        request = self.take()
        if request is not None:
            request.complete(ok=ok)
        self.close.complete(ok=ok)
