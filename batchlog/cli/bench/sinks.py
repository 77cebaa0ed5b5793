"""Records per second through the ready-made sinks, against the handlers people use instead.

Needs the standard library and batchlog; httpx + tenacity (``pip install 'batchlog[http]'``)
for the HTTP comparisons, and opentelemetry-sdk with opentelemetry-exporter-otlp-proto-http
for the OpenTelemetry one (each is skipped, with a note, when it is not importable).

Every candidate logs ``logger.info("user %s logged in", i)`` a fixed number of times through
one handler, then closes it; the time runs from the first call to the end of ``close()``
(for OpenTelemetry: ``LoggerProvider.shutdown()``), so everything is on disk (or at the
server) when the clock stops. Best of the repeats. Batched handlers use ``capacity=500``.

1. SQLite: ``BatchingHandler(SQLiteSink(path))`` against a ``logging.Handler`` that inserts
   each record into the same schema and commits, with sqlite3's defaults. Target >= 50x.
2. JSON Lines: ``BatchingHandler(JsonLinesSink(path))`` against ``logging.FileHandler``
   with a JSON Formatter writing the same line per record with the standard library's
   ``json`` (``to_json(encode_record(record))``). Target >= 1.5x. An information row gives
   the Formatter batchlog's own fast encoding (``json_bytes``, orjson when installed).
3. HTTP: ``BatchingHandler(HTTPSink(url))`` (NDJSON, gzip) against
   ``logging.handlers.HTTPHandler`` (one form-encoded POST per record). Target >= 25x.
4. OTLP/HTTP: ``BatchingHandler(HTTPSink(url, encoder="otlp"))`` against OpenTelemetry's
   ``LoggingHandler`` + ``BatchLogRecordProcessor`` + ``OTLPLogExporter`` (protobuf over
   HTTP), batches of 500 both. Target >= 2x.

The HTTP candidates send to one local server that keeps each body and answers 200; the
records in them are counted after the clock stops (NDJSON lines, form posts, OTLP JSON or
protobuf log records). After each run nothing may be lost: rows in the table, lines in the
file or records the server received equal the records logged, and a BatchingHandler's
metrics show no dropped and no failed record.
"""

from __future__ import annotations

import dataclasses
import gc
import gzip
import http.server
import importlib.util
import json
import logging
import logging.handlers
import os
import sqlite3
import tempfile
import threading
import time
import urllib.parse
import warnings
from typing import Any, Callable

from batchlog import BatchingHandler
from batchlog.sinks import FIELDS, JsonLinesSink, SQLiteSink, encode_record, to_json
from batchlog.sinks._encode import json_bytes
from batchlog.sinks.sqlite import create_table_sql

# The per-record baseline stores exactly the values SQLiteSink stores, with the sink's own
# row function (an older, slower copy once made the ratio unfair).
from batchlog.sinks.sqlite import row_values as sqlite_row

from ._common import Column, PlatformInfo, Ratio, format_table, platform_info, with_repeats

__all__ = [
    "SUITE",
    "Comparison",
    "Outcome",
    "Report",
    "Sizes",
    "header_lines",
    "result_lines",
    "run",
    "sizes",
]

SUITE = "sinks"
CAPACITY = 500
FLUSH_TIMEOUT = 300.0  # close() must deliver everything; a slow machine must not cut it short
SYNCHRONOUS = "NORMAL"  # SQLiteSink's default
TABLE = "logs"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Records per batched run and per per-record baseline, and the repeats."""

    batched: int
    per_record: int
    repeats: int


def sizes(*, quick: bool = False, records: int | None = None, repeats: int | None = None) -> Sizes:
    """Return the full sizes, the ``--quick`` ones, or ``records`` batched (a tenth per record).

    ``repeats``, when given, replaces the number of repeats.
    """
    if records is not None:
        chosen = Sizes(records, max(records // 10, 1), 1)
    else:
        chosen = Sizes(2_000, 200, 1) if quick else Sizes(20_000, 2_000, 3)
    return with_repeats(chosen, repeats)


def _available(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(name) is not None for name in modules)
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _http_available() -> bool:
    return _available("httpx", "tenacity")


def _otel_available() -> bool:
    return _http_available() and _available(
        "opentelemetry.sdk._logs", "opentelemetry.exporter.otlp.proto.http._log_exporter"
    )


# --------------------------------------------------------------------------- baselines


class _SQLitePerRecordHandler(logging.Handler):
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
            self.connection.execute(self.insert, sqlite_row(record))
            self.connection.commit()
        except Exception:  # noqa: BLE001 -- a Handler reports its failures through handleError
            self.handleError(record)

    def close(self) -> None:
        self.connection.close()
        super().close()


class _JsonLineFormatter(logging.Formatter):
    """Formats a record as the line JsonLinesSink writes for it, with the stdlib's json."""

    def format(self, record: logging.LogRecord) -> str:
        return to_json(encode_record(record))


