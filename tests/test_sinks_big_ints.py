"""An integer too long for Python to write in decimal poisons no batch, in any sink.

Python refuses to write an int of more than ``sys.get_int_max_str_digits()`` digits (4,300
by default) in decimal, so JSON cannot hold it: the shared encoding writes its hex string.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import sys
from pathlib import Path

import pytest

from batchlog.sinks import FallbackSink, JsonLinesSink, SQLiteSink, encode_record, to_json
from batchlog.sinks.encoders import ENCODER_NAMES, encoder_named

pytestmark = pytest.mark.skipif(
    not hasattr(sys, "get_int_max_str_digits"), reason="this Python writes any int in decimal"
)

HUGE = 10**5000  # over the default limit of 4,300 digits
FINE = 2**70  # beyond 64 bits, but writable: kept as a number


def record_with(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "counted", None, None)
    record.__dict__.update(extra)
    return record


def test_to_json_writes_a_huge_int_as_hex_and_keeps_the_others() -> None:
    data = json.loads(to_json({"huge": HUGE, "fine": FINE, "list": [HUGE, -HUGE]}))
    assert data == {"huge": hex(HUGE), "fine": FINE, "list": [hex(HUGE), hex(-HUGE)]}
    assert int(data["huge"], 16) == HUGE  # nothing lost


def test_encode_record_makes_a_huge_extra_writable() -> None:
    encoded = encode_record(record_with(huge=HUGE, fine=FINE))
    assert encoded["extra"] == {"huge": hex(HUGE), "fine": FINE}
    json.loads(to_json(encoded))


def test_jsonl_stores_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    sink = JsonLinesSink(path)
    sink([record_with(huge=HUGE), record_with(n=1)])
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["extra"] for line in lines] == [{"huge": hex(HUGE)}, {"n": 1}]


def test_sqlite_stores_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "logs.sqlite3"
    sink = SQLiteSink(path)
    sink([record_with(huge=HUGE), record_with(n=1)])
    sink.close()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        extras = [json.loads(row[0]) for row in connection.execute("SELECT extra FROM logs")]
    assert extras == [{"huge": hex(HUGE)}, {"n": 1}]


def test_a_failed_batch_with_a_huge_int_is_dead_lettered(tmp_path: Path) -> None:
    def unreachable(batch: object) -> None:
        raise ConnectionError("unreachable")

    path = tmp_path / "dead.jsonl"
    sink = FallbackSink(unreachable, path)
    sink([record_with(huge=HUGE)])
    sink.close()
    assert hex(HUGE) in path.read_text()


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_every_http_encoder_builds_a_body(name: str) -> None:
    body, _ = encoder_named(name)([encode_record(record_with(huge=HUGE))])
    assert hex(HUGE).encode() in body
