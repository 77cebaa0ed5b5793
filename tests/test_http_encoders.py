"""The request bodies of HTTPSink: NDJSON, JSON, Loki, Elasticsearch _bulk, OTLP/HTTP JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Callable

import pytest

from batchlog.sinks import (
    BulkEncoder,
    JSONEncoder,
    LokiEncoder,
    NDJSONEncoder,
    OTLPEncoder,
    encode_record,
)
from batchlog.sinks import _encode as encode_module
from batchlog.sinks.encoders import encoder_named, severity_number, timestamp_nanoseconds

# 2026-11-27T05:27:12.123456Z
CREATED = 1795757232.123456
CREATED_NS = 1795757232_123456000


def make_log_record(
    message: str = "hello %s",
    args: tuple[object, ...] = ("world",),
    *,
    level: int = logging.INFO,
    name: str = "app.db",
    created: float = CREATED,
    exc_info: bool = False,
    **extra: object,
) -> logging.LogRecord:
    info = None
    if exc_info:
        try:
            raise ValueError("boom")  # noqa: TRY301 -- a real traceback for the record
        except ValueError:
            info = sys.exc_info()
    record = logging.LogRecord(name, level, "/src/app/db.py", 42, message, args, info, "query")
    record.created = created
    record.__dict__.update(extra)
    return record


def encoded(*records: object) -> list[dict[str, object]]:
    return [encode_record(record) for record in records]


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T05:27:12.123456Z", CREATED_NS),
        ("2026-11-27T05:27:12.123456789Z", CREATED_NS + 789),
        ("2026-11-27T07:27:12.123456+02:00", CREATED_NS),
        ("2026-11-27T00:27:12.123456-0500", CREATED_NS),
        ("2026-11-27 05:27:12Z", 1795757232_000000000),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_timestamp_nanoseconds_reads_rfc3339(text: str, expected: int) -> None:
    """RFC 3339 timestamps become exact integer nanoseconds since the epoch."""
    assert expected == timestamp_nanoseconds(text)


def test_timestamp_nanoseconds_of_unreadable_value_is_now() -> None:
    """A timestamp that cannot be read becomes the time of encoding, never an error."""
    before = time.time_ns()
    for value in ("yesterday", None, 12, "2026-13-45T00:00:00Z"):
        assert before <= timestamp_nanoseconds(value) <= time.time_ns()


# --------------------------------------------------------------------------- NDJSON, JSON


def test_ndjson_is_one_object_per_line_with_trailing_newline() -> None:
    """NDJSON: each record on its own line, every line ends in a newline."""
    records = encoded(make_log_record(), {"event": "e", "level": "info"})
    body, content_type = NDJSONEncoder()(records)
    assert content_type == "application/x-ndjson"
    assert body.endswith(b"\n")
    assert records == [json.loads(line) for line in body.decode().splitlines()]


def test_json_array_holds_all_records() -> None:
    """The JSON encoder sends one array of the records."""
    records = encoded(make_log_record(), make_log_record("second", ()))
    body, content_type = JSONEncoder()(records)
    assert content_type == "application/json"
    assert records == json.loads(body)


# --------------------------------------------------------------------------- Loki


def test_loki_groups_streams_by_level_and_logger() -> None:
    """Records with the same labels share a stream; values are [ns string, JSON line]."""
    records = encoded(
        make_log_record(name="a", created=CREATED + 2),
        make_log_record(name="b"),
        make_log_record(name="a", created=CREATED),
        make_log_record(name="a", level=logging.ERROR),
    )
    body, content_type = LokiEncoder()(records)
    assert content_type == "application/json"
    streams = json.loads(body)["streams"]
    by_labels = {tuple(sorted(stream["stream"].items())): stream["values"] for stream in streams}
    assert set(by_labels) == {
        (("level", "INFO"), ("logger", "a")),
        (("level", "INFO"), ("logger", "b")),
        (("level", "ERROR"), ("logger", "a")),
    }
    values = by_labels[(("level", "INFO"), ("logger", "a"))]
    assert [str(CREATED_NS), str(CREATED_NS + 2_000_000_000)] == [value[0] for value in values]
    assert [records[2], records[0]] == [json.loads(value[1]) for value in values]
    for stream in streams:
        for timestamp, line in stream["values"]:
            assert isinstance(timestamp, str)
            assert timestamp.isdigit()
            assert isinstance(line, str)


def test_loki_values_sorted_by_time_within_a_stream() -> None:
    """Loki wants each stream's entries in time order; the encoder sorts them."""
    records = encoded(*(make_log_record(created=CREATED - offset) for offset in range(5)))
    (stream,) = json.loads(LokiEncoder()(records)[0])["streams"]
    stamps = [int(value[0]) for value in stream["values"]]
    assert sorted(stamps) == stamps
    assert len(stamps) == 5


