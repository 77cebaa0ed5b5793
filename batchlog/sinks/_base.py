"""``SinkBase``: what every sink shares: a lock, the closed check, close, reopen and fork.

Each sink of ``batchlog.sinks`` subclasses ``SinkBase``; a sink of your own may too. The
base owns the sink's one lock and its closed flag, so every sink closes, reopens and
survives ``os.fork()`` the same way, and a sink module holds only what is its own: how to
open, write, close and forget its files, connections or clients.

Fork: ``os.register_at_fork`` runs one hook in every child made by ``os.fork()``
(installed when the first sink is made, never at import). It reaches every live sink (a
``weakref.WeakSet``: the hook keeps none alive) and, in the child only, drops the sink's
lock, which a thread of the parent may hold mid-batch (the child has no such thread: it
would wait forever), and calls the sink's ``_forget_inherited()``, which lets go of the
parent's files, connections and clients without closing anything the parent still uses.
It is told whether the lock was held at the fork: then the parent was using them, and
some (an SQLite connection) must not even be closed.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

from .._report import write_line

__all__ = ["REDACTED", "SinkBase", "check_file_path", "keep_until_exit", "redact"]

# Guards the set of live sinks and the making of each sink's lock. Held for microseconds,
# never while a sink works, so a lock of the real threading module suits gevent too.
_registry_lock = threading.Lock()
_live: weakref.WeakSet[SinkBase] = weakref.WeakSet()
_fork_hook_installed = False
# What forked children inherited and must never finalize (see keep_until_exit).
_kept: list[object] = []


def _track(sink: SinkBase) -> None:
    """Remember ``sink`` for the fork hook, installing the hook with the first sink."""
    global _fork_hook_installed  # noqa: PLW0603 -- one process-wide flag, under the lock
    with _registry_lock:
        _live.add(sink)
        first = not _fork_hook_installed
        _fork_hook_installed = True
    if first and hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )


#: Most seconds a fork waits, in all, for batches of sinks that hold across a fork.
FORK_WAIT = 1.0
_held_for_fork: list[Any] = []  # (sink, lock) pairs the forking thread holds


def _before_fork() -> None:
    """Let the batches in flight of sinks that must be idle at a fork (SQLite) finish first.

    The forking thread takes their locks, waiting at most ``FORK_WAIT`` in all: a child
    then inherits them idle and can open its own connection to the same file. A sink whose
    batch takes longer (or the thread forking from inside one) is forked busy, as any other.
    """
    deadline = time.monotonic() + FORK_WAIT
    for sink in list(_live):
        if not sink._hold_across_fork:  # noqa: SLF001 -- the base's own state
            continue
        lock = sink._lock  # noqa: SLF001 -- likewise
        if lock is None:
            continue
        if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            _held_for_fork.append((sink, lock))


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        _, lock = _held_for_fork.pop()
        lock.release()


def _after_fork_in_child() -> None:
    """In a child of ``os.fork()``: every live sink gets a new lock and forgets the parent's."""
    global _registry_lock  # noqa: PLW0603 -- a parent thread may have held it at the fork
    _registry_lock = threading.Lock()
    idle = {id(sink) for sink, _ in _held_for_fork}  # held by the fork itself: idle
    _held_for_fork.clear()
    for sink in list(_live):
        # The parent's lock may be held by its worker thread, which this child does not
        # have. The new one is made on first use, from the threading module in force then.
        inherited, sink._lock = sink._lock, None  # noqa: SLF001 -- the base's own state
        busy = inherited is not None and inherited.locked() and id(sink) not in idle
        try:
            sink._forget_inherited(busy=busy)  # noqa: SLF001 -- the subclass's half of the reset
        except Exception as exc:  # noqa: BLE001 -- one sink's failure must not stop the others
            write_line(
                f"batchlog: a {type(sink).__name__} could not let go of what it inherited "
                f"over fork: {type(exc).__name__}: {exc}"
            )


def keep_until_exit(resource: object) -> None:
    """Keep ``resource`` referenced for as long as this process runs, so it is not finalized.

    For what a forked child inherited and must neither use nor close: finalizing an
    ``sqlite3.Connection`` closes it, which waits for the SQLite mutex a thread of the
    parent held at the fork (forever: the child has no such thread), or rolls back, in the
    database's shared memory, the transaction the parent is writing. (Such a connection
    is also referenced by that thread's frames, which the child never releases.)
    """
    _kept.append(resource)


