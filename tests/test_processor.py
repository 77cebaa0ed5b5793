"""Behaviour of ``BatchingProcessor``: the last processor of a structlog chain."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from conftest import WAIT

from batchlog import BatchingProcessor, BatchWriter, OverflowPolicy


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Start and end every test with structlog's defaults and no context variables."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def output() -> io.StringIO:
    """Where the structlog PrintLogger writes (empty unless something was rendered)."""
    return io.StringIO()


def wrap(output: io.StringIO, *processors: Any) -> Any:
    """A structlog bound logger printing to ``output`` through ``processors``."""
    return structlog.wrap_logger(
        structlog.PrintLogger(file=output),
        processors=list(processors),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )


def events(records: list[dict[str, Any]]) -> list[str]:
    """The ``event`` of each delivered event dict."""
    return [record["event"] for record in records]


def fill_blocked_processor(log: Any, blocking_sink: Any) -> None:
    """Through a (capacity 1, max_queue_size 1) processor: one event in the blocked sink,
    one waiting behind it, so the queue is full."""
    log.info("in-flight")
    assert blocking_sink.entered.wait(WAIT)
    log.info("waiting")


class Payload:
    """Something only a frame local refers to."""


def raise_holding_a_local(refs: list[weakref.ref[Payload]]) -> None:
    """Raise while a local is the only reference to a ``Payload``."""
    payload = Payload()
    refs.append(weakref.ref(payload))
    raise ValueError("boom")


# --------------------------------------------------------------------------- the chain


def test_last_processor_hands_the_event_to_the_sink_and_drops_it(make_processor, sink, output):
    """The sink gets the event dict and nothing is printed: the event was dropped."""
    processor = make_processor(sink)
    wrap(output, processor).info("hello", user="ada")
    processor.flush()
    assert sink.records == [{"event": "hello", "user": "ada"}]
    assert output.getvalue() == ""


def test_call_raises_drop_event(make_processor, sink):
    """Called directly, the processor raises structlog.DropEvent."""
    processor = make_processor(sink)
    with pytest.raises(structlog.DropEvent):
        processor(None, "info", {"event": "hello"})


def test_sink_gets_a_copy_unaffected_by_later_changes(make_processor, sink, output):
    """Changing the chain's event dict after the call does not change what the sink got."""
    seen: list[dict[str, Any]] = []

    def keep_event_dict(logger, method_name, event_dict):
        seen.append(event_dict)
        return event_dict

    processor = make_processor(sink)
    wrap(output, keep_event_dict, processor).info("hello", user="ada")
    seen[0]["user"] = "mallory"
    seen[0]["added"] = True
    processor.flush()
    assert sink.records == [{"event": "hello", "user": "ada"}]


def test_copy_is_shallow(make_processor, sink):
    """The sink's dict is a new dict whose values are the logged objects themselves."""
    processor = make_processor(sink)
    tags = ["a"]
    event_dict = {"event": "hello", "tags": tags}
    with pytest.raises(structlog.DropEvent):
        processor(None, "info", event_dict)
    processor.flush()
    (record,) = sink.records
    assert record is not event_dict
    assert record["tags"] is tags


def test_pass_through_returns_the_event_dict_for_a_renderer(make_processor, sink, output):
    """With pass_through=True a JSONRenderer after it prints the event; the sink has it too."""
    processor = make_processor(sink, pass_through=True)
    wrap(output, processor, structlog.processors.JSONRenderer()).info("hello", user="ada")
    processor.flush()
    assert json.loads(output.getvalue()) == {"event": "hello", "user": "ada"}
    assert sink.records == [{"event": "hello", "user": "ada"}]


def test_pass_through_returns_the_same_dict(make_processor, sink):
    """With pass_through=True the call returns the very dict it was given."""
    processor = make_processor(sink, pass_through=True)
    event_dict = {"event": "hello"}
    assert processor(None, "info", event_dict) is event_dict


def test_bound_context_reaches_the_sink(make_processor, sink, output):
    """Values bound with bind() are in the delivered event."""
    processor = make_processor(sink)
    structlog.configure(
        processors=[processor],
        logger_factory=structlog.PrintLoggerFactory(file=output),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    log = structlog.get_logger().bind(request_id=7)
    log.bind(user="ada").info("hello")
    log.info("bye")
    processor.flush()
    assert sink.records == [
        {"event": "hello", "request_id": 7, "user": "ada"},
        {"event": "bye", "request_id": 7},
    ]
    assert output.getvalue() == ""


def test_contextvars_are_merged_into_the_event(make_processor, sink, output):
    """merge_contextvars before the processor puts bind_contextvars values in the event."""
    processor = make_processor(sink)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, processor],
        logger_factory=structlog.PrintLoggerFactory(file=output),
    )
    structlog.contextvars.bind_contextvars(request_id="r-1")
    structlog.get_logger().info("hello")
    processor.flush()
    assert sink.records == [{"request_id": "r-1", "event": "hello"}]


