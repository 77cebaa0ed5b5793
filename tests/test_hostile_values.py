"""No value can poison a batch: every sink stores the same documented form of it.

One batch of hostile records (NUL, lone surrogates, huge ints, NaN and infinities, an
object whose ``repr`` raises, cycles, bytes, deep nesting, keys that are not str or hold
NUL) and good records goes through JsonLinesSink, SQLiteSink, HandlerSink, HTTPSink (a
local server, every encoder) and PostgresSink (a real server, started by the tests). Each
stores every record, each hostile value in the form ``batchlog.sinks._encode`` documents,
and all of them the same text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from batchlog import BatchWriter
from batchlog.sinks import (
    FallbackSink,
    HandlerSink,
    HTTPSink,
    JsonLinesSink,
    SQLiteSink,
    encode_record,
    to_json,
)
from batchlog.sinks._encode import json_bytes
from batchlog.sinks.encoders import ENCODER_NAMES
from batchlog.sinks.sqlite import create_table_sql

HUGE = 10**5000  # more digits than Python writes in decimal (4,300 by default)
HUGE_FORM: Any = hex(HUGE) if hasattr(sys, "get_int_max_str_digits") else HUGE


class BrokenRepr:
    """An object whose ``repr`` raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class NulRepr:
    """An object whose ``repr`` holds a NUL and a lone surrogate."""

    def __repr__(self) -> str:
        return "nul\x00repr\udcff"


def nest(value: Any, times: int) -> Any:
    for _ in range(times):
        value = [value]
    return value


def hostile_cases() -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
    """(message, extra, the message stored, the extra stored), one hostile record each."""
    cycle: list[Any] = []
    cycle.append(cycle)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return [
        ("nul\x00here", {"k": "v\x00"}, "nul\\x00here", {"k": "v\\x00"}),
        (
            "surrogate \udcff byte",
            {"s": ["\ud800 alone", {"deep": "x\udfff"}]},
            "surrogate \\udcff byte",
            {"s": ["\\ud800 alone", {"deep": "x\\udfff"}]},
        ),
        (
            "keys with NUL and surrogates",
            {"k\x00ey": 1, "k\udcffey": 2, "n": {"a\x00": "b"}},
            "keys with NUL and surrogates",
            {"k\\x00ey": 1, "k\\udcffey": 2, "n": {"a\\x00": "b"}},
        ),
        (
            "keys that are not str",
            {"d": {1: "a", None: "b", (1, 2): "c", 1.5: "d"}},
            "keys that are not str",
            {"d": {"1": "a", "None": "b", "(1, 2)": "c", "1.5": "d"}},
        ),
        (
            "huge ints",
            {"huge": HUGE, "negative": -HUGE},
            "huge ints",
            {"huge": HUGE_FORM, "negative": hex(-HUGE) if isinstance(HUGE_FORM, str) else -HUGE},
        ),
        (
            "not finite",
            {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "in": [math.nan]},
            "not finite",
            {"nan": "nan", "inf": "inf", "ninf": "-inf", "in": ["nan"]},
        ),
        (
            "objects",
            {"broken": BrokenRepr(), "nul": NulRepr()},
            "objects",
            {
                "broken": "<unrepresentable BrokenRepr: RuntimeError: no repr>",
                "nul": "nul\\x00repr\\udcff",
            },
        ),
        (
            "cycles",
            {"cycle": cycle, "loop": loop},
            "cycles",
            {
                "cycle": ["<circular reference to list>"],
                "loop": {"self": "<circular reference to dict>"},
            },
        ),
        (
            "bytes",
            {"b": b"\xff\x00", "ba": bytearray(b"\xff")},
            "bytes",
            {"b": "b'\\xff\\x00'", "ba": "bytearray(b'\\xff')"},
        ),
        (
            "deep",
            {"deep": nest("leaf", 30)},
            "deep",
            {"deep": nest(repr(nest("leaf", 10)), 20)},
        ),
    ]


CASES = hostile_cases()
GOOD = [(f"good {number}", {"n": number, "text": "Grüße 😀"}) for number in range(20)]


