r"""One encoding of a record, LogRecord or structlog event dict, to a JSON-ready dict.

Every sink stores the same fields, so a reader of one store can read any other::

    timestamp     RFC 3339, UTC, microseconds: "2026-11-27T05:27:12.123456Z"
    level         "INFO"                       level_number  20
    logger        logger name                  message       the merged message (text)
    exception     traceback text or None       stack         stack text or None
    thread, thread_name, process, process_name, module, function, line, path
    extra         every other field (``extra=`` of a LogRecord, other event-dict keys)

Every field but ``extra`` holds a string, an integer or None; ``extra`` is a dict of JSON
values with string keys. Encoding never raises, and no value can make a record unstorable:
whatever a store cannot hold takes one documented form, the same in every sink (JSON
Lines, SQLite, PostgreSQL, HTTP bodies, forwarded records, dead-letter files)::

    NUL character            the 4 characters \x00         "a\0b" is stored as a\x00b
    lone surrogate           the 6 characters \udcff       as backslashreplace writes it
    int beyond 64 bits       in ``extra``: the number; a top-level field: its decimal text
    int over 4,300 digits    its hex string, "0x..."       (sys.get_int_max_str_digits())
    NaN, inf, -inf           the strings "nan", "inf", "-inf"
    bytes, bytearray         their repr, such as "b'\xff'"
    any other object         its repr; "<unrepresentable T: error>" if repr raises
    a container in itself    "<circular reference to T>"
    nesting beyond 20        the repr of the deeper container
    a key that is not str    its str() (then its repr, if str raises)
    datetime, date, time     isoformat()
    subclasses of str, int, float, dict, list, tuple: the plain value they hold

This applies to every text: fields, ``extra`` values at any depth, and keys. The NUL and
surrogate forms are text a reader can turn back, for text that held no backslash of its
own: ``text.encode("latin-1", "backslashreplace").decode("unicode_escape")``. Ordinary
text costs one test per record: the text fields are joined once and checked with
``str.isascii`` and one search for NUL; only text that is not ASCII is also checked for
surrogates (by encoding it to UTF-8).

structlog event dicts: ``event`` is the message; ``level``, ``logger`` (or
``logger_name``), ``timestamp`` (epoch seconds, a datetime, or an ISO 8601 string, which is
normalised to the form above when it parses), ``exception`` and ``stack`` map to their
fields; so do the keys of structlog's ``CallsiteParameterAdder`` (``thread``,
``thread_name``, ``process``, ``process_name``, ``module``, ``func_name``, ``lineno``,
``pathname``). Every other key goes to ``extra``. An event without a timestamp is stamped
with the time it is encoded.

A mapping that already has every field (a record read back from a JSON Lines or
dead-letter file) is passed through, its values made storable as above (which leaves a
record batchlog encoded unchanged), so any sink accepts encoded records.

``to_json`` writes compact JSON text; ``json_bytes`` the same JSON as UTF-8 bytes, written
by orjson when the ``batchlog[fast]`` extra is installed (see its docstring for what may
differ: only the spelling of some floats, never a value).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "FIELDS",
    "encode_record",
    "json_bytes",
    "json_lines",
    "rfc3339",
    "storable_text",
    "timestamp_seconds",
    "to_json",
]

#: The top-level fields of an encoded record, in order.
FIELDS = (
    "timestamp",
    "level",
    "level_number",
    "logger",
    "message",
    "exception",
    "stack",
    "thread",
    "thread_name",
    "process",
    "process_name",
    "module",
    "function",
    "line",
    "path",
    "extra",
)

#: Attributes every LogRecord has (or that logging and batchlog add); the rest are extras.
LOGRECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "formatted", "taskName"}
)
# structlog keys that map onto the common fields.
_EVENT_KEYS = frozenset(
    {
        "event",
        "level",
        "logger",
        "logger_name",
        "timestamp",
        "exception",
        "stack",
        "thread",
        "thread_name",
        "process",
        "process_name",
        "module",
        "func_name",
        "lineno",
        "pathname",
    }
)
_ENCODED_KEYS = frozenset(FIELDS)
# One encoder for every call: json.dumps with options builds a new one each time.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_UTC = datetime.timezone.utc
_RFC3339 = "%Y-%m-%dT%H:%M:%S.%fZ"
_MAX_DEPTH = 20  # deeper than any log record should be: stop recursing, keep the repr
_INT64 = (-(2**63), 2**63 - 1)  # what SQL databases store as an integer
_MIN, _MAX = _INT64
_MICROS = 1_000_000


# The formatted second of the last timestamp: records of a batch share their seconds, so
# most calls only format the microseconds. One tuple, replaced whole, so threads that
# race on it each see a matching pair.
_last_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def rfc3339(epoch_seconds: float) -> str:
    """Return ``epoch_seconds`` as RFC 3339 in UTC with microseconds and a ``Z``."""
    global _last_second  # noqa: PLW0603 -- a one-entry cache, replaced atomically
    second = math.floor(epoch_seconds)
    micros = round((epoch_seconds - second) * _MICROS)
    if micros >= _MICROS:  # rounding reached the next second
        second, micros = second + 1, 0
    cached_second, prefix = _last_second
    if cached_second != second:
        moment = datetime.datetime.fromtimestamp(second, tz=_UTC)
        prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, prefix)
    return f"{prefix}.{micros:06d}Z"


def timestamp_seconds(text: object) -> float | None:
    """Return the epoch seconds of an ISO 8601 / RFC 3339 timestamp, or None if it is not one.

    A timestamp without an offset is taken as local time (as structlog's
    ``TimeStamper(utc=False)`` writes it).
    """
    if not isinstance(text, str):
        return None
    value = text.strip()
    if value[-1:] in {"Z", "z"}:
        value = value[:-1] + "+00:00"  # Python 3.9's fromisoformat does not know "Z"
    try:
        moment = datetime.datetime.fromisoformat(value)
        return moment.timestamp()  # a naive datetime is local time, as documented
    except (ValueError, OverflowError, OSError):
        return None


def _now() -> str:
    return rfc3339(time.time())


def _safe_rfc3339(epoch_seconds: Any) -> str:
    try:
        return rfc3339(float(epoch_seconds))
    except (TypeError, ValueError, OverflowError, OSError):
        return _now()  # not a usable time: the time of encoding beats losing the record


def storable_text(text: str) -> str:
    r"""Return ``text`` as every store can hold it: NUL and lone surrogates spelt out.

    A NUL character becomes the 4 characters ``\x00`` and a lone surrogate (text
    decoded with ``surrogateescape``, say) the 6 characters ``\udcff``, as Python's
    ``backslashreplace`` writes it; any other text is returned as it is (the same object).

    .. versionadded:: 0.2.0
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: UTF-8 cannot hold it
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _is_storable(text: str) -> bool:
    """Whether ``storable_text`` would leave ``text`` as it is."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_repr(value: Any) -> str:
    try:
        return storable_text(str.__str__(repr(value)))
    except Exception as exc:  # noqa: BLE001 -- a broken __repr__ must not lose the record
        try:
            detail = f"{type(exc).__name__}: {exc}"
        except Exception:  # noqa: BLE001 -- even the exception's __str__ may be broken
            detail = type(exc).__name__
        return storable_text(f"<unrepresentable {type(value).__name__}: {detail}>")


def _safe_text(value: Any) -> str:
    """Return ``str(value)`` made storable, or its ``repr`` when ``__str__`` is broken."""
    if type(value) is str:  # the common case, tested inline
        return value if value.isascii() and "\x00" not in value else storable_text(value)
    if isinstance(value, str):
        return storable_text(str.__str__(value))  # an exact str, even of a subclass
    try:
        return storable_text(str.__str__(str(value)))
    except Exception:  # noqa: BLE001 -- a broken __str__ must not lose the record
        return _safe_repr(value)


def _jsonable(value: Any, depth: int = 0, path: frozenset[int] = frozenset()) -> Any:
    """Return ``value`` made of JSON types only; anything else becomes its ``repr``.

    ``path`` holds the ids of the containers being encoded, so a cycle becomes a marker
    instead of endless recursion.
    """
    kind = type(value)
    if kind is str:
        result: Any = value if value.isascii() and "\x00" not in value else storable_text(value)
    elif value is None or kind is bool:
        result = value
    elif isinstance(value, str):
        result = storable_text(str.__str__(value))  # a subclass: its text, as json writes it
    elif isinstance(value, bool):
        result = bool(value)
    elif isinstance(value, int):
        # An exact int (an IntEnum writes the same digits), so orjson writes it too.
        result = int(value) if _INT64[0] <= value <= _INT64[1] else _big_int(int(value))
    elif isinstance(value, float):
        result = float(value) if math.isfinite(value) else repr(float(value))
    elif isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        result = value.isoformat()
    elif not isinstance(value, (Mapping, list, tuple)) or depth >= _MAX_DEPTH:
        result = _safe_repr(value)
    elif id(value) in path:
        result = f"<circular reference to {type(value).__name__}>"
    else:
        result = _jsonable_container(value, depth, path | {id(value)})
    return result


def _big_int(value: int) -> int | str:
    """``value`` if Python can write it in decimal, else its hex string (``"0x..."``).

    Python refuses to convert an int of more digits than ``sys.get_int_max_str_digits()``
    (4,300 by default) to decimal, so JSON cannot hold it; hex has no such limit and
    loses nothing.
    """
    try:
        int.__repr__(value)
    except ValueError:
        return hex(value)
    return value


def _jsonable_container(value: Any, depth: int, path: frozenset[int]) -> Any:
    try:
        if isinstance(value, Mapping):
            return {_key_text(key): _jsonable(item, depth + 1, path) for key, item in value.items()}
        return [_jsonable(item, depth + 1, path) for item in value]
    except Exception:  # noqa: BLE001 -- a container that breaks while iterated: keep its repr
        return _safe_repr(value)


def _key_text(key: Any) -> str:
    if type(key) is str and key.isascii() and "\x00" not in key:
        return key
    return _safe_text(key)


# The fields that hold text (or None) in every encoded record.
_TEXT_FIELDS = (
    "timestamp",
    "level",
    "logger",
    "message",
    "exception",
    "stack",
    "thread_name",
    "process_name",
    "module",
    "function",
    "path",
)


def _make_fields_storable(encoded: dict[str, Any]) -> dict[str, Any]:
    """Make every text field of ``encoded`` storable, in place; return it."""
    for name in _TEXT_FIELDS:
        value = encoded.get(name)
        if isinstance(value, str):
            encoded[name] = storable_text(str.__str__(value))
    return encoded


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _safe_text(value)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]:
        return int(value)
    return None


def _scalar(value: Any) -> str | int | None:
    """Return an integer as it is (if it fits 64 bits), None as None, anything else as text."""
    number = _int_or_none(value)
    if number is not None or value is None:
        return number
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_big_int(int(value)))  # beyond 64 bits: decimal text, or hex if too long
    return _safe_text(value)


def _level_number(level: Any) -> int | None:
    if isinstance(level, str):
        number = logging.getLevelName(level.strip().upper())
        return number if isinstance(number, int) else None
    return _int_or_none(level)


def _level_name(level: Any) -> str | None:
    if isinstance(level, str):
        return storable_text(level.strip().upper())
    number = _int_or_none(level)
    if number is None:
        return None
    name = logging.getLevelName(number)
    return name if isinstance(name, str) else None


def _encode_log_record(record: logging.LogRecord) -> dict[str, Any]:
    attributes = record.__dict__
    message = attributes.get("message")  # set by a formatter on the worker thread
    if not isinstance(message, str):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 -- keep the record even if its args are broken
            message = (
                f"<unformattable: msg={_safe_repr(record.msg)} args={_safe_repr(record.args)}>"
            )
    exception = attributes.get("exc_text")
    if not exception and attributes.get("exc_info"):
        try:
            exception = logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 -- a broken exception must not lose the record
            exception = _safe_repr(record.exc_info)
    # Fields of an ordinary record already have the right type: check it inline and call
    # the careful converters only for odd ones (this runs once per record per sink).
    get = attributes.get
    created = get("created")
    levelname = get("levelname")
    levelno = get("levelno")
    name = get("name")
    stack = get("stack_info")
    thread = get("thread")
    thread_name = get("threadName")
    process = get("process")
    process_name = get("processName")
    module = get("module")
    function = get("funcName")
    line = get("lineno")
    path = get("pathname")
    # Text fields: taken as they are when they are str, then one join and one test for
    # all of them (isascii reads a flag, "in" is a memchr); converted one by one only
    # when that test fails.
    levelname = levelname if type(levelname) is str else _text_or_none(levelname)
    name = name if type(name) is str else _text_or_none(name)
    message = message if type(message) is str else _safe_text(message)
    stack = stack if stack is None or type(stack) is str else _text_or_none(stack)
    thread_name = thread_name if type(thread_name) is str else _text_or_none(thread_name)
    process_name = process_name if type(process_name) is str else _text_or_none(process_name)
    module = module if type(module) is str else _text_or_none(module)
    function = function if type(function) is str else _text_or_none(function)
    path = path if type(path) is str else _text_or_none(path)
    probe = "".join(
        (
            levelname or "",
            name or "",
            message,
            stack or "",
            thread_name or "",
            process_name or "",
            module or "",
            function or "",
            path or "",
        )
    )
    # Most records have no extra: one C-level subset test says so (a set difference
    # would build a set for every record).
    has_extra = not LOGRECORD_ATTRIBUTES.issuperset(attributes)
    encoded = {
        "timestamp": rfc3339(created) if type(created) is float else _safe_rfc3339(created),
        "level": levelname,
        "level_number": levelno
        if type(levelno) is int and _MIN <= levelno <= _MAX
        else _int_or_none(levelno),
        "logger": name,
        "message": message,
        "exception": _text_or_none(exception or None),
        "stack": stack,
        "thread": thread if type(thread) is int and _MIN <= thread <= _MAX else _scalar(thread),
        "thread_name": thread_name,
        "process": process
        if type(process) is int and _MIN <= process <= _MAX
        else _scalar(process),
        "process_name": process_name,
        "module": module,
        "function": function,
        "line": line if type(line) is int and _MIN <= line <= _MAX else _scalar(line),
        "path": path,
        "extra": {
            key
            if type(key) is str and key.isascii() and "\x00" not in key
            else _key_text(key): _jsonable(value)
            for key, value in attributes.items()
            if key not in LOGRECORD_ATTRIBUTES
        }
        if has_extra
        else {},
    }
    if (probe.isascii() and "\x00" not in probe) or _is_storable(probe):
        return encoded
    return _make_fields_storable(encoded)


def _event_timestamp(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _safe_rfc3339(value)
    if isinstance(value, datetime.datetime):
        try:
            return value.astimezone(_UTC).strftime(_RFC3339)  # naive means local time
        except (ValueError, OverflowError, OSError):
            return _safe_text(value)
    if isinstance(value, str) and value:
        seconds = timestamp_seconds(value)
        # An ISO 8601 string is normalised; any other text is kept as the app wrote it.
        return storable_text(value) if seconds is None else _safe_rfc3339(seconds)
    return _now()  # no timestamp processor: the time of encoding


def _encode_event(event: Mapping[str, Any]) -> dict[str, Any]:
    level = event.get("level")
    message = event.get("event")
    return {
        "timestamp": _event_timestamp(event.get("timestamp")),
        "level": _level_name(level),
        "level_number": _level_number(level),
        "logger": _text_or_none(event.get("logger", event.get("logger_name"))),
        "message": None if message is None else _safe_text(message),
        "exception": _text_or_none(event.get("exception")),
        "stack": _text_or_none(event.get("stack")),
        "thread": _scalar(event.get("thread")),
        "thread_name": _text_or_none(event.get("thread_name")),
        "process": _scalar(event.get("process")),
        "process_name": _text_or_none(event.get("process_name")),
        "module": _text_or_none(event.get("module")),
        "function": _text_or_none(event.get("func_name")),
        "line": _scalar(event.get("lineno")),
        "path": _text_or_none(event.get("pathname")),
        "extra": {
            _key_text(key): _jsonable(value)
            for key, value in event.items()
            if key not in _EVENT_KEYS
        },
    }


def _storable_encoded(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of an encoded record with every value made storable (see above)."""
    encoded = {key: _jsonable(value) for key, value in record.items() if key != "extra"}
    extra = record["extra"]
    # The values of extra are at the depth encode_record gives them: 0, not 1.
    encoded["extra"] = (
        {_key_text(key): _jsonable(value) for key, value in extra.items()}
        if isinstance(extra, Mapping)
        else _jsonable(extra)
    )
    return _make_fields_storable({_key_text(key): value for key, value in encoded.items()})


