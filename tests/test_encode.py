"""The one encoding every sink shares: ``encode_record`` and ``to_json``."""

from __future__ import annotations

import datetime
import json
import logging
import math
import sys
import time

import pytest

from batchlog.sinks import FIELDS, encode_record, to_json

EPOCH = 1_700_000_000.123456  # 2023-11-14T22:13:20.123456Z


def make_record(msg="hello %s", args=("world",), level=logging.WARNING, **attributes):
    """A LogRecord as a logger would make it, with ``attributes`` set on it."""
    record = logging.LogRecord("app.db", level, "/src/app/db.py", 42, msg, args, None, "query")
    record.created = EPOCH
    record.__dict__.update(attributes)
    return record


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr for you")


class BrokenStr:
    def __str__(self):
        raise RuntimeError("no str for you")

    def __repr__(self):
        return "BrokenStr()"


def test_fields_come_in_documented_order():
    """An encoded record has exactly FIELDS as keys, in order."""
    assert list(FIELDS) == list(encode_record(make_record()))
    assert list(FIELDS) == list(encode_record({"event": "x"}))


def test_timestamp_is_rfc3339_utc_with_microseconds():
    """``created`` becomes RFC 3339 in UTC with microseconds and a Z."""
    assert encode_record(make_record())["timestamp"] == "2023-11-14T22:13:20.123456Z"


def test_level_has_name_and_number():
    """The level is kept as its name and its number."""
    encoded = encode_record(make_record(level=logging.ERROR))
    assert (encoded["level"], encoded["level_number"]) == ("ERROR", 40)


def test_logger_name_and_merged_message():
    """The logger's name and the message merged with its arguments are kept."""
    encoded = encode_record(make_record())
    assert (encoded["logger"], encoded["message"]) == ("app.db", "hello world")


def test_formatter_message_is_preferred():
    """A ``message`` set by a formatter (on the worker thread) is used as it is."""
    assert encode_record(make_record(message="already merged"))["message"] == "already merged"


def test_exception_text_from_exc_info():
    """A live exception is rendered to its traceback text."""
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        record = make_record(exc_info=sys.exc_info())
    exception = encode_record(record)["exception"]
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.endswith("ZeroDivisionError: division by zero")


def test_exception_text_already_rendered():
    """``exc_text`` (what BatchingHandler leaves) is kept as it is."""
    assert encode_record(make_record(exc_text="Traceback: boom"))["exception"] == "Traceback: boom"


def test_stack_text():
    """``stack_info`` is kept as the stack field."""
    assert encode_record(make_record(stack_info="Stack (most recent call last): ..."))["stack"] == (
        "Stack (most recent call last): ..."
    )


def test_thread_and_process():
    """The thread and process, ids and names, are kept."""
    encoded = encode_record(make_record())
    record = make_record()
    assert (
        encoded["thread"],
        encoded["thread_name"],
        encoded["process"],
        encoded["process_name"],
    ) == (record.thread, record.threadName, record.process, record.processName)


def test_call_site():
    """Module, function, line and path of the call are kept."""
    encoded = encode_record(make_record())
    assert (encoded["module"], encoded["function"], encoded["line"], encoded["path"]) == (
        "db",
        "query",
        42,
        "/src/app/db.py",
    )


def test_every_extra_field_is_kept():
    """Every ``extra=`` attribute lands in ``extra``, and nothing else does."""
    logger = logging.getLogger("batchlog-tests.encode")
    record = logger.makeRecord(
        "app",
        logging.INFO,
        "f.py",
        1,
        "m",
        None,
        None,
        extra={"user": "ada", "count": 3, "ratio": 0.5, "tags": ["a", "b"], "meta": {"k": None}},
    )
    expected = {"user": "ada", "count": 3, "ratio": 0.5, "tags": ["a", "b"], "meta": {"k": None}}
    assert expected == encode_record(record)["extra"]


def test_unformattable_message_never_raises():
    """A message whose arguments do not fit is kept as a description, not an error."""
    message = encode_record(make_record(msg="%d items", args=("many",)))["message"]
    assert message.startswith("<unformattable")


