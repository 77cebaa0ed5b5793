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

The measuring lives in ``batchlog._bench.writer`` (``python -m batchlog bench`` runs it
too); this script prints its report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from batchlog._bench import writer
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog._bench import writer
from batchlog._bench import BenchmarkError, platform_info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=50_000, 3 repeats")
    args = parser.parse_args()
    sizes = writer.sizes(quick=args.quick)

    print("\n".join(writer.header_lines(platform_info(), sizes)))
    try:
        report = writer.run(sizes)
    except BenchmarkError as exc:
        sys.exit(str(exc))
    print("\n".join(writer.result_lines(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
