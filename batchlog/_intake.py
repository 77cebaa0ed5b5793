"""The intake: the records waiting for the worker, and the slots that bound them.

This is the only code that takes or returns a slot. A slot is a token in the ``_slots``
deque; an add pops one and appends its record to ``_queue``, both ``collections.deque``
operations documented as thread-safe, so ``max_queue_size`` is an exact bound that does
not lean on the GIL, and the common add takes no lock. The worker takes records off the
queue under ``lock`` and gives their slots back.

Slots are made as records arrive, a chunk at a time, from ``itertools.repeat(None,
max_queue_size)``: moving a chunk into the deque is one C call (``deque.extend`` over an
``islice``), so a slot is never made twice or lost, and nothing proportional to
``max_queue_size`` is allocated before records arrive. Slots the worker gives back beyond
``_KEEP_FREE`` go back to that source, so memory follows the records held.

Interrupts. An exception raised asynchronously (Ctrl-C, a signal handler) can land between
any two bytecodes. Each step that must happen together with another is either one C call
or ordered so that the interpreter has no point to deliver an exception in between; where
neither is possible (an add interrupted between taking its slot and appending its record)
the add raised, the slot is lost, and ``reclaim`` finds it when the writer closes: after a
short grace the worker takes it back and counts the record as dropped. Closing never
waits for a lost slot forever.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

from typing_extensions import Protocol

from ._requests import resolve_soon
from ._sync import RoomWaiters, new_lock
from .errors import QueueFullError, WriterClosedError

if TYPE_CHECKING:
    import asyncio

__all__ = ["Intake", "Owner"]

T = TypeVar("T")

_NEVER = sys.maxsize  # a queue length no adder reaches: "do not signal me"
_ISSUE_CHUNK = 1024  # slots made at once when the free ones run out
_KEEP_FREE = 4096  # free slots kept in the deque; more go back to the unmade source
_EVICTIONS = 2**62  # more evictions than any process makes: the count-down never runs out
_SPACE_RECHECK = 0.25  # a blocked add looks again this often, in case a wake-up is lost
_NOT_A_SLOT = object()  # never in ``_slots``: lets ``iter(pop, sentinel)`` drain it in C
# An evicting add finding no record to evict (every slot held by adders that have not
# appended yet) lets those adders run, at most this many times and for about this many
# seconds (at least once), before it refuses: their append is their next step.
_EVICT_YIELDS = 100
_EVICT_PATIENCE = 0.002


_monotonic = time.monotonic  # the eviction's patience is measured with it (tests replace it)


def _yield_to_adders() -> None:
    """Let other threads run a step (``sleep(0)`` releases the GIL and yields the CPU)."""
    time.sleep(0)


class Owner(Protocol):
    """What the intake needs of the worker that drains it."""

    #: True while the sink runs (a hint: ``sink_thread`` decides).
    sink_running: bool
    #: The thread running the sink, if any.
    sink_thread: int | None

    def wake(self) -> None:
        """A batch is ready or a record arrived while the worker was idle."""

    def on_sink_thread(self) -> bool:
        """Whether the calling thread is running the sink (it must never wait)."""

    def can_run(self) -> bool:
        """Whether a worker thread runs or can be started (not at interpreter exit)."""

    def drain_here(self) -> None:
        """Deliver what is waiting on the calling thread (no worker thread can run)."""

    def drain_elsewhere(self) -> bool:
        """Deliver what is waiting on a thread started before exit; False if none."""

    def wait_budget(self) -> float | None:
        """Seconds a wait may last while the process shuts down (None: not shutting down)."""


class Intake(Generic[T]):
    """The bounded queue of accepted records and the refusal counts.

    Counters (``dropped``, ``evicted``, ``reclaimed``, ``in_flight``) and the worker's own
    counters are guarded by ``lock``, which is never held while the sink runs, so one
    snapshot under it is consistent.
    """

    __slots__ = (
        "_append_record",
        "_discard",
        "_evictions",
        "_finished",
        "_owner",
        "_pop_slot",
        "_queue",
        "_room",
        "_signal_at",
        "_slots",
        "_space_futures",
        "_space_lock",
        "_stolen",
        "_unmade",
        "capacity",
        "closed_reason",
        "dropped",
        "in_flight",
        "lock",
        "max_queue_size",
        "name",
        "reclaimed",
        "reporting",
        "sealed",
        "stolen_by_worker",
    )

    def __init__(self, capacity: int, max_queue_size: int, name: str, owner: Owner) -> None:
        self.capacity = capacity
        self.max_queue_size = max_queue_size
        self.name = name
        self._owner = owner
        self.reset(sealed=False)

    def reset(self, *, sealed: bool) -> None:
        """Start empty with fresh locks (also in a forked child); a sealed one stays sealed."""
        self.lock = new_lock()
        # Threads and event loops waiting for room. No threading.Condition: its Python-level
        # __enter__ can be interrupted holding its lock (see _sync); bare locks only.
        self._room = RoomWaiters()
        self._space_lock = new_lock()
        self._space_futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._queue: deque[T] = deque()
        self._slots: deque[None] = deque()
        self._pop_slot = self._slots.pop
        self._append_record = self._queue.append
        self._unmade = itertools.repeat(None, 0 if sealed else self.max_queue_size)
        self._stolen: deque[None] = deque()  # free slots taken by close, moved in C
        self.stolen_by_worker = 0 if not sealed else self.max_queue_size
        self._signal_at = 1  # the first record wakes the worker (after fork: starts it)
        self.sealed = sealed
        self._finished = sealed
        self.closed_reason = "is closed"
        self.dropped = 0
        # Evictions are counted down from here, in the same C call that evicts (see
        # _evict_for); ``evicted`` reads how far.
        self._evictions = itertools.repeat(None, _EVICTIONS)
        self._discard: deque[object] = deque(maxlen=0)
        self.reclaimed = 0
        self.in_flight = 0
        #: A failed batch is counted and its report (``on_error``) not yet over: a flush
        #: must not see the writer idle until it is.
        self.reporting = False

    # ------------------------------------------------------------------ adding

    def add(self, record: T, timeout: float | None) -> None:
        """Accept ``record``, waiting at most ``timeout`` for room (None: no limit).

        Raises:
            QueueFullError: No room in time, or no waiting allowed on this thread.
            WriterClosedError: The writer is closed.
        """
        try:
            self._pop_slot()
        except IndexError:
            pass  # the slow path runs outside this block, so no IndexError is chained
        else:
            self._append_record(record)
            if len(self._queue) >= self._signal_at and not self._signal():
                self._refuse_closed()
            return
        if not self._add_slow(record, timeout):
            self._refuse(timeout)

    def offer(self, record: T, timeout: float | None = None) -> bool:
        """Like ``add``, but return False for a refused record instead of raising.

        A record the sink offers itself (on the thread running it) is refused: a sink that
        logs through the front door feeding it must not feed itself forever.
        """
        owner = self._owner
        if owner.sink_running and owner.sink_thread == threading.get_ident():
            self._count_drop()
            return False
        try:
            self._pop_slot()
        except IndexError:
            pass
        else:
            self._append_record(record)
            if len(self._queue) >= self._signal_at and not self._signal():
                self._count_drop()
                return False
            return True
        if self._add_slow(record, timeout):
            return True
        self._count_drop()
        return False

    def offer_now(self, record: T, *, evict_oldest: bool = False) -> bool:
        """Like ``try_add``, but a record the sink offers itself is refused (see ``offer``)."""
        owner = self._owner
        if owner.sink_running and owner.sink_thread == threading.get_ident():
            self._count_drop()
            return False
        return self.try_add(record, evict_oldest=evict_oldest)

    def try_add(self, record: T, *, evict_oldest: bool = False) -> bool:
        """Accept ``record`` if there is room (or, with ``evict_oldest``, make room)."""
        # A full queue is looked at first: raising IndexError for each refusal of a storm
        # would cost more than the look costs an accepted record.
        if self._slots:
            try:
                self._pop_slot()
            except IndexError:
                pass
            else:
                self._append_record(record)
                if len(self._queue) >= self._signal_at and not self._signal():
                    self._count_drop()
                    return False
                return True
        if not evict_oldest and (self.sealed or not operator.length_hint(self._unmade)):
            with self.lock:  # full (or closed): the common refusal, in this one frame
                self.dropped += 1
            return False
        return self._try_add_slow(record, evict_oldest=evict_oldest)

    def _try_add_slow(self, record: T, *, evict_oldest: bool) -> bool:
        if not self.sealed:
            if self._make_slot():
                if self._append(record):
                    return True
            elif evict_oldest and self._evict_for(record):
                return True
        self._count_drop()
        return False

    def accept(self, record: T) -> bool:
        """Append ``record`` if open and a slot is free; never waits, counts nothing else."""
        if self.sealed or not self._take_slot():
            return False
        return self._append(record)

    def _append(self, record: T) -> bool:
        """Append ``record``, whose slot was taken; False if it came too late (closed)."""
        self._append_record(record)
        return len(self._queue) < self._signal_at or self._signal()

    def _take_slot(self) -> bool:
        """Take a free slot, making a chunk of new ones if none is free and some are left."""
        try:
            self._pop_slot()
        except IndexError:
            pass
        else:
            return True
        return self._make_slot()

    def _make_slot(self) -> bool:
        """Make a chunk of slots (if some are left to make) and take one of them.

        The chunk tops the free deque up to at most ``_KEEP_FREE``: the worker may have
        given slots back since the caller found it empty, and only pops (which shrink
        it) happen outside the lock.
        """
        while operator.length_hint(self._unmade):
            with self.lock:
                if self.sealed:
                    return False
                chunk = max(0, min(_ISSUE_CHUNK, _KEEP_FREE - len(self._slots)))
                # One C call moves the chunk: a slot can be neither made twice nor lost.
                self._slots.extend(itertools.islice(self._unmade, chunk))
            try:
                self._pop_slot()
            except IndexError:
                continue  # others took every free slot first: make another chunk
            return True
        return False  # every slot is made: the queue is full

    def _add_slow(self, record: T, timeout: float | None) -> bool:
        """Wait for a slot (at most ``timeout``) and append ``record``; False if refused."""
        if self.sealed:
            return False
        if self._take_slot():
            return self._append(record)
        owner = self._owner
        if timeout == 0 or owner.on_sink_thread():
            return False
        if not owner.can_run() and not owner.drain_elsewhere():
            # No thread can run the sink (interpreter exit): make room on this thread.
            owner.drain_here()
            return self.accept(record)
        deadline = None if timeout is None else time.monotonic() + timeout
        budget = owner.wait_budget()  # a hung sink must not hang a shutdown through us
        if budget is not None:
            deadline = min(deadline or math.inf, time.monotonic() + budget)
        got_slot = False
        room = self._room
        # Registered before each look for a slot, and the worker frees slots before it
        # wakes the waiters: either this look finds the slot or the wake-up finds us.
        waiter = room.register()
        try:
            while not self.sealed:
                if self._take_slot():
                    got_slot = True
                    break
                wait = _SPACE_RECHECK
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    wait = min(wait, remaining)
                owner.wake()  # a backstop: the worker should be emptying the queue already
                room.sleep(waiter, wait)
        finally:
            room.leave(waiter)
        return got_slot and self._append(record)

    def _evict_for(self, record: T) -> bool:
        """Put ``record`` in the place of the oldest waiting one; False if none can go.

        Under the lock, so the worker (which takes batches under it) and other evicting
        callers cannot empty the queue between the look and the append. With no record
        waiting and no slot free, every slot is with an adder between taking it and
        appending (lock-free, two steps apart; truly at once on a free-threaded build):
        it is let run, up to ``_EVICT_YIELDS`` times within about ``_EVICT_PATIENCE``
        seconds, before the eviction gives up (an adder interrupted there holds its slot
        until close reclaims it).
        """
        give_up_at = _monotonic() + _EVICT_PATIENCE
        yields = 0
        placed = self._evict_once(record)
        while placed is None:
            if yields == _EVICT_YIELDS or (yields and _monotonic() >= give_up_at):
                return False
            _yield_to_adders()
            yields += 1
            placed = self._evict_once(record)
        return placed and (len(self._queue) < self._signal_at or self._signal())

    def _evict_once(self, record: T) -> bool | None:
        """One try of ``_evict_for``: True placed, False refused, None nothing to evict yet."""
        with self.lock:
            if self.sealed:
                return False
            try:
                self._pop_slot()  # the worker may have freed a slot since we looked
            except IndexError:
                if not self._queue:
                    return None  # every slot is with an adder that has not appended yet
                # One C call pops the oldest record and counts it (zip pulls one from each),
                # so no interrupt can evict without counting, on any Python.
                self._discard.extend(
                    itertools.islice(
                        zip(iter(self._queue.popleft, _NOT_A_SLOT), self._evictions), 1
                    )
                )  # its slot passes to the new record
            self._append_record(record)
            return True

    def _signal(self) -> bool:
        """Wake the worker, which asked for it; False if the record came after the end."""
        self._signal_at = _NEVER  # one wake-up per batch: the next adders need not
        if self._finished:
            return self._refuse_late()
        self._owner.wake()
        return True

    def _refuse_late(self) -> bool:
        """A record whose slot was reclaimed arrived after the writer finished: take it out.

        Reclaiming counted it as dropped; now the add refuses it and counts it itself, so
        the reclaim's count is taken back (it is one record, dropped once).
        """
        with self.lock:
            if self._queue:
                self._queue.popleft()
                if self.reclaimed:
                    self.reclaimed -= 1
                    self.dropped -= 1
        self._signal_at = 1
        return False

    @property
    def evicted(self) -> int:
        """Records accepted, then discarded by an eviction."""
        return _EVICTIONS - operator.length_hint(self._evictions)

    def count_drop(self) -> None:
        """Count one record as dropped that the caller refused itself."""
        self._count_drop()

    def _count_drop(self) -> None:
        with self.lock:
            self.dropped += 1

    def _refuse(self, timeout: float | None) -> NoReturn:
        if self.sealed:
            self._refuse_closed()
        self._count_drop()
        if self._owner.on_sink_thread():
            msg = (
                f"{self.name}: the queue is full and this is the writer's own worker "
                "thread, which never waits; the record was dropped"
            )
        else:
            waited = "is full" if timeout == 0 else f"stayed full for {timeout} s"
            msg = f"{self.name}: the queue {waited}; the record was dropped"
        raise QueueFullError(msg)

    def _refuse_closed(self) -> NoReturn:
        self._count_drop()
        msg = f"{self.name} {self.closed_reason}; the record was dropped"
        raise WriterClosedError(msg)

    # An event loop waiting for room: ``writer.add_async`` drives these, awaiting the future
    # itself (no inner coroutine an interrupt could leave un-awaited).

    def check_can_wait(self, timeout: float | None) -> None:
        """Refuse (raising, counted) unless an add may wait for room here and now."""
        if self.sealed:
            self._refuse_closed()
        owner = self._owner
        if timeout == 0 or owner.on_sink_thread() or not owner.can_run():
            self._refuse(timeout)

    def room_future(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]:
        """Register a future of ``loop`` that the worker resolves when it frees slots.

        Registered before the caller looks for a slot, as threads are (see ``_add_slow``).
        """
        entry = (loop, loop.create_future())
        with self._space_lock:
            self._space_futures.append(entry)
        return entry

    def forget_room_future(
        self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]
    ) -> None:
        """Stop waiting with ``entry``."""
        with self._space_lock:
            if entry in self._space_futures:
                self._space_futures.remove(entry)

    def refuse(self, timeout: float | None) -> NoReturn:
        """Refuse the record (counted): closed, or full for ``timeout`` seconds."""
        self._refuse(timeout)

    def wake_owner(self) -> None:
        """Wake the worker (a backstop while an event loop waits for room)."""
        self._owner.wake()

    # ------------------------------------------------------------------ the worker's side

    def arm(self, threshold: int) -> None:
        """Ask the next add that brings the queue to ``threshold`` records to wake the worker."""
        self._signal_at = threshold

    def disarm(self) -> None:
        """No add needs to wake the worker (it is awake)."""
        self._signal_at = _NEVER

    def __len__(self) -> int:
        return len(self._queue)

    def take(self, limit: int, batch: list[T]) -> tuple[int, bool]:
        """Move up to ``limit`` records into ``batch``; free their slots.

        Returns how many were taken and whether the queue was emptied. Only the worker
        calls this; the records count as in flight until ``finish_batch``.
        """
        queue = self._queue
        with self.lock:
            if self.sealed:
                self._unreclaim_late_records()
            waiting = len(queue)
            taken = min(limit, waiting)
            if taken:
                # Only this method and evictions remove records, both under this lock, so
                # ``taken`` records are surely there: pop them in C, not one by one.
                batch.extend(itertools.starmap(queue.popleft, itertools.repeat((), taken)))
                self.in_flight = taken
                self._give_back(taken)
        if taken:
            self._notify_space()
        return taken, taken == waiting

    def _give_back(self, count: int) -> None:
        """Return ``count`` slots (call with ``lock`` held, from the worker)."""
        if self.sealed:
            self.stolen_by_worker += count  # closing: keep them, nothing more gets in
            return
        to_deque = min(count, max(0, _KEEP_FREE - len(self._slots)))
        if to_deque < count:
            unmade = operator.length_hint(self._unmade)
            self._unmade = itertools.repeat(None, unmade + count - to_deque)
        self._slots.extend(itertools.repeat(None, to_deque))

    def _notify_space(self) -> None:
        """Wake adders waiting for room (threads and event loops), if there are any."""
        if self._room or self._space_futures:
            self._wake_all_adders()

    def seal(self, reason: str | None = None) -> bool:
        """Stop accepting: take every free slot, so no add gets in. Idempotent.

        Safe to call again after an interrupted call (it takes what is free now).
        Returns whether this call sealed it first.
        """
        with self.lock:
            first = not self.sealed
            self.sealed = True
            if reason is not None and first:
                self.closed_reason = reason
            self._steal_free_slots()
        if first:
            self._wake_all_adders()
        return first

    def _steal_free_slots(self) -> None:
        """Move every free slot out of reach of the adders (call with ``lock`` held).

        ``iter(pop, sentinel)`` pops until the deque is empty and raises IndexError; each
        slot moves inside the one C call of ``extend``, so none is lost to an interrupt.
        """
        with contextlib.suppress(IndexError):
            self._stolen.extend(iter(self._pop_slot, _NOT_A_SLOT))
        unmade = operator.length_hint(self._unmade)
        if unmade:
            self._unmade = itertools.repeat(None, 0)
            self.stolen_by_worker += unmade

    def _wake_all_adders(self) -> None:
        self._room.wake_all()
        with self._space_lock:
            futures, self._space_futures = self._space_futures, []
        for loop, future in futures:
            resolve_soon(loop, future)

    def _outstanding(self) -> int:
        """Slots out of the pool: records in the queue plus slots held by adders."""
        stolen = len(self._stolen) + self.stolen_by_worker
        free = len(self._slots) + operator.length_hint(self._unmade)
        return self.max_queue_size - free - stolen

    def held(self) -> int:
        """Slots taken by adders that have not appended yet (call with ``lock``, sealed)."""
        return self._outstanding() - len(self._queue)

    def reclaim(self) -> int:
        """Take back the slots adders still hold, counting their records as dropped.

        Called by the worker once closing has waited the grace for them: an add that
        holds a slot this long was interrupted between taking it and appending.
        Returns how many were reclaimed.
        """
        with self.lock:
            lost = self.held()
            if lost > 0:
                self.stolen_by_worker += lost
                self.reclaimed += lost
                self.dropped += lost
            return max(lost, 0)

    def _unreclaim_late_records(self) -> None:
        """A reclaimed adder was only slow: count its record as accepted after all."""
        late = len(self._queue) - self._outstanding()
        if late > 0 and self.reclaimed:
            undo = min(late, self.reclaimed)
            self.reclaimed -= undo
            self.dropped -= undo
            self.stolen_by_worker -= undo

    def finish(self) -> None:
        """The worker is done: an add that still arrives is refused and taken out."""
        with self.lock:
            self._finished = True
        self._signal_at = 1
        self._wake_all_adders()

    def in_buffer(self) -> int:
        """Records accepted and not finished by the sink (call with ``lock`` held)."""
        return self._outstanding() + self.in_flight

    def all_done(self) -> bool:
        """Nothing accepted is unfinished, nor a failure unreported (call with ``lock`` held)."""
        return self.in_buffer() == 0 and not self.reporting
