"""Route structlog through the standard library into a BatchingHandler.

Run it with ``python examples/structlog_via_stdlib.py``. structlog's chain ends in
``ProcessorFormatter.wrap_for_formatter``, so each event becomes a ``logging.LogRecord``.
The BatchingHandler's Formatter is a ``structlog.stdlib.ProcessorFormatter`` with a
``JSONRenderer``: it runs on the handler's worker thread, not the caller's, and the sink
prints ``record.formatted``, one JSON line per record. A plain ``logging`` call is rendered
the same way (``foreign_pre_chain``). Metrics are printed at the end; the script exits with
status 1 if a record was lost.

"""

from __future__ import annotations

import json
import logging
import sys

import structlog

from batchlog import BatchingHandler, Metrics

EVENTS = 10


def print_json_lines(batch: list[logging.LogRecord]) -> None:
    """The sink: prints the JSON the formatter rendered on this (the worker) thread."""
    print(f"--- batch of {len(batch)} records")
    for record in batch:
        json.loads(record.formatted)  # it really is one JSON document
        print(f"    {record.formatted}")


def print_metrics(metrics: Metrics) -> None:
    for name, value in metrics.as_dict().items():
        shown = f"{value:.6f} s" if isinstance(value, float) else value
        print(f"    {name:<20} {shown}")


def main() -> int:
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,  # must be last
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )

    handler = BatchingHandler(print_json_lines, capacity=4, flush_interval=0.5)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
            # Records from plain `logging` calls get these before rendering.
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    log = structlog.get_logger("example.structlog")
    structlog.contextvars.bind_contextvars(tenant="acme")
    for number in range(EVENTS - 1):
        log.info("order placed", order=number, total=9.5 * number)
    logging.getLogger("example.stdlib").warning("plain logging, %s", "same JSON")
    structlog.contextvars.clear_contextvars()

    root.removeHandler(handler)
    handler.close()

    metrics = handler.metrics
    print("metrics:")
    print_metrics(metrics)
    print(f"delivered {metrics.records_processed} of {EVENTS} records")
    return 0 if metrics.records_processed == EVENTS else 1


if __name__ == "__main__":
    sys.exit(main())