def test_exc_info_is_rendered_to_exception_text(make_processor, sink, output):
    """exc_info=True becomes an "exception" string holding the traceback."""
    processor = make_processor(sink)
    log = wrap(output, processor)
    try:
        raise_holding_a_local([])
    except ValueError:
        log.error("failed", exc_info=True)
    processor.flush()
    (record,) = sink.records
    assert "exc_info" not in record
    assert "Traceback (most recent call last)" in record["exception"]
    assert "ValueError: boom" in record["exception"]


def test_traceback_frames_are_not_kept_alive_until_the_flush(make_processor, sink, output):
    """A waiting event holds no traceback: a frame's locals are freed before the flush."""
    processor = make_processor(sink)
    log = wrap(output, processor)
    refs: list[weakref.ref[Payload]] = []
    try:
        raise_holding_a_local(refs)
    except ValueError:
        log.exception("failed")
    gc.collect()
    assert refs[0]() is None
    processor.flush()
    assert "ValueError: boom" in sink.records[0]["exception"]


# --------------------------------------------------------------------------- asyncio


def test_async_log_method_delivers_the_event(make_processor, sink, output):
    """await log.ainfo(...) hands the event to the sink and prints nothing."""
    processor = make_processor(sink)
    log = wrap(output, processor)
    asyncio.run(log.ainfo("hello", user="ada"))
    processor.flush()
    assert sink.records == [{"event": "hello", "user": "ada"}]
    assert output.getvalue() == ""


def test_async_log_method_waiting_for_room_does_not_block_the_event_loop(
    make_processor, blocking_sink, output
):
    """While ainfo waits for room in a full queue ("block"), other tasks keep running."""
    in_chain = threading.Event()
    chain_threads: list[threading.Thread] = []

    def note_thread(logger, method_name, event_dict):
        chain_threads.append(threading.current_thread())
        if event_dict["event"] == "third":
            in_chain.set()
        return event_dict

    processor = make_processor(blocking_sink, capacity=1, max_queue_size=1, overflow="block")
    log = wrap(output, note_thread, processor)
    fill_blocked_processor(log, blocking_sink)

    async def main() -> tuple[threading.Thread, bool]:
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(log.ainfo("third"))
        assert await loop.run_in_executor(None, in_chain.wait, WAIT)
        progressed = asyncio.Event()

        async def other_task() -> None:
            progressed.set()

        other = asyncio.ensure_future(other_task())
        await asyncio.wait_for(progressed.wait(), WAIT)
        still_waiting = not waiting.done()
        blocking_sink.release()
        await asyncio.wait_for(asyncio.gather(waiting, other), WAIT)
        return threading.current_thread(), still_waiting

    loop_thread, still_waiting = asyncio.run(main())
    processor.flush()
    assert still_waiting
    assert chain_threads[-1] is not loop_thread
    assert events(blocking_sink.records) == ["in-flight", "waiting", "third"]
    assert processor.metrics.records_dropped == 0


# --------------------------------------------------------------------------- overflow


def test_drop_newest_counts_the_refused_event(make_processor, blocking_sink, output):
    """With "drop_newest" an event arriving at a full queue is dropped, and still not printed."""
    processor = make_processor(blocking_sink, capacity=1, max_queue_size=1, overflow="drop_newest")
    log = wrap(output, processor)
    fill_blocked_processor(log, blocking_sink)
    log.info("dropped")
    blocking_sink.release()
    processor.flush()
    assert events(blocking_sink.records) == ["in-flight", "waiting"]
    assert processor.metrics.records_dropped == 1
    assert output.getvalue() == ""


def test_drop_oldest_evicts_the_oldest_waiting_event(make_processor, blocking_sink, output):
    """With "drop_oldest" the oldest waiting event makes way for the new one."""
    processor = make_processor(blocking_sink, capacity=1, max_queue_size=1, overflow="drop_oldest")
    log = wrap(output, processor)
    fill_blocked_processor(log, blocking_sink)
    log.info("newest")
    blocking_sink.release()
    processor.flush()
    assert events(blocking_sink.records) == ["in-flight", "newest"]
    assert processor.metrics.records_evicted == 1


