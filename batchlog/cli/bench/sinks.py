"""Records per second through the ready-made sinks, against a handler that writes per record.

Needs the standard library, batchlog, and httpx + tenacity (``pip install 'batchlog[http]'``)
for the HTTP comparison.

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
   collector (HTTP/1.1 keep-alive, gzip decoded, records counted). Target >= 20x.

After each run nothing may be lost: rows in the table, lines in the file or records counted
by the server equal the records logged, and a BatchingHandler's metrics show no dropped and
no failed record.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import json
import logging
import os
import sqlite3
import tempfile
import time
from typing import Callable

from batchlog import BatchingHandler
from batchlog.sinks import FIELDS, JsonLinesSink, SQLiteSink, encode_record, to_json
from batchlog.sinks.sqlite import create_table_sql

# The per-record baseline stores exactly the values SQLiteSink stores, with the sink's own
# row function (an older, slower copy once made the ratio unfair).
from batchlog.sinks.sqlite import row_values as sqlite_row

from ..collector import LocalCollector
from ._common import Column, PlatformInfo, Ratio, format_table, platform_info

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


def sizes(*, quick: bool = False, records: int | None = None) -> Sizes:
    """Return the full sizes, the ``--quick`` ones, or ``records`` batched (a tenth per record)."""
    if records is not None:
        return Sizes(records, max(records // 10, 1), 1)
    return Sizes(2_000, 200, 1) if quick else Sizes(20_000, 2_000, 3)


def _http_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("httpx", "tenacity"))


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
    """Formats a record as the line JsonLinesSink writes for it (without the newline)."""

    def format(self, record: logging.LogRecord) -> str:
        return to_json(encode_record(record))


class _HTTPPerRecordHandler(logging.Handler):
    """POSTs each record as one NDJSON line with one keep-alive httpx.Client."""

    def __init__(self, url: str) -> None:
        import httpx

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


# --------------------------------------------------------------------------- measuring


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One timed run: records per second, and what the check after it found."""

    per_second: float
    problem: str | None = None


def _log_through(handler: logging.Handler, count: int, name: str) -> float:
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
    handler = BatchingHandler(JsonLinesSink(path), flush_timeout=FLUSH_TIMEOUT)
    seconds = _log_through(handler, count, "jsonl.batched")
    lines = _lines_in(path)
    return Outcome(
        count / seconds,
        _first_problem(
            _batching_problem(handler, count),
            f"{lines} lines of {count}" if lines != count else None,
        ),
    )


def _jsonl_per_record(directory: str, count: int, run: int) -> Outcome:
    path = os.path.join(directory, f"per-record-{run}.jsonl")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_JsonLineFormatter())
    seconds = _log_through(handler, count, "jsonl.per_record")
    lines = _lines_in(path)
    return Outcome(count / seconds, f"{lines} lines of {count}" if lines != count else None)


def _http_batched(server: LocalCollector, count: int) -> Outcome:
    from batchlog.sinks import HTTPSink

    server.reset()
    handler = BatchingHandler(
        HTTPSink(server.url, encoder="ndjson"), capacity=CAPACITY, flush_timeout=FLUSH_TIMEOUT
    )
    seconds = _log_through(handler, count, "http.batched")
    records, requests, errors = server.counts()
    wrong = records != count or errors or requests < count // CAPACITY
    return Outcome(
        count / seconds,
        _first_problem(
            _batching_problem(handler, count),
            f"server counted {records} records of {count} in {requests} requests, {errors} bad"
            if wrong
            else None,
        ),
    )


def _http_per_record(server: LocalCollector, count: int) -> Outcome:
    server.reset()
    seconds = _log_through(_HTTPPerRecordHandler(server.url), count, "http.per_record")
    records, requests, errors = server.counts()
    wrong = records != count or requests != count or errors
    return Outcome(
        count / seconds,
        f"server counted {records} records of {count} in {requests} requests, {errors} bad"
        if wrong
        else None,
    )


def _encode_only(batch: list[logging.LogRecord]) -> None:
    """A sink that encodes each record as every sink does, and stores nothing."""
    for record in batch:
        to_json(encode_record(record))


