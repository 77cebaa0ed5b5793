"""What ``logger.info(...)`` costs the caller through BatchingHandler, against stdlib handlers.

Needs only the standard library and batchlog; structlog and opentelemetry-sdk are measured
when importable (skipped otherwise).

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
3. ``logger.exception("user %s failed", 42)`` in the ``except`` block of a call that raised
   two frames deep (the raise and the catch are in every repeat of both candidates),
   through NullHandler and BatchingHandler ``block``, one thread, a twentieth as many
   records. The caller's cost: the handler holds every record until it is closed after
   the timed loop (under the GIL a worker rendering tracebacks meanwhile would be timed
   too); the close, where the worker renders them, is shown apart as ``worker``.
4. structlog: ``[add_log_level, BatchingProcessor(...)]`` against
   ``[add_log_level, JSONRenderer()]`` printing to ``os.devnull``.
5. What carrying the caller's context costs (the OpenTelemetry rows are measured last,
   so OpenTelemetry, imported for them, cannot touch the other rows): ``BatchingHandler
   block`` with a formatter (which runs on the worker, under the same GIL), and with a
   formatter while a contextvar is set (the contextvars are captured at emit); with
   OpenTelemetry imported but no span; and inside a sampled span (the span's ids travel
   with the record).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import gc
import importlib
import logging
import logging.handlers
import os
import queue
import time
import warnings
from typing import Any, Callable

from batchlog import BatchingHandler

from ._common import (
    Check,
    Column,
    PlatformInfo,
    Ratio,
    check_lines,
    format_table,
    platform_info,
    run_threads,
    with_repeats,
)

__all__ = [
    "SUITE",
    "HandleRow",
    "LoggerRow",
    "Report",
    "Sizes",
    "header_lines",
    "result_lines",
    "run",
    "sizes",
]

SUITE = "logging"
THREAD_COUNTS = (1, 4)
CAPACITY = 1000
MAX_QUEUE_SIZE = 100_000
FLUSH_INTERVAL = 0.05
POLICIES = ("block", "drop_newest", "drop_oldest")
FLOOR = "NullHandler (floor)"
#: The targets: handle() against a no-op Handler and QueueHandler; logger.info (1 and 4
#: threads) and logger.exception against NullHandler; a structlog chain against
#: JSONRenderer's.
HANDLE_TARGET = 1.5
QUEUE_HANDLE_TARGET = 5.0
INFO_TARGET = 1.2
EXCEPTION_TARGET = 4.0
EXCEPTION_SHARE = 20  # logger.exception runs per_thread // EXCEPTION_SHARE times
STRUCTLOG_TARGET = 1.0

Call = Callable[[], object]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Records per thread (and ``handle`` calls), and how many repeats the best is taken of."""

    per_thread: int
    repeats: int


def sizes(*, quick: bool = False, records: int | None = None, repeats: int | None = None) -> Sizes:
    """Return the full sizes, the ``--quick`` ones, or ``records`` per thread once.

    ``repeats``, when given, replaces the number of repeats.
    """
    if records is not None:
        chosen = Sizes(records, 1)
    else:
        chosen = Sizes(20_000, 3) if quick else Sizes(100_000, 5)
    return with_repeats(chosen, repeats)


class _NoopHandler(logging.Handler):
    """A handler whose ``emit`` does nothing."""

    def emit(self, record: logging.LogRecord) -> None:
        pass


