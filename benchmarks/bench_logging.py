"""What ``logger.info(...)`` costs the caller through BatchingHandler, against stdlib handlers.

Run as ``python benchmarks/bench_logging.py [--quick]``. Needs only the standard library and
batchlog; structlog and opentelemetry-sdk are measured when importable (skipped otherwise).

1. ``logger.info("user %s logged in", 42)`` through one handler each, single-threaded and with
   4 threads that start together at a Barrier; aggregate wall time / records, best of the
   repeats. Candidates: ``NullHandler`` (the floor), a ``Handler`` whose ``emit`` does
   nothing, ``MemoryHandler(capacity=1000)`` in front of a counting target,
   ``QueueHandler`` + ``QueueListener`` (a counting handler behind it), ``BatchingHandler``
   under each overflow policy (capacity 1000, max_queue_size 100_000, flush_interval 0.05 s,
   a sink that does nothing) and OpenTelemetry's ``LoggingHandler`` +
   ``BatchLogRecordProcessor`` with an exporter that does nothing. After each repeat the
   handler is closed and must account for every record: processed + dropped == logged.
2. ``handler.handle(record)`` on one pre-made LogRecord: BatchingHandler, a do-nothing
   Handler, and QueueHandler (whose queue a QueueListener drains).
3. structlog: ``[add_log_level, BatchingProcessor(...)]`` against
   ``[add_log_level, JSONRenderer()]`` printing to ``os.devnull``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import logging.handlers
import os
import platform
import queue
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

try:
    from batchlog import BatchingHandler
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog import BatchingHandler

try:
    import structlog
except ImportError:
    structlog = None

try:
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogExportResult

    try:
        from opentelemetry.sdk._logs.export import LogRecordExporter as OtelExporter
    except ImportError:  # older SDKs
        from opentelemetry.sdk._logs.export import LogExporter as OtelExporter
except ImportError:
    OtelExporter = None

THREAD_COUNTS = (1, 4)
CAPACITY = 1000
MAX_QUEUE_SIZE = 100_000
FLUSH_INTERVAL = 0.05
POLICIES = ("block", "drop_newest", "drop_oldest")
FLOOR = "NullHandler (floor)"

Call = Callable[[], object]


class NoopHandler(logging.Handler):
    """A handler whose ``emit`` does nothing."""

    def emit(self, record: logging.LogRecord) -> None:
        pass


class CountingHandler(logging.Handler):
    """A handler that only counts (``handle`` holds its lock, so threads are safe)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:  # noqa: ARG002 -- only counts
        self.count += 1


def nothing(_batch: list[Any]) -> None:
    """A sink that does nothing (it always keeps up)."""


class Candidate:
    """``setup()`` returns a fresh handler; ``finish(logged)`` closes it and counts losses."""

    name = ""

    def setup(self) -> logging.Handler:
        raise NotImplementedError

    def finish(self, logged: int) -> tuple[int, int] | None:  # noqa: ARG002 -- for overrides
        """Close; return (dropped, lost), or None when the handler keeps nothing to check."""
        return None


class PlainCandidate(Candidate):
    def __init__(self, name: str, factory: Callable[[], logging.Handler]) -> None:
        self.name = name
        self.factory = factory

    def setup(self) -> logging.Handler:
        return self.factory()


class MemoryCandidate(Candidate):
    name = "MemoryHandler(1000)"

    def setup(self) -> logging.Handler:
        self.target = CountingHandler()
        self.handler = logging.handlers.MemoryHandler(1000, target=self.target)
        return self.handler

    def finish(self, logged: int) -> tuple[int, int]:
        self.handler.close()  # flushes what is buffered
        return 0, logged - self.target.count


class QueueCandidate(Candidate):
    name = "QueueHandler+QueueListener"

    def setup(self) -> logging.Handler:
        self.target = CountingHandler()
        records: queue.Queue[logging.LogRecord] = queue.Queue()
        self.listener = logging.handlers.QueueListener(records, self.target)
        self.listener.start()
        return logging.handlers.QueueHandler(records)

    def finish(self, logged: int) -> tuple[int, int]:
        self.listener.stop()  # processes everything queued, then ends its thread
        return 0, logged - self.target.count


class BatchingCandidate(Candidate):
    def __init__(self, overflow: str) -> None:
        self.name = f"BatchingHandler {overflow}"
        self.overflow = overflow

    def setup(self) -> logging.Handler:
        self.handler = BatchingHandler(
            nothing,
            CAPACITY,
            FLUSH_INTERVAL,
            overflow=self.overflow,
            max_queue_size=MAX_QUEUE_SIZE,
            flush_timeout=60,
        )
        return self.handler

    def finish(self, logged: int) -> tuple[int, int]:
        self.handler.close()
        metrics = self.handler.metrics
        dropped = metrics.records_dropped + metrics.records_evicted
        return dropped, logged - metrics.records_processed - dropped


