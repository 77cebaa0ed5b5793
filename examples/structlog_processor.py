"""End a structlog chain with a BatchingProcessor: event dicts reach a sink in batches.

Run it with ``python examples/structlog_processor.py``. The chain merges context variables,
adds the level and an ISO timestamp, then hands a copy of each event dict to the
BatchingProcessor, which raises ``DropEvent`` (``pass_through=False``, the default): the
logger's own output stays empty. A second processor with ``pass_through=True`` shows a
renderer running after it. Metrics are printed at the end; the script exits with status 1
if an event was lost.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import structlog

from batchlog import BatchingProcessor, Metrics

EVENTS = 12


def print_batch(batch: list[dict[str, Any]]) -> None:
    """The sink: runs on the processor's worker thread with up to ``capacity`` event dicts."""
    print(f"--- batch of {len(batch)} events")
    for event in batch:
        print("    " + " ".join(f"{key}={value!r}" for key, value in event.items()))


def configure(last: list[Any], output: io.StringIO) -> None:
    """Set up structlog with ``last`` at the end of the chain, printing into ``output``."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *last,
        ],
        logger_factory=structlog.PrintLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )


def print_metrics(metrics: Metrics) -> None:
    for name, value in metrics.as_dict().items():
        shown = f"{value:.6f} s" if isinstance(value, float) else value
        print(f"    {name:<20} {shown}")


def main() -> int:
    # 1. The usual setup: BatchingProcessor last; it takes the event, then drops it.
    processor = BatchingProcessor(print_batch, capacity=5, flush_interval=0.5)
    printed = io.StringIO()  # what the PrintLogger would print (nothing, events are dropped)
    configure([processor], printed)
    log = structlog.get_logger()
    structlog.contextvars.bind_contextvars(request_id="req-7", user="ada")
    for number in range(EVENTS):
        log.info("item processed", item=number)
    structlog.contextvars.clear_contextvars()
    processor.close()  # delivers the last, partial batch
    print(f"pass_through=False: the logger printed {len(printed.getvalue())} characters")

    # 2. pass_through=True: the processor batches a copy and the renderer still runs.
    teed = BatchingProcessor(print_batch, capacity=5, flush_interval=0.5, pass_through=True)
    rendered = io.StringIO()
    configure([teed, structlog.processors.JSONRenderer()], rendered)
    structlog.get_logger().warning("disk almost full", percent=93)
    teed.close()
    print(f"pass_through=True: the logger also printed {rendered.getvalue().strip()}")

    metrics = processor.metrics
    print("metrics (pass_through=False):")
    print_metrics(metrics)
    print(f"delivered {metrics.records_processed} of {EVENTS} events")
    ok = (
        metrics.records_processed == EVENTS
        and not printed.getvalue()
        and teed.metrics.records_processed == 1
        and rendered.getvalue()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
