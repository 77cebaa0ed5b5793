"""Configure a BatchingHandler with ``logging.config.dictConfig`` from plain values only.

Run it with ``python examples/dictconfig_dict.py``. The sink is an import string naming a
function in ``examples/example_sinks.py``; capacity, flush interval, overflow and level are
plain numbers and strings, as a YAML or TOML file would give them. Records are delivered with
no ``start()`` call. ``logging.shutdown()`` (which also runs at exit) closes the handler and
so delivers everything; then the metrics are printed, and the script exits with status 1 if
a record was lost.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # so the import string "example_sinks..." works

import example_sinks  # found through the sys.path entry above

from batchlog import BatchingHandler, Metrics

RECORDS = 30

CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)-7s %(name)s: %(message)s"}},
    "handlers": {
        "batched": {
            "class": "batchlog.BatchingHandler",
            "sink": "example_sinks.print_batch",  # or "example_sinks:print_batch"
            "capacity": 10,
            "flush_interval": 0.5,
            "overflow": "drop_oldest",
            "formatter": "plain",  # applied on the worker thread -> record.formatted
            "level": "INFO",
        },
    },
    "root": {"level": "DEBUG", "handlers": ["batched"]},
}


def print_metrics(metrics: Metrics) -> None:
    for name, value in metrics.as_dict().items():
        shown = f"{value:.6f} s" if isinstance(value, float) else value
        print(f"    {name:<20} {shown}")


def main() -> int:
    logging.config.dictConfig(CONFIG)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, BatchingHandler))

    log = logging.getLogger("example.dictconfig")
    for number in range(RECORDS):
        log.info("request %d handled", number)
    log.debug("below the handler's INFO level: never reaches the sink")

    logging.shutdown()  # what runs at exit: flushes and closes every handler

    metrics = handler.metrics
    received = example_sinks.RECEIVED.get("print_batch", 0)
    print("metrics:")
    print_metrics(metrics)
    print(f"delivered {metrics.records_processed} of {RECORDS} records (sink saw {received})")
    return 0 if metrics.records_processed == received == RECORDS else 1


if __name__ == "__main__":
    sys.exit(main())