class _CountingHandler(logging.Handler):
    """A handler that only counts (``handle`` holds its lock, so threads are safe)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:  # noqa: ARG002 -- only counts
        self.count += 1


def _nothing(_batch: list[Any]) -> None:
    """A sink that does nothing (it always keeps up)."""


class _Candidate:
    """``setup()`` returns a fresh handler; ``finish(logged)`` closes it and counts losses.

    ``around()`` is entered by each logging thread around its loop (a span, a context).
    """

    name = ""

    def around(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def setup(self) -> logging.Handler:
        raise NotImplementedError

    def finish(self, logged: int) -> tuple[int, int] | None:  # noqa: ARG002 -- for overrides
        """Close; return (dropped, lost), or None when the handler keeps nothing to check."""
        return None


class _PlainCandidate(_Candidate):
    def __init__(self, name: str, factory: Callable[[], logging.Handler]) -> None:
        self.name = name
        self.factory = factory

    def setup(self) -> logging.Handler:
        return self.factory()


class _MemoryCandidate(_Candidate):
    name = "MemoryHandler(1000)"

    def __init__(self) -> None:
        self.target = _CountingHandler()
        self.handler = logging.handlers.MemoryHandler(1000, target=self.target)

    def setup(self) -> logging.Handler:
        self.target = _CountingHandler()
        self.handler = logging.handlers.MemoryHandler(1000, target=self.target)
        return self.handler

    def finish(self, logged: int) -> tuple[int, int]:
        self.handler.close()  # flushes what is buffered
        return 0, logged - self.target.count


class _QueueCandidate(_Candidate):
    name = "QueueHandler+QueueListener"

    def __init__(self) -> None:
        self.target = _CountingHandler()
        self.listener: logging.handlers.QueueListener | None = None

    def setup(self) -> logging.Handler:
        self.target = _CountingHandler()
        records: queue.Queue[logging.LogRecord] = queue.Queue()
        self.listener = logging.handlers.QueueListener(records, self.target)
        self.listener.start()
        return logging.handlers.QueueHandler(records)

    def finish(self, logged: int) -> tuple[int, int]:
        if self.listener is not None:
            self.listener.stop()  # processes everything queued, then ends its thread
        return 0, logged - self.target.count


class _BatchingCandidate(_Candidate):
    def __init__(
        self, overflow: str, capacity: int = CAPACITY, flush_interval: float = FLUSH_INTERVAL
    ) -> None:
        self.name = f"BatchingHandler {overflow}"
        self.overflow = overflow
        self.capacity = capacity
        self.flush_interval = flush_interval
        self.handler: BatchingHandler | None = None
        self.close_seconds = 0.0  # of the last repeat: the worker's share, delivered at close

    def setup(self) -> logging.Handler:
        self.handler = BatchingHandler(
            _nothing,
            self.capacity,
            self.flush_interval,
            overflow=self.overflow,
            max_queue_size=max(MAX_QUEUE_SIZE, self.capacity),
            flush_timeout=60,
        )
        return self.handler

    def finish(self, logged: int) -> tuple[int, int]:
        if self.handler is None:
            return 0, logged
        started = time.perf_counter()
        self.handler.close()
        self.close_seconds = time.perf_counter() - started
        metrics = self.handler.metrics
        dropped = metrics.records_dropped + metrics.records_evicted
        return dropped, logged - metrics.records_processed - dropped


_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("bench_request_id")


class _FormattedCandidate(_BatchingCandidate):
    """``BatchingHandler block`` with a formatter; each thread sets a contextvar, or none."""

    def __init__(self, *, in_context: bool) -> None:
        super().__init__("block")
        self.name = "Batching block +fmt" + (" +ctxvar" if in_context else "")
        self.in_context = in_context

    def setup(self) -> logging.Handler:
        handler = super().setup()
        handler.setFormatter(logging.Formatter("%(message)s"))
        return handler

    @contextlib.contextmanager
    def around(self) -> Any:
        if not self.in_context:
            yield
            return
        token = _REQUEST_ID.set("r-1")
        try:
            yield
        finally:
            _REQUEST_ID.reset(token)


class _InSpanCandidate(_BatchingCandidate):
    """``BatchingHandler block`` with OpenTelemetry imported: outside or inside a span."""

    def __init__(self, *, in_span: bool) -> None:
        super().__init__("block")
        self.name = "Batching block +OTel " + ("in span" if in_span else "no span")
        self.in_span = in_span

    def around(self) -> contextlib.AbstractContextManager[object]:
        if not self.in_span:
            return contextlib.nullcontext()
        sdk_trace: Any = importlib.import_module("opentelemetry.sdk.trace")
        tracer = sdk_trace.TracerProvider().get_tracer("batchlog-bench")
        span: contextlib.AbstractContextManager[object] = tracer.start_as_current_span("bench")
        return span


def _otel_sdk() -> dict[str, Any] | None:
    """The OpenTelemetry SDK's logging classes, or None when the SDK is not importable."""
    try:
        logs: Any = importlib.import_module("opentelemetry.sdk._logs")
        export: Any = importlib.import_module("opentelemetry.sdk._logs.export")
    except ImportError:
        return None
    # LogRecordExporter in recent SDKs; LogExporter in older ones.
    exporter = getattr(export, "LogRecordExporter", None) or getattr(export, "LogExporter", None)
    if exporter is None:
        return None
    return {
        "LoggerProvider": logs.LoggerProvider,
        "LoggingHandler": logs.LoggingHandler,
        "BatchLogRecordProcessor": export.BatchLogRecordProcessor,
        "LogExportResult": export.LogExportResult,
        "Exporter": exporter,
    }


