"""Async sinks: what a sink returns that is awaitable is awaited on the writer's own loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_writer_process import (
    assert_clean_exit,
    assert_exit_gave_up,
    deliveries,
    records_of,
    run_script,
)

from batchlog import BatchingHandler, BatchingProcessor, BatchWriter, FailedRecordsError

WAIT = 30.0


class AsyncStore:
    """An async sink: stores each batch after an await, noting loop and thread."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[str] = []
        self.closed_on: asyncio.AbstractEventLoop | None = None

    async def __call__(self, batch: list[Any]) -> None:
        await asyncio.sleep(0)
        self.loops.append(asyncio.get_running_loop())
        self.threads.append(threading.current_thread().name)
        self.batches.append(list(batch))

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.closed_on = asyncio.get_running_loop()


@pytest.fixture
def no_warnings() -> Iterator[None]:
    """Any warning (a coroutine never awaited, an unclosed loop) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
        gc.collect()


@pytest.mark.usefixtures("no_warnings")
def test_an_async_sink_is_awaited_on_one_loop_of_the_worker_thread() -> None:
    """Every batch is awaited, counted processed, on one loop, on the worker thread."""
    store = AsyncStore()
    writer: BatchWriter[int] = BatchWriter(10, 60.0, store, name="async")
    for i in range(25):
        writer.add(i)
    assert writer.close(timeout=WAIT)
    assert [list(range(10)), list(range(10, 20)), list(range(20, 25))] == store.batches
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (25, 0)
    assert len(set(map(id, store.loops))) == 1
    assert {"batchlog-async"} == set(store.threads)
    assert store.loops[0].is_closed(), "the writer's loop is closed with the writer"


@pytest.mark.usefixtures("no_warnings")
def test_an_async_def_function_sink_is_awaited() -> None:
    """A plain ``async def`` function works as a sink, with BatchWriter's own close."""
    got: list[int] = []

    async def sink(batch: list[int]) -> None:
        await asyncio.sleep(0)
        got.extend(batch)

    with BatchWriter(4, 60.0, sink) as writer:
        for i in range(10):
            writer.add(i)
    assert list(range(10)) == got
    assert writer.metrics.records_processed == 10


@pytest.mark.usefixtures("no_warnings")
def test_an_async_sink_that_raises_counts_its_batch_failed() -> None:
    """Raised after an await: failed, and on_error gets the batch, as for a sync sink."""
    failures: list[tuple[Exception, list[int]]] = []

    async def sink(batch: list[int]) -> None:
        await asyncio.sleep(0)
        if 5 in batch:
            raise ConnectionError("collector down")

    writer: BatchWriter[int] = BatchWriter(
        5, 60.0, sink, on_error=lambda exc, batch: failures.append((exc, list(batch)))
    )
    for i in range(15):
        writer.add(i)
    writer.close(timeout=WAIT)
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (10, 5)
    assert [batch for _, batch in failures] == [[5, 6, 7, 8, 9]]
    assert isinstance(failures[0][0], ConnectionError)


@pytest.mark.usefixtures("no_warnings")
def test_an_async_sink_can_name_the_records_that_failed() -> None:
    """FailedRecordsError from an async sink counts only the records it names."""

    async def sink(batch: list[int]) -> None:
        await asyncio.sleep(0)
        odd = [record for record in batch if record % 2]
        if odd:
            raise FailedRecordsError(odd, cause=ValueError("odd"))

    writer: BatchWriter[int] = BatchWriter(10, 60.0, sink, on_error=lambda exc, batch: None)
    for i in range(10):
        writer.add(i)
    writer.close(timeout=WAIT)
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (5, 5)


@pytest.mark.usefixtures("no_warnings")
def test_a_sink_returning_another_loops_future_counts_failed() -> None:
    """An awaitable bound to another loop cannot be awaited here: failed, reported."""
    failures: list[Exception] = []
    other = asyncio.new_event_loop()
    try:
        writer: BatchWriter[int] = BatchWriter(
            10, 60.0, lambda batch: other.create_future(), on_error=lambda e, b: failures.append(e)
        )
        writer.add(1)
        writer.close(timeout=WAIT)
    finally:
        other.close()
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (0, 1)
    assert isinstance(failures[0], RuntimeError)


@pytest.mark.usefixtures("no_warnings")
@pytest.mark.parametrize(
    "failure", [KeyboardInterrupt, ConnectionError], ids=["interrupted", "raised"]
)
def test_a_failed_async_batch_leaves_nothing_running(failure: type[BaseException]) -> None:
    """An async batch interrupted by Ctrl-C, or raising: failed, and the background task
    it started is cancelled.

    Left pending, the task would resume at the next batch and store the failed records
    after all.
    """
    stored: list[int] = []
    cancelled = threading.Event()

    async def store_later(batch: list[int]) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        stored.extend(batch)  # pragma: no cover -- must never run

    async def sink(batch: list[int]) -> None:
        if batch[0] == 0:
            asyncio.get_running_loop().create_task(store_later(batch))
            await asyncio.sleep(0)
            raise failure
        stored.extend(batch)

    writer: BatchWriter[int] = BatchWriter(3, 60.0, sink, on_error=lambda e, b: None)
    for i in range(6):
        writer.add(i)
    writer.close(timeout=WAIT)
    assert cancelled.wait(WAIT)
    assert stored == [3, 4, 5]
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (3, 3)


