"""Records per second through the ready-made sinks, against a handler that writes per record.

Run as ``python benchmarks/bench_sinks.py [--quick]``. Needs the standard library, batchlog,
and httpx + tenacity (``pip install 'batchlog[http]'``) for the HTTP comparison.

Every candidate logs ``logger.info("user %s logged in", i)`` a fixed number of times through
one handler, then closes it; the time runs from the first call to the end of ``close()``, so
everything is on disk (or at the server) when the clock stops. Best of the repeats.

1. SQLite: ``BatchingHandler(SQLiteSink(path), capacity=500)`` against a ``logging.Handler``
   that inserts each record into the same schema and commits (its own connection, WAL,
   ``synchronous=NORMAL`` as SQLiteSink uses). Target >= 50x.
2. JSON Lines: ``BatchingHandler(JsonLinesSink(path))`` against ``logging.FileHandler`` with
   a Formatter writing the same JSON line per record (``encode_record`` + ``to_json``).
   Target >= 2x.
3. HTTP: ``BatchingHandler(HTTPSink(url, encoder="ndjson"), capacity=500)`` against a handler
   that POSTs each record with one keep-alive ``httpx.Client``, both to the same local
   ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, gzip decoded, records counted).
   Target >= 20x.

After each run nothing may be lost: rows in the table, lines in the file or records counted
by the server equal the records logged, and a BatchingHandler's metrics show no dropped and
no failed record.

The measuring lives in ``batchlog._bench.sinks`` (``python -m batchlog bench`` runs it
too); this script prints its report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from batchlog._bench import sinks
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog._bench import sinks
from batchlog._bench import BenchmarkError, platform_info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the records, one repeat (a smoke run)"
    )
    args = parser.parse_args()
    sizes = sinks.sizes(quick=args.quick)

    print("\n".join(sinks.header_lines(platform_info(), sizes)))
    try:
        report = sinks.run(sizes)
    except BenchmarkError as exc:
        sys.exit(str(exc))
    print("\n".join(sinks.result_lines(report)))
    return 1 if report.lost else 0


if __name__ == "__main__":
    sys.exit(main())
