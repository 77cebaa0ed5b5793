"""Eight threads log into one BatchWriter; a slow sink receives the records in batches.

Run it with ``python examples/threads_to_sink.py``. It checks that every record reached the
sink exactly once and in each thread's order, prints the writer's metrics, and exits with
status 1 if anything was lost.
"""

from __future__ import annotations

import sys
import threading
import time

from batchlog import BatchWriter

THREADS = 8
RECORDS_PER_THREAD = 5_000

Record = tuple[int, int]  # (thread number, sequence number within that thread)


def main() -> int:
    batches: list[list[Record]] = []

    def sink(batch: list[Record]) -> None:
        # Stands in for a slow database: one round trip per batch, whatever its size.
        time.sleep(0.001)
        batches.append(batch)  # safe to keep: clear_buffers=False hands over a fresh list

    writer = BatchWriter(capacity=500, flush_interval=0.2, flush_fn=sink, name="example")
    start_together = threading.Barrier(THREADS)

    def produce(thread_number: int) -> None:
        start_together.wait()  # all threads add at the same time
        for sequence in range(RECORDS_PER_THREAD):
            writer.add((thread_number, sequence))

    threads = [
        threading.Thread(target=produce, args=(number,), name=f"producer-{number}")
        for number in range(THREADS)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    closed_in_time = writer.close(timeout=30.0)
    elapsed = time.perf_counter() - started

    metrics = writer.metrics
    print_table(metrics.as_dict())
    print()
    print(
        f"{metrics.records_processed} records in {metrics.flush_count} batches, "
        f"{metrics.records_dropped} dropped ({elapsed:.2f} s)"
    )

    problems = find_problems(batches)
    if not closed_in_time:
        problems.append("close() did not finish within 30 s")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def find_problems(batches: list[list[Record]]) -> list[str]:
    """Say what went wrong, if anything: missing, duplicated or reordered records."""
    problems: list[str] = []
    received = [record for batch in batches for record in batch]
    unique = set(received)
    expected = {
        (thread, sequence) for thread in range(THREADS) for sequence in range(RECORDS_PER_THREAD)
    }
    if missing := expected - unique:
        problems.append(f"{len(missing)} records never reached the sink")
    if len(received) != len(unique):
        problems.append(f"{len(received) - len(unique)} records reached the sink twice")
    last_seen = [-1] * THREADS
    for thread, sequence in received:
        if sequence <= last_seen[thread]:
            problems.append(f"thread {thread}: record {sequence} arrived after {last_seen[thread]}")
            break
        last_seen[thread] = sequence
    return problems


def print_table(fields: dict[str, object]) -> None:
    """Print name/value pairs as two aligned columns."""
    name_width = max(len(name) for name in fields)
    for name, value in fields.items():
        shown = f"{value:.6f} s" if isinstance(value, float) else str(value)
        print(f"{name:<{name_width}}  {shown:>14}")


if __name__ == "__main__":
    sys.exit(main())
