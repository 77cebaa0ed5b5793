"""Memory follows the records held, not the sizes allowed, nor how often callers knock.

Measured with tracemalloc; the bounds are generous (1 MiB) against what a leak or an
up-front reservation would cost (tens of MiB or more).
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import WAIT, BlockingSink

from batchlog import BatchWriter

MIB = 1 << 20


@pytest.fixture
def traced() -> Iterator[None]:
    """tracemalloc running for the test."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _full_writer_with_stuck_sink(make_writer: Any, sink: BlockingSink) -> BatchWriter[Any]:
    writer: BatchWriter[Any] = make_writer(sink, capacity=10, max_queue_size=100)
    for index in range(10):
        writer.add(index)
    assert sink.entered.wait(WAIT)
    for index in range(100):
        writer.add(index, timeout=0)
    return writer


@pytest.mark.usefixtures("traced")
def test_a_million_refused_try_adds_keep_no_memory(
    make_writer: Any, blocking_sink: BlockingSink
) -> None:
    """A stalled sink and 1,000,000 refusals: traced memory grows by less than 1 MiB."""
    writer = _full_writer_with_stuck_sink(make_writer, blocking_sink)
    record = "refused"
    before = tracemalloc.get_traced_memory()[0]
    try_add = writer.try_add
    accepted = sum(try_add(record) for _ in range(1_000_000))
    grown = tracemalloc.get_traced_memory()[0] - before
    assert accepted == 0
    assert writer.metrics.records_dropped == 1_000_000
    assert grown < MIB


@pytest.mark.usefixtures("traced")
def test_a_million_zero_timeout_flushes_on_a_stuck_sink_keep_no_memory(
    make_writer: Any, blocking_sink: BlockingSink
) -> None:
    """What flush_level does on a flood: 1,000,000 flush(timeout=0) share one request."""
    writer = _full_writer_with_stuck_sink(make_writer, blocking_sink)
    before = tracemalloc.get_traced_memory()[0]
    flush = writer.flush
    finished = sum(flush(timeout=0) for _ in range(1_000_000))
    grown = tracemalloc.get_traced_memory()[0] - before
    assert finished == 0
    assert grown < MIB
    blocking_sink.release()
    assert writer.flush(timeout=WAIT) is True


@pytest.mark.usefixtures("traced")
@pytest.mark.parametrize(
    ("capacity", "max_queue_size"), [(2_000_000, None), (10, 2**40), (2**40, 2**40)]
)
def test_a_huge_queue_reserves_nothing_up_front(
    capacity: int, max_queue_size: int | None, make_writer: Any
) -> None:
    """BatchWriter(2_000_000, ...) (20M default queue) or 2**40 slots: < 1 MiB allocated."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    writer = make_writer(
        lambda batch: None, capacity=capacity, flush_interval=1.0, max_queue_size=max_queue_size
    )
    peak = tracemalloc.get_traced_memory()[1]
    assert peak - before < MIB
    expected = 20_000_000 if max_queue_size is None else max_queue_size
    assert expected == writer.max_queue_size
    writer.add("works")
    assert writer.flush(timeout=WAIT) is True


@pytest.mark.parametrize(
    ("capacity", "max_queue_size"), [(2**40 + 1, None), (10, 2**40 + 1), (2**41, 2**41)]
)
def test_sizes_above_2_to_the_40_are_refused_naming_the_value(
    capacity: int, max_queue_size: int | None
) -> None:
    """ValueError, and the message shows the value that was too big."""
    too_big = capacity if capacity > 2**40 else max_queue_size
    with pytest.raises(ValueError, match=str(too_big)):
        BatchWriter(capacity, 1.0, lambda batch: None, max_queue_size=max_queue_size)


@pytest.mark.usefixtures("traced")
def test_after_a_burst_is_delivered_the_slots_go_back_to_the_source(make_writer: Any) -> None:
    """100,000 records through and out: memory is back to small, <= 4096 free slots kept."""
    writer: BatchWriter[Any] = make_writer(
        lambda batch: None, capacity=1_000, max_queue_size=200_000
    )
    record = "burst"
    before = tracemalloc.get_traced_memory()[0]
    add = writer.add
    for _ in range(100_000):
        add(record)
    assert writer.flush(timeout=WAIT) is True
    assert writer.metrics.records_processed == 100_000
    grown = tracemalloc.get_traced_memory()[0] - before
    assert len(writer._intake._slots) <= 4096
    assert grown < MIB


def test_a_chunk_made_after_the_worker_gave_slots_back_keeps_the_deque_bounded(
    make_writer: Any,
) -> None:
    """An adder that found no free slot, then lost the race to the worker's give-back,
    tops the deque up to the bound instead of stacking a whole chunk on top of it.

    The sink is held through the burst, so every slot of it is made by an adder before
    the worker gives any back (a worker running alongside, as on a free-threaded build,
    would hand slots back for reuse and fewer chunks would be made).
    """
    burst_done = threading.Event()
    writer: BatchWriter[Any] = make_writer(
        lambda batch: burst_done.wait(WAIT), capacity=1_000, max_queue_size=200_000
    )
    try:
        for _ in range(10_000):
            writer.add("burst")
    finally:
        burst_done.set()
    assert writer.flush(timeout=WAIT) is True
    intake = writer._intake
    assert len(intake._slots) == 4096  # given back, capped
    assert intake._make_slot() is True  # the late adder: it takes a slot all the same
    assert len(intake._slots) == 4095
    writer.add("after")
    assert writer.flush(timeout=WAIT) is True
    assert writer.metrics.records_processed == 10_001