def test_loki_labels_from_extra_and_static_labels() -> None:
    """A label may name an extra key; static labels go on every stream; names are sanitised."""
    records = encoded(make_log_record(tenant="acme"), {"event": "x", "tenant": "zed"})
    encoder = LokiEncoder(labels=("tenant",), static_labels={"job": "api", "k8s.pod": "p1"})
    streams = json.loads(encoder(records)[0])["streams"]
    assert [stream["stream"] for stream in streams] == [
        {"job": "api", "k8s_pod": "p1", "tenant": "acme"},
        {"job": "api", "k8s_pod": "p1", "tenant": "zed"},
    ]


def test_loki_stream_without_labels_gets_a_job_label() -> None:
    """Loki refuses a stream without labels, so one without values gets job=batchlog."""
    body, _ = LokiEncoder()(encoded({"event": "no level, no logger"}))
    assert [s["stream"] for s in json.loads(body)["streams"]] == [{"job": "batchlog"}]


# --------------------------------------------------------------------------- Elasticsearch


@pytest.mark.parametrize("action", ["create", "index"])
def test_bulk_body_is_action_and_source_pairs(action: str) -> None:
    """_bulk: action line then document per record, every line JSON, trailing newline."""
    records = encoded(make_log_record(), {"event": "e", "level": "warning"})
    body, content_type = BulkEncoder("logs-app", action)(records)
    assert content_type == "application/x-ndjson"
    assert body.endswith(b"\n")
    lines = [json.loads(line) for line in body.decode().split("\n")[:-1]]
    assert len(lines) == 2 * len(records)
    for action_line, document, record in zip(lines[::2], lines[1::2], records):
        assert {action: {"_index": "logs-app"}} == action_line
        assert record["timestamp"] == document.pop("@timestamp")
        assert record == document


def test_bulk_rejects_an_unknown_action() -> None:
    """Only create and index are valid _bulk actions for new documents."""
    with pytest.raises(ValueError, match="create"):
        BulkEncoder(action="update")


def test_bulk_check_response_reports_refused_documents() -> None:
    """A 200 answer with errors: true is a failure that names the first refusal."""
    answer = {
        "errors": True,
        "items": [
            {"create": {"status": 201}},
            {"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}},
        ],
    }
    problem = BulkEncoder.check_response(json.dumps(answer).encode())
    assert problem is not None
    assert "1 of 2" in problem
    assert "mapper_parsing_exception" in problem
    assert BulkEncoder.check_response(b'{"errors":false,"items":[]}') is None
    assert BulkEncoder.check_response(b"not json") is None


# --------------------------------------------------------------------------- OTLP


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.DEBUG, 5),
        (logging.INFO, 9),
        (logging.WARNING, 13),
        (logging.ERROR, 17),
        (logging.CRITICAL, 21),
        (25, 12),
        (21, 10),
        (5, 4),
        (1, 1),
        (0, 0),
        (None, 0),
    ],
)
def test_severity_number_maps_python_levels(level: int | None, expected: int) -> None:
    """Python levels map onto OTLP SeverityNumber ranges (DEBUG=5 ... CRITICAL=21)."""
    assert expected == severity_number(level)