class SinkBase:
    """The base of every sink in ``batchlog.sinks``: one lock, close, reopen and fork safety.

    What every sink gets from it:

    - ``close()`` releases the sink's files, connections and clients (``_release()``). It
      is idempotent and thread-safe: it waits for a batch in flight, and only the first call
      releases anything. A batch after it raises ``ValueError("<sink> is closed")``.
    - ``reopen()`` makes a closed sink usable again: what it opens is opened again on the
      next batch, as ``logging.FileHandler`` reopens its stream. ``batchlog.BatchingHandler``
      calls it when it reopens after someone else's ``dictConfig`` closed it.
    - Fork: in a child made by ``os.fork()`` the sink drops the parent's lock (the parent's
      worker thread may hold it mid-batch) and lets go of the parent's files, connections
      and clients without closing what the parent still uses; the child opens its own on
      its first batch. A batch the parent had in flight stays the parent's: the child has
      no copy to send.
    - gevent and eventlet: the lock is made on first use, from the ``threading`` module in
      force then, so a sink made before the monkey-patching (gunicorn's gevent worker
      patches after the fork) still waits by parking the greenlet.

    The lock is held only while the sink works: a batch, ``close()``, ``reopen()``.
    Per batch that costs an attribute check; nothing is looked up per record.

    A subclass calls ``super().__init__()`` at the end of its own (a sink is tracked for
    fork once it is whole), writes each batch inside ``with self._sink_lock():`` after
    ``self._check_open()``, and overrides, as needed:

    - ``_release()``: close what the sink opened (called once per close, lock held);
    - ``_forget_inherited(busy=...)``: in a forked child, drop the parent's handles without
      closing shared state (called in the child only, with no lock held; it must not
      block). ``busy`` says whether a thread of the parent held the lock at the fork: a
      batch (or a close) was using them;
    - ``_closed_error()``: the exception a batch after ``close()`` raises.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("__weakref__", "_closed", "_lock")

    #: Whether a fork waits (briefly, see ``FORK_WAIT``) for this sink's batch in flight:
    #: for a sink whose handles a child cannot take over mid-batch (SQLite).
    _hold_across_fork = False

    def __init__(self) -> None:
        self._closed = False
        self._lock: threading.Lock | None = None  # made on first use: see _sink_lock
        _track(self)

    def __call__(self, batch: list[Any], /) -> object:
        """Write ``batch``; every subclass implements it."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (and ``reopen()`` not since)."""
        return self._closed

    def close(self) -> None:
        """Release the sink's files, connections and clients; later batches raise.

        Idempotent and thread-safe: waits for a batch in flight; only the first call
        releases anything (even if that raised).
        """
        with self._sink_lock():
            if self._closed:
                return
            self._closed = True
            self._release()

    def reopen(self) -> None:
        """Make a closed sink usable again; its next batch opens what it needs anew.

        Does nothing to an open sink. Thread-safe.
        """
        with self._sink_lock():
            self._closed = False

    # ------------------------------------------------------------------ for subclasses

    def _sink_lock(self) -> threading.Lock:
        """Return the sink's lock, made on first use (again after a fork)."""
        lock = self._lock
        if lock is None:
            with _registry_lock:
                lock = self._lock
                if lock is None:
                    # Looked up now: gevent's or eventlet's Lock if they patched threading.
                    lock = self._lock = threading.Lock()
        return lock

    def _check_open(self) -> None:
        """Raise ``_closed_error()`` if the sink is closed."""
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> Exception:
        """The exception a batch after ``close()`` raises."""
        return ValueError(f"{self!r} is closed")

    def _release(self) -> None:
        """Close what the sink opened; ``close()`` calls it once, holding the lock."""

    def _forget_inherited(self, *, busy: bool) -> None:
        """In a forked child: drop the parent's handles without closing shared state.

        ``busy``: a thread of the parent held the sink's lock at the fork.
        """


def check_file_path(path: str, *, what: str = "path") -> None:
    """Refuse now a file path a sink could never open, naming it (not at the first batch).

    Raises:
        IsADirectoryError: ``path`` is a directory.
        FileNotFoundError: the directory ``path`` would be in does not exist.
        NotADirectoryError: what should be that directory is a file.
        PermissionError: ``path`` (or, if it does not exist yet, its directory) is not
            writable by this process.
    """
    if os.path.isdir(path):
        msg = f"{what} {path!r} is a directory; the sink needs a file path"
        raise IsADirectoryError(msg)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(directory):
        msg = f"{what} {path!r}: its directory {directory!r} does not exist"
        raise FileNotFoundError(msg)
    if not os.path.isdir(directory):
        msg = f"{what} {path!r}: {directory!r} is not a directory"
        raise NotADirectoryError(msg)
    target = path if os.path.exists(path) else directory
    if not os.access(target, os.W_OK):
        msg = f"{what} {path!r}: {target!r} is not writable by this process"
        raise PermissionError(msg)


#: What a secret is replaced by in anything a sink shows (reprs, errors, log lines).
REDACTED = "***"


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Return ``text`` with each of ``secrets`` (in the order given) replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
