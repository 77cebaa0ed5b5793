"""How fast producers hand records to a BatchWriter, against a floor and queue.Queue.

Run as ``python benchmarks/bench_writer.py [--quick]``. Every candidate runs the same loop,
``for record in range(n): put(record)``, single-threaded and with 4 producer threads that
start together at a Barrier; the aggregate cost is wall time / records, best of the repeats.

- ``BatchWriter.add`` / ``BatchWriter.try_add``: capacity 1000, max_queue_size 100_000,
  flush_interval 0.05 s, a sink that does nothing (it keeps up). After each repeat the
  writer is closed and must have processed every record it accepted. ``add`` must accept
  all; ``try_add`` refuses records when the worker thread gets too little of the GIL to
  keep up with several producers, and the table shows the share it refused.
- ``floor``: ``with lock: list.append(x)``, the least a thread-safe hand-off can cost.
- ``Queue.put``: an unbounded :class:`queue.Queue`.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

try:
    from batchlog import BatchWriter
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog import BatchWriter

THREAD_COUNTS = (1, 4)
CAPACITY = 1000
MAX_QUEUE_SIZE = 100_000
FLUSH_INTERVAL = 0.05

Put = Callable[[int], object]


class Candidate:
    """One way of handing records over: ``setup()`` gives a fresh ``put``, ``finish()`` checks."""

    name = ""

    def setup(self) -> Put:
        raise NotImplementedError

    def finish(self, expected: int) -> None:
        """Check after the timed part that nothing was lost."""


class WriterCandidate(Candidate):
    def __init__(self, method: str) -> None:
        self.name = f"BatchWriter.{method}"
        self.method = method
        self.writer: BatchWriter[int] | None = None
        self.dropped = 0

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
            sys.exit(f"{self.name}: finish() before setup()")
        if not self.writer.close(timeout=60):
            sys.exit(f"{self.name}: close() did not finish within 60 s")
        metrics = self.writer.metrics
        accounted = metrics.records_processed + metrics.records_dropped
        if (
            accounted != expected
            or metrics.records_added != metrics.records_processed
            or (self.method == "add" and metrics.records_dropped)
        ):
            sys.exit(f"{self.name}: lost records: expected {expected}, got {metrics}")
        self.dropped = metrics.records_dropped
        self.writer = None


class FloorCandidate(Candidate):
    name = "floor (lock + list.append)"

    def setup(self) -> Put:
        lock = threading.Lock()
        self.records: list[int] = []
        records = self.records

        def put(record: int) -> None:
            with lock:
                records.append(record)

        return put

    def finish(self, expected: int) -> None:
        if len(self.records) != expected:
            sys.exit(f"{self.name}: lost records")
        self.records = []


class QueueCandidate(Candidate):
    name = "queue.Queue.put"

    def setup(self) -> Put:
        self.queue: queue.Queue[int] = queue.Queue()
        return self.queue.put

    def finish(self, expected: int) -> None:
        if self.queue.qsize() != expected:
            sys.exit(f"{self.name}: lost records")


def time_once(put: Put, threads: int, per_thread: int) -> float:
    """Run ``threads`` producers of ``per_thread`` records each; return the wall seconds."""
    barrier = threading.Barrier(threads)
    starts: list[float] = []
    ends: list[float] = []

    def produce() -> None:
        local_put = put
        barrier.wait()
        started = time.perf_counter()
        for record in range(per_thread):
            local_put(record)
        ends.append(time.perf_counter())
        starts.append(started)

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return max(ends) - min(starts)


@dataclass
class Result:
    name: str
    threads: int
    ns_per_op: float
    refused: float  # share of records the candidate refused in the best repeat


def measure(candidate: Candidate, threads: int, per_thread: int, repeats: int) -> Result:
    total = threads * per_thread
    best, refused = float("inf"), 0.0
    for _ in range(repeats):
        put = candidate.setup()
        gc.collect()
        seconds = time_once(put, threads, per_thread)
        candidate.finish(total)
        if seconds < best:
            best = seconds
            refused = getattr(candidate, "dropped", 0) / total
    return Result(candidate.name, threads, best * 1e9 / total, refused)


def print_platform() -> None:
    print(f"python    {platform.python_implementation()} {sys.version.split()[0]}")
    print(f"platform  {platform.platform()}")
    print(f"machine   {platform.machine()} processor={platform.processor() or '?'}")
    print(f"cpus      {os.cpu_count()}")
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"gil       {'enabled' if gil else 'disabled'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=50_000, 3 repeats")
    args = parser.parse_args()
    per_thread, repeats = (50_000, 3) if args.quick else (200_000, 5)

    print_platform()
    print(f"records   {per_thread} per thread, best of {repeats}")
    print()

    add, try_add = WriterCandidate("add"), WriterCandidate("try_add")
    floor, queue_put = FloorCandidate(), QueueCandidate()
    candidates: list[Candidate] = [add, try_add, floor, queue_put]
    results = {
        (candidate.name, threads): measure(candidate, threads, per_thread, repeats)
        for threads in THREAD_COUNTS
        for candidate in candidates
    }

    header = (
        f"{'name':<28} {'threads':>7} {'ns/op':>9} {'x floor':>8} {'Queue.put/x':>12}"
        f" {'refused':>8}"
    )
    print(header)
    print("-" * len(header))
    for (name, threads), result in results.items():
        floor_ns = results[floor.name, threads].ns_per_op
        queue_ns = results[queue_put.name, threads].ns_per_op
        print(
            f"{name:<28} {threads:>7} {result.ns_per_op:>9.1f} "
            f"{result.ns_per_op / floor_ns:>8.2f} {queue_ns / result.ns_per_op:>12.2f}"
            f" {result.refused:>8.1%}"
        )
    print()

    checks: list[tuple[str, bool]] = []
    for writer_candidate in (add, try_add):
        name = writer_candidate.name
        single = results[name, 1].ns_per_op
        ratio = single / results[floor.name, 1].ns_per_op
        checks.append((f"{name} <= 1.5x floor, 1 thread ({ratio:.2f}x)", ratio <= 1.5))
        for threads in THREAD_COUNTS:
            speedup = results[queue_put.name, threads].ns_per_op / results[name, threads].ns_per_op
            checks.append(
                (
                    f"{name} >= 3x faster than Queue.put, {threads} thread(s) ({speedup:.2f}x)",
                    speedup >= 3.0,
                )
            )
        scaling = results[name, 4].ns_per_op / single
        checks.append(
            (f"{name} 4 threads <= 1.25x single-thread ns/op ({scaling:.2f}x)", scaling <= 1.25)
        )
    for label, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
