"""Configure a BatchingHandler from a JSON file (``examples/logging_config.json``).

Run it with ``python examples/dictconfig_json.py``. The sink is given in the mapping form,
``{"()": "example_sinks.PrintSink", "prefix": "json"}``: the handler imports the factory
and calls it with the other keys. ``flush_level: "ERROR"`` makes an error flush at once.
After ``logging.shutdown()`` the metrics are printed; the script exits with status 1 if a
record was lost.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # so the factory "example_sinks.PrintSink" imports

import example_sinks  # noqa: E402 -- needs the sys.path entry above

from batchlog import BatchingHandler, Metrics  # noqa: E402

RECORDS = 25


def print_metrics(metrics: Metrics) -> None:
    for name, value in metrics.as_dict().items():
        shown = f"{value:.6f} s" if isinstance(value, float) else value
        print(f"    {name:<20} {shown}")


def main() -> int:
    config = json.loads((HERE / "logging_config.json").read_text(encoding="utf-8"))
    logging.config.dictConfig(config)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, BatchingHandler))

    log = logging.getLogger("example.json")
    for number in range(RECORDS - 1):
        log.info("job %d done", number)
    log.error("job %d failed: flush_level=ERROR sends the batch now", RECORDS - 1)

    logging.shutdown()  # flushes and closes the handler, which closes the PrintSink

    metrics = handler.metrics
    received = example_sinks.RECEIVED.get("json", 0)
    print("metrics:")
    print_metrics(metrics)
    print(f"delivered {metrics.records_processed} of {RECORDS} records (sink saw {received})")
    return 0 if metrics.records_processed == received == RECORDS else 1


if __name__ == "__main__":
    sys.exit(main())