def test_block_timeout_drops_the_event_after_waiting(make_processor, blocking_sink, output):
    """With "block" and block_timeout, an event that finds no room in time is dropped."""
    processor = make_processor(blocking_sink, capacity=1, max_queue_size=1, block_timeout=0.01)
    log = wrap(output, processor)
    fill_blocked_processor(log, blocking_sink)
    log.info("dropped")
    assert processor.metrics.records_dropped == 1
    assert output.getvalue() == ""


@pytest.mark.parametrize("overflow", ["DROP_NEWEST", "Drop_Newest", OverflowPolicy.DROP_NEWEST])
def test_overflow_is_case_insensitive(make_processor, blocking_sink, output, overflow):
    """overflow may be a policy or its string value in any case."""
    processor = make_processor(blocking_sink, capacity=1, max_queue_size=1, overflow=overflow)
    log = wrap(output, processor)
    fill_blocked_processor(log, blocking_sink)
    log.info("dropped")
    assert processor.metrics.records_dropped == 1


@pytest.mark.parametrize("overflow", ["newest", "", None])
def test_invalid_overflow_raises_value_error_naming_the_valid_values(sink, overflow):
    """An unknown overflow raises ValueError listing block, drop_newest and drop_oldest."""
    with pytest.raises(ValueError, match="overflow") as info:
        BatchingProcessor(sink, overflow=overflow)
    assert all(value in str(info.value) for value in ("block", "drop_newest", "drop_oldest"))


def test_rejected_overflow_leaves_no_worker_thread(sink):
    """A processor rejected for its overflow value starts no writer thread."""
    with pytest.raises(ValueError, match="overflow"):
        BatchingProcessor(sink, overflow="sideways", name="rejected-processor-overflow")
    names = {thread.name for thread in threading.enumerate()}
    assert "batchlog-rejected-processor-overflow" not in names


# --------------------------------------------------------------------------- flush, close, metrics


def test_flush_is_a_barrier_returning_true(make_processor, sink, output):
    """flush() returns True once the sink has every event logged before it."""
    processor = make_processor(sink)
    log = wrap(output, processor)
    for number in range(5):
        log.info("event", number=number)
    assert processor.flush() is True
    assert [record["number"] for record in sink.records] == list(range(5))


def test_close_delivers_everything(make_processor, sink, output):
    """close() hands every event to the sink and returns True."""
    processor = make_processor(sink)
    log = wrap(output, processor)
    for number in range(250):
        log.info("event", number=number)
    assert processor.close() is True
    assert [record["number"] for record in sink.records] == list(range(250))


def test_close_is_idempotent_and_closes_the_sink_once(make_processor, output):
    """A second close() returns True without delivering or closing the sink again."""
    calls: list[str] = []

    class ClosingSink:
        def __call__(self, batch):
            calls.append("batch")

        def close(self):
            calls.append("close")

    processor = make_processor(ClosingSink())
    wrap(output, processor).info("last")
    assert (processor.close(), processor.close()) == (True, True)
    assert calls == ["batch", "close"]


def test_event_after_close_is_dropped_and_counted(make_processor, sink, output):
    """An event logged after close() is counted as dropped; nothing is raised or printed."""
    processor = make_processor(sink)
    processor.close()
    wrap(output, processor).info("too late")
    assert processor.metrics.records_dropped == 1
    assert output.getvalue() == ""


def test_metrics_is_the_writers_snapshot(make_processor, sink, output):
    """processor.metrics reports what its writer counted."""
    processor = make_processor(sink)
    log = wrap(output, processor)
    for number in range(3):
        log.info("event", number=number)
    processor.flush()
    metrics = processor.metrics
    assert metrics.as_dict() == processor.writer.metrics.as_dict()
    assert (metrics.records_added, metrics.records_processed) == (3, 3)


def test_writer_is_a_batch_writer_with_the_processors_settings(make_processor, sink):
    """processor.writer is the BatchWriter built from the processor's arguments."""
    writer = make_processor(sink, capacity=7, flush_interval=2.5, max_queue_size=70).writer
    assert isinstance(writer, BatchWriter)
    assert (writer.capacity, writer.flush_interval, writer.max_queue_size) == (7, 2.5, 70)


