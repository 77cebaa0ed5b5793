"""Request bodies for ``batchlog.sinks.HTTPSink``: one function of encoded records each.

An encoder takes the records of one request, already encoded by
``batchlog.sinks.encode_record``, and returns ``(body, content_type)``::

    "ndjson"          one JSON object per line                 application/x-ndjson
    "json"            one JSON array                           application/json
    "loki"            Grafana Loki push API (/loki/api/v1/push) application/json
    "elasticsearch"   Elasticsearch/OpenSearch _bulk           application/x-ndjson
    "otlp"            OpenTelemetry OTLP/HTTP JSON (/v1/logs)   application/json

An encoder may also have ``check_response(content: bytes) -> str | None``: the sink calls
it with the body of a 2xx response and treats a returned text as a failed delivery (the
``_bulk`` API answers 200 even when documents were refused).

Only the standard library is used here, so encoders can be tested without a network stack.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from .. import __version__
from ._encode import to_json

__all__ = [
    "ENCODER_NAMES",
    "ElasticsearchBulkEncoder",
    "Encoder",
    "LokiEncoder",
    "OTLPLogsEncoder",
    "encode_json_array",
    "encode_ndjson",
    "make_encoder",
    "severity_number",
    "timestamp_nanoseconds",
]

#: What every encoder is: encoded records in, ``(body, content_type)`` out.
Encoder = Callable[[list[dict[str, Any]]], tuple[bytes, str]]

NDJSON = "application/x-ndjson"
JSON = "application/json"

# RFC 3339 / ISO 8601 as encode_record and structlog's TimeStamper(fmt="iso") write it.
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_ONE_SECOND = datetime.timedelta(seconds=1)


def timestamp_nanoseconds(timestamp: object) -> int:
    """Return an encoded record's ``timestamp`` as nanoseconds since the Unix epoch.

    Reads RFC 3339 (``Z`` or an offset; no offset means local time, as ``encode_record``
    treats naive datetimes) with up to nine fractional digits. A timestamp it cannot read
    becomes the time of the call, so a record is never refused for its clock.
    """
    match = _TIMESTAMP.match(timestamp.strip()) if isinstance(timestamp, str) else None
    if match is None:
        return time.time_ns()
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = (match.group(7) or "").ljust(9, "0")
    offset = match.group(8)
    if offset is None:
        zone: datetime.tzinfo | None = None
    elif offset in {"Z", "z"}:
        zone = datetime.timezone.utc
    else:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        zone = datetime.timezone(
            sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        )
    try:
        moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=zone)
        if zone is None:
            moment = moment.astimezone()  # naive: local time
    except (ValueError, OverflowError):
        return time.time_ns()
    whole_seconds = (moment - _EPOCH) // _ONE_SECOND
    return whole_seconds * 1_000_000_000 + int(fraction)


# --------------------------------------------------------------------------- plain JSON


def encode_ndjson(records: list[dict[str, Any]]) -> tuple[bytes, str]:
    """One JSON object per line, each line ending in a newline (``application/x-ndjson``)."""
    text = "".join(to_json(record) + "\n" for record in records)
    return text.encode("utf-8"), NDJSON


def encode_json_array(records: list[dict[str, Any]]) -> tuple[bytes, str]:
    """One JSON array of the records (``application/json``)."""
    return to_json(records).encode("utf-8"), JSON


# --------------------------------------------------------------------------- Loki

_LABEL_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def _label_name(name: str) -> str:
    """Return ``name`` made a valid Prometheus/Loki label name (``[a-zA-Z_][a-zA-Z0-9_]*``)."""
    cleaned = _LABEL_NAME_INVALID.sub("_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


def _field(record: Mapping[str, Any], name: str) -> Any:
    """A top-level field of an encoded record, else the key of its ``extra``."""
    if name in record:
        return record[name]
    extra = record.get("extra")
    return extra.get(name) if isinstance(extra, Mapping) else None


class LokiEncoder:
    """Bodies for Grafana Loki's push API (``POST /loki/api/v1/push``).

    Records are grouped into streams by their label values; within a stream the values
    are ``["<unix epoch nanoseconds>", "<the record as JSON>"]``, sorted by time. A label
    is a top-level field of the encoded record (``level``, ``logger``, ...) or else a key
    of its ``extra``; a record without a value for it gets no such label. Keep labels few
    and of low cardinality: Loki indexes streams, not lines.

    Args:
        labels: The fields that become labels.
        static_labels: Labels every stream carries (``{"job": "api"}``).

    A stream that ends up with no label at all gets ``job="batchlog"``: Loki refuses a
    stream without labels.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("labels", "static_labels")

    def __init__(
        self,
        labels: Sequence[str] = ("level", "logger"),
        static_labels: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(labels, str):
            labels = (labels,)
        self.labels = tuple(labels)
        self.static_labels = {
            _label_name(str(name)): str(value) for name, value in (static_labels or {}).items()
        }

    def __repr__(self) -> str:
        return f"LokiEncoder(labels={self.labels!r}, static_labels={self.static_labels!r})"

    def stream_labels(self, record: Mapping[str, Any]) -> dict[str, str]:
        """Return the labels of the stream ``record`` belongs to."""
        labels = dict(self.static_labels)
        for name in self.labels:
            value = _field(record, name)
            if value is not None and value != "":
                labels[_label_name(name)] = value if isinstance(value, str) else to_json(value)
        return labels or {"job": "batchlog"}

    def __call__(self, records: list[dict[str, Any]]) -> tuple[bytes, str]:
        """Return the push body (``application/json``)."""
        streams: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = {}
        for record in records:
            key = tuple(sorted(self.stream_labels(record).items()))
            line = to_json(record)
            streams.setdefault(key, []).append(
                (timestamp_nanoseconds(record.get("timestamp")), line)
            )
        body = {
            "streams": [
                {
                    "stream": dict(key),
                    # sort() is stable: records logged in the same nanosecond keep their order
                    "values": [[str(ns), line] for ns, line in sorted(values, key=_first)],
                }
                for key, values in streams.items()
            ]
        }
        return to_json(body).encode("utf-8"), JSON


def _first(pair: tuple[int, str]) -> int:
    return pair[0]


# --------------------------------------------------------------------------- Elasticsearch

_BULK_ACTIONS = ("create", "index")


class ElasticsearchBulkEncoder:
    """Bodies for the Elasticsearch / OpenSearch ``_bulk`` API (``POST /_bulk``).

    Each record becomes two lines, the action ``{"create":{"_index":"<index>"}}`` and the
    document, and the body ends with a newline. The document is the encoded record with an
    ``@timestamp`` field added in front (data streams require it).

    Args:
        index: The index or data stream written to.
        action: ``"create"`` (the default; the only action a data stream accepts, and it
            never overwrites) or ``"index"`` (for a plain index).

    The server answers 200 even when it refused documents; ``check_response`` turns
    ``"errors": true`` into a failed delivery naming the first refusal.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_action_line", "action", "index")

    def __init__(self, index: str = "logs", action: str = "create") -> None:
        if action not in _BULK_ACTIONS:
            msg = f"action must be one of {_BULK_ACTIONS}, not {action!r}"
            raise ValueError(msg)
        if not isinstance(index, str) or not index:
            msg = f"index must be a non-empty string, not {index!r}"
            raise ValueError(msg)
        self.index = index
        self.action = action
        self._action_line = to_json({action: {"_index": index}}) + "\n"

    def __repr__(self) -> str:
        return f"ElasticsearchBulkEncoder(index={self.index!r}, action={self.action!r})"

    def __call__(self, records: list[dict[str, Any]]) -> tuple[bytes, str]:
        """Return the ``_bulk`` body (``application/x-ndjson``)."""
        action_line = self._action_line
        lines = [
            action_line + to_json({"@timestamp": record.get("timestamp"), **record}) + "\n"
            for record in records
        ]
        return "".join(lines).encode("utf-8"), NDJSON

    @staticmethod
    def refused_items(content: bytes) -> list[int] | None:
        """Positions (in the body) of the documents the ``_bulk`` answer refused.

        None when the answer cannot say (not JSON, or its items do not match up): then
        the whole body counts as not delivered.
        """
        answer = _bulk_refusals(content)
        if answer is None or answer[0] is None:
            return None
        return sorted({position for position, _ in answer[1]})

    @staticmethod
    def check_response(content: bytes) -> str | None:
        """Return what went wrong if the ``_bulk`` answer reports refused documents."""
        answer = _bulk_refusals(content)
        if answer is None:
            return None
        items, refusals = answer
        first = refusals[0][1] if refusals else {}
        error = first.get("error")
        reason = f"{error.get('type')}: {error.get('reason')}" if isinstance(error, dict) else error
        return (
            f"_bulk refused {len(refusals)} of {len(items) if items is not None else '?'} "
            f"documents (first: status {first.get('status')}, {reason})"
        )


def _bulk_refusals(
    content: bytes,
) -> tuple[list[Any] | None, list[tuple[int, dict[str, Any]]]] | None:
    """Read a ``_bulk`` answer that says ``"errors": true``.

    Returns its items (None if it has no list of them) and each refusal's
    ``(position, result)``; None for any other answer (nothing to check).
    """
    try:
        answer = json.loads(content)
    except ValueError:
        return None  # not the JSON _bulk answers with
    if not isinstance(answer, dict) or answer.get("errors") is not True:
        return None
    items = answer.get("items")
    if not isinstance(items, list):
        return None, []
    refusals = [
        (position, result)
        for position, item in enumerate(items)
        if isinstance(item, dict)
        for result in item.values()
        if isinstance(result, dict) and result.get("error")
    ]
    return items, refusals


# --------------------------------------------------------------------------- OTLP

#: Python level number -> OTLP SeverityNumber of the level's range (DEBUG=5 ... FATAL=21).
_SEVERITY_RANGES = ((50, 21), (40, 17), (30, 13), (20, 9), (10, 5), (1, 1))
_INT64 = (-(2**63), 2**63 - 1)


def severity_number(level_number: object) -> int:
    """Return the OTLP ``SeverityNumber`` of a Python level number (0: unspecified).

    DEBUG=5, INFO=9, WARNING=13, ERROR=17, CRITICAL=21; a level between two named ones
    takes the finer numbers of its range (25 -> INFO4=12 at most), as OTel's SDK does.
    """
    if not isinstance(level_number, int) or isinstance(level_number, bool):
        return 0
    for start, severity in _SEVERITY_RANGES:
        if level_number >= start:
            return severity + min(level_number - start, 3)
    return 0


def _any_value(value: Any) -> dict[str, Any]:
    """Return ``value`` as an OTLP ``AnyValue`` (JSON form; 64-bit ints as strings)."""
    if isinstance(value, bool):
        result: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        in_range = _INT64[0] <= value <= _INT64[1]
        result = {"intValue" if in_range else "stringValue": str(value)}
    elif isinstance(value, float):
        result = {"doubleValue": value}  # encode_record already turned inf/nan into text
    elif isinstance(value, str):
        result = {"stringValue": value}
    elif isinstance(value, Mapping):
        result = {"kvlistValue": {"values": _key_values(value)}}
    elif isinstance(value, (list, tuple)):
        result = {"arrayValue": {"values": [_any_value(item) for item in value]}}
    elif value is None:
        result = {}  # an empty AnyValue is OTLP's null
    else:
        result = {"stringValue": to_json(value)}
    return result


def _key_values(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": str(key), "value": _any_value(value)} for key, value in mapping.items()]


def _exception_type_and_message(text: str) -> tuple[str, str] | None:
    """Read ``"ValueError: boom"`` off the last line of a formatted traceback."""
    lines = [line for line in text.strip().splitlines() if line and not line[0].isspace()]
    if not lines:
        return None
    type_name, _, message = lines[-1].partition(": ")
    if not type_name or " " in type_name:
        return None
    return type_name, message


class OTLPLogsEncoder:
    """Bodies for OpenTelemetry's OTLP/HTTP JSON logs endpoint (``POST /v1/logs``).

    One ``ExportLogsServiceRequest``: one resource (``service.name`` and
    ``resource_attributes``), one scope named ``batchlog``, one log record per record.
    ``timeUnixNano`` is the record's time, ``observedTimeUnixNano`` the encoding time (both
    decimal strings), ``severityNumber``/``severityText`` come from the level, the body is
    the message. Attributes use the OpenTelemetry semantic conventions where one exists:
    ``logger.name``, ``thread.id``, ``thread.name``, ``process.pid``, ``code.file.path``,
    ``code.function.name``, ``code.line.number``, ``code.stacktrace`` (stack info),
    ``exception.type``, ``exception.message``, ``exception.stacktrace``; every ``extra``
    key follows under its own name (a standard attribute wins a clash: OTLP keys are unique).

    Args:
        service_name: The resource's ``service.name``.
        resource_attributes: Other resource attributes (``{"deployment.environment": "prod"}``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_resource", "resource_attributes", "service_name")

    def __init__(
        self,
        service_name: str = "unknown_service",
        resource_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.service_name = service_name
        self.resource_attributes = dict(resource_attributes or {})
        self._resource = {
            "attributes": _key_values({**self.resource_attributes, "service.name": service_name})
        }

    def __repr__(self) -> str:
        return (
            f"OTLPLogsEncoder(service_name={self.service_name!r}, "
            f"resource_attributes={self.resource_attributes!r})"
        )

    def __call__(self, records: list[dict[str, Any]]) -> tuple[bytes, str]:
        """Return the ``ExportLogsServiceRequest`` JSON (``application/json``)."""
        observed = str(time.time_ns())
        body = {
            "resourceLogs": [
                {
                    "resource": self._resource,
                    "scopeLogs": [
                        {
                            "scope": {"name": "batchlog", "version": __version__},
                            "logRecords": [self.log_record(record, observed) for record in records],
                        }
                    ],
                }
            ]
        }
        return to_json(body).encode("utf-8"), JSON

    @staticmethod
    def log_record(record: Mapping[str, Any], observed: str) -> dict[str, Any]:
        """Return one OTLP ``LogRecord`` (JSON form) for an encoded record."""
        attributes: dict[str, Any] = {}
        for name, field in (
            ("logger.name", "logger"),
            ("thread.id", "thread"),
            ("thread.name", "thread_name"),
            ("process.pid", "process"),
            ("code.file.path", "path"),
            ("code.function.name", "function"),
            ("code.line.number", "line"),
            ("code.stacktrace", "stack"),
        ):
            if record.get(field) is not None:
                attributes[name] = record[field]
        exception = record.get("exception")
        if isinstance(exception, str) and exception:
            parsed = _exception_type_and_message(exception)
            if parsed is not None:
                attributes["exception.type"], attributes["exception.message"] = parsed
            attributes["exception.stacktrace"] = exception
        extra = record.get("extra")
        if isinstance(extra, Mapping):
            for key, value in extra.items():
                if value is not None:
                    attributes.setdefault(str(key), value)
        log_record: dict[str, Any] = {
            "timeUnixNano": str(timestamp_nanoseconds(record.get("timestamp"))),
            "observedTimeUnixNano": observed,
            "severityNumber": severity_number(record.get("level_number")),
        }
        level = record.get("level")
        if isinstance(level, str):
            log_record["severityText"] = level
        message = record.get("message")
        if message is not None:
            log_record["body"] = _any_value(message)
        log_record["attributes"] = _key_values(attributes)
        return log_record


# --------------------------------------------------------------------------- by name

ENCODER_NAMES = ("ndjson", "json", "loki", "elasticsearch", "opensearch", "otlp")


def make_encoder(
    encoder: str | Encoder,
    *,
    loki_labels: Sequence[str] = ("level", "logger"),
    loki_static_labels: Mapping[str, str] | None = None,
    index: str = "logs",
    bulk_action: str = "create",
    service_name: str = "unknown_service",
    resource_attributes: Mapping[str, Any] | None = None,
) -> Encoder:
    """Return the encoder ``encoder`` names (any case), or ``encoder`` itself if callable.

    Raises:
        ValueError: ``encoder`` names no encoder (the message lists the names) or an
            option is invalid.
    """
    if callable(encoder):
        return encoder
    name = encoder.strip().lower() if isinstance(encoder, str) else None
    if name == "ndjson":
        return encode_ndjson
    if name == "json":
        return encode_json_array
    if name == "loki":
        return LokiEncoder(loki_labels, loki_static_labels)
    if name in {"elasticsearch", "opensearch"}:
        return ElasticsearchBulkEncoder(index, bulk_action)
    if name == "otlp":
        return OTLPLogsEncoder(service_name, resource_attributes)
    msg = (
        f"encoder must be one of {', '.join(map(repr, ENCODER_NAMES))} or a callable "
        f"(list[dict]) -> (bytes, content_type), not {encoder!r}"
    )
    raise ValueError(msg)
