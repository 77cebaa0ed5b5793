"""How fast producers hand records to a BatchWriter, against a floor and queue.Queue.

Every candidate runs the same loop, ``for record in range(n): put(record)``,
single-threaded and with 4 producer threads that start together at a Barrier; the
aggregate cost is wall time / records, best of the repeats.

- ``BatchWriter.add`` / ``BatchWriter.try_add``: default settings (capacity 100, the default
  max_queue_size), flush_interval 1 s, a sink that does nothing (it keeps up). After each repeat the
  writer is closed and must have processed every record it accepted. ``add`` must accept
  all; ``try_add`` refuses records when the worker thread gets too little of the GIL to
  keep up with several producers, and the table shows the share it refused.
- ``floor``: ``with lock: list.append(x)``, the least a thread-safe hand-off can cost.
- ``Queue.put``: an unbounded ``queue.Queue``.
"""

from __future__ import annotations

import dataclasses
import gc
import queue
import threading
from typing import Callable

from batchlog import BatchWriter

from ._common import (
    BenchmarkError,
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

__all__ = ["SUITE", "Report", "Row", "Sizes", "header_lines", "result_lines", "run", "sizes"]

SUITE = "writer"
THREAD_COUNTS = (1, 4)
CAPACITY = 100  # BatchingHandler's default capacity
MAX_QUEUE_SIZE = None  # the default: max(10_000, 10 * capacity)
FLUSH_INTERVAL = 1.0
#: The targets: cost against the floor, speed-up over Queue.put, 4-thread cost / 1-thread.
FLOOR_TARGET = 1.1
QUEUE_PUT_TARGET = 3.0
SCALING_TARGET = 1.25

Put = Callable[[int], object]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Records per producer thread, and how many repeats the best is taken of."""

    per_thread: int
    repeats: int


def sizes(*, quick: bool = False, records: int | None = None, repeats: int | None = None) -> Sizes:
    """Return the full sizes, the ``--quick`` ones, or ``records`` per thread once.

    ``repeats``, when given, replaces the number of repeats.
    """
    if records is not None:
        chosen = Sizes(records, 1)
    else:
        chosen = Sizes(50_000, 3) if quick else Sizes(200_000, 5)
    return with_repeats(chosen, repeats)


class _Candidate:
    """One way of handing records over: ``setup()`` gives a fresh ``put``, ``finish()`` checks."""

    name = ""
    dropped = 0

    def setup(self) -> Put:
        raise NotImplementedError

    def finish(self, expected: int) -> None:
        """Check after the timed part that nothing was lost."""


class _WriterCandidate(_Candidate):
    def __init__(self, method: str) -> None:
        self.name = f"BatchWriter.{method}"
        self.method = method
        self.writer: BatchWriter[int] | None = None

    def setup(self) -> Put:
        self.writer = BatchWriter(
            CAPACITY,
            FLUSH_INTERVAL,
            lambda _batch: None,  # a sink that always keeps up
            max_queue_size=MAX_QUEUE_SIZE,
            name=f"bench-{self.method}",
        )
        put: Put = getattr(self.writer, self.method)
        return put

    def finish(self, expected: int) -> None:
        if self.writer is None:
            msg = f"{self.name}: finish() before setup()"
            raise BenchmarkError(msg)
        if not self.writer.close(timeout=60):
            msg = f"{self.name}: close() did not finish within 60 s"
            raise BenchmarkError(msg)
        metrics = self.writer.metrics
        accounted = metrics.records_processed + metrics.records_dropped
        if (
            accounted != expected
            or metrics.records_added != metrics.records_processed
            or (self.method == "add" and metrics.records_dropped)
        ):
            msg = f"{self.name}: lost records: expected {expected}, got {metrics}"
            raise BenchmarkError(msg)
        self.dropped = metrics.records_dropped
        self.writer = None


class _FloorCandidate(_Candidate):
    name = "floor (lock + list.append)"

    def __init__(self) -> None:
        self.records: list[int] = []

    def setup(self) -> Put:
        lock = threading.Lock()
        self.records = []
        records = self.records

        def put(record: int) -> None:
            with lock:
                records.append(record)

        return put

    def finish(self, expected: int) -> None:
        if len(self.records) != expected:
            msg = f"{self.name}: lost records"
            raise BenchmarkError(msg)
        self.records = []


class _QueueCandidate(_Candidate):
    name = "queue.Queue.put"

    def __init__(self) -> None:
        self.queue: queue.Queue[int] = queue.Queue()

    def setup(self) -> Put:
        self.queue = queue.Queue()
        return self.queue.put

    def finish(self, expected: int) -> None:
        if self.queue.qsize() != expected:
            msg = f"{self.name}: lost records"
            raise BenchmarkError(msg)


@dataclasses.dataclass(frozen=True)
class Row:
    """One candidate at one thread count; ratios are against the same thread count."""

    name: str
    threads: int
    ns_per_op: float
    times_floor: float
    queue_put_speedup: float  # Queue.put's ns/op divided by this one's
    refused: float  # share of records the candidate refused in the best repeat


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything one run measured, and the targets it was held to."""

    platform: PlatformInfo
    sizes: Sizes
    rows: list[Row]
    checks: list[Check]
    ratios: list[Ratio]
    notes: list[str] = dataclasses.field(default_factory=list)
    lost: list[str] = dataclasses.field(default_factory=list)


def _measure(
    candidate: _Candidate, threads: int, per_thread: int, repeats: int
) -> tuple[list[float], float]:
    """Return the ns per record of each of ``repeats`` runs, and the share refused in the best."""
    total = threads * per_thread
    measured: list[float] = []
    best, refused = float("inf"), 0.0
    for _ in range(repeats):
        put = candidate.setup()

        def work(count: int, put: Put = put) -> None:
            for record in range(count):
                put(record)

        gc.collect()
        seconds = run_threads(work, threads, per_thread)
        candidate.finish(total)
        measured.append(seconds * 1e9 / total)
        if seconds < best:
            best = seconds
            refused = candidate.dropped / total
    return measured, refused


def run(chosen: Sizes) -> Report:
    """Measure every candidate at every thread count and check the targets.

    Raises:
        BenchmarkError: A candidate lost records or a writer did not close in time.
    """
    add, try_add = _WriterCandidate("add"), _WriterCandidate("try_add")
    floor, queue_put = _FloorCandidate(), _QueueCandidate()
    candidates: list[_Candidate] = [add, try_add, floor, queue_put]
    repeated: dict[tuple[str, int], list[float]] = {}  # ns/op of each repeat
    refused: dict[tuple[str, int], float] = {}
    for threads in THREAD_COUNTS:
        for candidate in candidates:
            key = (candidate.name, threads)
            repeated[key], refused[key] = _measure(
                candidate, threads, chosen.per_thread, chosen.repeats
            )
    ns_per_op = {key: min(values) for key, values in repeated.items()}

    rows = []
    for (name, threads), ns in ns_per_op.items():
        floor_ns = ns_per_op[floor.name, threads]
        queue_ns = ns_per_op[queue_put.name, threads]
        rows.append(Row(name, threads, ns, ns / floor_ns, queue_ns / ns, refused[name, threads]))

    checks: list[Check] = []
    ratios: list[Ratio] = []

    def hold(ratio: Ratio, label: str) -> None:
        ratios.append(ratio)
        checks.append(Check.of(ratio, label))

    for writer_candidate in (add, try_add):
        name, method = writer_candidate.name, writer_candidate.method
        ratio = Ratio.of_repeats(
            SUITE,
            f"{method} / floor, 1 thread",
            repeated[name, 1],
            repeated[floor.name, 1],
            FLOOR_TARGET,
            at_most=True,
        )
        hold(ratio, f"{name} <= {FLOOR_TARGET}x floor, 1 thread ({ratio.value:.2f}x)")
        for threads in THREAD_COUNTS:
            speedup = Ratio.of_repeats(
                SUITE,
                f"Queue.put / {method}, {threads} thread{'s' if threads > 1 else ''}",
                repeated[queue_put.name, threads],
                repeated[name, threads],
                QUEUE_PUT_TARGET,
            )
            hold(
                speedup,
                f"{name} >= 3x faster than Queue.put, {threads} thread(s) ({speedup.value:.2f}x)",
            )
        scaling = Ratio.of_repeats(
            SUITE,
            f"{method}, 4 threads / 1 thread",
            repeated[name, 4],
            repeated[name, 1],
            SCALING_TARGET,
            at_most=True,
        )
        hold(scaling, f"{name} 4 threads <= 1.25x single-thread ns/op ({scaling.value:.2f}x)")
    return Report(platform_info(), chosen, rows, checks, ratios)


def header_lines(info: PlatformInfo, chosen: Sizes) -> list[str]:
    """The lines printed before measuring: platform and sizes, then a blank line."""
    return [
        f"python    {info.implementation} {info.python_version}",
        f"platform  {info.platform}",
        f"machine   {info.machine} processor={info.processor or '?'}",
        f"cpus      {info.cpus}",
        f"gil       {'enabled' if info.gil_enabled else 'disabled'}",
        f"records   {chosen.per_thread} per thread, best of {chosen.repeats}",
        "",
    ]


def result_lines(report: Report) -> list[str]:
    """The table of results, then the PASS/FAIL line of each target."""
    columns = [
        Column("name", 28, "<"),
        Column("threads", 7),
        Column("ns/op", 9),
        Column("x floor", 8),
        Column("Queue.put/x", 12),
        Column("refused", 8),
    ]
    cells = [
        [
            row.name,
            str(row.threads),
            f"{row.ns_per_op:.1f}",
            f"{row.times_floor:.2f}",
            f"{row.queue_put_speedup:.2f}",
            f"{row.refused:.1%}",
        ]
        for row in report.rows
    ]
    return [*format_table(columns, cells), "", *check_lines(report.checks)]