class _OtelCandidate(_Candidate):
    name = "OTel LoggingHandler+Batch"

    def __init__(self, sdk: dict[str, Any]) -> None:
        self.sdk = sdk
        self.exported = 0
        self.provider: Any = None

    def setup(self) -> logging.Handler:
        candidate = self
        sdk = self.sdk
        success = sdk["LogExportResult"].SUCCESS
        exporter_class: Any = sdk["Exporter"]

        class NoopExporter(exporter_class):  # type: ignore[misc]
            def export(self, batch: Any) -> Any:
                candidate.exported += len(batch)
                return success

            def shutdown(self) -> None:
                pass

            def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002
                return True

        self.exported = 0
        self.provider = sdk["LoggerProvider"]()
        self.provider.add_log_record_processor(
            sdk["BatchLogRecordProcessor"](
                NoopExporter(),
                schedule_delay_millis=FLUSH_INTERVAL * 1000,
                max_export_batch_size=CAPACITY,
                max_queue_size=MAX_QUEUE_SIZE,
            )
        )
        with warnings.catch_warnings():  # deprecated in favour of opentelemetry-instrumentation
            warnings.simplefilter("ignore", DeprecationWarning)  # -logging; still the SDK's
            handler: logging.Handler = sdk["LoggingHandler"](logger_provider=self.provider)
        return handler

    def finish(self, logged: int) -> tuple[int, int]:
        self.provider.shutdown()  # exports what is queued
        # BatchLogRecordProcessor drops silently when its queue is full: count it as lost.
        return 0, logged - self.exported


@dataclasses.dataclass
class _Best:
    us: float  # µs per record, best repeat
    dropped: int | None = None
    lost: int | None = None
    repeats: list[float] = dataclasses.field(default_factory=list)  # µs per record, each


def _fail(depth: int) -> None:
    """Raise ``ValueError`` ``depth`` calls below this one."""
    if depth == 0:
        msg = "boom"
        raise ValueError(msg)
    _fail(depth - 1)