def parse_otlp(body: bytes) -> object:
    """Parse the body with the official protobuf schema (fails on any invalid field)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )

    return json_format.Parse(body, ExportLogsServiceRequest())


def attributes_of(log_record: object) -> dict[str, object]:
    from google.protobuf import json_format

    return {
        attribute.key: json_format.MessageToDict(attribute.value)
        for attribute in log_record.attributes
    }


def test_otlp_body_parses_with_the_official_schema() -> None:
    """The OTLP JSON is a valid ExportLogsServiceRequest with the record's fields."""
    record = make_log_record(
        level=logging.ERROR,
        exc_info=True,
        user_id=7,
        ratio=0.5,
        ok=True,
        tags=["a", 1],
        ctx={"k": "v"},
        huge=2**70,
    )
    encoder = OTLPEncoder(service_name="api", resource_attributes={"env": "prod"})
    body, content_type = encoder(encoded(record))
    assert content_type == "application/json"
    request = parse_otlp(body)
    (resource_logs,) = request.resource_logs
    resource = {kv.key: kv.value.string_value for kv in resource_logs.resource.attributes}
    assert resource == {"service.name": "api", "env": "prod"}
    (scope_logs,) = resource_logs.scope_logs
    assert scope_logs.scope.name == "batchlog"
    (log_record,) = scope_logs.log_records
    assert log_record.time_unix_nano == CREATED_NS
    assert log_record.observed_time_unix_nano >= log_record.time_unix_nano
    assert log_record.severity_number == 17
    assert log_record.severity_text == "ERROR"
    assert log_record.body.string_value == "hello world"
    attributes = attributes_of(log_record)
    assert attributes["logger.name"] == {"stringValue": "app.db"}
    assert attributes["code.function.name"] == {"stringValue": "query"}
    assert attributes["code.line.number"] == {"intValue": "42"}
    assert attributes["code.file.path"] == {"stringValue": "/src/app/db.py"}
    assert attributes["exception.type"] == {"stringValue": "ValueError"}
    assert attributes["exception.message"] == {"stringValue": "boom"}
    assert "Traceback" in attributes["exception.stacktrace"]["stringValue"]
    assert attributes["user_id"] == {"intValue": "7"}
    assert attributes["ratio"] == {"doubleValue": 0.5}
    assert attributes["ok"] == {"boolValue": True}
    assert attributes["tags"] == {
        "arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}]}
    }
    assert attributes["ctx"] == {
        "kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}
    }
    assert {"stringValue": str(2**70)} == attributes["huge"]
    assert "thread.id" in attributes


def test_otlp_body_of_structlog_events_parses() -> None:
    """Event dicts encode to valid OTLP too: level name, message, extra keys."""
    events = encoded(
        {
            "event": "user logged in",
            "level": "warning",
            "timestamp": "2026-11-27T05:27:12.123456Z",
            "logger": "auth",
            "user": "ann",
            "exception": "Traceback...\nKeyError: 'x'",
        },
        {"event": {"structured": 1}},
    )
    request = parse_otlp(OTLPEncoder()(events)[0])
    first, second = request.resource_logs[0].scope_logs[0].log_records
    assert first.time_unix_nano == CREATED_NS
    assert first.severity_number == 13
    assert first.severity_text == "WARNING"
    assert first.body.string_value == "user logged in"
    attributes = attributes_of(first)
    assert attributes["user"] == {"stringValue": "ann"}
    assert attributes["logger.name"] == {"stringValue": "auth"}
    assert attributes["exception.type"] == {"stringValue": "KeyError"}
    assert second.severity_number == 0
    assert "structured" in second.body.string_value
    resource = request.resource_logs[0].resource.attributes
    assert [(kv.key, kv.value.string_value) for kv in resource] == [
        ("service.name", "unknown_service")
    ]


# --------------------------------------------------------------------------- by name


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ndjson", "application/x-ndjson"),
        ("JSON", "application/json"),
        ("loki", "application/json"),
        ("elasticsearch", "application/x-ndjson"),
        ("opensearch", "application/x-ndjson"),
        ("otlp", "application/json"),
    ],
)
def test_encoder_named_by_name(name: str, kind: str) -> None:
    """Every encoder name (any case) gives an encoder producing its content type."""
    body, content_type = encoder_named(name)(encoded(make_log_record()))
    assert kind == content_type
    assert body


def test_encoder_named_refuses_unknown_names_listing_the_valid_ones() -> None:
    """An unknown name raises ValueError listing the names and pointing at the classes."""
    with pytest.raises(ValueError, match=r"'loki'.*LokiEncoder") as raised:
        encoder_named("syslog")
    assert "'syslog'" in str(raised.value)


# --------------------------------------------------------------------------- the classes

