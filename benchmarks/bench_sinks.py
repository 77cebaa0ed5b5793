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
"""

from __future__ import annotations

import argparse
import gc
import gzip
import http.server
import json
import logging
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

try:
    from batchlog import BatchingHandler
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog import BatchingHandler

from batchlog.sinks import FIELDS, JsonLinesSink, SQLiteSink, encode_record, to_json
from batchlog.sinks.sqlite import create_table_sql

try:
    import httpx

    from batchlog.sinks import HTTPSink
except ImportError:
    httpx = None

CAPACITY = 500
FLUSH_TIMEOUT = 300.0  # close() must deliver everything; a slow machine must not cut it short
SYNCHRONOUS = "NORMAL"  # SQLiteSink's default
TABLE = "logs"


# --------------------------------------------------------------------------- baselines


def _row(record: logging.LogRecord) -> tuple[Any, ...]:
    """The column values SQLiteSink stores for ``record``, in the order of FIELDS."""
    encoded = encode_record(record)
    *fields, extra = (encoded[name] for name in FIELDS)
    return (*fields, to_json(extra))


class SQLitePerRecordHandler(logging.Handler):
    """Inserts each record into SQLiteSink's schema and commits it.

    ``synchronous=None`` is the handler people write: ``sqlite3.connect`` with SQLite's
    defaults (rollback journal, ``synchronous=FULL``). Otherwise it is tuned like
    SQLiteSink: WAL and the given ``synchronous``.
    """

    def __init__(self, path: str, synchronous: str | None = SYNCHRONOUS) -> None:
        super().__init__()
        self.connection = sqlite3.connect(path, check_same_thread=False)
        if synchronous is not None:
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute(f"PRAGMA synchronous={synchronous}")
        for statement in create_table_sql(TABLE):
            self.connection.execute(statement)
        self.connection.commit()
        columns = ", ".join(FIELDS)
        placeholders = ", ".join("?" * len(FIELDS))
        self.insert = f"INSERT INTO {TABLE} ({columns}) VALUES ({placeholders})"  # noqa: S608

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.connection.execute(self.insert, _row(record))
            self.connection.commit()
        except Exception:  # noqa: BLE001 -- a Handler reports its failures through handleError
            self.handleError(record)

    def close(self) -> None:
        self.connection.close()
        super().close()


class JsonLineFormatter(logging.Formatter):
    """Formats a record as the line JsonLinesSink writes for it (without the newline)."""

    def format(self, record: logging.LogRecord) -> str:
        return to_json(encode_record(record))


class HTTPPerRecordHandler(logging.Handler):
    """POSTs each record as one NDJSON line with one keep-alive httpx.Client."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.client = httpx.Client(timeout=30.0)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            body = (to_json(encode_record(record)) + "\n").encode("utf-8")
            response = self.client.post(
                self.url, content=body, headers={"Content-Type": "application/x-ndjson"}
            )
            response.raise_for_status()
        except Exception:  # noqa: BLE001 -- a Handler reports its failures through handleError
            self.handleError(record)

    def close(self) -> None:
        self.client.close()
        super().close()


# --------------------------------------------------------------------------- the server