def test_sink_logging_through_the_processor_is_dropped_and_counted(make_processor, output):
    """Events a sink logs through its own processor are dropped and counted, so the sink
    neither deadlocks nor feeds itself."""
    received: list[str] = []

    def logging_sink(batch):
        received.extend(events(batch))
        log.warning("wrote records", count=len(batch))

    processor = make_processor(logging_sink, capacity=2)
    log = wrap(output, processor)
    for number in range(4):
        log.info(f"event {number}")
    processor.flush()
    assert received == [f"event {number}" for number in range(4)]
    assert processor.metrics.flush_count == processor.metrics.records_dropped == 2
    assert output.getvalue() == ""


# --------------------------------------------------------------------------- collection


def _process_through_a_dropped_processor(sink) -> threading.Thread:
    """Make a processor, hand it one event, drop it; return its writer's thread."""
    processor = BatchingProcessor(sink, 100, 60.0, name=f"dropped-{id(sink)}")
    with pytest.raises(structlog.DropEvent):
        processor(None, "info", {"event": "last words"})
    (thread,) = [t for t in threading.enumerate() if t.name == f"batchlog-{processor.writer.name}"]
    return thread


def test_unreferenced_processor_is_collected_and_its_thread_ends(sink):
    """A processor nobody references is collected: its events are delivered, its thread ends."""
    thread = _process_through_a_dropped_processor(sink)
    gc.collect()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert sink.records == [{"event": "last words"}]


def test_flush_level_flushes_at_an_error_without_waiting() -> None:
    """flush_level="error": an error event wakes the worker; info events wait their turn."""
    delivered = threading.Event()
    batches: list[list[Any]] = []

    def sink(batch: list[Any]) -> None:
        batches.append(list(batch))
        delivered.set()

    processor = BatchingProcessor(sink, capacity=100, flush_interval=60.0, flush_level="error")
    try:
        for method in ("info", "warning"):
            with pytest.raises(structlog.DropEvent):
                processor(None, method, {"event": method})
        assert processor.writer.metrics.records_processed == 0  # nothing asked for a flush
        with pytest.raises(structlog.DropEvent):
            processor(None, "error", {"event": "error"})
        assert delivered.wait(30.0)
    finally:
        processor.close()
    assert [[e["event"] for e in b] for b in batches[:1]] == [["info", "warning", "error"]]


@pytest.mark.parametrize(
    ("flush_level", "method", "event", "flushes"),
    [
        ("ERROR", "exception", {}, True),
        (logging.WARNING, "warn", {}, True),
        ("critical", "error", {}, False),
        ("warning", "log", {"level": "warning"}, True),
        ("warning", "log", {"level": "info"}, False),
    ],
)
def test_flush_level_reads_the_method_or_the_level_key(
    flush_level: Any,
    method: str,
    event: dict[str, Any],
    flushes: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Level names of structlog and logging, numbers; the method first, then ``level``."""
    asked = spy_on(monkeypatch, "flush")
    processor = BatchingProcessor(
        lambda batch: None, capacity=100, flush_interval=60.0, flush_level=flush_level
    )
    try:
        with pytest.raises(structlog.DropEvent):
            processor(None, method, {"event": "e", **event})
    finally:
        processor.close()
    assert ([0] if flushes else []) == asked


def spy_on(monkeypatch: pytest.MonkeyPatch, name: str) -> list[float | None]:
    """Record the timeout of every ``BatchWriter.<name>`` call (the real one still runs)."""
    from batchlog import BatchWriter

    seen: list[float | None] = []
    real = getattr(BatchWriter, name)

    def spy(self: Any, timeout: float | None = None) -> bool:
        seen.append(timeout)
        return bool(real(self, timeout))

    monkeypatch.setattr(BatchWriter, name, spy)
    return seen


def test_a_bad_flush_level_is_refused_naming_it() -> None:
    """An unknown level name fails at construction, naming flush_level."""
    with pytest.raises(ValueError, match="flush_level"):
        BatchingProcessor(lambda batch: None, flush_level="loud")


def test_timeout_none_waits_without_limit_and_omitted_means_flush_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As for BatchWriter: None is no limit; no timeout given is flush_timeout."""
    processor = BatchingProcessor(lambda batch: None, flush_timeout=7.0)
    flushes = spy_on(monkeypatch, "flush")
    closes = spy_on(monkeypatch, "close")
    assert processor.flush()
    assert processor.flush(None)
    assert processor.flush(3.0)
    assert processor.close(None)
    assert (flushes, closes) == ([7.0, None, 3.0], [None])