ALL_ENCODERS = [NDJSONEncoder(), JSONEncoder(), LokiEncoder(), BulkEncoder(), OTLPEncoder()]


@pytest.mark.parametrize("encoder", ALL_ENCODERS, ids=repr)
def test_encoders_are_slotted_and_repr_their_settings(encoder: object) -> None:
    """Each encoder is a small slotted class whose repr rebuilds it."""
    assert not hasattr(encoder, "__dict__")
    assert repr(encoder).startswith(f"{type(encoder).__name__}(")


def test_encoder_reprs_show_the_settings() -> None:
    """The repr names every setting, so a report says which encoder was used."""
    assert (
        repr(LokiEncoder(labels="tenant", static_labels={"job": "api"}))
        == "LokiEncoder(labels=('tenant',), static_labels={'job': 'api'})"
    )
    assert (
        repr(BulkEncoder(index="logs-app", action="index"))
        == "BulkEncoder(index='logs-app', action='index')"
    )
    assert repr(OTLPEncoder(service_name="api")) == "OTLPEncoder(resource={'service.name': 'api'})"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LokiEncoder(labels=3), "labels must be a string or a list of strings"),  # type: ignore[arg-type]
        (lambda: LokiEncoder(labels=["a", 1]), "labels must be"),  # type: ignore[list-item]
        (lambda: LokiEncoder(static_labels=["job"]), "static_labels must be a mapping"),  # type: ignore[arg-type]
        (lambda: OTLPEncoder(resource="svc"), "resource must be a mapping"),
        (lambda: OTLPEncoder(service_name=3), "service_name must be a string"),  # type: ignore[arg-type]
        (lambda: OTLPEncoder(resource_attributes=[1]), "resource must be a mapping"),  # type: ignore[arg-type]
    ],
)
def test_bad_encoder_settings_raise_type_error_naming_them(
    make: Callable[[], object], message: str
) -> None:
    """A setting of the wrong type fails at construction, naming the setting."""
    with pytest.raises(TypeError, match=message):
        make()


def test_bulk_rejects_an_empty_index() -> None:
    """The index must be a non-empty string."""
    with pytest.raises(ValueError, match="index must be a non-empty string"):
        BulkEncoder(index="")


def test_otlp_resource_from_a_mapping_or_an_sdk_resource() -> None:
    """resource= takes attributes or an OpenTelemetry Resource; service.name has a default."""
    from opentelemetry.sdk.resources import Resource

    def resource_of(encoder: OTLPEncoder) -> dict[str, str]:
        request = parse_otlp(encoder(encoded(make_log_record()))[0])
        attributes = request.resource_logs[0].resource.attributes  # type: ignore[attr-defined]
        return {kv.key: kv.value.string_value for kv in attributes}

    assert resource_of(OTLPEncoder(resource={"env": "prod"})) == {
        "env": "prod",
        "service.name": "unknown_service",
    }
    sdk_resource = Resource.create({"service.name": "checkout", "env": "prod"})
    from_sdk = resource_of(OTLPEncoder(resource=sdk_resource))
    assert from_sdk["service.name"] == "checkout"
    assert from_sdk["env"] == "prod"
    assert dict(sdk_resource.attributes) == from_sdk


def test_otlp_resource_and_its_shorthands_are_exclusive() -> None:
    """resource= with service_name= or resource_attributes= is refused: which would win?"""
    with pytest.raises(ValueError, match="either resource or service_name"):
        OTLPEncoder(resource={"a": "b"}, service_name="api")
    with pytest.raises(ValueError, match="either resource or service_name"):
        OTLPEncoder(resource={"a": "b"}, resource_attributes={"c": "d"})


def test_otlp_encoder_takes_keyword_arguments_only() -> None:
    """OTLPEncoder("api") would be ambiguous (resource or service name?): keywords only."""
    with pytest.raises(TypeError):
        OTLPEncoder("api")  # type: ignore[misc]


HOSTILE = {
    "text": "caf\u00e9 \U0001f600 \x00 nul",
    "surrogate": "\ud800 alone",
    "huge": 2**80,
    "nan": float("nan"),
    "nested": {"a": [1, 2.5, True, None, {"b": "c"}]},
    "bytes": b"\xff\x00",
}