def encode_record(record: logging.LogRecord | Mapping[str, Any]) -> dict[str, Any]:
    """Return the common JSON-ready dict for a LogRecord or a structlog event dict.

    A mapping that already holds every field of ``FIELDS`` is returned as a plain
    copy, unchanged. Anything else is encoded as an event whose message is its text.

    Never raises for odd values: anything JSON cannot hold is rendered with ``repr``.

    .. versionadded:: 0.1.0
    """
    try:
        if isinstance(record, logging.LogRecord):
            return _encode_log_record(record)
        if isinstance(record, Mapping):
            if _ENCODED_KEYS.issubset(record.keys()):
                # Already encoded (a dead-letter file being replayed): made storable again,
                # which leaves a record batchlog encoded as it is.
                return _storable_encoded(record)
            return _encode_event(record)
        return _encode_event({"event": record})
    except Exception as exc:  # noqa: BLE001 -- an encoding bug must not lose the record
        return _encode_event({"event": _safe_repr(record), "encoding_error": _safe_repr(exc)})


def to_json(data: Any) -> str:
    """Serialise ``data`` as compact JSON; never raises.

    Values JSON cannot hold take the forms of ``encode_record`` (this module's
    docstring), and so does text holding NUL or a lone surrogate, so the JSON is always
    valid UTF-8 that every store accepts.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       NUL and lone surrogates are spelt out (``storable_text``), not JSON-escaped.
    """
    try:
        text = _JSON.encode(data)
    except (TypeError, ValueError, RecursionError):
        return _JSON.encode(_jsonable(data))
    # json writes NUL as the escape \u0000 and a lone surrogate as it is: look for either.
    if "\\u0000" in text or not (text.isascii() or _is_storable(text)):
        return _JSON.encode(_jsonable(data))
    return text


