"""An asynchronous exception (Ctrl-C, a signal handler's raise) at every step of each call.

For N = 1, 2, ... a trace function counts the opcodes run in batchlog's own frames and, at
the N-th, asks the interpreter to raise ``KeyboardInterrupt`` in this thread with
``PyThreadState_SetAsyncExc``. The interpreter delivers it at its next real check point,
which is where a Ctrl-C can land (it differs by version: on 3.9 nearly every opcode, on
3.12+ calls and backward jumps). The request is made from a weakref callback run as the
trace function's frame is torn down, and tracing stops first: asked for in the trace
function's own body, the exception would be raised inside the trace function, that is at
the traced opcode itself, a landing point that cannot happen. N grows until a run finishes
the call before the N-th opcode. Each run then adds more records, closes, and checks the
metrics against counts the test kept itself.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import os
import sys
import threading
import weakref
from typing import Any, Callable

import pytest
from conftest import WAIT, BlockingSink, OwnerProxy, RecordingSink

import batchlog
from batchlog import BatchWriter, QueueFullError, WriterClosedError, _sync


@pytest.fixture(autouse=True)
def _locks_left_behind_are_taken_over_quickly(monkeypatch):
    """On 3.9, 3.10 and 3.14 a lock an interrupt left held is taken over after LEAKED_AFTER.

    The sweeps leave one behind at many steps; here nothing else holds the core's locks
    for long, so a short takeover keeps the sweep fast and still exercises it.
    """
    monkeypatch.setattr(_sync, "LEAKED_AFTER", 0.05)


_BATCHLOG_DIR = os.path.dirname(os.path.abspath(batchlog.__file__)) + os.sep
# PyThreadState_SetAsyncExc(ident, exc), given one more argument that it ignores (the
# weakref a weakref callback is called with; the C calling conventions drop extra ones).
_request_async_exc = ctypes.PYFUNCTYPE(
    ctypes.c_int, ctypes.c_ulong, ctypes.py_object, ctypes.py_object
)(("PyThreadState_SetAsyncExc", ctypes.pythonapi))
# Before 3.12, sys.settrace(None) inside a trace function stops tracing at once; on 3.12+
# it leaves the next sys.settrace ineffective, so there a flag makes the tracer inert.
_STOP_WITH_SETTRACE = sys.version_info < (3, 12)


class _Token:
    """Dies with the trace function's frame; its weakref callback requests the exception."""


class Interrupter:
    """A trace function that requests a KeyboardInterrupt at the N-th opcode in batchlog."""

    def __init__(self, n: int | None) -> None:
        self.n = n  # None: count only
        self.count = 0
        self.fired = False
        self.ident = threading.get_ident()
        self._refs: list[weakref.ref[_Token]] = []

    def global_trace(self, frame: Any, event: str, arg: object) -> Any:
        if self.fired or not frame.f_code.co_filename.startswith(_BATCHLOG_DIR):
            return None
        frame.f_trace_opcodes = True
        return self.local_trace

    def local_trace(self, frame: Any, event: str, arg: object) -> Any:
        if self.fired:
            return None
        if event == "line":
            # 3.13 can miss the request made at the call event (a code object last run
            # untraced); asking again at its first line turns opcode events on.
            frame.f_trace_opcodes = True
        if event != "opcode":
            return self.local_trace
        self.count += 1
        if self.count != self.n:
            return self.local_trace
        self.fired = True
        if _STOP_WITH_SETTRACE:
            sys.settrace(None)
        caller = frame
        while caller is not None:
            caller.f_trace = None
            caller = caller.f_back
        token = _Token()
        request = functools.partial(_request_async_exc, self.ident, KeyboardInterrupt)
        self._refs.append(weakref.ref(token, request))
        return None  # the frame ends, token dies: the request is made in C, after us


def take_pending_interrupt() -> None:
    """Let an interrupt requested but not yet delivered arrive here (calls are check points).

    Not ``PyThreadState_SetAsyncExc(ident, NULL)``: that drops the exception but leaves the
    interpreter's "async exception pending" flag set (3.11), and the next traced call then
    spins at its first instruction forever.
    """
    for _ in range(10):
        len(())