@pytest.mark.usefixtures("no_warnings")
@pytest.mark.parametrize("formatter", [None, logging.Formatter("%(levelname)s %(message)s")])
def test_a_handler_awaits_an_async_sink_and_its_aclose(formatter: Any) -> None:
    """Through BatchingHandler (formatted or not): delivered; aclose() awaited at close."""
    store = AsyncStore()
    handler = BatchingHandler(store, capacity=10, flush_interval=60.0)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"async-sink-{formatter is None}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(5):
            logger.warning("record %d", i)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (handler.metrics.records_processed, handler.metrics.records_failed) == (5, 0)
    assert [f"record {i}" for i in range(5)] == [r.getMessage() for r in store.batches[0]]
    if formatter is not None:
        assert store.batches[0][0].formatted == "WARNING record 0"
    assert store.closed_on is store.loops[0]


@pytest.mark.usefixtures("no_warnings")
def test_a_structlog_processor_awaits_an_async_sink() -> None:
    """BatchingProcessor with an async sink: every event delivered."""
    structlog = pytest.importorskip("structlog")
    store = AsyncStore()
    processor = BatchingProcessor(store, capacity=2, flush_interval=60.0)
    try:
        for i in range(3):
            with pytest.raises(structlog.DropEvent):
                processor(None, "info", {"event": f"e{i}"})
    finally:
        processor.close()
    assert [event["event"] for batch in store.batches for event in batch] == ["e0", "e1", "e2"]
    assert store.closed_on is not None


ASYNC_SINK = """
import asyncio

async def async_file_sink(batch):
    await asyncio.sleep(0)
    file_sink(batch)
"""


def test_an_async_sink_delivers_at_exit(tmp_path: Path) -> None:
    """An unclosed writer with an async sink delivers everything when the script ends."""
    result, _ = run_script(
        ASYNC_SINK
        + """
writer = BatchWriter(1000, 60.0, async_file_sink)
for i in range(300):
    writer.add(i)
""",
        tmp_path,
    )
    assert_clean_exit(result)
    assert list(range(300)) == records_of(tmp_path)


def test_a_hung_async_sink_does_not_hang_exit(tmp_path: Path) -> None:
    """An async sink that never finishes delays exit by its exit_timeout, then reports."""
    result, elapsed = run_script(
        """
import asyncio

async def hung_sink(batch):
    await asyncio.Event().wait()

writer = BatchWriter(10, 60.0, hung_sink, exit_timeout=1)
for i in range(30):
    writer.add(i)
""",
        tmp_path,
    )
    assert_exit_gave_up(result, elapsed, "BatchWriter-1", 30)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_awaits_its_async_sink_on_its_own_loop(tmp_path: Path) -> None:
    """After a fork, the child's batches run on a loop of its own; each side delivers its own."""
    result, _ = run_script(
        ASYNC_SINK
        + """
writer = BatchWriter(5, 60.0, async_file_sink)
for i in range(10):
    writer.add(["parent", i])
writer.flush(timeout=30)  # the parent's loop exists, and is idle, at the fork
pid = os.fork()
if pid == 0:
    for i in range(7):
        writer.add(["child", i])
    ok = writer.close(timeout=30)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
for i in range(10, 13):
    writer.add(["parent", i])
""",
        tmp_path,
    )
    assert_clean_exit(result)
    by_process = {
        pid: [record for record, _ in pairs] for pid, pairs in deliveries(tmp_path).items()
    }
    assert len(by_process) == 2
    child = next(records for records in by_process.values() if records[0][0] == "child")
    parent = next(records for records in by_process.values() if records[0][0] == "parent")
    assert ([["child", i] for i in range(7)], [["parent", i] for i in range(13)]) == (
        child,
        parent,
    )


@pytest.mark.usefixtures("no_warnings")
def test_a_generator_based_coroutine_is_awaited_too() -> None:
    """A ``@types.coroutine`` generator is awaitable without ``__await__``: awaited."""
    import types

    got: list[int] = []

    @types.coroutine
    def legacy_sink(batch: list[int]) -> Any:
        yield from asyncio.sleep(0).__await__()
        got.extend(batch)

    with BatchWriter(10, 60.0, legacy_sink) as writer:
        writer.add(1)
    assert got == [1]
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (1, 0)


def test_a_task_that_ignores_cancellation_leaves_no_report_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sink's background task that will not be cancelled: the writer still closes, and
    asyncio reports nothing ("Task was destroyed but it is pending!")."""
    release = threading.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue  # ignores cancellation

    async def sink(batch: list[int]) -> None:
        asyncio.get_running_loop().create_task(stubborn())

    writer: BatchWriter[int] = BatchWriter(10, 60.0, sink)
    writer.add(1)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        try:
            assert writer.close(timeout=WAIT)
            gc.collect()
        finally:
            release.set()
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (1, 0)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
