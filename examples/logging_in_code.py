"""Attach a BatchingHandler to a logger in code and log from a few threads.

Run it with ``python examples/logging_in_code.py``. The sink prints each batch's size and
its formatted lines (the handler's Formatter runs on the worker thread and leaves the text in
``record.formatted``). At the end it prints the handler's metrics and exits with status 1 if
a record was lost.
"""

from __future__ import annotations

import logging
import sys
import threading

from batchlog import BatchingHandler, Metrics

THREADS = 4
RECORDS_PER_THREAD = 25


def print_batch(batch: list[logging.LogRecord]) -> None:
    """The sink: called on the handler's worker thread with up to ``capacity`` records."""
    print(f"--- batch of {len(batch)} records")
    for record in batch:
        print(f"    {record.formatted}")  # set by the handler's Formatter


def print_metrics(metrics: Metrics) -> None:
    for name, value in metrics.as_dict().items():
        shown = f"{value:.6f} s" if isinstance(value, float) else value
        print(f"    {name:<20} {shown}")


def main() -> int:
    handler = BatchingHandler(print_batch, capacity=20, flush_interval=0.5)
    handler.setFormatter(logging.Formatter("%(threadName)s %(levelname)s %(message)s"))
    logger = logging.getLogger("example.in_code")
    logger.setLevel(logging.INFO)
    logger.propagate = False  # only our handler sees these records
    logger.addHandler(handler)

    def work(number: int) -> None:
        for step in range(RECORDS_PER_THREAD):
            logger.info("worker %d step %d", number, step)

    threads = [threading.Thread(target=work, args=(n,), name=f"worker-{n}") for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    logger.removeHandler(handler)
    handler.close()  # delivers every waiting record, then stops the worker thread

    metrics = handler.metrics
    expected = THREADS * RECORDS_PER_THREAD
    print("metrics:")
    print_metrics(metrics)
    print(f"delivered {metrics.records_processed} of {expected} records")
    return 0 if metrics.records_processed == expected else 1


if __name__ == "__main__":
    sys.exit(main())
