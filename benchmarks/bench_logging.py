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

The measuring lives in ``batchlog._bench.logging_`` (``python -m batchlog bench`` runs it
too); this script prints its report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from batchlog._bench import logging_
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog._bench import logging_
from batchlog._bench import BenchmarkError, platform_info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20_000 records, 3 repeats")
    args = parser.parse_args()
    sizes = logging_.sizes(quick=args.quick)

    print("\n".join(logging_.header_lines(platform_info(), sizes)))
    try:
        report = logging_.run(sizes)
    except BenchmarkError as exc:
        sys.exit(str(exc))
    print("\n".join(logging_.result_lines(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