# The accelerator (``batchlog[fast]``): orjson, imported on the first ``json_bytes`` call.
# ``_use_orjson`` is the private switch tests set: None decides on first use (orjson if it
# imports and BATCHLOG_NO_ORJSON is unset or empty), False forces the plain ``json`` path.
_use_orjson: bool | None = None
_orjson_dumps: Any = None
# Types orjson would write its own way are handed to ``default`` instead (which refuses
# them), so the plain path writes them: str/int/dict/list subclasses, datetimes, dataclasses.
_ORJSON_OPTIONS = 0


def _refuse(value: Any) -> Any:
    """Refuse a value (orjson's ``default``), so the plain path encodes it."""
    msg = f"left to the plain path: {type(value).__name__}"
    raise TypeError(msg)


def _resolve_orjson() -> Any:
    """Return ``orjson.dumps`` if the accelerator is to be used, else None."""
    global _use_orjson, _orjson_dumps, _ORJSON_OPTIONS  # noqa: PLW0603 -- resolved once
    if _use_orjson is False:
        return None
    if _orjson_dumps is None:
        if _use_orjson is None and os.environ.get("BATCHLOG_NO_ORJSON"):
            _use_orjson = False
            return None
        try:
            import orjson  # the optional accelerator, imported on first use
        except ImportError:
            _use_orjson = False
            return None
        _ORJSON_OPTIONS = (
            orjson.OPT_PASSTHROUGH_SUBCLASS
            | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS
        )
        _ORJSON_LINE[0] = _ORJSON_OPTIONS | orjson.OPT_APPEND_NEWLINE
        _orjson_dumps = orjson.dumps
    _use_orjson = True
    return _orjson_dumps