class CountingServer:
    """A local HTTP/1.1 keep-alive server that counts the NDJSON lines POSTed to it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records = 0
        self.requests = 0
        self.errors = 0
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def do_POST(self) -> None:
                try:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    lines = body.count(b"\n")
                except Exception:  # noqa: BLE001 -- answer 400 rather than drop the connection
                    with counter.lock:
                        counter.errors += 1
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with counter.lock:
                    counter.records += lines
                    counter.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: one line per request would swamp the output

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="bench-http-server", daemon=True
        )
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}/ingest"

    def reset(self) -> None:
        with self.lock:
            self.records = self.requests = self.errors = 0

    def counts(self) -> tuple[int, int, int]:
        with self.lock:
            return self.records, self.requests, self.errors

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# --------------------------------------------------------------------------- measuring


@dataclass
class Outcome:
    """One timed run: records per second, and what the check after it found."""

    per_second: float
    problem: str | None = None


def log_through(handler: logging.Handler, count: int, name: str) -> float:
    """Log ``count`` records through ``handler`` alone, close it; return the seconds taken."""
    logger = logging.getLogger(f"bench.sinks.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [handler]
    info = logger.info
    gc.collect()
    started = time.perf_counter()
    for number in range(count):
        info("user %s logged in", number)
    handler.close()
    seconds = time.perf_counter() - started
    logger.handlers = []
    return seconds


def batching_problem(handler: BatchingHandler, count: int) -> str | None:
    metrics = handler.metrics
    if (
        metrics.records_dropped
        or metrics.records_failed
        or metrics.records_evicted
        or metrics.records_processed != count
    ):
        return (
            f"metrics: processed {metrics.records_processed} of {count}, dropped "
            f"{metrics.records_dropped}, failed {metrics.records_failed}, "
            f"evicted {metrics.records_evicted}"
        )
    return None


def rows_in(path: str) -> int:
    connection = sqlite3.connect(path)
    try:
        (rows,) = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()  # noqa: S608
    finally:
        connection.close()
    return int(rows)


def lines_in(path: str) -> int:
    with open(path, encoding="utf-8") as lines:
        count = 0
        for line in lines:
            json.loads(line)  # every line is whole JSON
            count += 1
    return count


def first_problem(*problems: str | None) -> str | None:
    return next((problem for problem in problems if problem), None)


def sqlite_batched(
    directory: str, count: int, run: int, synchronous: str, label: str = ""
) -> Outcome:
    path = os.path.join(directory, f"batched-{synchronous}-{label}-{run}.sqlite3")
    handler = BatchingHandler(
        SQLiteSink(path, synchronous=synchronous), capacity=CAPACITY, flush_timeout=FLUSH_TIMEOUT
    )
    seconds = log_through(handler, count, "sqlite.batched")
    rows = rows_in(path)
    return Outcome(
        count / seconds,
        first_problem(
            batching_problem(handler, count),
            f"{rows} rows of {count}" if rows != count else None,
        ),
    )


def sqlite_per_record(
    directory: str, count: int, run: int, synchronous: str | None
) -> Outcome:
    path = os.path.join(directory, f"per-record-{synchronous or 'default'}-{run}.sqlite3")
    handler = SQLitePerRecordHandler(path, synchronous)
    seconds = log_through(handler, count, "sqlite.per_record")
    rows = rows_in(path)
    return Outcome(count / seconds, f"{rows} rows of {count}" if rows != count else None)


def jsonl_batched(directory: str, count: int, run: int) -> Outcome:
    path = os.path.join(directory, f"batched-{run}.jsonl")
    handler = BatchingHandler(JsonLinesSink(path), flush_timeout=FLUSH_TIMEOUT)
    seconds = log_through(handler, count, "jsonl.batched")
    lines = lines_in(path)
    return Outcome(
        count / seconds,
        first_problem(
            batching_problem(handler, count),
            f"{lines} lines of {count}" if lines != count else None,
        ),
    )


def jsonl_per_record(directory: str, count: int, run: int) -> Outcome:
    path = os.path.join(directory, f"per-record-{run}.jsonl")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonLineFormatter())
    seconds = log_through(handler, count, "jsonl.per_record")
    lines = lines_in(path)
    return Outcome(count / seconds, f"{lines} lines of {count}" if lines != count else None)


def http_batched(server: CountingServer, count: int) -> Outcome:
    server.reset()
    handler = BatchingHandler(
        HTTPSink(server.url, encoder="ndjson"), capacity=CAPACITY, flush_timeout=FLUSH_TIMEOUT
    )
    seconds = log_through(handler, count, "http.batched")
    records, requests, errors = server.counts()
    wrong = records != count or errors or requests < count // CAPACITY
    return Outcome(
        count / seconds,
        first_problem(
            batching_problem(handler, count),
            f"server counted {records} records of {count} in {requests} requests, {errors} bad"
            if wrong
            else None,
        ),
    )


def http_per_record(server: CountingServer, count: int) -> Outcome:
    server.reset()
    seconds = log_through(HTTPPerRecordHandler(server.url), count, "http.per_record")
    records, requests, errors = server.counts()
    wrong = records != count or requests != count or errors
    return Outcome(
        count / seconds,
        f"server counted {records} records of {count} in {requests} requests, {errors} bad"
        if wrong
        else None,
    )


def encode_only(batch: list[logging.LogRecord]) -> None:
    """A sink that encodes each record as every sink does, and stores nothing."""
    for record in batch:
        to_json(encode_record(record))


def encoding_ceiling(count: int, run: int) -> Outcome:  # noqa: ARG001 -- as the others
    """``logger.info`` + ``encode_record`` + ``to_json`` per record: no sink beats this."""
    handler = BatchingHandler(encode_only, capacity=CAPACITY, flush_timeout=FLUSH_TIMEOUT)
    seconds = log_through(handler, count, "ceiling")
    return Outcome(count / seconds, batching_problem(handler, count))


def best_of(repeats: int, run: Callable[[int], Outcome]) -> Outcome:
    """The fastest of ``repeats`` runs; the first problem any run found."""
    outcomes = [run(number) for number in range(repeats)]
    best = max(outcomes, key=lambda outcome: outcome.per_second)
    return Outcome(best.per_second, first_problem(*(outcome.problem for outcome in outcomes)))


@dataclass
class Comparison:
    sink: str
    batched: Outcome
    baseline: Outcome
    target: float | None  # None: shown for information, no target

    @property
    def ratio(self) -> float:
        return self.batched.per_second / self.baseline.per_second

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "PASS" if self.ratio >= self.target else "FAIL"


def print_platform() -> None:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"python    {platform.python_implementation()} {sys.version.split()[0]}")
    print(
        f"machine   {platform.machine()}  cpus={os.cpu_count()}  gil={'on' if gil else 'off'}"
        f"  {platform.platform()}"
    )


def file_comparisons(
    directory: str, batched_count: int, per_record_count: int, repeats: int
) -> list[Comparison]:
    def sqlite(
        synchronous: str, baseline: str | None, label: str, target: float | None
    ) -> Comparison:
        return Comparison(
            label,
            best_of(
                repeats,
                lambda run: sqlite_batched(directory, batched_count, run, synchronous, label),
            ),
            best_of(
                repeats,
                lambda run: sqlite_per_record(directory, per_record_count, run, baseline),
            ),
            target,
        )

    return [
        # The target: SQLiteSink as shipped against the per-record handler people write.
        sqlite(SYNCHRONOUS, None, "SQLite", 50.0),
        sqlite(SYNCHRONOUS, SYNCHRONOUS, "SQLite tuned", None),
        Comparison(
            "JSON Lines",
            best_of(repeats, lambda run: jsonl_batched(directory, batched_count, run)),
            best_of(repeats, lambda run: jsonl_per_record(directory, batched_count, run)),
            2.0,
        ),
        sqlite("FULL", "FULL", "SQLite FULL", None),
    ]


def http_comparison(batched_count: int, per_record_count: int, repeats: int) -> Comparison:
    server = CountingServer()
    try:
        return Comparison(
            "HTTP (ndjson)",
            best_of(repeats, lambda _run: http_batched(server, batched_count)),
            best_of(repeats, lambda _run: http_per_record(server, per_record_count)),
            20.0,
        )
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the records, one repeat (a smoke run)"
    )
    args = parser.parse_args()
    batched_count, per_record_count, repeats = (2_000, 200, 1) if args.quick else (20_000, 2_000, 3)

    print_platform()
    print(
        f"records   {batched_count} batched, {per_record_count} per-record baselines "
        f"(FileHandler: {batched_count}); best of {repeats}; close() inside the timing"
    )
    print()

    ceiling = best_of(repeats, lambda run: encoding_ceiling(batched_count, run))
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as directory:
        comparisons = file_comparisons(directory, batched_count, per_record_count, repeats)
    if httpx is None:
        print("note: httpx/tenacity are not importable; the HTTP comparison is skipped")
    else:
        comparisons.insert(2, http_comparison(batched_count, per_record_count, repeats))

    header = (
        f"{'sink':<14} {'batched rec/s':>14} {'baseline rec/s':>15} {'ratio':>8}"
        f" {'target':>7} {'result':>6} {'max':>8}"
    )
    print(header)
    print("-" * len(header))
    for comparison in comparisons:
        target = "-" if comparison.target is None else f"{comparison.target:.0f}x"
        most = ceiling.per_second / comparison.baseline.per_second
        print(
            f"{comparison.sink:<14} {comparison.batched.per_second:>14,.0f}"
            f" {comparison.baseline.per_second:>15,.0f} {comparison.ratio:>7.1f}x"
            f" {target:>7} {comparison.verdict:>6} {most:>7.1f}x"
        )
    print()
    print(
        f"max          encoding ceiling / baseline: the most ratio any sink could reach here\n"
        f"ceiling      {ceiling.per_second:,.0f} rec/s: logger.info + encode_record + to_json"
        f" per record, nothing stored\n"
        f"SQLite       SQLiteSink's defaults (WAL, synchronous=NORMAL) against a handler with\n"
        f"             sqlite3's defaults (rollback journal, synchronous=FULL): what people write\n"
        f"SQLite tuned both sides WAL + synchronous=NORMAL; no target\n"
        f"SQLite FULL  both sides WAL + synchronous=FULL (an fsync per commit); no target"
    )
    problems = [
        f"{comparison.sink} {kind}: {outcome.problem}"
        for comparison in comparisons
        for kind, outcome in (("batched", comparison.batched), ("baseline", comparison.baseline))
        if outcome.problem
    ]
    if ceiling.problem:
        problems.append(f"ceiling: {ceiling.problem}")
    for problem in problems:
        print(f"LOST  {problem}")
    if not problems:
        print("PASS  nothing lost: every record logged is stored; no record dropped or failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