class OtelCandidate(Candidate):
    name = "OTel LoggingHandler+Batch"

    def setup(self) -> logging.Handler:
        candidate = self

        class NoopExporter(OtelExporter):  # type: ignore[misc,valid-type]
            def export(self, batch: Any) -> Any:
                candidate.exported += len(batch)
                return LogExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

            def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002
                return True

        self.exported = 0
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(
                NoopExporter(),
                schedule_delay_millis=FLUSH_INTERVAL * 1000,
                max_export_batch_size=CAPACITY,
                max_queue_size=MAX_QUEUE_SIZE,
            )
        )
        with warnings.catch_warnings():  # deprecated in favour of opentelemetry-instrumentation
            warnings.simplefilter("ignore", DeprecationWarning)  # -logging; still the SDK's
            return LoggingHandler(logger_provider=self.provider)

    def finish(self, logged: int) -> tuple[int, int]:
        self.provider.shutdown()  # exports what is queued
        # BatchLogRecordProcessor drops silently when its queue is full: count it as lost.
        return 0, logged - self.exported


def run_threads(work: Callable[[int], None], threads: int, per_thread: int) -> float:
    """Run ``work(per_thread)`` on ``threads`` threads started together; return wall seconds."""
    barrier = threading.Barrier(threads)
    starts: list[float] = []
    ends: list[float] = []

    def run() -> None:
        barrier.wait()
        started = time.perf_counter()
        work(per_thread)
        ends.append(time.perf_counter())
        starts.append(started)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return max(ends) - min(starts)


@dataclass
class Result:
    us: float  # µs per record, best repeat
    dropped: int | None = None
    lost: int | None = None


