"""OTLPEncoder's trace context, compared field by field with the OpenTelemetry SDK's encoding.

The same stdlib LogRecords go to the SDK's ``LoggingHandler`` (which reads the span from
the current context) and, carrying ``trace_id``/``span_id``/``trace_flags`` in their
``extra`` as ``BatchingHandler`` adds them inside a span, to ``OTLPEncoder``. Our JSON
body is parsed with the official protobuf schema and compared with the SDK's
``ExportLogsServiceRequest`` for the same records.
"""

from __future__ import annotations

import base64
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from batchlog.sinks import OTLPEncoder, encode_record

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("google.protobuf")

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import get_current_span

TRACE_KEYS = ("trace_id", "span_id", "trace_flags")


@pytest.fixture
def sdk() -> Iterator[tuple[LoggingHandler, InMemoryLogRecordExporter]]:
    """The SDK's logging handler and the exporter that keeps what it emitted.

    Needs the SDK's OTLP protobuf encoding (opentelemetry-exporter-otlp-proto-common,
    which opentelemetry-exporter-otlp-proto-http installs).
    """
    pytest.importorskip("opentelemetry.exporter.otlp.proto.common._log_encoder")
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # 1.45 deprecates it for opentelemetry-instrumentation-logging's handler, which
        # translates records the same way; it is still the SDK's own translation.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    yield handler, exporter
    provider.shutdown()


def make_record(message: str, created: float) -> logging.LogRecord:
    record = logging.LogRecord("app.orders", logging.WARNING, "/src/app.py", 7, message, (), None)
    record.created = created
    record.msecs = 0.0
    return record