_ORJSON_LINE = [0]  # _ORJSON_OPTIONS and "end with a newline", set with them


def json_lines(objects: Iterable[Any]) -> tuple[bytearray, int]:
    """Return ``objects`` as JSON Lines (each ``json_bytes`` plus a newline), and their count.

    The loop of ``json_bytes`` for many objects, with orjson writing each line's newline
    itself: each line is copied into one buffer and let go at once (a batch that keeps
    hundreds of orjson's results alive costs ~2 us more per line, measured).
    """
    data = bytearray()
    count = 0
    dumps = _orjson_dumps if _use_orjson else _resolve_orjson()
    if dumps is None:
        for item in objects:
            data += to_json(item).encode("utf-8")
            data += b"\n"
            count += 1
        return data, count
    line_options = _ORJSON_LINE[0]
    for item in objects:
        count += 1
        line = _orjson_bytes(dumps, item, line_options)
        data += line if line is not None else to_json(item).encode("utf-8") + b"\n"
    return data, count


def _orjson_bytes(dumps: Any, data: Any, option: int) -> bytes | None:
    """Return orjson's JSON of ``data``, or None where the plain path must write it."""
    try:
        written: bytes = dumps(data, default=_refuse, option=option)
    except TypeError:  # orjson.JSONEncodeError: anything it refused
        return None
    return None if b"\\u0000" in written else written  # orjson writes NUL as \u0000