def run_interrupted(call: Callable[[], object], n: int | None) -> tuple[str, object, Interrupter]:
    """Run ``call`` traced; return (outcome, value, the interrupter).

    outcome: "returned" (value is its result), "refused" (QueueFullError or
    WriterClosedError), or "interrupted" (a KeyboardInterrupt came out of the call, or
    right after it before the test could note its result: the test cannot know what it did).
    """
    interrupter = Interrupter(n)
    outcome, value = "interrupted", None
    gc.disable()  # an earlier writer's finalizer is batchlog code too: keep it out of the count
    try:
        sys.settrace(interrupter.global_trace)
        try:
            value = call()
            outcome = "returned"
        except (QueueFullError, WriterClosedError):
            outcome = "refused"
        finally:
            sys.settrace(None)
        if interrupter.fired:
            take_pending_interrupt()
    except KeyboardInterrupt:
        pass  # outcome says how far the call was seen to get
    finally:
        sys.settrace(None)
        gc.enable()
    return outcome, value, interrupter


class Ledger:
    """What the test itself saw: records known accepted, refusals, the interrupted record."""

    def __init__(self) -> None:
        self.next_id = 0
        self.accepted: set[int] = set()
        self.refused: set[int] = set()
        self.unknown: set[int] = set()

    def new(self) -> int:
        self.next_id += 1
        return self.next_id

    def add(self, writer: BatchWriter[int], timeout: float | None = WAIT) -> None:
        record = self.new()
        try:
            writer.add(record, timeout=timeout)
        except (QueueFullError, WriterClosedError):
            self.refused.add(record)
        else:
            self.accepted.add(record)

    def settle(self, record: int | None, outcome: str, value: object, kind: str) -> None:
        """File the interrupted call's record by what the call was seen to do."""
        if record is None:
            return
        if outcome == "interrupted":
            self.unknown.add(record)
        elif outcome == "refused" or (kind == "try_add" and value is False):
            self.refused.add(record)
        else:
            self.accepted.add(record)

    def check(self, writer: BatchWriter[int], sink: RecordingSink, label: str) -> None:
        delivered = sink.records
        seen = set(delivered)
        metrics = writer.metrics
        assert len(delivered) == len(seen), f"{label}: a record was delivered twice"
        assert not seen & self.refused, f"{label}: a refused record was delivered"
        assert seen <= self.accepted | self.unknown, f"{label}: an unknown record arrived"
        missing = self.accepted - seen
        # Only evict_oldest takes an accepted record away, and each eviction takes one.
        assert len(missing) == metrics.records_evicted, f"{label}: {metrics}"
        unknown_delivered = len(self.unknown & seen)
        assert metrics.records_in_buffer == 0, f"{label}: {metrics}"
        assert metrics.records_added == metrics.records_processed + metrics.records_failed + (
            metrics.records_evicted
        ), f"{label}: {metrics}"
        assert metrics.records_processed + metrics.records_failed == len(seen), label
        assert len(self.accepted) + unknown_delivered == metrics.records_added, (
            f"{label}: {metrics}"
        )
        # An interrupted add that never reached its slot did nothing, so counted nothing;
        # one that took a slot and was reclaimed counts its record as dropped.
        undelivered_unknown = len(self.unknown - seen)
        extra_drops = metrics.records_dropped - len(self.refused)
        assert 0 <= extra_drops <= undelivered_unknown, f"{label}: {metrics}"


# --------------------------------------------------------------------------- scenarios
# Each sets up a fresh writer, returns (writer, sink, the call, its record, its kind, after)
# where ``after`` runs once the call is over (it lets a held sink go).

Scenario = tuple[BatchWriter[int], RecordingSink, Callable[[], object], "int | None", str, Any]


def _open_writer(ledger: Ledger) -> tuple[BatchWriter[int], RecordingSink]:
    sink = RecordingSink()
    writer: BatchWriter[int] = BatchWriter(4, 60.0, sink, max_queue_size=8, name="interrupts")
    for _ in range(2):
        ledger.add(writer)
    return writer, sink