class _FastJsonLineFormatter(logging.Formatter):
    """The same line with batchlog's fast encoding (orjson when installed), as the sink."""

    def format(self, record: logging.LogRecord) -> str:
        return json_bytes(encode_record(record)).decode("utf-8")


class _HTTPHandler(logging.handlers.HTTPHandler):
    """``logging.handlers.HTTPHandler``, closing the connection it opens for each record.

    The stdlib's leaves each one to the garbage collector (a ResourceWarning per record);
    closing it explicitly costs no more than that would.
    """

    _connection: Any = None

    def getConnection(self, host: str, secure: bool) -> Any:  # noqa: N802, FBT001 -- stdlib's
        self._connection = super().getConnection(host, secure)
        return self._connection

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        finally:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()


class _StoringServer:
    """A local HTTP/1.1 server that keeps every POST body and answers 200 at once.

    It parses nothing while the clock runs: ``records()`` counts the records in the kept
    bodies afterwards (NDJSON lines, form-encoded posts, OTLP JSON or protobuf).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: list[tuple[str, str, bytes]] = []
        bodies, lock = self._bodies, self._lock

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive for the clients that keep it

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                kind = self.headers.get("Content-Type", "")
                with lock:
                    bodies.append((kind, self.headers.get("Content-Encoding", ""), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: one line per request would swamp the output

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="bench-sinks-server", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.host = f"{host!s}:{port}"
        self.url = f"http://{self.host}"

    def __enter__(self) -> _StoringServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def reset(self) -> None:
        with self._lock:
            self._bodies.clear()

    def records(self) -> tuple[int, int, int]:
        """Return (records, requests, bodies that could not be read) received so far."""
        with self._lock:
            bodies = list(self._bodies)
        records = errors = 0
        for kind, encoding, body in bodies:
            try:
                records += _records_in(kind, gzip.decompress(body) if encoding == "gzip" else body)
            except Exception:  # noqa: BLE001 -- a body it cannot read counts as bad
                errors += 1
        return records, len(bodies), errors


def _records_in(kind: str, body: bytes) -> int:
    """The number of log records in one request body of content type ``kind``."""
    if "ndjson" in kind:
        return body.count(b"\n")
    if "x-www-form-urlencoded" in kind:  # logging.handlers.HTTPHandler: one record a post
        return 1 if "msg" in urllib.parse.parse_qs(body.decode("utf-8")) else 0
    if "protobuf" in kind:
        service: Any = importlib.import_module(
            "opentelemetry.proto.collector.logs.v1.logs_service_pb2"
        )
        request = service.ExportLogsServiceRequest.FromString(body)
        return sum(
            len(scope.log_records) for logs in request.resource_logs for scope in logs.scope_logs
        )
    data = json.loads(body)  # OTLP/JSON
    return sum(
        len(scope.get("logRecords", []))
        for logs in data.get("resourceLogs", [])
        for scope in logs.get("scopeLogs", [])
    )


# --------------------------------------------------------------------------- measuring


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One timed run (or the best of several): records per second, what the checks found.

    ``repeats`` holds every repeat's records per second when this is a best of them.
    """

    per_second: float
    problem: str | None = None
    repeats: tuple[float, ...] = ()


def _log_through(
    handler: logging.Handler, count: int, name: str, finish: Callable[[], object] | None = None
) -> float:
    """Log ``count`` records through ``handler`` alone, close it; return the seconds taken.

    ``finish`` (OpenTelemetry's ``LoggerProvider.shutdown``) runs after ``close()``, on
    the clock: it delivers what the handler's own pipeline still holds.
    """
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
    if finish is not None:
        finish()
    seconds = time.perf_counter() - started
    logger.handlers = []
    return seconds


def _batching_problem(handler: BatchingHandler, count: int) -> str | None:
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


def _rows_in(path: str) -> int:
    connection = sqlite3.connect(path)
    try:
        (rows,) = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()  # noqa: S608
    finally:
        connection.close()
    return int(rows)


def _lines_in(path: str) -> int:
    with open(path, encoding="utf-8") as lines:
        count = 0
        for line in lines:
            json.loads(line)  # every line is whole JSON
            count += 1
    return count


