"""An asyncio "web app": 200 concurrent tasks handle fake requests and log two ways.

Run it with ``python examples/asyncio_app.py``. Every request logs through structlog with
``await log.ainfo(...)`` (the chain, ending in a BatchingProcessor, runs in a worker thread)
and through standard ``logging`` into a BatchingHandler with ``overflow="drop_oldest"``,
which never waits, so the event loop is never blocked by a slow sink. Both are closed
without blocking the loop, their metrics are printed, and the script exits with status 1
unless every record of every request arrived.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from typing import Any

import structlog

from batchlog import BatchingHandler, BatchingProcessor, Metrics

TASKS = 200
REQUESTS_PER_TASK = 5
TOTAL = TASKS * REQUESTS_PER_TASK


class CollectingSink:
    """A slow-ish sink (one 'round trip' per batch) that keeps the request ids it saw."""

    def __init__(self, name: str, key: Any) -> None:
        self.name = name
        self.key = key  # how to get the request id out of a record
        self.seen: list[str] = []
        self.batches = 0
        self.lock = threading.Lock()

    def __call__(self, batch: list[Any]) -> None:
        time.sleep(0.002)  # runs on the worker thread: the event loop does not feel it
        with self.lock:
            self.seen.extend(self.key(record) for record in batch)
            self.batches += 1


events_sink = CollectingSink("structlog", lambda event: event["request_id"])
records_sink = CollectingSink("logging", lambda record: record.request_id)

processor = BatchingProcessor(events_sink, capacity=200, flush_interval=0.05)
structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        processor,
    ],
    wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    cache_logger_on_first_use=True,
)
handler = BatchingHandler(
    records_sink, capacity=200, flush_interval=0.05, overflow="drop_oldest", max_queue_size=5000
)
stdlib_log = logging.getLogger("example.app")
stdlib_log.addHandler(handler)
stdlib_log.setLevel(logging.INFO)
stdlib_log.propagate = False
log = structlog.get_logger()


async def handle_request(task: int, number: int) -> None:
    request_id = f"{task}-{number}"
    # contextvars are per task, so concurrent requests never see each other's id.
    structlog.contextvars.bind_contextvars(request_id=request_id, path=f"/items/{number}")
    await asyncio.sleep((task + 3 * number) % 10 / 1000)  # a "database query", 0-9 ms
    await log.ainfo("request handled", status=200)
    stdlib_log.info("GET /items/%d 200", number, extra={"request_id": request_id})


async def client(task: int) -> None:
    for number in range(REQUESTS_PER_TASK):
        await handle_request(task, number)


def print_metrics(name: str, metrics: Metrics) -> None:
    print(f"{name} metrics:")
    for field, value in metrics.as_dict().items():
        shown = f"{value:.6f} s" if isinstance(value, float) else value
        print(f"    {field:<20} {shown}")


async def main() -> int:
    started = time.perf_counter()
    await asyncio.gather(*(client(task) for task in range(TASKS)))
    elapsed = time.perf_counter() - started
    # close() waits for the sink: run it off the loop so other tasks would keep running.
    await asyncio.gather(asyncio.to_thread(processor.close), asyncio.to_thread(handler.close))
    stdlib_log.removeHandler(handler)

    print(f"{TASKS} tasks handled {TOTAL} requests in {elapsed:.2f} s")
    print_metrics("BatchingProcessor (structlog)", processor.metrics)
    print_metrics("BatchingHandler (logging)", handler.metrics)
    expected = {f"{task}-{number}" for task in range(TASKS) for number in range(REQUESTS_PER_TASK)}
    ok = True
    for sink in (events_sink, records_sink):
        complete = len(sink.seen) == TOTAL and set(sink.seen) == expected
        ok = ok and complete
        print(
            f"{sink.name}: {len(sink.seen)} of {TOTAL} records in {sink.batches} batches"
            f"{'' if complete else ' -- RECORDS LOST'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