def _measure_logger(
    candidate: _Candidate,
    threads: int,
    per_thread: int,
    repeats: int,
    *,
    exception: bool = False,
) -> _Best:
    """Best µs per ``logger.info`` (or, with ``exception``, per raise + ``logger.exception``)."""
    logged = threads * per_thread
    logger = logging.getLogger(f"bench.{candidate.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    best = _Best(float("inf"))
    worst_lost = 0
    measured: list[float] = []
    for _ in range(repeats):
        handler = candidate.setup()
        logger.handlers = [handler]
        info = logger.info
        log_exception = logger.exception

        def work(count: int, info: Callable[..., None] = info) -> None:
            with candidate.around():
                for _ in range(count):
                    info("user %s logged in", 42)

        def work_exception(count: int, log: Callable[..., None] = log_exception) -> None:
            for _ in range(count):
                try:
                    _fail(2)
                except ValueError:
                    log("user %s failed", 42)

        gc.collect()
        seconds = run_threads(work_exception if exception else work, threads, per_thread)
        logger.handlers = []
        outcome = candidate.finish(logged)
        dropped, lost = outcome if outcome is not None else (None, None)
        worst_lost = max(worst_lost, lost or 0)
        measured.append(seconds * 1e6 / logged)
        if seconds * 1e6 / logged < best.us:
            best = _Best(seconds * 1e6 / logged, dropped, lost)
    if best.lost is not None:
        best.lost = worst_lost  # a loss in any repeat counts
    best.repeats = measured
    return best


def _measure_handle(
    make: Callable[[], tuple[logging.Handler, Call]],
    record: logging.LogRecord,
    calls: int,
    repeats: int,
) -> list[float]:
    """µs per ``handler.handle(record)`` in each repeat; ``make()`` gives (handler, close)."""
    measured = []
    for _ in range(repeats):
        handler, close = make()
        handle = handler.handle
        gc.collect()
        started = time.perf_counter()
        for _ in range(calls):
            handle(record)
        measured.append((time.perf_counter() - started) * 1e6 / calls)
        close()
    return measured


def _batching_for_handle() -> tuple[logging.Handler, Call]:
    handler = BatchingHandler(
        _nothing, CAPACITY, FLUSH_INTERVAL, max_queue_size=MAX_QUEUE_SIZE, flush_timeout=60
    )
    return handler, handler.close


def _noop_for_handle() -> tuple[logging.Handler, Call]:
    handler = _NoopHandler()
    return handler, handler.close


def _queue_for_handle() -> tuple[logging.Handler, Call]:
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    listener = logging.handlers.QueueListener(records, _NoopHandler())  # drains the queue
    listener.start()
    return logging.handlers.QueueHandler(records), listener.stop


_HANDLE_CANDIDATES = {
    "BatchingHandler.handle": _batching_for_handle,
    "Handler(no-op).handle": _noop_for_handle,
    "QueueHandler.handle": _queue_for_handle,
}


def _measure_structlog(
    structlog: Any, threads: int, per_thread: int, repeats: int, *, batching: bool
) -> _Best:
    from batchlog import BatchingProcessor

    best = _Best(float("inf"))
    logged = threads * per_thread
    measured: list[float] = []
    for _ in range(repeats):
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            processor = None
            if batching:
                processor = BatchingProcessor(
                    _nothing, CAPACITY, FLUSH_INTERVAL, max_queue_size=MAX_QUEUE_SIZE
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
        measured.append(seconds * 1e6 / logged)
        if seconds * 1e6 / logged < best.us:
            best = _Best(seconds * 1e6 / logged, dropped, lost)
    best.repeats = measured
    return best


@dataclasses.dataclass(frozen=True)
class LoggerRow:
    """``logger.info`` through one handler (or a structlog chain) at one thread count.

    ``dropped`` and ``lost`` are None where the handler keeps nothing to check.
    """

    name: str
    threads: int
    us_per_record: float
    over_floor: float  # µs more than NullHandler; 0 for structlog rows
    times_floor: float  # 1 for structlog rows
    dropped: int | None
    lost: int | None


@dataclasses.dataclass(frozen=True)
class HandleRow:
    """``handler.handle(record)`` on one pre-made record, one thread."""

    name: str
    us_per_call: float


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything one run measured, and the targets it was held to."""

    platform: PlatformInfo
    sizes: Sizes
    rows: list[LoggerRow]
    handle_rows: list[HandleRow]
    structlog_rows: list[LoggerRow]  # empty when structlog is not importable
    exception_rows: list[LoggerRow]
    worker_exception_us: float  # µs per record the worker spent at close rendering them
    checks: list[Check]
    ratios: list[Ratio]
    otel_measured: bool
    notes: list[str] = dataclasses.field(default_factory=list)
    lost: list[str] = dataclasses.field(default_factory=list)


def run(chosen: Sizes) -> Report:
    """Measure every candidate and check the targets."""
    per_thread, repeats = chosen.per_thread, chosen.repeats
    notes: list[str] = []
    candidates: list[_Candidate] = [
        _PlainCandidate(FLOOR, logging.NullHandler),
        _PlainCandidate("Handler (emit does nothing)", _NoopHandler),
        _MemoryCandidate(),
        _QueueCandidate(),
        *(_BatchingCandidate(policy) for policy in POLICIES),
        _FormattedCandidate(in_context=False),
        _FormattedCandidate(in_context=True),
    ]
    # Measured before OpenTelemetry is imported: with it, every emit asks for its span.
    results = {
        (candidate.name, threads): _measure_logger(candidate, threads, per_thread, repeats)
        for threads in THREAD_COUNTS
        for candidate in candidates
    }

    exception_calls = max(1, per_thread // EXCEPTION_SHARE)
    holding = _BatchingCandidate("block", capacity=exception_calls, flush_interval=60.0)
    exception_results = {
        candidate.name: _measure_logger(candidate, 1, exception_calls, repeats, exception=True)
        for candidate in (candidates[0], holding)
    }
    floor_exception = exception_results[FLOOR].us
    exception_rows = [
        LoggerRow(
            name,
            1,
            best.us,
            best.us - floor_exception,
            best.us / floor_exception,
            best.dropped,
            best.lost,
        )
        for name, best in exception_results.items()
    ]
    worker_exception_us = holding.close_seconds * 1e6 / exception_calls

    record = logging.getLogger("bench.handle").makeRecord(
        "bench.handle", logging.INFO, __file__, 1, "user %s logged in", (42,), None
    )
    handle_repeats = {
        name: _measure_handle(make, record, per_thread, repeats)
        for name, make in _HANDLE_CANDIDATES.items()
    }

    structlog_results: dict[tuple[str, int], _Best] = {}
    try:
        structlog: Any = importlib.import_module("structlog")
    except ImportError:
        notes.append("structlog is not importable; its chains are skipped")
    else:
        for threads in THREAD_COUNTS:
            for label, batching in (("BatchingProcessor", True), ("JSONRenderer", False)):
                structlog_results[label, threads] = _measure_structlog(
                    structlog, threads, per_thread, repeats, batching=batching
                )

    # Measured last: once OpenTelemetry is imported every emit asks for its span, and
    # handle, exception and structlog above would pay for that too.
    sdk = _otel_sdk()
    if sdk is not None:
        later: list[_Candidate] = [
            _OtelCandidate(sdk),
            _InSpanCandidate(in_span=False),
            _InSpanCandidate(in_span=True),
        ]
        results.update(
            {
                (candidate.name, threads): _measure_logger(candidate, threads, per_thread, repeats)
                for threads in THREAD_COUNTS
                for candidate in later
            }
        )
    else:
        notes.append("opentelemetry-sdk is not importable; its LoggingHandler is skipped")

    rows = [
        LoggerRow(
            name,
            threads,
            best.us,
            best.us - results[FLOOR, threads].us,
            best.us / results[FLOOR, threads].us,
            best.dropped,
            best.lost,
        )
        for (name, threads), best in results.items()
    ]

    checks, ratios = _targets(results, handle_repeats, structlog_results, exception_results)
    lost = sorted(
        {
            name
            for (name, _), result in [
                *results.items(),
                *structlog_results.items(),
                *(((name, 1), best) for name, best in exception_results.items()),
            ]
            if result.lost and not name.startswith("OTel")  # OTel drops silently when full
        }
    )
    checks.append(Check(f"no records lost, OTel aside ({', '.join(lost) or 'none'})", not lost))
    return Report(
        platform=platform_info(),
        sizes=chosen,
        rows=rows,
        handle_rows=[HandleRow(name, min(us)) for name, us in handle_repeats.items()],
        structlog_rows=[
            LoggerRow(label, threads, best.us, 0.0, 1.0, best.dropped, best.lost)
            for (label, threads), best in structlog_results.items()
        ],
        exception_rows=exception_rows,
        worker_exception_us=worker_exception_us,
        checks=checks,
        ratios=ratios,
        otel_measured=sdk is not None,
        notes=notes,
        lost=[f"{name}: records lost" for name in lost],
    )


def _targets(
    results: dict[tuple[str, int], _Best],
    handle_repeats: dict[str, list[float]],
    structlog_results: dict[tuple[str, int], _Best],
    exception_results: dict[str, _Best],
) -> tuple[list[Check], list[Ratio]]:
    batching_repeats = handle_repeats["BatchingHandler.handle"]
    noop_repeats = handle_repeats["Handler(no-op).handle"]
    queue_repeats = handle_repeats["QueueHandler.handle"]
    handle = Ratio.of_repeats(
        SUITE,
        "handle(): Batching / no-op Handler",
        batching_repeats,
        noop_repeats,
        HANDLE_TARGET,
        at_most=True,
    )
    queue = Ratio.of_repeats(
        SUITE,
        "handle(): QueueHandler / Batching",
        queue_repeats,
        batching_repeats,
        QUEUE_HANDLE_TARGET,
    )
    # Each key ratio, and the PASS/FAIL line that holds it to its target.
    held = [
        (
            handle,
            f"BatchingHandler.handle <= {HANDLE_TARGET}x no-op Handler.handle "
            f"({min(batching_repeats):.3f} vs {min(noop_repeats):.3f} us)",
        ),
        (
            queue,
            f"BatchingHandler.handle <= 1/5 QueueHandler.handle ({queue.value:.1f}x faster)",
        ),
    ]
    for threads in THREAD_COUNTS:
        info = Ratio.of_repeats(
            SUITE,
            f"info(), {threads} thread{'s' if threads > 1 else ''}: Batching / Null",
            results["BatchingHandler block", threads].repeats,
            results[FLOOR, threads].repeats,
            INFO_TARGET,
            at_most=True,
        )
        held.append(
            (
                info,
                f"logger.info via BatchingHandler (block), {threads} thread(s) <= "
                f"{INFO_TARGET}x NullHandler ({info.value:.2f}x)",
            )
        )
    exception = Ratio.of_repeats(
        SUITE,
        "exception(): Batching / Null",
        exception_results["BatchingHandler block"].repeats,
        exception_results[FLOOR].repeats,
        EXCEPTION_TARGET,
        at_most=True,
    )
    held.append(
        (
            exception,
            f"logger.exception via BatchingHandler (block) <= {EXCEPTION_TARGET}x "
            f"NullHandler ({exception.value:.2f}x)",
        )
    )
    if structlog_results:
        for threads in THREAD_COUNTS:
            ours = structlog_results["BatchingProcessor", threads]
            theirs = structlog_results["JSONRenderer", threads]
            held.append(
                (
                    Ratio.of_repeats(
                        SUITE,
                        f"structlog {threads} thread{'s' if threads > 1 else ''}: ours / JSON",
                        ours.repeats,
                        theirs.repeats,
                        STRUCTLOG_TARGET,
                        at_most=True,
                    ),
                    f"structlog BatchingProcessor chain <= JSONRenderer chain, {threads} "
                    f"thread(s) ({ours.us:.3f} vs {theirs.us:.3f} us)",
                )
            )
    return [Check.of(ratio, label) for ratio, label in held], [ratio for ratio, _ in held]


def _shown(value: int | None) -> str:
    return "-" if value is None else str(value)


def header_lines(info: PlatformInfo, chosen: Sizes) -> list[str]:
    """The lines printed before measuring: platform and sizes, then a blank line."""
    return [
        f"python    {info.implementation} {info.python_version}",
        f"platform  {info.platform}  cpus={info.cpus}  gil={'on' if info.gil_enabled else 'off'}",
        f"records   {chosen.per_thread} per thread, best of {chosen.repeats}",
        "",
    ]


def result_lines(report: Report) -> list[str]:
    """The four tables (each followed by a blank line), then the PASS/FAIL lines."""
    lines: list[str] = []
    if not report.otel_measured:
        lines.append("note: opentelemetry-sdk is not importable; its LoggingHandler is skipped")
    lines += format_table(
        [
            Column("logger.info through", 28, "<"),
            Column("thr", 3),
            Column("us/rec", 7),
            Column("+floor", 7),
            Column("x floor", 7),
            Column("dropped", 7),
            Column("lost", 5),
        ],
        [
            [
                row.name,
                str(row.threads),
                f"{row.us_per_record:.3f}",
                f"{row.over_floor:+.3f}",
                f"{row.times_floor:.2f}",
                _shown(row.dropped),
                _shown(row.lost),
            ]
            for row in report.rows
        ],
    )
    lines.append("")
    lines += format_table(
        [
            Column("logger.exception through", 28, "<"),
            Column("us/rec", 7),
            Column("x floor", 7),
            Column("worker", 7),
            Column("dropped", 7),
            Column("lost", 5),
        ],
        [
            [
                row.name,
                f"{row.us_per_record:.3f}",
                f"{row.times_floor:.2f}",
                "-" if row.name == FLOOR else f"{report.worker_exception_us:.3f}",
                _shown(row.dropped),
                _shown(row.lost),
            ]
            for row in report.exception_rows
        ],
        rule=False,
    )
    lines.append("")
    lines += format_table(
        [Column("handle(record), 1 thread", 28, "<"), Column("us/call", 7)],
        [[row.name, f"{row.us_per_call:.3f}"] for row in report.handle_rows],
        rule=False,
    )
    lines.append("")
    if not report.structlog_rows:
        lines.append("note: structlog is not importable; its chains are skipped")
    else:
        lines += format_table(
            [
                Column("structlog add_log_level +", 28, "<"),
                Column("thr", 3),
                Column("us/rec", 7),
                Column("dropped", 7),
                Column("lost", 5),
            ],
            [
                [
                    row.name,
                    str(row.threads),
                    f"{row.us_per_record:.3f}",
                    _shown(row.dropped),
                    _shown(row.lost),
                ]
                for row in report.structlog_rows
            ],
            rule=False,
        )
        lines.append("")
    return [*lines, *check_lines(report.checks)]