def _first_problem(*problems: str | None) -> str | None:
    return next((problem for problem in problems if problem), None)


def _sqlite_batched(
    directory: str, count: int, run: int, synchronous: str, label: str = ""
) -> Outcome:
    path = os.path.join(directory, f"batched-{synchronous}-{label}-{run}.sqlite3")
    handler = BatchingHandler(
        SQLiteSink(path, synchronous=synchronous), capacity=CAPACITY, flush_timeout=FLUSH_TIMEOUT
    )
    seconds = _log_through(handler, count, "sqlite.batched")
    rows = _rows_in(path)
    return Outcome(
        count / seconds,
        _first_problem(
            _batching_problem(handler, count),
            f"{rows} rows of {count}" if rows != count else None,
        ),
    )


def _sqlite_per_record(directory: str, count: int, run: int, synchronous: str | None) -> Outcome:
    path = os.path.join(directory, f"per-record-{synchronous or 'default'}-{run}.sqlite3")
    handler = _SQLitePerRecordHandler(path, synchronous)
    seconds = _log_through(handler, count, "sqlite.per_record")
    rows = _rows_in(path)
    return Outcome(count / seconds, f"{rows} rows of {count}" if rows != count else None)


def _jsonl_batched(directory: str, count: int, run: int) -> Outcome:
    path = os.path.join(directory, f"batched-{run}.jsonl")
    handler = BatchingHandler(JsonLinesSink(path), capacity=CAPACITY, flush_timeout=FLUSH_TIMEOUT)
    seconds = _log_through(handler, count, "jsonl.batched")
    lines = _lines_in(path)
    return Outcome(
        count / seconds,
        _first_problem(
            _batching_problem(handler, count),
            f"{lines} lines of {count}" if lines != count else None,
        ),
    )


def _jsonl_per_record(
    directory: str, count: int, run: int, formatter: logging.Formatter | None = None
) -> Outcome:
    path = os.path.join(directory, f"per-record-{run}-{type(formatter).__name__}.jsonl")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(formatter or _JsonLineFormatter())
    seconds = _log_through(handler, count, "jsonl.per_record")
    lines = _lines_in(path)
    return Outcome(count / seconds, f"{lines} lines of {count}" if lines != count else None)


def _received_problem(server: _StoringServer, count: int, *, requests: int) -> str | None:
    """What the server did not get: records missing, or fewer requests than ``requests``."""
    records, made, errors = server.records()
    if records != count or errors or made < requests:
        return f"server received {records} records of {count} in {made} requests, {errors} bad"
    return None