def with_trace_context(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` with the current span's context in its extra, as the handler adds.

    Outside a (valid) span the copy gets no such keys, as documented for BatchingHandler.
    """
    copy = logging.makeLogRecord(dict(record.__dict__))
    context = get_current_span().get_span_context()
    if context.is_valid:
        copy.trace_id = format(context.trace_id, "032x")
        copy.span_id = format(context.span_id, "016x")
        copy.trace_flags = int(context.trace_flags)
    return copy


def parse_otlp_json(body: bytes) -> Any:
    """Parse an OTLP/HTTP JSON body with the official protobuf schema.

    OTLP's JSON encoding writes ``traceId`` and ``spanId`` as hex, where proto3's JSON
    mapping has base64 for bytes (the OTLP specification, "JSON Protobuf Encoding"), so
    they are turned into base64 first, as an OTLP receiver does.
    """
    request = json.loads(body)
    for resource_logs in request["resourceLogs"]:
        for scope_logs in resource_logs["scopeLogs"]:
            for log_record in scope_logs["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in log_record:
                        raw = bytes.fromhex(log_record[key])
                        log_record[key] = base64.b64encode(raw).decode("ascii")
    return json_format.Parse(json.dumps(request), ExportLogsServiceRequest())


def log_records(request: Any) -> list[Any]:
    return [
        log_record
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
        for log_record in scope_logs.log_records
    ]


def emit_both(
    sdk: tuple[LoggingHandler, InMemoryLogRecordExporter], messages: list[str]
) -> tuple[list[Any], list[Any], list[dict[str, Any]]]:
    """Log each message in its own situation, to the SDK and to our encoder.

    The situations: inside a sampled span, inside a span that is not sampled (a valid
    context with flags 0), nested inside a child span, and outside any span.
    Returns our log records, the SDK's, and our JSON log records (before parsing).
    """
    handler, exporter = sdk
    sampled = TracerProvider(sampler=ALWAYS_ON).get_tracer("tests")
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("tests")
    ours: list[logging.LogRecord] = []

    def log(message: str, created: float) -> None:
        record = make_record(message, created)
        handler.emit(record)
        ours.append(with_trace_context(record))

    with sampled.start_as_current_span("request"):
        log(messages[0], 1795757232.25)
        with sampled.start_as_current_span("query"):
            log(messages[1], 1795757233.5)
    with unsampled.start_as_current_span("quiet"):
        log(messages[2], 1795757234.0)
    log(messages[3], 1795757235.75)

    body, _ = OTLPEncoder()([encode_record(record) for record in ours])
    ours_json = json.loads(body)["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    theirs = log_records(encode_logs(exporter.get_finished_logs()))
    return log_records(parse_otlp_json(body)), theirs, ours_json


MESSAGES = ["in a span", "in a child span", "in an unsampled span", "outside any span"]


def test_trace_fields_match_the_sdk_encoding_field_by_field(
    sdk: tuple[LoggingHandler, InMemoryLogRecordExporter],
) -> None:
    """traceId, spanId and flags are what the SDK's encoder writes for the same records."""
    ours, theirs, _ = emit_both(sdk, MESSAGES)
    assert len(theirs) == len(ours) == 4
    for mine, sdk_record in zip(ours, theirs):
        assert sdk_record.body.string_value == mine.body.string_value
        assert sdk_record.trace_id == mine.trace_id
        assert sdk_record.span_id == mine.span_id
        assert sdk_record.flags == mine.flags
        # The SDK multiplies the float seconds (binary rounding); ours are exact microseconds.
        assert abs(sdk_record.time_unix_nano - mine.time_unix_nano) < 1_000
        assert sdk_record.severity_number == mine.severity_number
        # severity_text differs on purpose: the SDK writes "WARN", we keep Python's "WARNING".
    # The situations really differ: ids in the spans, sampled flags, nothing outside.
    in_span, child, quiet, outside = theirs
    assert len(in_span.trace_id) == 16
    assert len(in_span.span_id) == 8
    assert in_span.flags & 0x01
    assert child.trace_id == in_span.trace_id
    assert child.span_id != in_span.span_id
    assert len(quiet.trace_id) == 16
    assert not quiet.flags & 0x01  # not sampled (1.45 sets 0x02, a random trace id)
    assert (outside.trace_id, outside.span_id, outside.flags) == (b"", b"", 0)


def test_trace_fields_are_present_exactly_where_the_sdk_writes_them(
    sdk: tuple[LoggingHandler, InMemoryLogRecordExporter],
) -> None:
    """The same JSON keys as the SDK's records: none outside a span, ids inside one."""
    _, theirs, ours_json = emit_both(sdk, MESSAGES)
    trace_keys = {"traceId", "spanId", "flags"}
    for mine, sdk_record in zip(ours_json, theirs):
        sdk_keys = set(json_format.MessageToDict(sdk_record)) & trace_keys
        assert sdk_keys == set(mine) & trace_keys
    assert set(ours_json[3]) & trace_keys == set()
    assert {"traceId", "spanId"} <= set(ours_json[2])


def test_trace_context_is_not_repeated_as_attributes(
    sdk: tuple[LoggingHandler, InMemoryLogRecordExporter],
) -> None:
    """trace_id, span_id and trace_flags become fields, not attributes."""
    ours, _, ours_json = emit_both(sdk, MESSAGES)
    for mine in ours:
        keys = {attribute.key for attribute in mine.attributes}
        assert keys.isdisjoint(TRACE_KEYS)
        assert "logger.name" in keys
    hex_ids = [(record["traceId"], record["spanId"]) for record in ours_json[:3]]
    for trace_id, span_id in hex_ids:
        assert trace_id == trace_id.lower()
        assert (len(trace_id), len(span_id)) == (32, 16)


def test_trace_json_matches_the_sdk_json_encoding(
    sdk: tuple[LoggingHandler, InMemoryLogRecordExporter],
) -> None:
    """Where the SDK's own OTLP JSON encoder is installed: the same hex ids and flags."""
    json_log_encoder = pytest.importorskip("opentelemetry.exporter.otlp.json.common._log_encoder")
    exporter = sdk[1]
    _, _, ours_json = emit_both(sdk, MESSAGES)
    sdk_json = json.loads(json_log_encoder.encode_logs(exporter.get_finished_logs()).to_json())
    theirs = sdk_json["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    for mine, sdk_record in zip(ours_json, theirs):
        for key in ("traceId", "spanId", "flags"):
            assert sdk_record.get(key) == mine.get(key), key


def test_structlog_events_carry_the_trace_context_too() -> None:
    """An event dict with the keys (a structlog processor may add them) gets the fields."""
    event = {
        "event": "paid",
        "level": "info",
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "trace_flags": 1,
        "order": 7,
    }
    body, _ = OTLPEncoder()([encode_record(event)])
    (log_record,) = log_records(parse_otlp_json(body))
    assert log_record.trace_id == bytes.fromhex(event["trace_id"])  # type: ignore[arg-type]
    assert log_record.span_id == bytes.fromhex(event["span_id"])  # type: ignore[arg-type]
    assert log_record.flags == 1
    assert [attribute.key for attribute in log_record.attributes] == ["order"]


@pytest.mark.parametrize(
    ("extra", "fields", "attributes"),
    [
        # All-zero ids are OpenTelemetry's invalid ids: the SDK writes no field for them.
        (
            {"trace_id": "0" * 32, "span_id": "0" * 16, "trace_flags": 0},
            {},
            [],
        ),
        # Not of the documented form: kept as ordinary attributes, nothing lost.
        (
            {"trace_id": "ABC", "span_id": 12, "trace_flags": 300},
            {},
            ["trace_id", "span_id", "trace_flags"],
        ),
        (
            {"trace_id": "5B8EFFF798038103D269B633813FC60C", "trace_flags": True},
            {},
            ["trace_id", "trace_flags"],
        ),
        (
            {"trace_id": "5b8efff798038103d269b633813fc60c", "trace_flags": 1},
            {"traceId": "5b8efff798038103d269b633813fc60c", "flags": 1},
            [],
        ),
    ],
    ids=["invalid-ids", "wrong-types", "uppercase-and-bool", "trace-id-only"],
)
def test_trace_context_of_odd_values(
    extra: dict[str, Any], fields: dict[str, Any], attributes: list[str]
) -> None:
    """Only the documented forms become fields; anything else stays an attribute."""
    record = make_record("odd", 1795757232.0)
    record.__dict__.update(extra)
    body, _ = OTLPEncoder()([encode_record(record)])
    (log_record,) = json.loads(body)["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert fields == {
        key: log_record[key] for key in ("traceId", "spanId", "flags") if key in log_record
    }
    keys = [attribute["key"] for attribute in log_record["attributes"]]
    assert attributes == [key for key in keys if key in TRACE_KEYS]
    parse_otlp_json(body)  # and the body is still a valid request
