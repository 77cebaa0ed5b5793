"""``json_bytes``: orjson (``batchlog[fast]``) and the plain ``json`` path write the same JSON.

The plain path is forced by the private switch ``batchlog.sinks._encode._use_orjson``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import enum
import json
import logging
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_hostile_values import make_batch

from batchlog.sinks import JsonLinesSink, SQLiteSink, _encode, encode_record, to_json
from batchlog.sinks._encode import json_bytes

orjson = pytest.importorskip("orjson")


def plain_bytes(data: Any, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """``json_bytes(data)`` on the plain json path."""
    with monkeypatch.context() as patch:
        patch.setattr(_encode, "_use_orjson", False)
        return json_bytes(data)


def fast_bytes(data: Any, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """``json_bytes(data)`` with orjson, checking that orjson really was called."""
    calls = []

    def spy(*args: Any, **kwargs: Any) -> bytes:
        calls.append(args)
        return orjson.dumps(*args, **kwargs)  # type: ignore[no-any-return]

    _encode._resolve_orjson()  # so the options are set
    with monkeypatch.context() as patch:
        patch.setattr(_encode, "_use_orjson", True)
        patch.setattr(_encode, "_orjson_dumps", spy)
        result = json_bytes(data)
    assert calls, "orjson was not used"
    return result


class Text(str):
    """A str subclass with its own ``__str__``: json writes the text it holds."""

    __slots__ = ()

    def __str__(self) -> str:
        return "not this"


class Level(enum.IntEnum):
    HIGH = 3


class Items(dict):  # type: ignore[type-arg]
    """A dict subclass."""


@dataclasses.dataclass
class Point:
    x: int


# Raw values where orjson, left alone, would differ from json or refuse.
ODD_VALUES: dict[str, Any] = {
    "beyond 64 bits": [2**64, -(2**63) - 1, 2**70],
    "at 64 bits": [2**63 - 1, -(2**63), 2**64 - 1],
    "lone surrogate": "bad \udcff",
    "NUL": "a\x00b",
    "non-str keys": {1: "a", 2.5: "b", None: "c", False: "d"},
    "str subclass": Text("held"),
    "int subclass": Level.HIGH,
    "dict subclass": Items(a=1),
    "ordered dict": collections.OrderedDict(b=2, a=1),
    "datetime": datetime.datetime(2026, 11, 27, 5, 27, 12, 123456, tzinfo=datetime.timezone.utc),
    "dataclass": Point(1),
    "tuple": (1, "two"),
    "nested": {"deep": [[{"x": [1, None, True, "é😀"]}]]},
}


@pytest.mark.parametrize("name", sorted(ODD_VALUES))
def test_both_paths_write_the_same_bytes_for_odd_values(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values orjson would write its own way fall back to the plain path: equal bytes."""
    value = {"value": ODD_VALUES[name]}
    plain = plain_bytes(value, monkeypatch)
    assert plain == fast_bytes(value, monkeypatch)
    assert plain == to_json(value).encode("utf-8")
    plain.decode("utf-8")  # valid UTF-8, whatever the value held