@pytest.mark.parametrize("encoder", ALL_ENCODERS, ids=repr)
def test_every_encoder_writes_the_same_body_with_and_without_orjson(
    encoder: Callable[[list[dict[str, object]]], tuple[bytes, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bodies go through json_bytes: orjson (when installed) and the plain path agree."""
    pytest.importorskip("orjson")
    records = encoded(make_log_record(**HOSTILE), {"event": "e", **HOSTILE})

    def body(use_orjson: bool | None) -> tuple[bytes, str]:
        monkeypatch.setattr(encode_module, "_use_orjson", use_orjson)
        result = encoder(records)
        if use_orjson is None:
            assert encode_module._use_orjson is True  # orjson really wrote it
        return result

    fast, plain = body(None), body(False)
    assert plain[1] == fast[1]
    if isinstance(encoder, OTLPEncoder):  # observedTimeUnixNano is the time of encoding
        assert _without_observed(json.loads(plain[0])) == _without_observed(json.loads(fast[0]))
    else:
        assert plain[0] == fast[0]


def _without_observed(request: dict[str, Any]) -> dict[str, Any]:
    for resource_logs in request["resourceLogs"]:
        for scope_logs in resource_logs["scopeLogs"]:
            for log_record in scope_logs["logRecords"]:
                log_record.pop("observedTimeUnixNano")
    return request


TRACE_CONTEXT = {
    "trace_id": "5b8efff798038103d269b633813fc60c",
    "span_id": "eee19b7ec3c1b174",
    "trace_flags": 1,
}


@pytest.mark.parametrize(
    "encoder", [NDJSONEncoder(), JSONEncoder(), LokiEncoder(), BulkEncoder()], ids=repr
)
def test_other_encoders_carry_the_trace_context_as_extra_fields(encoder: Any) -> None:
    """Outside OTLP, trace_id, span_id and trace_flags are ordinary extra fields."""
    body, _ = encoder(encoded(make_log_record(**TRACE_CONTEXT)))
    text = body.decode()
    for key, value in TRACE_CONTEXT.items():
        assert json.dumps({key: value}, separators=(",", ":"))[1:-1] in text.replace('\\"', '"')


def test_otlp_attributes_shared_within_a_body_equal_those_made_per_record() -> None:
    """The per-body cache of a place's attributes changes nothing in the output."""
    import logging

    from batchlog.sinks import OTLPEncoder, encode_record

    records = []
    for number in range(6):
        record = logging.LogRecord(
            "app", logging.INFO, "/src/app.py", 7 + number % 2, "m %d", (number,), None
        )
        if number == 2:
            record.user = "u2"
            record.__dict__["logger.name"] = "an extra that must not win"
        if number == 3:
            record.exc_text = "Traceback (most recent call last):\nValueError: boom"
        records.append(encode_record(record))
    records.append({**records[0], "line": [1, 2]})  # unhashable: made without the cache
    observed = "1"
    shared_cache: dict = {}
    with_cache = [OTLPEncoder.log_record(record, observed, shared_cache) for record in records]
    without = [OTLPEncoder.log_record(record, observed) for record in records]
    assert without == with_cache
    assert len(shared_cache) == 2  # two places: line 7 and line 8
    (user,) = [kv for kv in with_cache[2]["attributes"] if kv["key"] == "user"]
    assert user["value"] == {"stringValue": "u2"}
    names = [kv for kv in with_cache[2]["attributes"] if kv["key"] == "logger.name"]
    assert names == [{"key": "logger.name", "value": {"stringValue": "app"}}]


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-01-01T00:00:00.00000\u00b2Z",
        "2024-01-01T00:00:00.\u0663\u0663\u0663\u0663\u0663\u0663Z",
        "\u0662024-01-01T00:00:00Z",
    ],
)
def test_a_timestamp_with_non_ascii_digits_never_fails_a_body(timestamp: str) -> None:
    """A structlog event's odd timestamp costs no record: the time of encoding is used."""
    from batchlog.sinks import LokiEncoder, OTLPEncoder, encode_record

    records = [encode_record({"event": "odd clock", "timestamp": timestamp})]
    for encoder in (OTLPEncoder(), LokiEncoder()):
        body, _ = encoder(records)
        assert b"odd clock" in body