def _http_batched(server: _StoringServer, count: int, encoder: str, path: str) -> Outcome:
    from batchlog.sinks import HTTPSink

    server.reset()
    handler = BatchingHandler(
        HTTPSink(server.url + path, encoder=encoder),
        capacity=CAPACITY,
        flush_timeout=FLUSH_TIMEOUT,
    )
    seconds = _log_through(handler, count, f"http.batched.{encoder}")
    return Outcome(
        count / seconds,
        _first_problem(
            _batching_problem(handler, count),
            _received_problem(server, count, requests=count // CAPACITY),
        ),
    )


def _http_handler_per_record(server: _StoringServer, count: int) -> Outcome:
    """``logging.handlers.HTTPHandler``: one form-encoded POST (and connection) per record."""
    server.reset()
    handler = _HTTPHandler(server.host, "/ingest", method="POST")
    seconds = _log_through(handler, count, "http.per_record")
    return Outcome(count / seconds, _received_problem(server, count, requests=count))


def _otel_batched(server: _StoringServer, count: int) -> Outcome:
    """OpenTelemetry's LoggingHandler, BatchLogRecordProcessor and OTLP/HTTP exporter."""
    # Imported by name: mypy would read the exporter's source, which needs Python 3.10.
    exporter: Any = importlib.import_module("opentelemetry.exporter.otlp.proto.http._log_exporter")
    logs: Any = importlib.import_module("opentelemetry.sdk._logs")
    export: Any = importlib.import_module("opentelemetry.sdk._logs.export")

    server.reset()
    provider = logs.LoggerProvider()
    provider.add_log_record_processor(
        export.BatchLogRecordProcessor(
            exporter.OTLPLogExporter(endpoint=f"{server.url}/v1/logs"),
            max_export_batch_size=CAPACITY,
            max_queue_size=max(count, 2048),  # it drops silently when full: never let it fill
            schedule_delay_millis=5_000,  # BatchingHandler's flush_interval default
        )
    )
    with warnings.catch_warnings():  # deprecated in favour of opentelemetry-instrumentation
        warnings.simplefilter("ignore", DeprecationWarning)  # -logging; still the SDK's
        handler: logging.Handler = logs.LoggingHandler(logger_provider=provider)
    seconds = _log_through(handler, count, "otel.batched", finish=provider.shutdown)
    return Outcome(count / seconds, _received_problem(server, count, requests=count // CAPACITY))


def _encode_only(batch: list[logging.LogRecord]) -> None:
    """A sink that encodes each record as the JSON sinks do, and stores nothing."""
    for record in batch:
        json_bytes(encode_record(record))


def _encoding_ceiling(count: int) -> Outcome:
    """``logger.info`` + ``encode_record`` + ``json_bytes`` per record: no sink beats this."""
    handler = BatchingHandler(_encode_only, capacity=CAPACITY, flush_timeout=FLUSH_TIMEOUT)
    seconds = _log_through(handler, count, "ceiling")
    return Outcome(count / seconds, _batching_problem(handler, count))


def _best_of(repeats: int, run: Callable[[int], Outcome]) -> Outcome:
    """The fastest of ``repeats`` runs; the first problem any run found."""
    outcomes = [run(number) for number in range(repeats)]
    best = max(outcomes, key=lambda outcome: outcome.per_second)
    return Outcome(
        best.per_second,
        _first_problem(*(outcome.problem for outcome in outcomes)),
        tuple(outcome.per_second for outcome in outcomes),
    )


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One sink batched against its per-record baseline."""

    sink: str
    batched: Outcome
    baseline: Outcome
    target: float | None  # None: shown for information, no target

    @property
    def ratio(self) -> float:
        """Batched records per second over the baseline's."""
        return self.batched.per_second / self.baseline.per_second

    @property
    def verdict(self) -> str:
        """``PASS`` or ``FAIL`` against the target; ``info`` without one."""
        if self.target is None:
            return "info"
        return "PASS" if self.ratio >= self.target else "FAIL"


def _file_comparisons(directory: str, chosen: Sizes) -> list[Comparison]:
    repeats = chosen.repeats

    def sqlite(
        synchronous: str, baseline: str | None, label: str, target: float | None
    ) -> Comparison:
        return Comparison(
            label,
            _best_of(
                repeats,
                lambda run: _sqlite_batched(directory, chosen.batched, run, synchronous, label),
            ),
            _best_of(
                repeats,
                lambda run: _sqlite_per_record(directory, chosen.per_record, run, baseline),
            ),
            target,
        )

    jsonl = _best_of(repeats, lambda run: _jsonl_batched(directory, chosen.batched, run))
    return [
        # The target: SQLiteSink as shipped against the per-record handler people write.
        sqlite(SYNCHRONOUS, None, "SQLite", 50.0),
        sqlite(SYNCHRONOUS, SYNCHRONOUS, "SQLite tuned", None),
        Comparison(
            "JSON Lines",
            jsonl,
            _best_of(repeats, lambda run: _jsonl_per_record(directory, chosen.batched, run)),
            1.5,
        ),
        Comparison(
            "JSON Lines fast",
            jsonl,
            _best_of(
                repeats,
                lambda run: _jsonl_per_record(
                    directory, chosen.batched, run, _FastJsonLineFormatter()
                ),
            ),
            None,
        ),
        sqlite("FULL", "FULL", "SQLite FULL", None),
    ]


def _http_comparisons(chosen: Sizes, *, otel: bool) -> list[Comparison]:
    repeats = chosen.repeats
    with _StoringServer() as server:
        comparisons = [
            Comparison(
                "HTTP",
                _best_of(
                    repeats, lambda _run: _http_batched(server, chosen.batched, "ndjson", "/ingest")
                ),
                _best_of(repeats, lambda _run: _http_handler_per_record(server, chosen.per_record)),
                25.0,
            )
        ]
        if otel:
            comparisons.append(
                Comparison(
                    "OTLP/HTTP",
                    _best_of(
                        repeats,
                        lambda _run: _http_batched(server, chosen.batched, "otlp", "/v1/logs"),
                    ),
                    _best_of(repeats, lambda _run: _otel_batched(server, chosen.batched)),
                    2.0,
                )
            )
        return comparisons


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything one run measured, and what the checks after each run found."""

    platform: PlatformInfo
    sizes: Sizes
    ceiling: Outcome
    comparisons: list[Comparison]
    ratios: list[Ratio]
    http_measured: bool
    notes: list[str] = dataclasses.field(default_factory=list)
    lost: list[str] = dataclasses.field(default_factory=list)


def run(chosen: Sizes) -> Report:
    """Run every comparison; each run checks that nothing was lost."""
    ceiling = _best_of(chosen.repeats, lambda _run: _encoding_ceiling(chosen.batched))
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as directory:
        comparisons = _file_comparisons(directory, chosen)
    notes: list[str] = []
    http_measured = _http_available()
    if http_measured:
        otel = _otel_available()
        comparisons[2:2] = _http_comparisons(chosen, otel=otel)
        if not otel:
            notes.append(
                "opentelemetry-sdk / opentelemetry-exporter-otlp-proto-http are not "
                "importable; the OTLP/HTTP comparison is skipped"
            )
    else:
        notes.append("httpx/tenacity are not importable; the HTTP comparisons are skipped")
    lost = [
        f"{comparison.sink} {kind}: {outcome.problem}"
        for comparison in comparisons
        for kind, outcome in (("batched", comparison.batched), ("baseline", comparison.baseline))
        if outcome.problem
    ]
    if ceiling.problem:
        lost.append(f"ceiling: {ceiling.problem}")
    ratios = [
        Ratio.of_repeats(
            SUITE,
            f"{comparison.sink}: batched / per record",
            comparison.batched.repeats,
            comparison.baseline.repeats,
            comparison.target,
            best=max,  # records per second: more is better
        )
        for comparison in comparisons
    ]
    return Report(platform_info(), chosen, ceiling, comparisons, ratios, http_measured, notes, lost)


def header_lines(info: PlatformInfo, chosen: Sizes) -> list[str]:
    """The lines printed before measuring: platform and sizes, then a blank line."""
    return [
        f"python    {info.implementation} {info.python_version}",
        f"machine   {info.machine}  cpus={info.cpus}  gil={'on' if info.gil_enabled else 'off'}"
        f"  {info.platform}",
        f"records   {chosen.batched} batched, {chosen.per_record} per-record baselines "
        f"(FileHandler, OpenTelemetry: {chosen.batched}); best of {chosen.repeats}; "
        "close() inside the timing",
        "",
    ]


def result_lines(report: Report) -> list[str]:
    """The table, what its rows mean, then ``PASS  nothing lost`` or a ``LOST`` line each."""
    lines = [f"note: {note}" for note in report.notes]
    cells = []
    for comparison in report.comparisons:
        most = report.ceiling.per_second / comparison.baseline.per_second
        cells.append(
            [
                comparison.sink,
                f"{comparison.batched.per_second:,.0f}",
                f"{comparison.baseline.per_second:,.0f}",
                f"{comparison.ratio:.1f}x",
                "-" if comparison.target is None else f"{comparison.target:g}x",
                comparison.verdict,
                f"{most:.1f}x",
            ]
        )
    lines += format_table(
        [
            Column("sink", 15, "<"),
            Column("batched rec/s", 14),
            Column("baseline rec/s", 15),
            Column("ratio", 8),
            Column("target", 7),
            Column("result", 6),
            Column("max", 8),
        ],
        cells,
    )
    lines += [
        "",
        "max             encoding ceiling / baseline: the most ratio any sink could reach",
        f"ceiling         {report.ceiling.per_second:,.0f} rec/s: logger.info + encode_record"
        " + json_bytes per record, nothing stored",
        "SQLite          SQLiteSink's defaults (WAL, synchronous=NORMAL) against a handler",
        "                with sqlite3's defaults (rollback journal, synchronous=FULL)",
        "SQLite tuned    both sides WAL + synchronous=NORMAL; no target",
        "SQLite FULL     both sides WAL + synchronous=FULL (an fsync per commit); no target",
        "HTTP            HTTPSink (NDJSON, gzip) against logging.handlers.HTTPHandler",
        "OTLP/HTTP       HTTPSink(encoder='otlp') against OpenTelemetry's LoggingHandler +",
        "                BatchLogRecordProcessor + OTLPLogExporter (proto/HTTP), same server",
        "JSON Lines      against FileHandler + a JSON Formatter using the stdlib's json",
        "JSON Lines fast the same, the Formatter using json_bytes (orjson) too; no target",
    ]
    lines += [f"LOST  {problem}" for problem in report.lost]
    if not report.lost:
        lines.append(
            "PASS  nothing lost: every record logged is stored; no record dropped or failed"
        )
    return lines
