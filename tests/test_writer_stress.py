"""Many producer threads against one BatchWriter with a sometimes-slow sink.

Eight producers start together at a Barrier; a ninth thread takes metrics snapshots the whole
time and checks each one. After close() every record is accounted for.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable

import pytest

from batchlog import BatchWriter, Metrics

pytestmark = pytest.mark.slow

PRODUCERS = 8
RECORDS_PER_PRODUCER = 20_000
CAPACITY = 256
MAX_QUEUE_SIZE = 2048
WAIT = 60.0  # real seconds; generous so a busy machine passes and a hang still fails

Record = tuple[int, int]  # (producer, sequence number)


class QueueFullGate:
    """Holds a slow batch until the watcher has seen the queue full, or the producers ended.

    So a slow batch really makes the producers meet a full queue (blocking or refused),
    without the test sleeping for some guessed time.
    """

    def __init__(self) -> None:
        self._full = threading.Event()
        self._ended = threading.Event()

    def saw(self, metrics: Metrics) -> None:
        if metrics.records_in_buffer >= MAX_QUEUE_SIZE:
            self._full.set()

    def end(self) -> None:
        self._ended.set()
        self._full.set()

    def wait(self) -> None:
        self._full.wait(WAIT)
        if not self._ended.is_set():
            self._full.clear()


class SometimesSlowSink:
    """Keeps every batch; every 50th batch is slow: it holds until the queue has filled."""

    def __init__(self, first_batch_waits_for: threading.Event | None = None) -> None:
        self.batches: list[list[Record]] = []
        self.received = 0
        self._first_batch_waits_for = first_batch_waits_for
        self.gate = QueueFullGate()

    def __call__(self, batch: list[Record]) -> None:
        if not self.batches and self._first_batch_waits_for is not None:
            self._first_batch_waits_for.wait(WAIT)
        self.batches.append(batch)
        self.received += len(batch)  # only the worker thread writes it
        if len(self.batches) % 50 == 0:
            self.gate.wait()


class MetricsWatcher:
    """Takes snapshots until stopped; checks the invariant and that counters never go back."""

    def __init__(
        self,
        writer: BatchWriter[Record],
        gate: QueueFullGate | None = None,
        received: Callable[[], int] | None = None,
    ) -> None:
        self.writer = writer
        self.gate = gate
        # How many records the sink has received so far (read after each snapshot).
        self.received = received if received is not None else lambda: 1 << 62
        self.stop = threading.Event()
        self.evictions_seen = threading.Event()
        self.snapshots = 0
        self.problems: list[str] = []
        self.thread = threading.Thread(target=self._run, name="metrics-watcher")

    def _run(self) -> None:
        try:
            self._watch()
        finally:
            if self.gate is not None:
                self.gate.end()  # no slow batch waits once the watching is over

    def _watch(self) -> None:
        previous = self.writer.metrics
        while not self.stop.is_set():
            current = self.writer.metrics
            self.snapshots += 1
            self._check(previous, current)
            if current.records_evicted:
                self.evictions_seen.set()
            if self.gate is not None:
                self.gate.saw(current)
            previous = current
            if len(self.problems) > 10:
                return

    def _check(self, previous: Metrics, current: Metrics) -> None:
        # Against counts the writer does not compute (records_added is the sum of
        # processed, failed, evicted and in_buffer, so comparing those is no check): the
        # sink counts a batch before the worker does, and no more are accepted than the
        # producers make.
        received = self.received()
        if current.records_processed + current.records_failed > received:
            self.problems.append(f"more counted than the sink received ({received}): {current}")
        if current.records_added > PRODUCERS * RECORDS_PER_PRODUCER:
            self.problems.append(f"more accepted than the producers made: {current}")
        for field in (
            "records_added",
            "records_processed",
            "records_evicted",
            "records_dropped",
            "flush_count",
        ):
            if getattr(current, field) < getattr(previous, field):
                self.problems.append(f"{field} went back: {previous} -> {current}")
        if current.records_in_buffer > MAX_QUEUE_SIZE + CAPACITY:
            self.problems.append(f"more held than the queue allows: {current}")


def add_blocking(writer: BatchWriter[Record], producer: int) -> tuple[int, int]:
    for seq in range(RECORDS_PER_PRODUCER):
        writer.add((producer, seq))
    return RECORDS_PER_PRODUCER, 0


def try_add_until_accepted(writer: BatchWriter[Record], producer: int) -> tuple[int, int]:
    refused = 0
    for seq in range(RECORDS_PER_PRODUCER):
        while not writer.try_add((producer, seq)):
            refused += 1
    return RECORDS_PER_PRODUCER, refused


def try_add_evicting(writer: BatchWriter[Record], producer: int) -> tuple[int, int]:
    refused = 0
    for seq in range(RECORDS_PER_PRODUCER):
        if not writer.try_add((producer, seq), evict_oldest=True):
            refused += 1
    return RECORDS_PER_PRODUCER - refused, refused


Producer = Callable[[BatchWriter[Record], int], tuple[int, int]]


def run_producers(
    writer: BatchWriter[Record], producers: list[Producer], watcher: MetricsWatcher
) -> tuple[int, int]:
    """Run the producers together, watcher alongside; return (accepted, refused) totals."""
    start = threading.Barrier(len(producers))
    results: list[tuple[int, int] | BaseException] = [(0, 0)] * len(producers)

    def produce(index: int) -> None:
        start.wait(WAIT)
        try:
            results[index] = producers[index](writer, index)
        except BaseException as exc:  # noqa: BLE001 -- reported by the test below
            results[index] = exc

    threads = [
        threading.Thread(target=produce, args=(index,), name=f"producer-{index}")
        for index in range(len(producers))
    ]
    watcher.thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    watcher.stop.set()
    watcher.thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads), "a producer hung"
    assert not watcher.thread.is_alive(), "the metrics watcher hung"
    failures = [result for result in results if isinstance(result, BaseException)]
    assert failures == []
    accepted = sum(result[0] for result in results if isinstance(result, tuple))
    refused = sum(result[1] for result in results if isinstance(result, tuple))
    return accepted, refused


def by_producer(batches: list[list[Record]]) -> dict[int, list[int]]:
    sequences: dict[int, list[int]] = defaultdict(list)
    for batch in batches:
        for producer, seq in batch:
            sequences[producer].append(seq)
    return sequences


def test_every_record_from_many_threads_is_delivered_once_in_order() -> None:
    """8 threads of add/try_add-with-retry: exactly-once, per-producer order, bounded batches."""
    sink = SometimesSlowSink()
    writer: BatchWriter[Record] = BatchWriter(
        CAPACITY, 0.01, sink, max_queue_size=MAX_QUEUE_SIZE, name="stress"
    )
    watcher = MetricsWatcher(writer, sink.gate, lambda: sink.received)
    producers: list[Producer] = [add_blocking] * 4 + [try_add_until_accepted] * 4
    try:
        accepted, refused = run_producers(writer, producers, watcher)
    finally:
        assert writer.close(timeout=WAIT) is True

    total = PRODUCERS * RECORDS_PER_PRODUCER
    assert total == accepted
    assert watcher.problems == []
    assert watcher.snapshots > 0
    assert all(1 <= len(batch) <= CAPACITY for batch in sink.batches)
    delivered = [record for batch in sink.batches for record in batch]
    assert total == len(delivered)
    assert total == len(set(delivered))
    sequences = by_producer(sink.batches)
    for producer in range(PRODUCERS):
        assert list(range(RECORDS_PER_PRODUCER)) == sequences[producer]
    metrics = writer.metrics
    assert {
        "records_added": total,
        "records_processed": total,
        "records_failed": 0,
        "records_evicted": 0,
        "records_in_buffer": 0,
        "records_dropped": refused,
        "flush_count": len(sink.batches),
        "flush_errors": 0,
    } == {
        "records_added": metrics.records_added,
        "records_processed": metrics.records_processed,
        "records_failed": metrics.records_failed,
        "records_evicted": metrics.records_evicted,
        "records_in_buffer": metrics.records_in_buffer,
        "records_dropped": metrics.records_dropped,
        "flush_count": metrics.flush_count,
        "flush_errors": metrics.flush_errors,
    }


def test_evicting_producers_lose_only_evicted_records_and_keep_order() -> None:
    """With evict_oldest, delivered + evicted == accepted and each producer's order holds."""
    evictions_seen = threading.Event()
    # The first batch waits until the watcher has seen an eviction, so evictions surely happen.
    sink = SometimesSlowSink(first_batch_waits_for=evictions_seen)
    writer: BatchWriter[Record] = BatchWriter(
        CAPACITY, 0.01, sink, max_queue_size=MAX_QUEUE_SIZE, name="stress-evict"
    )
    watcher = MetricsWatcher(writer, sink.gate, lambda: sink.received)
    watcher.evictions_seen = evictions_seen
    producers: list[Producer] = [add_blocking] * 2 + [try_add_evicting] * 6
    try:
        accepted, refused = run_producers(writer, producers, watcher)
    finally:
        evictions_seen.set()
        assert writer.close(timeout=WAIT) is True

    assert watcher.problems == []
    assert all(1 <= len(batch) <= CAPACITY for batch in sink.batches)
    delivered = [record for batch in sink.batches for record in batch]
    assert len(delivered) == len(set(delivered))
    metrics = writer.metrics
    assert metrics.records_evicted > 0
    assert accepted == metrics.records_added
    assert refused == metrics.records_dropped
    assert accepted == len(delivered) + metrics.records_evicted
    assert len(delivered) == metrics.records_processed
    assert metrics.records_in_buffer == 0
    sequences = by_producer(sink.batches)
    for producer, seqs in sequences.items():
        assert seqs == sorted(seqs), f"producer {producer} delivered out of order"
        assert all(0 <= seq < RECORDS_PER_PRODUCER for seq in seqs)


def test_try_add_evicting_never_refuses_on_an_open_writer() -> None:
    """A full queue always holds a waiting record, so try_add(evict_oldest=True) accepts."""
    delivered: list[Record] = []
    writer: BatchWriter[Record] = BatchWriter(1, 3600.0, delivered.extend, max_queue_size=1)
    watcher = MetricsWatcher(writer, received=delivered.__len__)
    # capacity == max_queue_size == 1: the worker empties the queue with every batch it takes,
    # racing the evicting producers for the one waiting record.
    try:
        accepted, refused = run_producers(writer, [try_add_evicting] * 4, watcher)
    finally:
        assert writer.close(timeout=WAIT) is True
    assert watcher.problems == []
    assert (accepted, refused) == (4 * RECORDS_PER_PRODUCER, 0)
    metrics = writer.metrics
    assert metrics.records_dropped == 0
    assert accepted == metrics.records_processed + metrics.records_evicted
    # Against the sink: every accepted record arrived once, or was evicted.
    assert len(delivered) == len(set(delivered)) == metrics.records_processed
    assert accepted == len(delivered) + metrics.records_evicted
