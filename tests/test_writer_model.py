"""BatchWriter against a model: random add/try_add/flush/metrics/close sequences.

The writer runs with a FakeClock that never moves and an hour-long flush interval, so only a
full batch, ``flush()`` and ``close()`` hand records to the sink. The sink announces each
batch and then waits at a gate the test opens one batch at a time, so the test always knows
which records are waiting and which batch is in flight: after every step the writer is
quiescent (the worker sleeps, or sits in the sink with a batch the model predicted).
"""

from __future__ import annotations

import queue
import threading

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from batchlog import BatchWriter, QueueFullError, WriterClosedError
from batchlog.testing import FakeClock

WAIT = 10.0  # real seconds; generous, so a broken writer fails the test instead of hanging
AN_HOUR = 3600.0  # the flush interval: with a FakeClock that never moves, time never flushes

# Mostly healthy records; a poisoned one makes the sink raise on its whole batch.
POISON = st.sampled_from([False, False, False, True])
# Adds come in bursts so that random sequences fill the queue often.
BURST = st.lists(POISON, min_size=1, max_size=4)


class PoisonedBatchError(Exception):
    """The sink refused a batch holding a poisoned record."""


class GatedSink:
    """Records each batch, then waits for a permit unless the gate is open; fails on poison."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, bool]]] = []
        self.entered: queue.Queue[list[tuple[int, bool]]] = queue.Queue()
        self._permits = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._open = False

    def __call__(self, batch: list[tuple[int, bool]]) -> None:
        self.calls.append(list(batch))
        self.entered.put(list(batch))
        with self._lock:
            is_open = self._open
        if not is_open and not self._permits.acquire(timeout=WAIT):
            msg = "the test never let this batch through"
            raise RuntimeError(msg)
        if any(poisoned for _, poisoned in batch):
            msg = f"poisoned batch {batch!r}"
            raise PoisonedBatchError(msg)

    def let_one_through(self) -> None:
        self._permits.release()

    def open(self) -> None:
        with self._lock:
            self._open = True

    def shut(self) -> None:
        with self._lock:
            self._open = False

    def next_batch(self) -> list[tuple[int, bool]]:
        try:
            return self.entered.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"the worker did not hand the sink a batch within {WAIT} s")

    def forget_announcements(self) -> None:
        while True:
            try:
                self.entered.get_nowait()
            except queue.Empty:
                return


class WriterMachine(RuleBasedStateMachine):
    """Drives one writer and a model of it; every step leaves both in the same state."""

    def __init__(self) -> None:
        super().__init__()
        self.writer: BatchWriter[tuple[int, bool]] | None = None

    @initialize(capacity=st.integers(1, 4), extra_room=st.integers(0, 5))
    def make_writer(self, capacity: int, extra_room: int) -> None:
        self.capacity = capacity
        self.max_queue_size = capacity + extra_room
        self.clock = FakeClock()
        self.sink = GatedSink()
        self.reported: list[tuple[Exception, list[tuple[int, bool]]]] = []
        self.writer = BatchWriter(
            capacity,
            AN_HOUR,
            self.sink,
            max_queue_size=self.max_queue_size,
            on_error=lambda exc, batch: self.reported.append((exc, list(batch))),
            name="model",
            clock=self.clock,
        )
        self.next_id = 0
        self.closed = False
        self.waiting: list[tuple[int, bool]] = []  # in the writer's queue, oldest first
        self.in_flight: list[tuple[int, bool]] | None = None  # held at the gate
        self.accepted: list[tuple[int, bool]] = []
        self.evicted: list[tuple[int, bool]] = []
        self.batches: list[list[tuple[int, bool]]] = []  # handed to the sink, in order
        self.failed_batches: list[list[tuple[int, bool]]] = []
        self.dropped = 0
        self.processed = 0
        self.failed = 0

    # ------------------------------------------------------------------ model helpers

    @property
    def full(self) -> bool:
        return len(self.waiting) >= self.max_queue_size

    def _record(self, poisoned: bool) -> tuple[int, bool]:
        record = (self.next_id, poisoned)
        self.next_id += 1
        return record

    def _accepted(self, record: tuple[int, bool]) -> None:
        self.waiting.append(record)
        self.accepted.append(record)
        self._let_worker_take_a_full_batch()

    def _let_worker_take_a_full_batch(self) -> None:
        """A free worker takes the oldest ``capacity`` records once that many wait."""
        if self.in_flight is not None or len(self.waiting) < self.capacity:
            return
        expected = self.waiting[: self.capacity]
        assert expected == self.sink.next_batch()
        del self.waiting[: self.capacity]
        self.in_flight = expected
        self.batches.append(expected)

    def _finished(self, batch: list[tuple[int, bool]]) -> None:
        if any(poisoned for _, poisoned in batch):
            event("a batch failed")
            self.failed += len(batch)
            self.failed_batches.append(batch)
        else:
            self.processed += len(batch)

    def _deliver_everything(self) -> None:
        """What flush() and close() do: finish the batch in flight, then all that waits."""
        if self.in_flight is not None:
            self._finished(self.in_flight)
            self.in_flight = None
        while self.waiting:
            batch = self.waiting[: self.capacity]
            del self.waiting[: self.capacity]
            self.batches.append(batch)
            self._finished(batch)

    def _open_gate(self) -> None:
        self.sink.open()
        if self.in_flight is not None:
            self.sink.let_one_through()

    # ------------------------------------------------------------------ rules: adding

    @precondition(lambda self: not self.closed and not self.full)
    @rule(burst=BURST)
    def add_while_there_is_room(self, burst: list[bool]) -> None:
        for poisoned in burst:
            if self.full:
                return  # add() would wait for the gate: the model never blocks
            record = self._record(poisoned)
            self.writer.add(record)
            self._accepted(record)

    @precondition(lambda self: not self.closed)
    @rule(burst=BURST)
    def add_without_waiting(self, burst: list[bool]) -> None:
        for poisoned in burst:
            record = self._record(poisoned)
            if self.full:
                event("add(timeout=0) on a full queue")
                with pytest.raises(QueueFullError):
                    self.writer.add(record, timeout=0)
                self.dropped += 1
            else:
                self.writer.add(record, timeout=0)
                self._accepted(record)

    @precondition(lambda self: not self.closed)
    @rule(burst=BURST, evict_oldest=st.booleans())
    def try_add(self, burst: list[bool], evict_oldest: bool) -> None:
        for poisoned in burst:
            record = self._record(poisoned)
            accepted = self.writer.try_add(record, evict_oldest=evict_oldest)
            if not self.full:
                assert accepted is True
                self._accepted(record)
            elif evict_oldest:
                event("try_add evicts from a full queue")
                assert accepted is True
                self.evicted.append(self.waiting.pop(0))
                self._accepted(record)
            else:
                event("try_add refused by a full queue")
                assert accepted is False
                self.dropped += 1

    @precondition(lambda self: self.closed)
    @rule(
        poisoned=POISON,
        how=st.sampled_from(["add", "add_timeout_0", "try_add", "try_add_evict"]),
    )
    def add_after_close_is_refused(self, poisoned: bool, how: str) -> None:
        record = self._record(poisoned)
        if how == "add":
            with pytest.raises(WriterClosedError):
                self.writer.add(record)
        elif how == "add_timeout_0":
            with pytest.raises(WriterClosedError):
                self.writer.add(record, timeout=0)
        else:
            assert self.writer.try_add(record, evict_oldest=how == "try_add_evict") is False
        self.dropped += 1

    # ------------------------------------------------------------------ rules: the sink

    @precondition(lambda self: self.in_flight is not None)
    @rule()
    def sink_finishes_one_batch(self) -> None:
        sleeps_before = self.clock.sleeps
        self.sink.let_one_through()
        self._finished(self.in_flight)
        self.in_flight = None
        if len(self.waiting) >= self.capacity:
            self._let_worker_take_a_full_batch()
        else:
            # The worker counted the batch, then went back to sleep: it is quiescent.
            assert self.clock.wait_for_sleep(after=sleeps_before, timeout=WAIT)

    # ------------------------------------------------------------------ rules: flush, close

    @rule()
    def flush(self) -> None:
        self._open_gate()
        assert self.writer.flush(timeout=WAIT) is True
        self._deliver_everything()
        self.sink.shut()
        self.sink.forget_announcements()

    @rule()
    def close(self) -> None:
        self._open_gate()
        assert self.writer.close(timeout=WAIT) is True
        self._deliver_everything()
        self.closed = True
        self.sink.forget_announcements()

    @rule()
    def metrics_snapshot_matches_the_model(self) -> None:
        self.metrics_match_the_model()

    # ------------------------------------------------------------------ checked every step

    @invariant()
    def metrics_match_the_model(self) -> None:
        if self.writer is None:
            return
        metrics = self.writer.metrics
        in_flight = 0 if self.in_flight is None else len(self.in_flight)
        # Against the sink itself, not the writer's own sum (records_added is computed as
        # processed + failed + evicted + in_buffer, so that identity cannot fail).
        finished_by_sink = sum(map(len, self.sink.calls)) - in_flight
        assert finished_by_sink == metrics.records_processed + metrics.records_failed
        assert {
            "records_added": len(self.accepted),
            "records_dropped": self.dropped,
            "records_evicted": len(self.evicted),
            "records_processed": self.processed,
            "records_failed": self.failed,
            "records_in_buffer": len(self.waiting) + in_flight,
            "flush_count": len(self.batches) - (self.in_flight is not None),
            "flush_errors": len(self.failed_batches),
        } == {
            "records_added": metrics.records_added,
            "records_dropped": metrics.records_dropped,
            "records_evicted": metrics.records_evicted,
            "records_processed": metrics.records_processed,
            "records_failed": metrics.records_failed,
            "records_in_buffer": metrics.records_in_buffer,
            "flush_count": metrics.flush_count,
            "flush_errors": metrics.flush_errors,
        }

    @invariant()
    def sink_saw_the_predicted_batches(self) -> None:
        if self.writer is None:
            return
        assert self.batches == self.sink.calls
        assert self.failed_batches == [batch for _, batch in self.reported]
        assert all(isinstance(exc, PoisonedBatchError) for exc, _ in self.reported)

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        if self.writer is None:
            return
        self.sink.open()
        self.sink.let_one_through()  # in case a failed step left a batch at the gate
        assert self.writer.close(timeout=WAIT) is True
        delivered = [record for batch in self.sink.calls for record in batch]
        evicted = set(self.evicted)
        assert [record for record in self.accepted if record not in evicted] == delivered
        assert not evicted.intersection(delivered)
        assert all(1 <= len(batch) <= self.capacity for batch in self.sink.calls)
        metrics = self.writer.metrics
        assert metrics.records_in_buffer == 0
        assert metrics.records_added == len(self.accepted)
        assert metrics.records_processed + metrics.records_failed == len(delivered)


WriterMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestBatchWriterAgainstModel = WriterMachine.TestCase
