"""Process-wide duties of writers: every way a process ends, fork, and SIGTERM.

The registry holds every open writer's worker (strongly: a writer nobody references any
more is closed by its finalizer, and its worker stays here until it delivered the rest).
Hooks are installed when the first writer is made, never at import time.

How a process ends, and what delivers the records then:

- interpreter exit: ``drain_at_exit`` (an atexit hook), then ``logging.shutdown()``;
- a ``multiprocessing`` child (fork, forkserver, spawn), which ends with ``os._exit()``
  after its target: a ``multiprocessing.util.Finalize`` registered in the child (they run
  before ``os._exit``) delivers everything;
- a Celery (billiard) pool child, which ends with ``os._exit()`` right after sending
  ``worker_process_shutdown``: a receiver of that signal delivers everything;
- SIGTERM, where ``deliver_on_sigterm()`` was called (opt-in).

Every wait while a process shuts down shares one budget, a *shutdown* that starts at the
first of these moments (or at ``logging.shutdown()``): each writer may take its
``exit_timeout`` from then, in total, however many handlers and calls wait for it. A
writer that did not finish within it is *given up*: one line on stderr says how many of its
records were not delivered, and later waits for it return at once.

No thread is started at exit (3.12 refuses to), so a writer whose worker thread never
started (first used at exit, or in a forked child whose first records come at exit)
delivers on the *standby* thread, started with the first writer (and again in a forked
child): the wait for it stays bounded whatever its sink does.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from typing_extensions import Protocol

from ._report import write_line
from ._sync import Wakeup, new_lock
from ._validate import check_bool

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

__all__ = [
    "Managed",
    "deliver_all",
    "deliver_on_sigterm",
    "drain_at_exit",
    "forget",
    "live",
    "run_on_standby",
    "shutdown_budget",
    "track",
]


class Managed(Protocol):
    """What the process-wide hooks need of a writer's worker."""

    exit_timeout: float
    close_at_exit: bool
    given_up: bool

    @property
    def name(self) -> str:
        """The writer's name."""

    def undelivered(self) -> int:
        """Records accepted and not yet finished by the sink."""

    def begin_exit(self) -> None:
        """Start closing; start no thread from now on."""

    def finish_exit(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the close to finish."""

    def flush_soon(self) -> None:
        """Ask for every record to be delivered now, without waiting."""

    def reset_after_fork(self) -> None:
        """Become empty and zeroed in a forked child."""

    def delivering_thread(self) -> int | None:
        """The ident of the thread running (or waiting to run) the sink, if any."""


_registry_lock = new_lock()
_open: dict[int, Any] = {}  # id(worker) -> worker, in the order they were made
_hooks_installed = False


def track(worker: Managed) -> None:
    """Remember ``worker`` until it finished, so that exit and fork reach it."""
    global _hooks_installed  # noqa: PLW0603 -- one process-wide flag, guarded by the lock
    with _registry_lock:
        _open[id(worker)] = worker
        first = not _hooks_installed
        _hooks_installed = True
    if first:
        atexit.register(drain_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_in_child)
    _hook_process_end()
    _STANDBY.ensure_started()


def forget(worker: Managed) -> None:
    """``worker`` finished (closed and drained): exit and fork no longer concern it."""
    with _registry_lock:
        _open.pop(id(worker), None)


def live() -> list[Managed]:
    """Every worker that has not finished, oldest first."""
    with _registry_lock:
        return list(_open.values())


# ---------------------------------------------------------------------- the shutdown budget


_SHUTDOWN_OVER = 1.0  # seconds after its budget a shutdown counts as over (the process went on)


class _Shutdown:
    """When this process began shutting down (None: it has not), and whom it gave up on."""

    __slots__ = ("_lock", "started")

    def __init__(self) -> None:
        self._lock = new_lock()
        self.started: float | None = None

    def reset(self) -> None:
        """Not shutting down (a forked child starts afresh)."""
        self._lock = new_lock()
        self.started = None

    def begin(self) -> None:
        """The process is shutting down now (a new shutdown, if the last one is long over).

        "Long over": more than ``_SHUTDOWN_OVER`` after the longest budget ended. A wait
        that ends with its budget (a hung sink) and the next one then are the same shutdown.
        """
        now = time.monotonic()
        workers = live()
        longest = max((worker.exit_timeout for worker in workers), default=0.0)
        with self._lock:
            new = self.started is None or now > self.started + longest + _SHUTDOWN_OVER
            if new:
                self.started = now
        if new:
            # Every writer spends its budget from now, at the same time: one that would
            # only be asked after a hung one (logging.shutdown() goes handler by handler)
            # must not find its budget gone with nothing delivered.
            for worker in workers:
                worker.flush_soon()

    def remaining(self, worker: Managed) -> float | None:
        """Seconds ``worker`` may still wait in this shutdown (None: not shutting down)."""
        started = self.started
        if started is None:
            return None
        if worker.given_up:
            return 0.0
        left = started + worker.exit_timeout - time.monotonic()
        if left < -_SHUTDOWN_OVER:  # a shutdown long over (the process went on): not this
            return None
        return max(0.0, left)


_SHUTDOWN = _Shutdown()


def shutdown_budget(worker: Managed) -> float | None:
    """Seconds a wait for ``worker`` may last now, if the process is shutting down.

    None when it is not. A wait during interpreter exit (in any exit hook, before batchlog's
    own has run) or called by ``logging.shutdown()`` (the real one, for every handler, not
    dictConfig closing old handlers) starts the shutdown.
    """
    if not threading.main_thread().is_alive() or _in_logging_shutdown():
        _SHUTDOWN.begin()
    return _SHUTDOWN.remaining(worker)


def give_up(worker: Managed) -> None:
    """``worker`` did not finish within its shutdown budget: say so on stderr, once."""
    if worker.given_up:
        return
    worker.given_up = True
    count = worker.undelivered()
    if count:
        where = _where_thread_is(worker.delivering_thread())
        write_line(
            f"batchlog: writer {worker.name!r}: {count} record(s) not delivered: its sink "
            f"did not finish in time while the process shut down{where}"
        )


#: Frames of these modules say where a thread waits, not what it waits for.
_WAITING_MODULES = ("threading", "queue", "selectors", "asyncio", "batchlog._")


def _where_thread_is(ident: int | None) -> str:
    """Where thread ``ident`` is now, for the give-up line: what it runs and where it waits.

    For example ``" (its thread was in post, app/sinks.py:41, at wait, threading.py:359)"``:
    the innermost frame of code other than the waiting machinery (the sink's own, or the
    library it called), then the innermost frame overall. Empty if the thread is gone.
    """
    if ident is None:
        return ""
    try:
        frame: FrameType | None = sys._current_frames().get(ident)
    except Exception:  # noqa: BLE001 -- a diagnostic must not stop the report
        return ""
    if frame is None:
        return ""
    innermost = frame
    doing = None
    while frame is not None:
        if not str(frame.f_globals.get("__name__", "")).startswith(_WAITING_MODULES):
            doing = frame
            break
        frame = frame.f_back
    places = [] if doing is None else [f"in {_place(doing)}"]
    if doing is not innermost:
        places.append(f"at {_place(innermost)}")
    return f" (its thread was {', '.join(places)})"


def _place(frame: FrameType) -> str:
    code = frame.f_code
    return f"{code.co_name}, {os.path.basename(code.co_filename)}:{frame.f_lineno}"


def _in_logging_shutdown() -> bool:
    """Whether ``logging.shutdown()`` over all handlers is on this thread's stack."""
    logging = sys.modules.get("logging")
    shutdown = getattr(logging, "shutdown", None)
    code = getattr(shutdown, "__code__", None)
    if code is None:
        return False
    frame: FrameType | None = sys._getframe(2)  # our caller's caller
    for _ in range(12):
        if frame is None:
            return False
        if frame.f_code is code:
            # dictConfig passes a copy of the list when it closes the old handlers.
            return frame.f_locals.get("handlerList") is getattr(logging, "_handlerList", None)
        frame = frame.f_back
    return False


def deliver_all(*, only_close_at_exit: bool = False) -> bool:
    """Close every open writer and wait for its records, all within one shutdown budget.

    Returns whether every writer finished. Whom it waits for longer than its budget is
    given up (reported on stderr).
    """
    _SHUTDOWN.begin()
    workers = [w for w in live() if w.close_at_exit or not only_close_at_exit]
    for worker in workers:
        worker.begin_exit()
    finished = True
    for worker in workers:
        remaining = _SHUTDOWN.remaining(worker)
        if not worker.finish_exit(0.0 if remaining is None else remaining):
            give_up(worker)
            finished = False
    return finished


def drain_at_exit() -> None:
    """At interpreter exit: deliver every unclosed writer's records, within its exit_timeout.

    Writers of ``BatchingHandler`` are left to ``logging.shutdown()``, which runs after the
    other exit hooks had their say (they may log); unless a SIGTERM is held for the end
    (see ``_SigtermHandler``): then everything is delivered now, and SIGTERM ends the process.
    """
    ending = _SIGTERM.held() or _SIGTERM.terminating
    deliver_all(only_close_at_exit=not ending)
    if ending:
        _SIGTERM.terminate()


def _deliver_at_process_end() -> None:
    """A child ends with os._exit() after this: deliver everything, then a held SIGTERM."""
    deliver_all()
    if _SIGTERM.held() or _SIGTERM.terminating:
        _SIGTERM.terminate()


# ---------------------------------------------------------------------- the standby thread


class _Standby:
    """A thread started before exit, which runs what no worker thread can at exit."""

    __slots__ = ("__weakref__", "_jobs", "_lock", "_pid", "_thread", "_wake")

    def __init__(self) -> None:
        self._lock = new_lock()
        self._jobs: collections.deque[Callable[[], object]] = collections.deque()
        self._wake = Wakeup()
        self._thread: threading.Thread | None = None
        self._pid = -1

    def ensure_started(self) -> None:
        """Start the thread in this process, unless it runs already (or cannot start)."""
        pid = os.getpid()
        if self._pid == pid:
            return
        if not threading.main_thread().is_alive():
            return  # the interpreter is exiting: no thread starts now (3.12 refuses)
        with self._lock:
            if self._pid == pid:
                return
            self._jobs.clear()  # a parent's jobs are the parent's
            self._wake = Wakeup()  # made now, from the threading module in force now
            thread = threading.Thread(target=self._run, name="batchlog-standby", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # at interpreter shutdown already: nothing can start
                return
            self._thread, self._pid = thread, pid

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's lock may have been held at the fork."""
        self._lock = new_lock()

    def submit(self, job: Callable[[], object]) -> bool:
        """Run ``job`` on the standby thread; False if there is none in this process.

        False on the standby thread itself, too: a job queued behind the one running
        would wait for itself.
        """
        thread = self._thread
        if self._pid != os.getpid() or thread is None or not thread.is_alive():
            return False
        if thread is threading.current_thread():
            return False
        self._jobs.append(job)
        self._wake.set()
        return True

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            self._wake.wait(None)
            while jobs:
                job = jobs.popleft()
                try:
                    job()
                except BaseException as failure:  # noqa: BLE001 -- the standby never ends
                    write_line(f"batchlog: the standby thread's job failed: {failure!r}")


_STANDBY = _Standby()


def run_on_standby(job: Callable[[], object]) -> bool:
    """Run ``job`` on the standby thread (no thread may start now); False if there is none."""
    return _STANDBY.submit(job)


# ---------------------------------------------------------------------- fork


def _reset_in_child() -> None:
    """In a forked child: fresh locks, empty queues, zeroed counters, no worker yet."""
    global _registry_lock  # noqa: PLW0603 -- a lock held in the parent at fork is unusable
    _registry_lock = new_lock()
    _SHUTDOWN.reset()
    _STANDBY.reset_after_fork()
    for worker in list(_open.values()):
        worker.reset_after_fork()
    if _open:
        _hook_process_end(forking=True)
        _STANDBY.ensure_started()


# ---------------------------------------------------------------------- ends without atexit

_after_fork_hooked = False  # inherited by forked children, as multiprocessing's hooks are
_celery_hooked = False  # likewise
_finalizer: Any = None  # this process's multiprocessing.util.Finalize, once registered


def _hook_process_end(*, forking: bool = False) -> None:
    """Make the ends of multiprocessing's and Celery's children deliver.

    Only frameworks already imported are hooked (each fork looks again): batchlog imports
    none of them.
    """
    global _after_fork_hooked, _celery_hooked  # noqa: PLW0603 -- process-wide flags
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        if not _after_fork_hooked:
            _after_fork_hooked = True
            # Children of fork and forkserver: their start clears the finalizers they
            # inherited, then runs the after-fork hooks, which register ours anew.
            util.register_after_fork(_STANDBY, _register_finalizer)
        process = sys.modules.get("multiprocessing.process")
        if not forking and process is not None and process.parent_process() is not None:
            _register_finalizer(None)  # a spawned child, or a writer first made in a child
    signals = sys.modules.get("celery.signals")
    if signals is not None and not _celery_hooked:
        _celery_hooked = True  # the pool's children are forked: they inherit the receiver
        signals.worker_process_shutdown.connect(
            _deliver_on_celery_child_shutdown, weak=False, dispatch_uid="batchlog"
        )


def _register_finalizer(_token: object) -> None:
    """In a multiprocessing child: deliver everything before it ends with os._exit()."""
    global _finalizer  # noqa: PLW0603 -- one per process
    import multiprocessing.util

    if _finalizer is not None and _finalizer.still_active():
        return
    # Priority 100: before the finalizers of multiprocessing's own queues (10), which a
    # sink may still use.
    _finalizer = multiprocessing.util.Finalize(None, _deliver_at_process_end, exitpriority=100)


def _deliver_on_celery_child_shutdown(**_signal_arguments: object) -> None:
    """Celery's pool child is about to end with os._exit(): deliver everything first."""
    _deliver_at_process_end()


# ---------------------------------------------------------------------- SIGTERM (opt-in)

#: POSIX: a signal can be blocked and found pending (not on Windows).
_CAN_HOLD_SIGNALS = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigpending")
#: A pending signal can be taken back (not on macOS, which has no watch either).
_CAN_TAKE_BACK = hasattr(signal, "sigtimedwait")

#: Modules whose code may hold a lock the sink's thread needs: a SIGTERM that lands in them
#: is handled on the standby thread instead of where it landed.
_LOCKING_MODULES = ("logging", "batchlog.")


class _SigtermHandler:
    """The SIGTERM handler ``deliver_on_sigterm`` installs, and what it chains to.

    Chained to a framework's handler, it also blocks SIGTERM on the main thread: a
    framework that later restores the handler it found (Python's default) and re-raises
    SIGTERM on this thread (uvicorn) would otherwise kill the process before its exit
    delivers. The re-raised SIGTERM waits, pending, until batchlog's exit hook (or a
    multiprocessing or Celery child's end) delivered everything; then it ends the process.
    A SIGTERM sent to the process still reaches the handler through another thread.
    """

    __slots__ = (
        "_start_lock",
        "chained",
        "chaining",
        "delivered",
        "forks_hooked",
        "previous",
        "sent_again",
        "started",
        "terminating",
    )

    def __init__(self) -> None:
        self.previous: Any = signal.SIG_DFL
        self.started = False  # the handler ran in this process (set as it starts)
        self.terminating = False
        self.delivered = False
        self.chained = False
        self.chaining = False
        self.sent_again = False  # the watch signalled the main thread before the start
        self.forks_hooked = False
        # Held by the watch from its look at `started` to its signal, so that a start
        # cannot cross a signal sent again (see `send_unless_started`). A plain lock, so
        # that neither side takes it over from the other; each gives up after _START_WAIT.
        self._start_lock = threading.Lock()

    def reset_after_fork(self) -> None:
        """A child inherits the handler but none of the parent's termination."""
        if self.chained and _CAN_HOLD_SIGNALS:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # not the child's
        self.started = self.terminating = self.delivered = False
        self.chained = self.chaining = self.sent_again = False
        self._start_lock = threading.Lock()  # the watch may have held it at the fork

    def install(self, *, watch: bool) -> None:
        """Install it (idempotent); remember the handler in place to chain to it.

        Raises ValueError off Python's main thread (from ``signal.signal``).
        """
        current = signal.getsignal(signal.SIGTERM)
        if current is not self:
            self.previous = current
            signal.signal(signal.SIGTERM, self)
        if not self.forks_hooked and hasattr(os, "register_at_fork"):
            self.forks_hooked = True  # inherited by forked children, as the hook is
            os.register_at_fork(after_in_child=self.reset_after_fork)
        if not watch:
            return
        # Also when it was installed already: a forkserver's child inherits the handler
        # from a preloaded module, but the server took the wakeup fd meanwhile.
        _WATCH.start()
        global _watch_forks_hooked  # noqa: PLW0603 -- one process-wide flag
        if not _watch_forks_hooked and hasattr(os, "register_at_fork"):
            _watch_forks_hooked = True  # inherited by forked children, as the hook is
            os.register_at_fork(after_in_child=_WATCH.after_fork_in_child)

    def unanswered(self) -> bool:
        """Whether a SIGTERM got no answer yet (see ``_SigtermWatch``).

        Either the handler has not started (nor, through it, a framework's handler chained
        to), or the standby delivered and its signal went unanswered.
        """
        if self.previous == signal.SIG_IGN:
            return False
        return self.delivered or not self.started

    def send_unless_started(self, send: Callable[[], object]) -> bool:
        """Call ``send`` (the watch's signal sent again) if the SIGTERM is unanswered.

        The handler, as it starts, waits for a ``send`` under way, so it knows where that
        signal went: into this start (coalesced, or run inside it and returning at once),
        or pending on the main thread, blocked, where the chained handler takes it back.
        A start never crosses it unseen, to call a framework's handler twice, or to leave a
        SIGTERM pending that would end the process at its exit.
        """
        lock = self._start_lock
        if not lock.acquire(timeout=_START_WAIT):
            # Left held by a start that an exception (Ctrl-C) ended between its acquire
            # and its release: the handler holds it no longer than that. A fresh one.
            lock = self._start_lock = threading.Lock()
            if not lock.acquire(timeout=_START_WAIT):
                return False
        try:
            if not self.unanswered():
                return False
            self.sent_again = True
            send()
            return True
        finally:
            lock.release()

    def _wait_for_a_send(self) -> None:
        """At the handler's start: let a signal the watch is sending arrive first."""
        lock = self._start_lock
        if lock.acquire(timeout=_START_WAIT):
            lock.release()

    def held(self) -> bool:
        """Whether a SIGTERM waits, blocked, for the records to be delivered."""
        return self.chained and _CAN_HOLD_SIGNALS and signal.SIGTERM in signal.sigpending()

    def __call__(self, signum: int, frame: Any) -> None:
        handler_pid = os.getpid()  # read by _runs_in_the_handler: a run of this process
        if self.delivered:  # delivered on the standby thread, which signalled us again
            self.terminate()
        self.started = True
        if self.terminating or _runs_in_the_handler(frame, handler_pid):
            # Ending already; or a signal that landed while this handler runs: the same
            # SIGTERM (the watch's, sent again as the handler started, or a second one),
            # which that run answers.
            return
        previous = self.previous
        # The interrupted code may hold a lock of ours or of logging's that delivering (or
        # asking for it) needs: then that work goes to the standby thread.
        landed_in_lock = _landed_in_locking_code(frame)
        if callable(previous) and not self.chaining:
            self._chain(previous, signum, frame, landed_in_lock=landed_in_lock)
            return
        if previous == signal.SIG_IGN:
            return
        self.terminating = True
        if landed_in_lock and _CAN_HOLD_SIGNALS:
            if self.chained:  # chained back to us: the standby's signal must reach us
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            if run_on_standby(self._deliver_then_signal):
                return  # the standby signals us again when done
        deliver_all()
        self.terminate()

    def _chain(self, previous: Any, signum: int, frame: Any, *, landed_in_lock: bool) -> None:
        """Chain to a framework's handler, which ends the process (a graceful shutdown).

        The records are sent on their way first; the framework's exit delivers the rest.
        """
        self.chained = True
        if _CAN_HOLD_SIGNALS:
            # The watch's signal, if one is under way, lands before the block (and runs
            # this handler inside this run, returning at once) or waits, blocked: it is
            # taken back, as it would end the process at its exit.
            self._wait_for_a_send()
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            if self.sent_again and _CAN_TAKE_BACK:
                self.sent_again = False
                signal.sigtimedwait({signal.SIGTERM}, 0)
        if not (landed_in_lock and run_on_standby(_flush_all_soon)):
            _flush_all_soon()
        try:
            self.chaining = True  # a handler that chains back to us: the default path
            previous(signum, frame)
        finally:
            self.chaining = False

    def _deliver_then_signal(self) -> None:
        try:
            deliver_all()
        finally:
            self.delivered = True
            _signal_main_thread()

    @staticmethod
    def terminate() -> None:
        """End the process as SIGTERM's default action does (same exit status).

        Only the main thread can (it alone sets signal handlers); elsewhere the process
        goes on ending as it was.
        """
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:
            return  # not Python's main thread (gevent and eventlet may rename threads)
        if _CAN_HOLD_SIGNALS:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        signal.raise_signal(signal.SIGTERM)
        os._exit(128 + signal.SIGTERM)  # not reached: the signal ended the process


_SIGTERM = _SigtermHandler()


def _signal_main_thread() -> None:
    """Send SIGTERM to the main thread, from another (the standby)."""
    ident = _WATCH.main_ident()
    if ident is None and not _threads_are_green():
        ident = threading.main_thread().ident
    if ident is None:  # patched: the ident names a greenlet; the process is what we have
        os.kill(os.getpid(), signal.SIGTERM)
    else:
        signal.pthread_kill(ident, signal.SIGTERM)


#: How long a SIGTERM's Python handler may take to start before the signal is sent again,
#: and how many times at most the main thread is signalled again, per process.
_NUDGE_AFTER = 0.5
_MAX_NUDGES = 40
#: How long the handler's start waits for the watch's signal under way (microseconds,
#: unless the watch's thread is descheduled), and the watch for the lock.
_START_WAIT = 5.0
_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


class _SigtermWatch:
    """Makes sure a SIGTERM that reached Python also runs batchlog's handler.

    CPython's C-level handler only marks the signal; the main thread runs the Python
    handler when it next runs bytecode, or when the signal interrupts the call it is
    blocked in. Two ways it never runs:

    - the signal comes just before the main thread blocks (between the try-acquire and
      the wait of a semaphore: where a ``multiprocessing.Pool`` worker waits for its next
      task): it interrupts nothing, and the main thread sleeps on;
    - the signal comes as a forked child starts, before CPython's after-fork code, which
      forgets the signals marked until then (``Pool.terminate()`` hitting a worker the
      pool just made).

    Either way ``Pool.terminate()`` then waits for that worker forever. The C handler also
    writes the signal's number to the wakeup fd: here a Unix datagram socket that is told
    each sender's pid. This thread reads it. A SIGTERM this process took, whose handler
    has not started after ``_NUDGE_AFTER`` seconds, is sent again to the main thread (also
    when a framework's handler is chained to: it runs only through ours); the same when
    the standby's signal, sent once it delivered, goes unanswered. A SIGTERM a forked child
    took before it left this socket is sent again to that child (through a pidfd opened
    as the signal is read, so not to a process that takes its pid later). The main
    thread's signal is sent with the handler's start held off
    (``_SigtermHandler.send_unless_started``), so one sent as the handler starts costs
    nothing: that start takes it.

    Only where no one else set a wakeup fd, with real threads (not under gevent or
    eventlet patched first), and on Linux (the sender's pid).
    """

    __slots__ = ("_main", "_nudges", "_pid", "_sockets", "_thread")

    def __init__(self) -> None:
        self._sockets: tuple[socket.socket, socket.socket] | None = None  # (read, write)
        self._pid = -1
        self._main = 0  # the main thread's pthread id, taken on it (gevent may patch later)
        self._nudges = 0
        self._thread: threading.Thread | None = None

    def main_ident(self) -> int | None:
        """The main thread's real pthread id, if this process watches (else None)."""
        return self._main if self._pid == os.getpid() else None

    def start(self) -> None:
        """Watch in this process (idempotent; call on the main thread)."""
        if self._pid == os.getpid() or not _CAN_WATCH:
            return
        self._leave_inherited()
        if _threads_are_green() or not threading.main_thread().is_alive():
            return  # greenlets; or the interpreter is exiting: no thread starts now
        reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        writer.setblocking(False)  # noqa: FBT003 -- the C handler must never block writing to it
        try:
            previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            previous = -2  # not allowed here: leave the wakeup fd alone
        if previous != -1:
            if previous >= 0:
                signal.set_wakeup_fd(previous)  # someone else's: theirs stays
            reader.close()
            writer.close()
            return
        self._sockets = (reader, writer)
        thread = threading.Thread(
            target=self._run, args=(reader,), name="batchlog-sigterm-watch", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # at interpreter shutdown already: nothing can start
            return
        self._thread, self._pid, self._nudges = thread, os.getpid(), 0
        self._main = threading.get_ident()

    def after_fork_in_child(self) -> None:
        """A forked child inherits the wakeup fd but not the thread: watch anew."""
        if signal.getsignal(signal.SIGTERM) is _SIGTERM:
            self.start()
        else:
            self._leave_inherited()

    def _leave_inherited(self) -> None:
        """In a forked child: stop writing to the parent's socket, and close it here.

        Left in place, the parent would take a SIGTERM of this child for one of its own
        children's early ones, and send it here again.
        """
        sockets, self._sockets = self._sockets, None
        if sockets is None:
            return
        with contextlib.suppress(ValueError, OSError):
            current = signal.set_wakeup_fd(-1)
            if current not in (-1, sockets[1].fileno()):
                signal.set_wakeup_fd(current)  # someone else's since: theirs stays
        for sock in sockets:
            sock.close()

    def _run(self, reader: socket.socket) -> None:
        space = socket.CMSG_SPACE(_CREDENTIALS.size)
        own_due: float | None = None  # when to look whether our SIGTERM was answered
        children: collections.deque[tuple[float, int]] = collections.deque()  # (due, pidfd)
        while True:
            now = time.monotonic()
            if own_due is not None and own_due <= now:
                own_due = None
                self.nudge_if_unanswered()
            while children and children[0][0] <= now:
                _send_again(children.popleft()[1])
            dues = [due for due in (own_due, children[0][0] if children else None) if due]
            reader.settimeout(max(0.0, min(dues) - now) if dues else None)
            try:
                data, ancillary, _, _ = reader.recvmsg(1, space)
            except socket.timeout:
                continue
            except OSError:
                return  # closed
            if not data or data[0] != signal.SIGTERM:
                continue  # another signal (each signal is a datagram of one byte)
            sender = _sender_pid(ancillary)
            if sender == os.getpid():
                if own_due is None:
                    own_due = time.monotonic() + _NUDGE_AFTER
            elif sender is not None and self._answers_for_children():
                with contextlib.suppress(OSError):  # gone already: it was answered
                    # Opened now: a process taking the pid later is not signalled.
                    children.append((time.monotonic() + _NUDGE_AFTER, os.pidfd_open(sender)))

    def nudge_if_unanswered(self) -> bool:
        """Signal the main thread again if a SIGTERM it was sent has not been handled."""
        current: object = signal.getsignal(signal.SIGTERM)
        if current is not _SIGTERM or self._nudges >= _MAX_NUDGES:
            return False  # not ours any more: whoever took SIGTERM decides
        if not threading.main_thread().is_alive():
            return False
        try:
            sent = _SIGTERM.send_unless_started(self._signal_main)
        except OSError:
            return False
        if sent:
            self._nudges += 1
        return sent

    def _signal_main(self) -> None:
        signal.pthread_kill(self._main, signal.SIGTERM)

    @staticmethod
    def _answers_for_children() -> bool:
        """Whether a SIGTERM a child took early is ours to send again (see the class)."""
        current: object = signal.getsignal(signal.SIGTERM)
        return current is _SIGTERM and _SIGTERM.previous != signal.SIG_IGN


def _send_again(pidfd: int) -> None:
    """Send SIGTERM again to a child that took one before it left our socket."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    except OSError:
        pass  # ended meanwhile: it was answered
    finally:
        os.close(pidfd)


def _sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The pid in a datagram's SCM_CREDENTIALS, if the kernel attached them."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, _, _ = _CREDENTIALS.unpack(data[: _CREDENTIALS.size])
            return int(pid)
    return None


_CAN_WATCH = (
    sys.platform.startswith("linux")
    and hasattr(socket, "SO_PASSCRED")
    and hasattr(socket, "SCM_CREDENTIALS")
    and hasattr(os, "pidfd_open")
    and hasattr(signal, "pidfd_send_signal")
    and hasattr(signal, "pthread_kill")
)
_WATCH = _SigtermWatch()
_watch_forks_hooked = False


def _threads_are_green() -> bool:
    """Whether gevent or eventlet patched ``threading``: its threads are greenlets then."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("threading"):
        return True
    patcher = sys.modules.get("eventlet.patcher")
    return patcher is not None and bool(patcher.is_monkey_patched("thread"))


def _flush_all_soon() -> None:
    for worker in live():
        worker.flush_soon()


def _runs_in_the_handler(frame: Any, pid: int) -> bool:
    """Whether ``frame`` (where a signal landed) is inside a run of the SIGTERM handler.

    Only a run started in this process (``pid``) counts: a child forked inside one (a
    framework's handler starting a process) handles its own SIGTERMs. Not so either for a
    framework's handler chaining back to us: it passes on the frame it was given, where
    the SIGTERM first landed.
    """
    handler_code = _SigtermHandler.__call__.__code__
    # A run interrupted before it stored its pid is one of this process: a fork needs
    # code to run first.
    return any(
        caller.f_code is handler_code and caller.f_locals.get("handler_pid", pid) == pid
        for caller in _stack(frame)
    )


def _landed_in_locking_code(frame: Any) -> bool:
    """Whether ``frame`` or any caller of it runs code of ``_LOCKING_MODULES``."""
    names = (caller.f_globals.get("__name__", "") for caller in _stack(frame))
    return any(name == "logging" or name.startswith(_LOCKING_MODULES) for name in names)


def _stack(frame: FrameType | None) -> Iterator[FrameType]:
    """``frame`` and its callers, innermost first (nothing for None)."""
    while frame is not None:
        yield frame
        frame = frame.f_back


def deliver_on_sigterm(*, watch: bool = True) -> None:
    """Make SIGTERM deliver every writer's records before the process ends.

    Off by default: a library does not take signals uninvited. Turn it on where SIGTERM
    ends the process without Python's exit hooks: a plain script or container stopped
    with SIGTERM (Python's default is to die at once), uvicorn (which re-raises SIGTERM
    after its graceful shutdown), ``multiprocessing.Pool.terminate()`` (call it in the
    pool's ``initializer``).

    On SIGTERM, with no other handler before it (Python's default), every open writer
    is closed and its records delivered, within its ``exit_timeout`` (10 s by default,
    in total); then the process ends as SIGTERM's default action ends it (killed by
    SIGTERM, the same exit status). A Python handler installed before it is chained: the
    records are sent on their way, then that handler runs and decides (a framework's
    graceful shutdown then delivers the rest at exit). A framework that installs its own
    handler and later restores this one (uvicorn) reaches it when it re-raises SIGTERM.
    Idempotent. ``BatchingHandler(deliver_on_sigterm=True)`` calls it.

    Args:
        watch: On Linux, where no wakeup fd is set, set one (``signal.set_wakeup_fd``)
            and start a thread, ``batchlog-sigterm-watch``, that sends a SIGTERM again
            when Python took it but its handler never started: one arriving just before
            the main thread blocks in a semaphore (a ``Pool`` worker waiting for a task),
            or as a forked child starts. Pass False where something else needs the wakeup
            fd to be unset (trio warns when it finds one set).

    Raises:
        ValueError: Not called from the main thread (only it can install signal
            handlers).
        TypeError: ``watch`` is not a bool.

    .. versionadded:: 0.2.0
    """
    watch = check_bool("watch", watch)
    try:
        _SIGTERM.install(watch=watch)
    except ValueError as exc:  # signal.signal: not Python's main thread
        msg = (
            "deliver_on_sigterm() must be called from the main thread (Python installs "
            f"signal handlers only there), not from {threading.current_thread().name!r}"
        )
        raise ValueError(msg) from exc