def _full_writer(ledger: Ledger) -> tuple[BatchWriter[int], BlockingSink]:
    """capacity 2, max_queue_size 4: one batch held in the sink, four records waiting."""
    sink = BlockingSink()
    writer: BatchWriter[int] = BatchWriter(2, 60.0, sink, max_queue_size=4, name="interrupts")
    for _ in range(2):
        ledger.add(writer)
    assert sink.entered.wait(WAIT)
    for _ in range(4):
        ledger.add(writer, timeout=0)
    assert ledger.refused == set()
    return writer, sink


def _release_when_waiting(writer: BatchWriter[int], sink: BlockingSink) -> None:
    """A blocked add wakes the worker before it waits: let the sink go then."""
    intake = writer._intake
    intake._owner = OwnerProxy(intake._owner, on_wake=sink.release)


#: Event-loop steps ``AsyncAdd.release`` runs for cancelled tasks to end.
_LOOP_STEPS_TO_SETTLE = 10


class AsyncAdd:
    """``add_async`` run to completion on a loop made before the traced call starts."""

    def __init__(self, writer: BatchWriter[int], record: int, timeout: float | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.coroutine = writer.add_async(record, timeout)

    def __call__(self) -> object:
        return self.loop.run_until_complete(self.coroutine)

    def release(self) -> None:
        """After an interrupt: end what the loop still runs, then close it.

        Closing the coroutine first runs its ``finally`` blocks if it was suspended, so
        batchlog's part is over. Its task may still be pending: the interrupt can land in
        the event loop's own code (on 3.14 a check point ends every call, so the first one
        after batchlog's last step may be in ``_run_once``) and take the task's wake-up
        with it; such a task never runs again. The loop is run a few steps for the tasks
        that can still finish (a cancelled wait takes one step to wake, one to end), and
        then closed like an application's loop that ends with a task still pending.
        """
        self.coroutine.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        for _ in range(_LOOP_STEPS_TO_SETTLE):
            if all(task.done() for task in pending):
                break
            self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


def scenario(name: str, ledger: Ledger) -> Scenario:  # noqa: PLR0911 -- one branch a scenario
    record = ledger.new()
    if name == "add":
        writer, sink = _open_writer(ledger)
        return writer, sink, lambda: writer.add(record), record, "add", None
    if name == "add_full_timeout_0":
        writer, blocking = _full_writer(ledger)
        return writer, blocking, lambda: writer.add(record, timeout=0), record, "add", blocking
    if name == "add_full_waits":
        writer, blocking = _full_writer(ledger)
        _release_when_waiting(writer, blocking)
        call = functools.partial(writer.add, record, timeout=WAIT)
        return writer, blocking, call, record, "add", blocking
    if name in ("try_add", "try_add_evict"):
        writer, sink = _open_writer(ledger)
        call = functools.partial(writer.try_add, record, evict_oldest=name == "try_add_evict")
        return writer, sink, call, record, "try_add", None
    if name in ("try_add_full", "try_add_evict_full"):
        writer, blocking = _full_writer(ledger)
        evict = name == "try_add_evict_full"
        call = functools.partial(writer.try_add, record, evict_oldest=evict)
        return writer, blocking, call, record, "try_add", blocking
    if name == "add_async":
        writer, sink = _open_writer(ledger)
        return writer, sink, AsyncAdd(writer, record, None), record, "add", None
    if name == "add_async_full_waits":
        writer, blocking = _full_writer(ledger)
        _release_when_waiting(writer, blocking)
        return writer, blocking, AsyncAdd(writer, record, WAIT), record, "add", blocking
    if name == "flush":
        writer, sink = _open_writer(ledger)
        return writer, sink, lambda: writer.flush(timeout=WAIT), None, "flush", None
    if name == "flush_stuck_sink":
        writer, blocking = _full_writer(ledger)
        _release_when_waiting(writer, blocking)
        call = lambda: writer.flush(timeout=0)  # noqa: E731
        return writer, blocking, call, None, "flush", blocking
    if name == "close":
        writer, sink = _open_writer(ledger)
        return writer, sink, lambda: writer.close(timeout=WAIT), None, "close", None
    assert name == "close_full"
    writer, blocking = _full_writer(ledger)
    blocking.release()
    return writer, blocking, lambda: writer.close(timeout=WAIT), None, "close", None


SCENARIOS = [
    "add",
    "add_full_timeout_0",
    "add_full_waits",
    "try_add",
    "try_add_evict",
    "try_add_full",
    "try_add_evict_full",
    "add_async",
    "add_async_full_waits",
    "flush",
    "flush_stuck_sink",
    "close",
    "close_full",
]


def run_once(name: str, n: int | None) -> Interrupter:
    """One run interrupted at the N-th step; return its interrupter (fired? steps seen?)."""
    ledger = Ledger()
    writer, sink, call, record, kind, held = scenario(name, ledger)
    label = f"{name}, interrupted at step {n}"
    try:
        outcome, value, interrupter = run_interrupted(call, n)
        if isinstance(call, AsyncAdd):
            call.release()
        ledger.settle(record, outcome, value, kind)
        if held is not None:
            held.release()
        for _ in range(5):
            ledger.add(writer)
        assert writer.close(timeout=5) is True, f"{label}: close timed out"
    finally:
        if held is not None:
            held.release()
        writer.close(timeout=WAIT)
    ledger.check(writer, sink, label)
    return interrupter


@pytest.mark.parametrize("name", SCENARIOS)
def test_an_interrupt_at_any_step_loses_nothing_accepted_and_close_finishes(name: str) -> None:
    """For every step N of the call: accepted records delivered once, counts add up."""
    for _ in range(5):  # also a warm-up: a code object's first traced run may see none
        steps = run_once(name, None).count
        if steps:
            break
    n, untraced = 1, 0
    while True:
        interrupter = run_once(name, n)
        if interrupter.fired:
            n += 1
        elif interrupter.count == 0:
            untraced += 1  # tracing did not take (a code object's first traced run): again
            assert untraced < 5, "the trace function saw no opcodes"
        else:
            break  # the call finished before its N-th step: every step was interrupted
        assert n < 5_000, "the call never finished without an interrupt"
    assert n > 1
    assert steps > 0


def test_an_interrupted_add_async_leaves_no_coroutine_behind() -> None:
    """Every step of add_async: no un-awaited coroutine is left to warn about."""
    run_once("add_async", None)
    n = 1
    while run_once("add_async", n).fired:
        n += 1
        gc.collect()  # an un-awaited coroutine warns when collected


def _tight_add_loop(writer: BatchWriter[int], n: int, result: list[str]) -> None:
    interrupter = Interrupter(n)  # made here: it interrupts the thread that made it
    try:
        sys.settrace(interrupter.global_trace)
        try:
            with writer:
                for record in range(1_000):
                    writer.add(record)
        finally:
            sys.settrace(None)
    except KeyboardInterrupt:
        result.append("interrupted")
    else:
        result.append("finished")
        if interrupter.fired:
            try:
                take_pending_interrupt()
            except KeyboardInterrupt:
                result[-1] = "interrupted after the loop"
    finally:
        sys.settrace(None)
    result.append("closed" if writer.closed else "open")
    result.append(str(writer.metrics.records_in_buffer))


@pytest.mark.parametrize("n", [1, 2, 5, 17, 40, 97, 250, 613, 1_500, 4_000, 10_000])
def test_a_with_block_interrupted_in_a_tight_add_loop_closes(n: int) -> None:
    """Ctrl-C in ``with BatchWriter(...)`` around an add loop: __exit__'s close returns."""
    sink = RecordingSink()
    writer: BatchWriter[int] = BatchWriter(4, 60.0, sink, max_queue_size=8, name="tight-loop")
    result: list[str] = []
    thread = threading.Thread(
        target=_tight_add_loop, args=(writer, n, result), name=f"tight-loop-{n}"
    )
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "close() in __exit__ hung after the interrupt"
    assert result[0] == "interrupted"
    assert result[1:] == ["closed", "0"]
    delivered = sink.records
    assert delivered == sorted(set(delivered))
