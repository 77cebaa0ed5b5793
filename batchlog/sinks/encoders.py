"""Request bodies for ``batchlog.sinks.HTTPSink``: one small class per format.

An encoder takes the records of one request, already encoded by
``batchlog.sinks.encode_record``, and returns ``(body, content_type)``::

    NDJSONEncoder()   one JSON object per line                  application/x-ndjson
    JSONEncoder()     one JSON array                            application/json
    LokiEncoder()     Grafana Loki push API (/loki/api/v1/push) application/json
    BulkEncoder()     Elasticsearch/OpenSearch _bulk            application/x-ndjson
    OTLPEncoder()     OpenTelemetry OTLP/HTTP JSON (/v1/logs)   application/json

Each is a class whose settings go to ``__init__`` and whose work is ``__call__``, so
dictConfig builds one from plain values:
``"encoder": {"()": "batchlog.sinks.LokiEncoder", "labels": ["level"]}``. Any callable
that keeps the ``Encoder`` protocol works too. Every body is written by
``json_bytes`` (orjson when ``batchlog[fast]`` is installed, the same JSON either way).

Only the standard library is used here, so encoders can be tested without a network stack.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .. import __version__
from ._encode import json_bytes, json_lines, to_json

__all__ = [
    "ENCODER_NAMES",
    "BulkEncoder",
    "CheckingEncoder",
    "Encoder",
    "JSONEncoder",
    "LokiEncoder",
    "NDJSONEncoder",
    "OTLPEncoder",
    "encoder_named",
    "severity_number",
    "timestamp_nanoseconds",
]

NDJSON = "application/x-ndjson"
JSON = "application/json"


class Encoder(Protocol):
    """What ``HTTPSink(encoder=...)`` calls: encoded records in, ``(body, content_type)`` out.

    ``records`` are the records of one request as ``batchlog.sinks.encode_record`` returns
    them (plain JSON-ready dicts; never empty). The encoder returns the request body and
    its ``Content-Type``; the sink gzips the body itself. The sink may call it more than
    once for the same records (to split a batch larger than ``max_body_bytes``), so it
    must not keep state between calls. An exception it raises fails the batch.

    .. versionadded:: 0.2.0
    """

    def __call__(self, records: list[dict[str, Any]], /) -> tuple[bytes, str]:
        """Return the body for ``records`` and its content type."""


class CheckingEncoder(Encoder, Protocol):
    """An ``Encoder`` with the optional hooks ``HTTPSink`` looks for (each on its own).

    ``check_response(content)`` is called with the body of every 2xx answer; a returned
    text makes the request a failed delivery with that text as its reason (``_bulk``
    answers 200 even when it refused documents). ``refused_items(content)`` is then
    called with the same answer and returns the positions, in the request body, of the
    records the server refused; only those records fail (the rest were delivered). None
    means the answer cannot say which, and the whole request fails.

    .. versionadded:: 0.2.0
    """

    def check_response(self, content: bytes, /) -> str | None:
        """Return what went wrong if a 2xx answer reports a failure, else None."""

    def refused_items(self, content: bytes, /) -> list[int] | None:
        """Return the positions of the refused records, or None if the answer cannot say."""


# RFC 3339 / ISO 8601 as encode_record and structlog's TimeStamper(fmt="iso") write it.
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?$",
    re.ASCII,  # ASCII digits only: int() of other digits may fail, or read other numbers
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_ONE_SECOND = datetime.timedelta(seconds=1)


def timestamp_nanoseconds(timestamp: object) -> int:
    """Return an encoded record's ``timestamp`` as nanoseconds since the Unix epoch.

    Reads RFC 3339 (``Z`` or an offset; no offset means local time, as ``encode_record``
    treats naive datetimes) with up to nine fractional digits. A timestamp it cannot read
    becomes the time of the call, so a record is never refused for its clock.

    .. versionadded:: 0.2.0
    """
    global _last_second  # noqa: PLW0603 -- one cache, replaced whole
    if (
        type(timestamp) is str
        and len(timestamp) == _ENCODED_LENGTH
        and timestamp[19] == "."
        and timestamp[26] == "Z"
        and timestamp[20:26].isascii()
        and timestamp[20:26].isdigit()  # ASCII digits only: "²" is a digit int() refuses
    ):
        # encode_record's own form: records of a batch share their second, so most calls
        # read only the microseconds.
        second, nanoseconds = _last_second
        if timestamp.startswith(second):
            return nanoseconds + int(timestamp[20:26]) * 1000
        whole = _parsed_nanoseconds(timestamp[:19] + "Z")
        if whole is not None:
            _last_second = (timestamp[:19], whole)
            return whole + int(timestamp[20:26]) * 1000
    parsed = _parsed_nanoseconds(timestamp)
    return time.time_ns() if parsed is None else parsed


#: The length of encode_record's timestamps: "2026-11-27T05:27:12.123456Z".
_ENCODED_LENGTH = 27
# The last whole second read and its nanoseconds: one tuple, so racing threads see a pair.
_last_second: tuple[str, int] = ("none yet", 0)  # no timestamp starts with this


def _parsed_nanoseconds(timestamp: object) -> int | None:
    """Read an RFC 3339 timestamp (see ``timestamp_nanoseconds``); None if it cannot."""
    match = _TIMESTAMP.match(timestamp.strip()) if isinstance(timestamp, str) else None
    if match is None:
        return None
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
        return None
    whole_seconds = (moment - _EPOCH) // _ONE_SECOND
    return whole_seconds * 1_000_000_000 + int(fraction)


# --------------------------------------------------------------------------- plain JSON


class NDJSONEncoder:
    """One JSON object per line, each line ending in a newline (``application/x-ndjson``).

    For any endpoint that takes NDJSON: Vector, Fluent Bit's ``http`` input, your own.

    .. versionadded:: 0.2.0
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "NDJSONEncoder()"

    def __call__(self, records: list[dict[str, Any]]) -> tuple[bytes, str]:
        """Return the records, one JSON object per line."""
        lines, _count = json_lines(records)  # the JSON Lines of JsonLinesSink, the same bytes
        return bytes(lines), NDJSON


