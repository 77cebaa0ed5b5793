"""The writer's own event loop, on which an async sink's batches are awaited.

A sink that returns an awaitable (an ``async def`` sink, an object with an async
``__call__``, a sync sink handing back a coroutine) has not delivered anything yet: the
worker awaits what it returned on this loop, on the thread that delivers (the worker's
own; at interpreter exit, the one that drains), one batch at a time. The outcome counts as
a sync sink's would: returned is delivered, raised is failed. The loop is made at the
first awaitable (asyncio is imported then, never by ``import batchlog``), kept for the
next batches, so a client bound to it (``httpx.AsyncClient``, an ``asyncpg`` pool) can be
reused, and closed when the writer closes, after ``on_close`` (which may be async too).

A forked child never runs the parent's loop (its thread did not survive the fork): it
makes its own at its first async batch.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from typing_extensions import TypeGuard

if TYPE_CHECKING:
    import asyncio

__all__ = ["SinkLoop", "awaited", "discard_awaitable", "is_awaitable"]

#: Seconds the tasks of an interrupted batch get to finish cancelling before the loop is
#: closed anyway (a task that ignores cancellation must not hang the writer).
_CANCEL_GRACE = 1.0
#: Loops a forked child inherited: never closed there (the parent may be running them), and
#: kept referenced so they are not collected, with a warning, as unclosed.
_INHERITED: list[object] = []


def is_awaitable(result: object) -> TypeGuard[Awaitable[Any]]:
    """Whether a sink's result must be awaited before its batch counts as delivered.

    ``inspect.isawaitable``: an object with ``__await__``, or a generator-based coroutine
    (``@types.coroutine``). The common result, None, costs one comparison.
    """
    if result is None:
        return False
    import inspect  # already imported by asyncio and most applications: a lookup

    return inspect.isawaitable(result)


async def awaited(awaitable: Awaitable[Any]) -> None:
    """A coroutine that awaits ``awaitable`` (for APIs that take only coroutines)."""
    await awaitable


_WRITER_ON_A_RUNNING_LOOP = (
    "an async sink cannot be awaited on a thread that is running an event loop "
    "(the writer was flushed or closed there while no worker thread could run)"
)


class SinkLoop:
    """One event loop per writer, run on the delivering thread while it awaits a sink."""

    __slots__ = ("_loop", "_pid", "_running_loop_message")

    def __init__(self, *, running_loop_message: str = _WRITER_ON_A_RUNNING_LOOP) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = -1
        #: Why ``run`` refuses on a thread running an event loop, for the user of the loop.
        self._running_loop_message = running_loop_message

    def run(self, awaitable: Awaitable[Any]) -> None:
        """Await ``awaitable`` on the writer's loop; raise what it raises.

        Raises:
            RuntimeError: The delivering thread already runs an event loop (one thread
                cannot run two), or ``awaitable`` belongs to another loop.
        """
        import asyncio

        if asyncio._get_running_loop() is not None:  # noqa: SLF001 -- the documented probe
            discard_awaitable(awaitable)  # not awaited: no "never awaited" warning on top
            raise RuntimeError(self._running_loop_message)
        loop = self._loop_here()
        try:
            loop.run_until_complete(awaited(awaitable))
        except BaseException:
            # The batch counts as failed (raised, or interrupted by Ctrl-C): a task it left
            # on the loop must not store its records later, behind that count's back.
            self._cancel_left_over(loop)
            raise

    def _loop_here(self) -> asyncio.AbstractEventLoop:
        import asyncio

        loop = self._loop
        if loop is None or loop.is_closed() or self._pid != os.getpid():
            loop = asyncio.new_event_loop()
            self._loop, self._pid = loop, os.getpid()
        return loop

    def _cancel_left_over(self, loop: asyncio.AbstractEventLoop) -> bool:
        """After a failed batch: cancel what it left running, so nothing of it goes on.

        A batch that raised or was interrupted (Ctrl-C) counts as failed; a task of it
        left pending would otherwise resume at the next batch and deliver it after all.
        If its tasks do not finish cancelling within ``_CANCEL_GRACE``, the loop is
        dropped for a new one. (After a batch that succeeded, tasks the sink keeps go on
        running whenever later batches are awaited, and are cancelled at close.)

        Returns whether ``loop`` may still be used (False: it was dropped).
        """
        import asyncio

        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not tasks:
            return True
        for task in tasks:
            task.cancel()
        try:
            _done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=_CANCEL_GRACE))
        except BaseException:  # noqa: BLE001 -- interrupted again: drop this loop
            pending = set(tasks)
        if pending:
            self._loop = None
            _INHERITED.append(loop)  # never run again; closing it would warn of the tasks
            return False
        return True

    def close(self) -> None:
        """Close the loop (the writer closed): finish async generators, then close."""
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed() or loop.is_running():
            return
        if self._pid != os.getpid():
            _INHERITED.append(loop)
            return
        if not self._cancel_left_over(loop):
            return  # a task ignores cancellation: the loop is kept, never run or closed
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's loop is the parent's; make a new one when needed."""
        loop, self._loop = self._loop, None
        if loop is not None:
            _INHERITED.append(loop)


def discard_awaitable(result: object) -> None:
    """Close a coroutine that will not be awaited, so Python does not warn about it."""
    if isinstance(result, Coroutine):
        result.close()