def test_both_paths_write_the_same_bytes_for_every_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Good and hostile records, encoded: byte for byte the same JSON on both paths."""
    records = [encode_record(record) for record in make_batch()]
    assert len(records) == 40  # 20 good, 10 hostile LogRecords, 10 hostile event dicts
    for record in records:
        assert plain_bytes(record, monkeypatch) == fast_bytes(record, monkeypatch)


def test_json_lines_writes_json_bytes_and_a_newline_each_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """json_lines (JsonLinesSink's loop) equals json_bytes + "\\n" per item, either path."""
    items = [encode_record(record) for record in make_batch()]
    items += [{"value": value} for value in ODD_VALUES.values()]
    expected = b"".join(plain_bytes(item, monkeypatch) + b"\n" for item in items)
    for use_orjson in (True, False):
        _encode._resolve_orjson()  # so the options are set
        with monkeypatch.context() as patch:
            patch.setattr(_encode, "_use_orjson", use_orjson)
            data, count = _encode.json_lines(iter(items))
        assert (bytes(data), count) == (expected, len(items))


def test_floats_have_the_same_value_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Floats parse to the same value; only the spelling of small exponents may differ."""
    floats = [0.1, 1e-7, 1.5e300, -2.5e-300, 1e16, 123456.789, 5e-324, 0.0, -0.0]
    plain = json.loads(plain_bytes(floats, monkeypatch))
    fast = json.loads(fast_bytes(floats, monkeypatch))
    assert floats == plain == fast
    assert [math.copysign(1, value) for value in floats] == [
        math.copysign(1, value) for value in fast
    ]


def test_non_finite_floats_from_encode_record_are_text_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """encode_record turns NaN and infinities into text first, so both paths agree."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "floats", None, None)
    record.__dict__.update(nan=math.nan, inf=math.inf, ninf=-math.inf)
    encoded = encode_record(record)
    assert plain_bytes(encoded, monkeypatch) == fast_bytes(encoded, monkeypatch)
    assert json.loads(json_bytes(encoded))["extra"] == {"nan": "nan", "inf": "inf", "ninf": "-inf"}


class Colour(enum.Enum):
    RED = "r"


@pytest.mark.parametrize(
    ("value", "plain", "fast"),
    [
        (math.nan, b'["nan"]', b"[null]"),
        (Colour.RED, b"[\"<Colour.RED: 'r'>\"]", b'["r"]'),
        (
            uuid.UUID(int=1),
            b"[\"UUID('00000000-0000-0000-0000-000000000001')\"]",
            b'["00000000-0000-0000-0000-000000000001"]',
        ),
    ],
    ids=["nan", "enum", "uuid"],
)
def test_the_documented_differences_for_data_not_encoded_first(
    value: Any, plain: bytes, fast: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw values orjson knows (not through encode_record) are written orjson's way."""
    assert (plain_bytes([value], monkeypatch), fast_bytes([value], monkeypatch)) == (plain, fast)
    encoded = encode_record({"event": "e", "v": value})  # through the encoding: the same
    assert plain_bytes(encoded, monkeypatch) == fast_bytes(encoded, monkeypatch)


def test_the_sinks_write_the_same_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JsonLinesSink and SQLiteSink store the same text with and without orjson."""
    import sqlite3

    stored = []
    for use_orjson in (False, True):
        # None: decided on first use, as in an application (orjson is installed here).
        monkeypatch.setattr(_encode, "_use_orjson", None if use_orjson else False)
        monkeypatch.delenv("BATCHLOG_NO_ORJSON", raising=False)
        folder = tmp_path / str(use_orjson)
        folder.mkdir()
        batch = make_batch()
        jsonl = JsonLinesSink(folder / "logs.jsonl")
        sqlite = SQLiteSink(folder / "logs.sqlite3")
        try:
            jsonl(batch)
            sqlite(batch)
        finally:
            jsonl.close()
            sqlite.close()
        assert _encode._use_orjson is use_orjson
        with contextlib.closing(sqlite3.connect(folder / "logs.sqlite3")) as connection:
            rows = connection.execute("SELECT message, extra FROM logs ORDER BY id").fetchall()
        lines = [
            json.loads(line) for line in (folder / "logs.jsonl").read_text("utf-8").splitlines()
        ]
        stored.append(([(line["message"], line["extra"]) for line in lines], rows))
    (plain_lines, plain_rows), (fast_lines, fast_rows) = stored
    assert plain_lines == fast_lines
    assert [(m, json.loads(e)) for m, e in plain_rows] == [(m, json.loads(e)) for m, e in fast_rows]


def run_python(code: str, **environment: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **environment},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_orjson_is_imported_on_the_first_call_only() -> None:
    """Importing batchlog and its sinks imports no orjson; the first json_bytes call does."""
    code = (
        "import sys, batchlog, batchlog.sinks\n"
        "from batchlog.sinks import JsonLinesSink, SQLiteSink\n"
        "from batchlog.sinks._encode import json_bytes\n"
        "before = 'orjson' in sys.modules\n"
        "json_bytes({'a': 1})\n"
        "print(before, 'orjson' in sys.modules)\n"
    )
    assert run_python(code, BATCHLOG_NO_ORJSON="") == "False True"


def test_the_environment_variable_turns_orjson_off() -> None:
    """BATCHLOG_NO_ORJSON=1: the plain path, orjson never imported."""
    code = (
        "import sys\n"
        "from batchlog.sinks._encode import json_bytes\n"
        "print(json_bytes({'a': [1, 'é']}).decode(), 'orjson' in sys.modules)\n"
    )
    assert run_python(code, BATCHLOG_NO_ORJSON="1") == '{"a":[1,"é"]} False'