class JSONEncoder:
    """One JSON array of the records (``application/json``).

    .. versionadded:: 0.2.0
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "JSONEncoder()"

    def __call__(self, records: list[dict[str, Any]]) -> tuple[bytes, str]:
        """Return the records as one JSON array."""
        return json_bytes(records), JSON


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


def _names(value: object, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of names: one string, or a sequence of strings."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        msg = f"{what} must be a string or a list of strings, not {value!r}"
        raise TypeError(msg)
    return tuple(value)


def _string_mapping(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        msg = f"{what} must be a mapping of names to strings, not {value!r}"
        raise TypeError(msg)
    return {str(name): str(value[name]) for name in value}


class LokiEncoder:
    """Bodies for Grafana Loki's push API (``POST /loki/api/v1/push``).

    Records are grouped into streams by their label values; within a stream the values
    are ``["<unix epoch nanoseconds>", "<the record as JSON>"]``, sorted by time. A label
    is a top-level field of the encoded record (``level``, ``logger``, ...) or else a key
    of its ``extra``; a record without a value for it gets no such label. Keep labels few
    and of low cardinality: Loki indexes streams, not lines. A stream that ends up with
    no label at all gets ``job="batchlog"``: Loki refuses a stream without labels. Label
    names are made valid (``k8s.pod`` becomes ``k8s_pod``).

    Args:
        labels: The fields that become labels (one name or a list).
        static_labels: Labels every stream carries (``{"job": "api"}``).

    Raises:
        TypeError: ``labels`` is not a string or a list of strings, or ``static_labels``
            is not a mapping.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("labels", "static_labels")

    def __init__(
        self,
        labels: str | Sequence[str] = ("level", "logger"),
        static_labels: Mapping[str, str] | None = None,
    ) -> None:
        self.labels = _names(labels, "labels")
        self.static_labels = {
            _label_name(name): value
            for name, value in _string_mapping(static_labels, "static_labels").items()
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
            line = json_bytes(record).decode("utf-8")
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
        return json_bytes(body), JSON


def _first(pair: tuple[int, str]) -> int:
    return pair[0]


# --------------------------------------------------------------------------- _bulk

_BULK_ACTIONS = ("create", "index")


class BulkEncoder:
    """Bodies for the Elasticsearch / OpenSearch ``_bulk`` API (``POST /_bulk``).

    Each record becomes two lines, the action ``{"create":{"_index":"<index>"}}`` and the
    document, and the body ends with a newline. The document is the encoded record with an
    ``@timestamp`` field added in front (data streams require it).

    The server answers 200 even when it refused documents: ``check_response`` turns
    ``"errors": true`` into a failed delivery naming the first refusal, and
    ``refused_items`` tells ``HTTPSink`` which documents (by position), so only their
    records fail.

    Args:
        index: The index or data stream written to.
        action: ``"create"`` (the default; the only action a data stream accepts, and it
            never overwrites) or ``"index"`` (for a plain index).

    Raises:
        ValueError: ``action`` is neither, or ``index`` is not a non-empty string.

    .. versionadded:: 0.2.0
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
        self._action_line = json_bytes({action: {"_index": index}}) + b"\n"

    def __repr__(self) -> str:
        return f"BulkEncoder(index={self.index!r}, action={self.action!r})"

    def __call__(self, records: list[dict[str, Any]]) -> tuple[bytes, str]:
        """Return the ``_bulk`` body (``application/x-ndjson``)."""
        action_line = self._action_line
        return b"".join(
            [
                action_line + json_bytes({"@timestamp": record.get("timestamp"), **record}) + b"\n"
                for record in records
            ]
        ), NDJSON

    @staticmethod
    def refused_items(content: bytes) -> list[int] | None:
        """Positions (in the body) of the documents the ``_bulk`` answer refused.

        None when the answer cannot say (not JSON, or no list of items): then the whole
        body counts as not delivered.
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
_DEFAULT_SERVICE = "unknown_service"
# The trace context BatchingHandler puts in ``extra`` inside a span: lowercase hex ids.
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16
_TRACE_FLAGS_MAX = 255


def severity_number(level_number: object) -> int:
    """Return the OTLP ``SeverityNumber`` of a Python level number (0: unspecified).

    DEBUG=5, INFO=9, WARNING=13, ERROR=17, CRITICAL=21; a level between two named ones
    takes the finer numbers of its range (25 -> INFO4=12 at most), as OTel's SDK does.

    .. versionadded:: 0.2.0
    """
    if not isinstance(level_number, int) or isinstance(level_number, bool):
        return 0
    for start, severity in _SEVERITY_RANGES:
        if level_number >= start:
            return severity + min(level_number - start, 3)
    return 0


def _any_value(value: Any) -> dict[str, Any]:
    """Return ``value`` as an OTLP ``AnyValue`` (JSON form; 64-bit ints as strings)."""
    kind = type(value)
    if kind is str:  # the common kinds first, by exact type
        return {"stringValue": value}
    if kind is int and _INT64[0] <= value <= _INT64[1]:
        return {"intValue": str(value)}
    if kind is float:
        return {"doubleValue": value}
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


def _trace_context(extra: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """The OTLP trace fields of a record's ``extra``, and the keys they came from.

    As the OpenTelemetry SDK encodes a log record: an all-zero (invalid) id gives no
    field, and flags 0 is OTLP's default, so it is left out. A key whose value is not of
    the documented form (32 or 16 lowercase hex characters, an int 0..255) stays an
    ordinary attribute: the record keeps what it had.
    """
    fields: dict[str, Any] = {}
    used: set[str] = set()
    trace_id = extra.get("trace_id")
    if isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id):
        used.add("trace_id")
        if trace_id != _INVALID_TRACE_ID:
            fields["traceId"] = trace_id  # OTLP/JSON writes ids as hex, not base64
    span_id = extra.get("span_id")
    if isinstance(span_id, str) and _SPAN_ID.fullmatch(span_id):
        used.add("span_id")
        if span_id != _INVALID_SPAN_ID:
            fields["spanId"] = span_id
    flags = extra.get("trace_flags")
    if isinstance(flags, int) and not isinstance(flags, bool) and 0 <= flags <= _TRACE_FLAGS_MAX:
        used.add("trace_flags")
        if flags:
            fields["flags"] = flags
    return fields, frozenset(used)


def _resource_attributes(resource: object) -> dict[str, Any]:
    """The attributes of ``resource``: a mapping, or an object with ``attributes``."""
    attributes = getattr(resource, "attributes", resource)  # an OpenTelemetry SDK Resource
    if not isinstance(attributes, Mapping):
        msg = (
            "resource must be a mapping of resource attributes or an OpenTelemetry "
            f"Resource, not {resource!r}"
        )
        raise TypeError(msg)
    return {str(key): attributes[key] for key in attributes}


#: The OTLP attribute each encoded field becomes (semantic conventions' names).
_RECORD_ATTRIBUTES = (
    ("logger.name", "logger"),
    ("thread.id", "thread"),
    ("thread.name", "thread_name"),
    ("process.pid", "process"),
    ("code.file.path", "path"),
    ("code.function.name", "function"),
    ("code.line.number", "line"),
    ("code.stacktrace", "stack"),
)


class OTLPEncoder:
    """Bodies for OpenTelemetry's OTLP/HTTP JSON logs endpoint (``POST /v1/logs``).

    One ``ExportLogsServiceRequest``: one resource, one scope named ``batchlog``, one log
    record per record. ``timeUnixNano`` is the record's time, ``observedTimeUnixNano``
    the encoding time (both decimal strings), ``severityNumber``/``severityText`` come
    from the level, the body is the message. Attributes use the OpenTelemetry semantic
    conventions where one exists: ``logger.name``, ``thread.id``, ``thread.name``,
    ``process.pid``, ``code.file.path``, ``code.function.name``, ``code.line.number``,
    ``code.stacktrace`` (stack info), ``exception.type``, ``exception.message``,
    ``exception.stacktrace``; every ``extra`` key follows under its own name (a standard
    attribute wins a clash: OTLP keys are unique).

    Trace context: a record logged inside an OpenTelemetry span carries ``trace_id``
    (32 lowercase hex characters), ``span_id`` (16) and ``trace_flags`` (an int) in its
    ``extra``; they become the log record's ``traceId``, ``spanId`` and ``flags``, as
    the OpenTelemetry SDK's encoder writes them (hex ids; no field for an all-zero id or
    for flags 0), and not attributes. A record without them gets none of these fields.

    Args:
        resource: The resource's attributes, a mapping or an OpenTelemetry SDK
            ``Resource`` (its ``attributes``). ``service.name`` is ``"unknown_service"``
            unless given. Not together with ``service_name``/``resource_attributes``.
        service_name: The resource's ``service.name`` (a shorthand for ``resource``).
        resource_attributes: Other resource attributes
            (``{"deployment.environment": "prod"}``).

    Raises:
        ValueError: ``resource`` is given together with ``service_name`` or
            ``resource_attributes``.
        TypeError: ``resource`` or ``resource_attributes`` is not a mapping, or
            ``service_name`` is not a string.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("_resource", "resource")

    def __init__(
        self,
        *,
        resource: object = None,
        service_name: str | None = None,
        resource_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        if resource is not None and (service_name is not None or resource_attributes):
            msg = "give either resource or service_name/resource_attributes, not both"
            raise ValueError(msg)
        if service_name is not None and not isinstance(service_name, str):
            msg = f"service_name must be a string, not {service_name!r}"
            raise TypeError(msg)
        attributes = _resource_attributes(resource if resource is not None else {})
        if resource_attributes is not None:
            attributes.update(_resource_attributes(resource_attributes))
        if service_name is not None:
            attributes["service.name"] = service_name
        attributes.setdefault("service.name", _DEFAULT_SERVICE)
        #: The resource attributes every request carries (``service.name`` included).
        self.resource = attributes
        self._resource = {"attributes": _key_values(attributes)}

    def __repr__(self) -> str:
        return f"OTLPEncoder(resource={self.resource!r})"

    def __call__(self, records: list[dict[str, Any]]) -> tuple[bytes, str]:
        """Return the ``ExportLogsServiceRequest`` JSON (``application/json``)."""
        observed = str(time.time_ns())
        cache: dict[tuple[Any, ...], tuple[list[dict[str, Any]], frozenset[str]]] = {}
        body = {
            "resourceLogs": [
                {
                    "resource": self._resource,
                    "scopeLogs": [
                        {
                            "scope": {"name": "batchlog", "version": __version__},
                            "logRecords": [
                                self.log_record(record, observed, cache) for record in records
                            ],
                        }
                    ],
                }
            ]
        }
        return json_bytes(body), JSON

    @staticmethod
    def log_record(
        record: Mapping[str, Any],
        observed: str,
        cache: dict[tuple[Any, ...], tuple[list[dict[str, Any]], frozenset[str]]] | None = None,
    ) -> dict[str, Any]:
        """Return one OTLP ``LogRecord`` (JSON form) for an encoded record.

        ``cache`` (one per body) keeps the attributes of records logged at the same place
        by the same thread: they are made once and shared, not made again per record.
        """
        get = record.get
        place = tuple([get(field) for _, field in _RECORD_ATTRIBUTES])
        try:
            known = None if cache is None else cache.get(place)
        except TypeError:  # an unhashable field (a hand-made record): not kept
            known, cache = None, None
        if known is None:
            common = {
                name: value
                for (name, _), value in zip(_RECORD_ATTRIBUTES, place)
                if value is not None
            }
            known = (_key_values(common), frozenset(common))
            if cache is not None and len(cache) < _PLACES_KEPT:
                cache[place] = known
        key_values, names = known
        attributes: dict[str, Any] = {}
        exception = get("exception")
        if isinstance(exception, str) and exception:
            parsed = _exception_type_and_message(exception)
            if parsed is not None:
                attributes["exception.type"], attributes["exception.message"] = parsed
            attributes["exception.stacktrace"] = exception
        extra = get("extra")
        trace: dict[str, Any] = {}
        if extra and isinstance(extra, Mapping):
            trace, trace_keys = _trace_context(extra)
            for key, value in extra.items():
                if value is not None and key not in trace_keys:
                    attributes.setdefault(str(key), value)
        if attributes:
            key_values = key_values + _key_values(
                {key: value for key, value in attributes.items() if key not in names}
            )
        log_record: dict[str, Any] = {
            "timeUnixNano": str(timestamp_nanoseconds(get("timestamp"))),
            "observedTimeUnixNano": observed,
            "severityNumber": severity_number(get("level_number")),
        }
        level = get("level")
        if isinstance(level, str):
            log_record["severityText"] = level
        message = get("message")
        if message is not None:
            log_record["body"] = _any_value(message)
        log_record["attributes"] = key_values
        if trace:
            log_record.update(trace)
        return log_record


#: Most distinct places (logger, thread, code location) one body keeps attributes for.
_PLACES_KEPT = 256


# --------------------------------------------------------------------------- by name

#: The shorthands ``HTTPSink(encoder=...)`` accepts (any case), each a default-made class.
ENCODER_NAMES = ("ndjson", "json", "loki", "elasticsearch", "opensearch", "otlp")
_BY_NAME: dict[str, Any] = {
    "ndjson": NDJSONEncoder,
    "json": JSONEncoder,
    "loki": LokiEncoder,
    "elasticsearch": BulkEncoder,
    "opensearch": BulkEncoder,
    "otlp": OTLPEncoder,
}


def encoder_named(name: str) -> Encoder:
    """Return a default-configured encoder for a shorthand of ``ENCODER_NAMES`` (any case).

    Raises:
        ValueError: ``name`` is none of them (the message lists them).

    .. versionadded:: 0.2.0
    """
    factory = _BY_NAME.get(name.strip().lower()) if isinstance(name, str) else None
    if factory is None:
        msg = (
            f"encoder must be one of {', '.join(map(repr, ENCODER_NAMES))}, an encoder "
            f"instance such as batchlog.sinks.LokiEncoder(labels=[...]), or a callable "
            f"(list[dict]) -> (bytes, content_type); not {name!r}"
        )
        raise ValueError(msg)
    encoder: Encoder = factory()
    return encoder
