"""A sink that returns an awaitable (an ``async def`` sink) delivered nothing: failed."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from typing import Any

import pytest

from batchlog import BatchingHandler, BatchWriter

WAIT = 30.0


async def async_sink(batch: list[Any]) -> None:
    """Stores nothing unless awaited, which batchlog does not do."""
    raise AssertionError("never run")  # pragma: no cover


def test_an_async_sink_counts_its_batch_failed_never_processed() -> None:
    failures: list[tuple[Exception, list[Any]]] = []
    writer: BatchWriter[int] = BatchWriter(
        10, 60.0, async_sink, on_error=lambda exc, batch: failures.append((exc, list(batch)))
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail
            for i in range(25):
                writer.add(i)
            writer.flush(timeout=WAIT)
            gc.collect()
    finally:
        writer.close(timeout=WAIT)
    metrics = writer.metrics
    assert (metrics.records_processed, metrics.records_failed) == (0, 25)
    assert [batch for _, batch in failures] == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]
    error = failures[0][0]
    assert isinstance(error, TypeError)
    assert "coroutine" in str(error)
    assert "not delivered" in str(error)


def test_a_sink_returning_a_future_is_failed_too() -> None:
    loop = asyncio.new_event_loop()
    try:
        writer: BatchWriter[int] = BatchWriter(10, 60.0, lambda batch: loop.create_future())
        writer.add(1)
        writer.close(timeout=WAIT)
    finally:
        loop.close()
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (0, 1)


@pytest.mark.parametrize("formatter", [None, logging.Formatter("%(message)s")])
def test_a_handler_with_an_async_sink_counts_its_records_failed(formatter: Any) -> None:
    handler = BatchingHandler(async_sink, capacity=10, flush_interval=60.0)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"async-sink-{formatter is None}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for i in range(5):
                logger.warning("record %d", i)
            handler.flush()
            gc.collect()
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (handler.metrics.records_processed, handler.metrics.records_failed) == (0, 5)


def test_a_sink_returning_a_plain_value_is_processed() -> None:
    writer: BatchWriter[int] = BatchWriter(10, 60.0, len)
    writer.add(1)
    writer.close(timeout=WAIT)
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (1, 0)