def log_record(message: str, extra: dict[str, Any]) -> logging.LogRecord:
    record = logging.LogRecord("tests.hostile", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def make_batch() -> list[Any]:
    """Good and hostile records, as LogRecords and as structlog event dicts, interleaved."""
    batch: list[Any] = []
    for number, (message, extra) in enumerate(GOOD):
        batch.append(log_record(message, extra))
        if number < len(CASES):
            hostile, hostile_extra, _, _ = CASES[number]
            batch.append(log_record(hostile, hostile_extra))
            batch.append({"event": f"event {hostile}", "level": "warning", **hostile_extra})
    return batch


def expected() -> dict[str, dict[str, Any]]:
    """The extra stored for each message stored (JSON values: tuples read back as lists)."""
    stored = dict(GOOD)
    for _, _, message, extra in CASES:
        stored[message] = extra
        stored[f"event {message}"] = extra
    return json.loads(json.dumps(stored))  # type: ignore[no-any-return]


def by_message(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = {}
    for record in records:
        assert record["message"] not in stored, f"stored twice: {record['message']!r}"
        stored[record["message"]] = record["extra"]
    return stored


# ------------------------------------------------------------------------- the stores


def stored_by_jsonl(tmp_path: Path) -> dict[str, dict[str, Any]]:
    path = tmp_path / "hostile.jsonl"
    sink = JsonLinesSink(path)
    try:
        sink(make_batch())
    finally:
        sink.close()
    data = path.read_bytes().decode("utf-8")  # strict UTF-8
    return by_message([json.loads(line) for line in data.splitlines()])


def stored_by_sqlite(tmp_path: Path) -> dict[str, dict[str, Any]]:
    path = tmp_path / "hostile.sqlite3"
    sink = SQLiteSink(path)
    try:
        sink(make_batch())
    finally:
        sink.close()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT message, extra FROM logs ORDER BY id").fetchall()
    return by_message([{"message": message, "extra": json.loads(extra)} for message, extra in rows])


class EncodingHandler(logging.Handler):
    """A handler that keeps each record as the common encoding writes it, as JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(to_json(encode_record(record)))


def stored_by_handler_sink() -> dict[str, dict[str, Any]]:
    handler = EncodingHandler()
    sink = HandlerSink(handler)
    try:
        sink(make_batch())
    finally:
        sink.close()
    return by_message([json.loads(line) for line in handler.lines])


class Server:
    """An HTTP server on 127.0.0.1 that answers 200 and keeps every body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads the bodies."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(30)


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


# The OTLP attributes the encoder makes from fields, not from extra.
_OTLP_FIELD_ATTRIBUTES = frozenset(
    {
        "logger.name",
        "thread.id",
        "thread.name",
        "process.pid",
        "code.file.path",
        "code.function.name",
        "code.line.number",
        "code.stacktrace",
    }
)


def any_value(value: dict[str, Any]) -> Any:  # noqa: PLR0911 -- one return per kind
    """An OTLP ``AnyValue`` (JSON form) as a Python value."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return value["doubleValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "arrayValue" in value:
        return [any_value(item) for item in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {pair["key"]: any_value(pair["value"]) for pair in value["kvlistValue"]["values"]}
    return None


def records_in_body(encoder: str, body: bytes) -> list[dict[str, Any]]:
    """The records (message and extra) one request body of ``encoder`` carries."""
    text = body.decode("utf-8")  # strict UTF-8
    if encoder == "ndjson":
        return [json.loads(line) for line in text.splitlines()]
    if encoder == "json":
        return json.loads(text)  # type: ignore[no-any-return]
    if encoder in {"elasticsearch", "opensearch"}:
        return [json.loads(line) for line in text.splitlines()[1::2]]  # after each action
    data = json.loads(text)
    if encoder == "loki":
        return [json.loads(line) for stream in data["streams"] for _, line in stream["values"]]
    assert encoder == "otlp", encoder
    return [
        {
            "message": any_value(log_record["body"]),
            "extra": {
                pair["key"]: any_value(pair["value"])
                for pair in log_record["attributes"]
                if pair["key"] not in _OTLP_FIELD_ATTRIBUTES
            },
        }
        for resource in data["resourceLogs"]
        for scope in resource["scopeLogs"]
        for log_record in scope["logRecords"]
    ]


def stored_by_http(server: Server, encoder: str) -> dict[str, dict[str, Any]]:
    sink = HTTPSink(server.url, encoder=encoder, gzip=False, max_attempts=1)
    try:
        sink(make_batch())
    finally:
        sink.close()
    return by_message(
        [record for body in server.bodies for record in records_in_body(encoder, body)]
    )


# ------------------------------------------------------------------------------ tests


def test_json_lines_stores_every_record_in_the_documented_form(tmp_path: Path) -> None:
    """JsonLinesSink: every good record, every hostile value in its documented form."""
    assert expected() == stored_by_jsonl(tmp_path)


def test_sqlite_stores_every_record_in_the_documented_form(tmp_path: Path) -> None:
    """SQLiteSink: every good record, every hostile value in its documented form."""
    assert expected() == stored_by_sqlite(tmp_path)


def test_handler_sink_forwards_every_record_in_the_documented_form() -> None:
    """HandlerSink: event dicts become LogRecords that encode to the same form."""
    assert expected() == stored_by_handler_sink()


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_every_http_encoder_sends_every_record_in_the_documented_form(
    server: Server, encoder: str
) -> None:
    """HTTPSink, each encoder: one batch, every record, the documented form."""
    stored = stored_by_http(server, encoder)
    if encoder == "otlp":
        # OTLP's intValue holds 64 bits: larger ints are sent as their decimal text.
        assert all(isinstance(value, str) for value in stored["huge ints"].values())
    assert expected() == stored


def test_postgres_stores_every_record_in_the_documented_form(tmp_path: Path) -> None:
    """PostgresSink, a real server: the same text as every other sink."""
    psycopg = pytest.importorskip("psycopg")
    from pg_server import PostgresUnavailableError, shared_server

    from batchlog.sinks import PostgresSink

    try:
        postgres = shared_server()
    except PostgresUnavailableError as exc:
        if os.environ.get("BATCHLOG_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"BATCHLOG_REQUIRE_POSTGRES=1 but PostgreSQL did not start: {exc}")
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    table = f"hostile_{os.getpid()}"
    sink = PostgresSink(postgres.conninfo(), table=table)
    try:
        sink(make_batch())
    finally:
        sink.close()
    with psycopg.connect(postgres.conninfo(), autocommit=True) as connection:
        rows = connection.execute(
            f"SELECT message, extra FROM {table} ORDER BY id"  # noqa: S608 -- our own name
        ).fetchall()
        connection.execute(f"DROP TABLE {table}")
    assert expected() == by_message([{"message": m, "extra": e} for m, e in rows])


def test_every_sink_stores_the_same_text(tmp_path: Path, server: Server) -> None:
    """The same batch, byte for byte the same text in JSON Lines, SQLite, handlers, NDJSON."""
    stores = [
        stored_by_jsonl(tmp_path),
        stored_by_sqlite(tmp_path),
        stored_by_handler_sink(),
        stored_by_http(server, "ndjson"),
    ]
    texts = [json.dumps(store, sort_keys=True, ensure_ascii=True) for store in stores]
    assert [texts[0]] * len(texts) == texts


def test_encoded_hostile_records_round_trip_through_json() -> None:
    """What the encoders accept, the dead-letter JSON holds: to_json and back, unchanged."""
    for record in make_batch():
        encoded = encode_record(record)
        assert json.loads(json.dumps(encoded)) == json.loads(to_json(encoded))
        assert json.loads(to_json(encoded)) == json.loads(json_bytes(encoded))
        read_back = json.loads(to_json(encoded))
        assert read_back == encode_record(read_back)  # replayed: passes through unchanged


def test_a_dead_letter_file_holds_every_hostile_record(tmp_path: Path) -> None:
    """A primary that fails: the dead-letter file holds every record, each readable."""

    def down(batch: list[Any]) -> None:
        raise ConnectionError("down")

    path = tmp_path / "dead.jsonl"
    sink = FallbackSink(down, path)
    try:
        sink(make_batch())
    finally:
        sink.close()
    lines = path.read_bytes().decode("utf-8").splitlines()
    assert expected() == by_message([json.loads(line)["record"] for line in lines])


def refusing_database(tmp_path: Path) -> Path:
    """An SQLite database whose table refuses (by a trigger) a row with message 'refused'."""
    database = tmp_path / "refusing.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        for statement in create_table_sql():
            connection.execute(statement)
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON logs WHEN NEW.message = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )
        connection.commit()
    return database


def stored_messages(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return [message for (message,) in connection.execute("SELECT message FROM logs")]


def test_a_record_the_store_still_refuses_is_counted_failed_alone(tmp_path: Path) -> None:
    """Among the hostile batch, the one row the table refuses fails alone, counted once."""
    database = refusing_database(tmp_path)
    batch = [*make_batch(), log_record("refused", {"n": -1})]
    failed: list[Any] = []
    sink = SQLiteSink(database)
    writer = BatchWriter(len(batch), 60.0, sink, on_error=lambda _, records: failed.extend(records))
    try:
        for record in batch:
            writer.add(record)
        assert writer.flush(timeout=60)
        counts = (writer.metrics.records_processed, writer.metrics.records_failed)
    finally:
        writer.close(timeout=60)
        sink.close()
    assert (len(batch) - 1, 1) == counts
    assert [batch[-1]] == failed
    assert len(batch) - 1 == len(stored_messages(database))


def test_a_record_the_store_still_refuses_is_dead_lettered_alone(tmp_path: Path) -> None:
    """Behind a FallbackSink, only the refused record reaches the dead-letter file."""
    database = refusing_database(tmp_path)
    batch = [*make_batch(), log_record("refused", {"n": -1})]
    dead = tmp_path / "dead.jsonl"
    sink = FallbackSink(SQLiteSink(database), dead)
    try:
        sink(batch)
    finally:
        sink.close()
    (line,) = dead.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["record"]["message"] == "refused"
    assert sorted(expected()) == sorted(stored_messages(database))