def measure_logger(candidate: Candidate, threads: int, per_thread: int, repeats: int) -> Result:
    logged = threads * per_thread
    logger = logging.getLogger(f"bench.{candidate.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    best = Result(float("inf"))
    worst_lost = 0
    for _ in range(repeats):
        handler = candidate.setup()
        logger.handlers = [handler]
        info = logger.info

        def work(count: int, info: Callable[..., None] = info) -> None:
            for _ in range(count):
                info("user %s logged in", 42)

        gc.collect()
        seconds = run_threads(work, threads, per_thread)
        logger.handlers = []
        outcome = candidate.finish(logged)
        dropped, lost = outcome if outcome is not None else (None, None)
        worst_lost = max(worst_lost, lost or 0)
        if seconds * 1e6 / logged < best.us:
            best = Result(seconds * 1e6 / logged, dropped, lost)
    if best.lost is not None:
        best.lost = worst_lost  # a loss in any repeat counts
    return best


def measure_handle(
    make: Callable[[], tuple[logging.Handler, Call]],
    record: logging.LogRecord,
    calls: int,
    repeats: int,
) -> float:
    """Best µs per ``handler.handle(record)``; ``make()`` gives (handler, close)."""
    best = float("inf")
    for _ in range(repeats):
        handler, close = make()
        handle = handler.handle
        gc.collect()
        started = time.perf_counter()
        for _ in range(calls):
            handle(record)
        best = min(best, (time.perf_counter() - started) * 1e6 / calls)
        close()
    return best


def batching_for_handle() -> tuple[logging.Handler, Call]:
    handler = BatchingHandler(
        nothing, CAPACITY, FLUSH_INTERVAL, max_queue_size=MAX_QUEUE_SIZE, flush_timeout=60
    )
    return handler, handler.close


def noop_for_handle() -> tuple[logging.Handler, Call]:
    handler = NoopHandler()
    return handler, handler.close


def queue_for_handle() -> tuple[logging.Handler, Call]:
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    listener = logging.handlers.QueueListener(records, NoopHandler())  # drains the queue
    listener.start()
    return logging.handlers.QueueHandler(records), listener.stop


HANDLE_CANDIDATES = {
    "BatchingHandler.handle": batching_for_handle,
    "Handler(no-op).handle": noop_for_handle,
    "QueueHandler.handle": queue_for_handle,
}


def measure_structlog(
    batching: bool, threads: int, per_thread: int, repeats: int
) -> Result:  # pragma: no cover - needs structlog
    from batchlog import BatchingProcessor

    best = Result(float("inf"))
    logged = threads * per_thread
    for _ in range(repeats):
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            processor = None
            if batching:
                processor = BatchingProcessor(
                    nothing, CAPACITY, FLUSH_INTERVAL, max_queue_size=MAX_QUEUE_SIZE
                )
                last: Any = processor
            else:
                last = structlog.processors.JSONRenderer()
            log = structlog.wrap_logger(
                structlog.PrintLogger(file=devnull),
                processors=[structlog.processors.add_log_level, last],
                wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                cache_logger_on_first_use=True,
            )

            def work(count: int, info: Callable[..., Any] = log.info) -> None:
                for _ in range(count):
                    info("user logged in", user=42)

            gc.collect()
            seconds = run_threads(work, threads, per_thread)
            dropped = lost = None
            if processor is not None:
                processor.close(60)
                metrics = processor.metrics
                dropped = metrics.records_dropped + metrics.records_evicted
                lost = logged - metrics.records_processed - dropped
        if seconds * 1e6 / logged < best.us:
            best = Result(seconds * 1e6 / logged, dropped, lost)
    return best


def shown(value: int | None) -> str:
    return "-" if value is None else str(value)


def print_platform() -> None:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"python    {platform.python_implementation()} {sys.version.split()[0]}")
    print(f"platform  {platform.platform()}  cpus={os.cpu_count()}  gil={'on' if gil else 'off'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20_000 records, 3 repeats")
    args = parser.parse_args()
    per_thread, repeats = (20_000, 3) if args.quick else (100_000, 5)

    print_platform()
    print(f"records   {per_thread} per thread, best of {repeats}")
    print()

    candidates: list[Candidate] = [
        PlainCandidate(FLOOR, logging.NullHandler),
        PlainCandidate("Handler (emit does nothing)", NoopHandler),
        MemoryCandidate(),
        QueueCandidate(),
        *(BatchingCandidate(policy) for policy in POLICIES),
    ]
    if OtelExporter is not None:
        candidates.append(OtelCandidate())
    else:
        print("note: opentelemetry-sdk is not importable; its LoggingHandler is skipped")

    results = {
        (candidate.name, threads): measure_logger(candidate, threads, per_thread, repeats)
        for threads in THREAD_COUNTS
        for candidate in candidates
    }
    header = (
        f"{'logger.info through':<28} {'thr':>3} {'us/rec':>7} {'+floor':>7} {'x floor':>7}"
        f" {'dropped':>7} {'lost':>5}"
    )
    print(header)
    print("-" * len(header))
    for (name, threads), result in results.items():
        floor = results[FLOOR, threads].us
        print(
            f"{name:<28} {threads:>3} {result.us:>7.3f} {result.us - floor:>+7.3f}"
            f" {result.us / floor:>7.2f} {shown(result.dropped):>7} {shown(result.lost):>5}"
        )
    print()

    record = logging.getLogger("bench.handle").makeRecord(
        "bench.handle", logging.INFO, __file__, 1, "user %s logged in", (42,), None
    )
    handle_us = {
        name: measure_handle(make, record, per_thread, repeats)
        for name, make in HANDLE_CANDIDATES.items()
    }
    print(f"{'handle(record), 1 thread':<28} {'us/call':>7}")
    for name, us in handle_us.items():
        print(f"{name:<28} {us:>7.3f}")
    print()

    structlog_results: dict[tuple[str, int], Result] = {}
    if structlog is None:
        print("note: structlog is not importable; its chains are skipped")
    else:
        for threads in THREAD_COUNTS:
            for label, batching in (("BatchingProcessor", True), ("JSONRenderer", False)):
                structlog_results[label, threads] = measure_structlog(
                    batching, threads, per_thread, repeats
                )
        print(
            f"{'structlog add_log_level +':<28} {'thr':>3} {'us/rec':>7} {'dropped':>7} {'lost':>5}"
        )
        for (label, threads), result in structlog_results.items():
            print(
                f"{label:<28} {threads:>3} {result.us:>7.3f}"
                f" {shown(result.dropped):>7} {shown(result.lost):>5}"
            )
        print()

    batching_handle = handle_us["BatchingHandler.handle"]
    noop_handle = handle_us["Handler(no-op).handle"]
    queue_handle = handle_us["QueueHandler.handle"]
    four = results["BatchingHandler block", 4].us / results[FLOOR, 4].us
    checks = [
        (
            f"BatchingHandler.handle <= no-op Handler.handle "
            f"({batching_handle:.3f} vs {noop_handle:.3f} us)",
            batching_handle <= noop_handle,
        ),
        (
            f"BatchingHandler.handle <= 1/5 QueueHandler.handle "
            f"({queue_handle / batching_handle:.1f}x faster)",
            batching_handle * 5 <= queue_handle,
        ),
        (
            f"logger.info via BatchingHandler (block), 4 threads <= 1.3x NullHandler ({four:.2f}x)",
            four <= 1.3,
        ),
    ]
    if structlog_results:
        for threads in THREAD_COUNTS:
            ours = structlog_results["BatchingProcessor", threads].us
            theirs = structlog_results["JSONRenderer", threads].us
            checks.append(
                (
                    f"structlog BatchingProcessor chain <= JSONRenderer chain, {threads} thread(s)"
                    f" ({ours:.3f} vs {theirs:.3f} us)",
                    ours <= theirs,
                )
            )
    lost = sorted(
        {
            name
            for (name, _), result in [*results.items(), *structlog_results.items()]
            if result.lost and not name.startswith("OTel")  # OTel drops silently when full
        }
    )
    checks.append((f"no records lost, OTel aside ({', '.join(lost) or 'none'})", not lost))
    for label, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