def json_bytes(data: Any) -> bytes:
    """Serialise ``data`` as compact UTF-8 JSON bytes; never raises.

    The same JSON as ``to_json(data).encode("utf-8")``. With the ``batchlog[fast]``
    extra installed (orjson), orjson writes it, imported on the first call; set the
    environment variable ``BATCHLOG_NO_ORJSON=1`` to use the standard library instead.
    Whatever orjson cannot write as the plain path does (integers beyond 64 bits, text
    that is not valid UTF-8 or holds NUL, keys that are not strings, subclasses of str,
    int, dict or list, datetimes, dataclasses) is written by the plain path instead.

    For ``encode_record``'s output, which is what every sink and encoder passes, both
    paths give the same bytes except the spelling of some floats (``1e-07`` or ``1e-7``,
    the same value). Data that did not go through ``encode_record`` can hold values
    orjson writes its own way where the plain path writes text: a NaN or an infinity
    (orjson: ``null``; plain: ``"nan"``), an ``enum.Enum`` (its value; plain: its
    ``repr``), a ``uuid.UUID`` (its string; plain: its ``repr``).

    .. versionadded:: 0.2.0
    """
    dumps = _orjson_dumps if _use_orjson else _resolve_orjson()
    if dumps is not None:
        written = _orjson_bytes(dumps, data, _ORJSON_OPTIONS)
        if written is not None:
            return written
    return to_json(data).encode("utf-8")