def test_event_dict_fields():
    """structlog's keys map onto the common fields."""
    event = {
        "event": "user logged in",
        "level": "warning",
        "logger": "app.auth",
        "timestamp": EPOCH,
        "exception": "Traceback: boom",
        "stack": "Stack: here",
        "thread": 7,
        "thread_name": "worker-1",
        "process": 99,
        "process_name": "MainProcess",
        "module": "auth",
        "func_name": "login",
        "lineno": 12,
        "pathname": "/src/app/auth.py",
    }
    expected = {
        "timestamp": "2023-11-14T22:13:20.123456Z",
        "level": "WARNING",
        "level_number": 30,
        "logger": "app.auth",
        "message": "user logged in",
        "exception": "Traceback: boom",
        "stack": "Stack: here",
        "thread": 7,
        "thread_name": "worker-1",
        "process": 99,
        "process_name": "MainProcess",
        "module": "auth",
        "function": "login",
        "line": 12,
        "path": "/src/app/auth.py",
        "extra": {},
    }
    assert expected == encode_record(event)


def test_event_dict_other_keys_go_to_extra():
    """Every key that is no common field is kept in ``extra``."""
    event = {"event": "e", "user": "ada", "items": (1, 2), "nested": {"a": [True]}}
    assert encode_record(event)["extra"] == {
        "user": "ada",
        "items": [1, 2],
        "nested": {"a": [True]},
    }


def test_event_logger_name_key():
    """``logger_name`` (structlog's stdlib processors) is the logger too."""
    assert encode_record({"event": "e", "logger_name": "app"})["logger"] == "app"


@pytest.mark.parametrize(
    "timestamp",
    [
        "2023-11-14T22:13:20.123456Z",
        "2023-11-14T23:13:20.123456+01:00",
        datetime.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=datetime.timezone.utc),
        EPOCH,
    ],
    ids=["iso-z", "iso-offset", "datetime", "epoch"],
)
def test_event_timestamp_is_normalised(timestamp):
    """ISO strings, aware datetimes and epoch seconds all become RFC 3339 UTC."""
    assert encode_record({"event": "e", "timestamp": timestamp})["timestamp"] == (
        "2023-11-14T22:13:20.123456Z"
    )


def test_event_timestamp_in_another_format_is_kept():
    """A timestamp string that is not ISO 8601 is kept as the app wrote it."""
    assert encode_record({"event": "e", "timestamp": "14/11/2023"})["timestamp"] == "14/11/2023"


def test_event_without_timestamp_gets_the_encoding_time():
    """An event with no timestamp is stamped when encoded."""
    before = time.time()
    stamped = encode_record({"event": "e"})["timestamp"]
    after = time.time()
    seconds = datetime.datetime.strptime(stamped, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc
    )
    assert before - 0.001 <= seconds.timestamp() <= after + 0.001


def test_event_numeric_level():
    """A numeric level gets its name too."""
    encoded = encode_record({"event": "e", "level": logging.ERROR})
    assert (encoded["level"], encoded["level_number"]) == ("ERROR", 40)


def test_non_json_values_become_repr():
    """Values JSON cannot hold are stored as their ``repr``."""
    value = object()
    extra = encode_record(
        {"event": "e", "obj": value, "raw": b"\x00", "nan": math.nan, "set": {1}}
    )["extra"]
    assert extra == {"obj": repr(value), "raw": "b'\\x00'", "nan": "nan", "set": "{1}"}


def test_circular_structure_never_raises():
    """A structure that contains itself is encoded, with the cycle marked."""
    loop: dict[str, object] = {"name": "loop"}
    loop["self"] = loop
    extra = encode_record({"event": "e", "loop": loop})["extra"]
    assert extra == {"loop": {"name": "loop", "self": "<circular reference to dict>"}}
    json.loads(to_json(extra))


def test_broken_repr_never_raises():
    """A value whose ``__repr__`` raises is described, not fatal."""
    extra = encode_record(make_record(thing=BrokenRepr()))["extra"]
    assert extra["thing"].startswith("<unrepresentable BrokenRepr")


def test_broken_str_message_never_raises():
    """An event whose message cannot be made text falls back to its ``repr``."""
    assert encode_record({"event": BrokenStr()})["message"] == "BrokenStr()"


def test_deep_structure_never_raises():
    """A structure nested far deeper than any log record is cut off, not fatal."""
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    json.loads(to_json(encode_record({"event": "e", "deep": deep})))


def test_encoded_record_passes_through_unchanged():
    """A dict that already has every field is returned as an equal copy."""
    encoded = encode_record(make_record(user="ada"))
    again = encode_record(encoded)
    assert (again, again is encoded) == (encoded, False)


def test_any_other_object_becomes_a_message():
    """A record that is neither a LogRecord nor a mapping is kept as the message."""
    assert encode_record("plain text")["message"] == "plain text"


def test_encoded_records_are_valid_json():
    """``to_json`` of an encoded record round-trips through ``json.loads``."""
    encoded = encode_record(make_record(user="ada", obj=object()))
    assert json.loads(to_json(encoded)) == encoded


