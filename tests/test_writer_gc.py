"""A BatchWriter dropped without close() is collected: its thread ends, its records arrive."""

from __future__ import annotations

import gc
import threading

from conftest import WAIT, RecordingSink

from batchlog import BatchWriter, _lifecycle


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
