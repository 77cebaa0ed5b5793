"""A BatchWriter dropped without close() is collected: its thread ends, its records arrive."""

from __future__ import annotations

import gc
import threading
from typing import Any, Callable

import pytest
from conftest import WAIT, RecordingSink

from batchlog import BatchWriter, _lifecycle
from batchlog.testing import FakeClock


def _threads_named(prefix: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefix)]


def test_two_hundred_dropped_writers_end_their_threads_and_leave_the_registry() -> None:
    """No strong path from the worker thread to its writer: gc closes each one."""
    sink = RecordingSink()
    names = [f"gc-dropped-{index}" for index in range(200)]
    workers = []
    for name in names:
        writer: BatchWriter[str] = BatchWriter(10, 60.0, sink, name=name)
        writer.add(f"{name}: held")  # still held when dropped: it must be delivered first
        workers.append(writer._worker)
        del writer
    gc.collect()
    threads = {thread.name: thread for thread in _threads_named("batchlog-gc-dropped-")}
    for name in names:
        thread = threads.get(f"batchlog-{name}")
        if thread is not None:
            thread.join(WAIT)
            assert not thread.is_alive(), f"the worker thread of {name} did not end"
    live = {id(worker) for worker in _lifecycle.live()}
    assert not any(id(worker) in live for worker in workers)
    assert sorted(f"{name}: held" for name in names) == sorted(sink.records)


def test_a_dropped_writer_is_collected_even_while_its_worker_waits_for_a_window() -> None:
    """The thread holds the worker, not the writer: the writer itself is freed."""
    import weakref

    sink = RecordingSink()
    writer: BatchWriter[str] = BatchWriter(10, 60.0, sink, name="gc-window")
    writer.add("waiting")
    thread = writer._worker._thread
    assert thread is not None
    ref = weakref.ref(writer)
    del writer
    gc.collect()
    assert ref() is None
    thread.join(WAIT)
    assert not thread.is_alive()
    assert sink.records == ["waiting"]


def test_a_finalizer_running_where_the_intake_lock_is_held_does_not_deadlock() -> None:
    """A garbage collection pass may start anywhere, even inside a section holding the
    intake's lock on the worker's own thread: the writer's finalizer takes no lock there,
    and the worker closes once the section ends, delivering what it held."""
    sink = RecordingSink()
    writer = BatchWriter(10, 60.0, sink)
    writer.add("held")
    worker = writer._worker
    finalizer = writer._finalizer
    done = threading.Event()

    def collected_inside_a_locked_section() -> None:
        with worker.intake.lock:
            finalizer()  # what gc would run here: must return without the lock
        done.set()

    thread = threading.Thread(target=collected_inside_a_locked_section)
    thread.start()
    assert done.wait(WAIT)
    thread.join(WAIT)
    assert worker.requests.close.wait(WAIT)
    assert sink.records == ["held"]


class _FinalizerAtNow(FakeClock):
    """A fake clock that runs the writer's finalizer at a chosen ``now()`` of the worker.

    The worker reads the time between its loop's checks and the ``clear()`` before it
    waits: the finalizer's wake-up landing there is the one a ``clear()`` would swallow.
    The worker's first read waits until the test has handed over the writer's parts and
    added its records (``ready``). Any wait begun after the finalizer ran is noted and
    ended at once, so a worker that would have slept (60 s here) fails the test quickly
    instead of hanging it.
    """

    def __init__(self, *, call: int, when_holding: bool) -> None:
        super().__init__()
        self.call = call  # the n-th worker now() (counted as below) runs the finalizer
        self.when_holding = when_holding  # count only now() calls with records waiting
        self.finalize: Callable[[], object] = lambda: None
        self.holding: Callable[[], bool] = lambda: False
        self.ready = threading.Event()
        self.seen = 0
        self.fired = threading.Event()
        self.waits_after = 0

    def now(self) -> float:
        on_worker = threading.current_thread().name == "batchlog-gc-lost-wakeup"
        counted = (
            on_worker
            and not self.fired.is_set()
            and self.ready.wait(WAIT)
            and (self.holding() or not self.when_holding)
        )
        if counted:
            self.seen += 1
            if self.seen == self.call:
                self.finalize()
                self.fired.set()
        return super().now()

    def wait(self, event: Any, timeout: float | None, *, idle: bool = False) -> bool:
        if self.fired.is_set():
            self.waits_after += 1
            return True
        return super().wait(event, timeout, idle=idle)


@pytest.mark.parametrize(
    ("records", "call"),
    [
        # Idle: the first time read, on its way into the idle wait.
        ([], 1),
        # A record waits for its window: the worker reads the time once before the
        # loop's checks (into the idle wait, or stamping the window), then reads how long
        # is left (the second).
        (["waiting"], 2),
    ],
    ids=["idle", "window"],
)
def test_the_finalizer_between_the_workers_checks_and_its_wait_is_not_missed(
    records: list[str], call: int
) -> None:
    """The writer's finalizer wakes the worker even when it lands just before the worker
    clears its wake-up to sleep: the worker looks at ``unreferenced`` again and closes at
    once instead of sleeping out its window or idle wait."""
    clock = _FinalizerAtNow(call=call, when_holding=bool(records))
    sink = RecordingSink()
    writer: BatchWriter[str] = BatchWriter(10, 60.0, sink, name="gc-lost-wakeup", clock=clock)
    worker = writer._worker
    intake = writer._intake
    clock.holding = lambda: len(intake) > 0
    clock.finalize = worker.close_unreferenced  # what the writer's weakref.finalize calls
    # Added while the worker is held at its first time read, the record is there whichever
    # read that is (on its way into the idle wait, or stamping the window), so the count
    # of reads with a record waiting does not depend on how the threads interleave.
    for record in records:
        writer.add(record)
    clock.ready.set()
    assert clock.fired.wait(WAIT)
    thread = worker._thread
    assert thread is not None
    thread.join(WAIT)
    assert not thread.is_alive()
    assert clock.waits_after == 0, "the worker went to sleep after the finalizer woke it"
    assert sink.records == records