def test_to_json_never_raises():
    """``to_json`` renders what JSON cannot hold instead of raising."""
    assert json.loads(to_json({"nan": math.nan, (1, 2): {1, 2}})) == {
        "nan": "nan",
        "(1, 2)": "{1, 2}",
    }


# --------------------------------------------------------------- the storable text form


def test_storable_text_spells_out_nul_and_lone_surrogates():
    """NUL becomes the 4 characters \\x00, a lone surrogate the 6 characters \\udcff."""
    from batchlog.sinks._encode import storable_text

    assert storable_text("a\x00b\udcffc\ud800") == "a\\x00b\\udcffc\\ud800"


def test_storable_text_keeps_ordinary_text_as_the_same_object():
    """Text with neither is returned as it is: no copy, nothing changed."""
    from batchlog.sinks._encode import storable_text

    for text in ["plain", "Grüße € 😀", "a backslash \\x00 of its own", ""]:
        assert storable_text(text) is text


def test_the_storable_form_reads_back_as_the_docstring_says():
    """The documented way back gives the original text (no backslash of its own)."""
    from batchlog.sinks._encode import storable_text

    original = "é€😀 nul\x00 surrogate\udcff"
    stored = storable_text(original)
    assert original == stored.encode("latin-1", "backslashreplace").decode("unicode_escape")


def test_every_text_field_of_a_logrecord_is_made_storable():
    """Message, logger, thread name, path...: each odd text is spelt out, the rest kept."""
    record = make_record("m\x00", (), threadName="t\udcff", pathname="/p\x00.py")
    record.name = "log\udcffger"
    encoded = encode_record(record)
    assert (
        encoded["message"],
        encoded["logger"],
        encoded["thread_name"],
        encoded["path"],
        encoded["function"],
    ) == ("m\\x00", "log\\udcffger", "t\\udcff", "/p\\x00.py", "query")


def test_every_text_field_of_an_event_is_made_storable():
    """An event dict's text fields and keys get the same form."""
    encoded = encode_record(
        {
            "event": "e\x00",
            "logger": "l\udcff",
            "timestamp": "not a time\x00",
            "level": "odd\x00",
            "k\x00": "v\udcff",
        }
    )
    assert encoded["level"] == "ODD\\x00"
    assert (
        encoded["message"],
        encoded["logger"],
        encoded["timestamp"],
    ) == ("e\\x00", "l\\udcff", "not a time\\x00")
    assert encoded["extra"] == {"k\\x00": "v\\udcff"}


def test_a_top_level_int_beyond_64_bits_is_text():
    """thread/process/line beyond 64 bits: decimal text; beyond Python's limit: hex."""
    encoded = encode_record({"event": "x", "thread": 2**64, "lineno": -(10**5000)})
    assert str(2**64) == encoded["thread"]
    if hasattr(sys, "get_int_max_str_digits"):
        assert hex(-(10**5000)) == encoded["line"]


def test_to_json_spells_out_nul_and_surrogates_in_raw_data():
    """to_json of data that never went through encode_record: the same storable form."""
    text = to_json({"k\x00": ["\udcff", {"x": "a\x00"}], "fine": "\\u0000 as text"})
    text.encode("utf-8")  # strict: valid UTF-8
    assert json.loads(text) == {"k\\x00": ["\\udcff", {"x": "a\\x00"}], "fine": "\\u0000 as text"}


def test_subclasses_become_the_plain_values_they_hold():
    """A str/int/float/dict subclass in extra is stored as the plain value."""
    import enum

    class Text(str):
        def __str__(self):
            return "not this"

    class Level(enum.IntEnum):
        HIGH = 3

    class Ratio(float):
        pass

    extra = encode_record(make_record(text=Text("held"), rank=Level.HIGH, ratio=Ratio(0.5)))[
        "extra"
    ]
    assert extra == {"text": "held", "rank": 3, "ratio": 0.5}
    assert [str, int, float] == [type(extra[key]) for key in ("text", "rank", "ratio")]


def test_a_replayed_hostile_record_passes_through_made_storable():
    """An encoded record holding raw NUL (hand-made) is made storable; a clean one is kept."""
    clean = encode_record(make_record(user="ada"))
    assert clean == encode_record(json.loads(to_json(clean)))
    hand_made = {**clean, "message": "m\x00", "extra": {"k": "\udcff"}}
    replayed = encode_record(hand_made)
    assert (replayed["message"], replayed["extra"]) == ("m\\x00", {"k": "\\udcff"})