def _encoding_ceiling(count: int) -> Outcome:
    """``logger.info`` + ``encode_record`` + ``to_json`` per record: no sink beats this."""
    handler = BatchingHandler(_encode_only, capacity=CAPACITY, flush_timeout=FLUSH_TIMEOUT)
    seconds = _log_through(handler, count, "ceiling")
    return Outcome(count / seconds, _batching_problem(handler, count))


def _best_of(repeats: int, run: Callable[[int], Outcome]) -> Outcome:
    """The fastest of ``repeats`` runs; the first problem any run found."""
    outcomes = [run(number) for number in range(repeats)]
    best = max(outcomes, key=lambda outcome: outcome.per_second)
    return Outcome(best.per_second, _first_problem(*(outcome.problem for outcome in outcomes)))


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

    return [
        # The target: SQLiteSink as shipped against the per-record handler people write.
        sqlite(SYNCHRONOUS, None, "SQLite", 50.0),
        sqlite(SYNCHRONOUS, SYNCHRONOUS, "SQLite tuned", None),
        Comparison(
            "JSON Lines",
            _best_of(repeats, lambda run: _jsonl_batched(directory, chosen.batched, run)),
            _best_of(repeats, lambda run: _jsonl_per_record(directory, chosen.batched, run)),
            2.0,
        ),
        sqlite("FULL", "FULL", "SQLite FULL", None),
    ]


def _http_comparison(chosen: Sizes) -> Comparison:
    with LocalCollector() as server:
        return Comparison(
            "HTTP (ndjson)",
            _best_of(chosen.repeats, lambda _run: _http_batched(server, chosen.batched)),
            _best_of(chosen.repeats, lambda _run: _http_per_record(server, chosen.per_record)),
            20.0,
        )


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
        comparisons.insert(2, _http_comparison(chosen))
    else:
        notes.append("httpx/tenacity are not importable; the HTTP comparison is skipped")
    lost = [
        f"{comparison.sink} {kind}: {outcome.problem}"
        for comparison in comparisons
        for kind, outcome in (("batched", comparison.batched), ("baseline", comparison.baseline))
        if outcome.problem
    ]
    if ceiling.problem:
        lost.append(f"ceiling: {ceiling.problem}")
    ratios = [
        Ratio(
            SUITE,
            f"{comparison.sink}: batched / per record",
            comparison.ratio,
            comparison.target,
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
        f"(FileHandler: {chosen.batched}); best of {chosen.repeats}; close() inside the timing",
        "",
    ]


def result_lines(report: Report) -> list[str]:
    """The table, what its rows mean, then ``PASS  nothing lost`` or a ``LOST`` line each."""
    lines: list[str] = []
    if not report.http_measured:
        lines.append("note: httpx/tenacity are not importable; the HTTP comparison is skipped")
    cells = []
    for comparison in report.comparisons:
        most = report.ceiling.per_second / comparison.baseline.per_second
        cells.append(
            [
                comparison.sink,
                f"{comparison.batched.per_second:,.0f}",
                f"{comparison.baseline.per_second:,.0f}",
                f"{comparison.ratio:.1f}x",
                "-" if comparison.target is None else f"{comparison.target:.0f}x",
                comparison.verdict,
                f"{most:.1f}x",
            ]
        )
    lines += format_table(
        [
            Column("sink", 14, "<"),
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
        "max          encoding ceiling / baseline: the most ratio any sink could reach here",
        f"ceiling      {report.ceiling.per_second:,.0f} rec/s: logger.info + encode_record"
        " + to_json per record, nothing stored",
        "SQLite       SQLiteSink's defaults (WAL, synchronous=NORMAL) against a handler with",
        "             sqlite3's defaults (rollback journal, synchronous=FULL): what people write",
        "SQLite tuned both sides WAL + synchronous=NORMAL; no target",
        "SQLite FULL  both sides WAL + synchronous=FULL (an fsync per commit); no target",
    ]
    lines += [f"LOST  {problem}" for problem in report.lost]
    if not report.lost:
        lines.append(
            "PASS  nothing lost: every record logged is stored; no record dropped or failed"
        )
    return lines
