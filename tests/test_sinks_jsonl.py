"""``JsonLinesSink``: one write per batch, optional fsync, reopening a rotated file."""

from __future__ import annotations

import json
import logging
import os

import pytest

from batchlog.sinks import JsonLinesSink, encode_record


@pytest.fixture
def path(tmp_path):
    return tmp_path / "app.jsonl"


@pytest.fixture
def make_sink():
    """Return ``make_sink(path, **kwargs)``; every sink made is closed at teardown."""
    sinks: list[JsonLinesSink] = []

    def make(path, **kwargs):
        sink = JsonLinesSink(path, **kwargs)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def log_record(message="hello", **extra):
    record = logging.makeLogRecord({"name": "app", "msg": message, "levelno": 20})
    record.__dict__.update(extra)
    return record


def read_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_record_is_one_line_of_its_encoding(path, make_sink):
    """Each record becomes one JSON line holding its common encoding."""
    batch = [log_record("one", user="ada"), {"event": "two", "level": "info", "n": 2}]
    make_sink(path)(batch)
    assert [encode_record(batch[0])] == read_lines(path)[:1]
    assert read_lines(path)[1]["message"] == "two"
    assert read_lines(path)[1]["extra"] == {"n": 2}


def test_one_write_per_batch(path, make_sink, monkeypatch):
    """A batch of many records is one ``os.write`` call."""
    sink = make_sink(path)
    calls = []
    real_write = os.write

    def counting_write(descriptor, data):
        calls.append(len(data))
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", counting_write)
    sink([log_record(str(number)) for number in range(50)])
    monkeypatch.undo()
    assert (len(calls), len(read_lines(path))) == (1, 50)


def test_partial_write_is_completed(path, make_sink, monkeypatch):
    """If the kernel takes only part of the data, the rest is written too."""
    sink = make_sink(path)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda descriptor, data: real_write(descriptor, data[:7]))
    sink([log_record("a"), log_record("b")])
    monkeypatch.undo()
    assert [line["message"] for line in read_lines(path)] == ["a", "b"]


def test_fsync_option_calls_fsync_once_per_batch(path, make_sink, monkeypatch):
    """With ``fsync=True`` each batch is followed by one ``os.fsync``."""
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    sink = make_sink(path, fsync=True)
    sink([log_record("a"), log_record("b")])
    sink([log_record("c")])
    assert len(synced) == 2


def test_no_fsync_by_default(path, make_sink, monkeypatch):
    """Without the option no fsync is made."""
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    make_sink(path)([log_record()])
    assert synced == []


def test_appends_to_an_existing_file(path, make_sink):
    """Existing content is kept; batches are appended."""
    path.write_text('{"old": true}\n', encoding="utf-8")
    make_sink(path)([log_record("new")])
    assert [read_lines(path)[0], read_lines(path)[1]["message"]] == [{"old": True}, "new"]


def test_file_is_created_on_the_first_batch(path, make_sink):
    """Making the sink creates no file; the first batch does."""
    sink = make_sink(path)
    assert not path.exists()
    sink([log_record()])
    assert path.exists()


def test_rotated_file_is_reopened(path, make_sink):
    """After the file is renamed away, the next batch goes to a new file at the path."""
    sink = make_sink(path)
    sink([log_record("before")])
    rotated = path.with_name("app.jsonl.1")
    path.rename(rotated)
    sink([log_record("after")])
    assert [line["message"] for line in read_lines(rotated)] == ["before"]
    assert [line["message"] for line in read_lines(path)] == ["after"]


def test_deleted_file_is_recreated(path, make_sink):
    """After the file is deleted, the next batch creates it again."""
    sink = make_sink(path)
    sink([log_record("before")])
    path.unlink()
    sink([log_record("after")])
    assert [line["message"] for line in read_lines(path)] == ["after"]


def test_empty_batch_writes_nothing(path, make_sink):
    """An empty batch neither writes nor creates the file."""
    make_sink(path)([])
    assert not path.exists()


def test_a_lone_surrogate_is_stored_spelt_out(path, make_sink):
    """A lone surrogate becomes the 6 characters \\udcff; the line is valid UTF-8 JSON."""
    make_sink(path)([log_record("bad \udcff byte")])
    path.read_bytes().decode("utf-8")  # strict: nothing a UTF-8 reader would refuse
    assert read_lines(path)[0]["message"] == "bad \\udcff byte"


def test_another_encoding_writes_what_it_lacks_as_json_escapes(path):
    """In ASCII, non-ASCII text is written as JSON escapes and reads back the same."""
    JsonLinesSink(path, encoding="ascii")([log_record("Grüße € 😀")])
    path.read_bytes().decode("ascii")
    assert read_lines(path)[0]["message"] == "Grüße € 😀"


def test_works_behind_a_batching_handler(path, make_sink, make_handler, make_logger):
    """Records logged through BatchingHandler arrive as lines, in order."""
    handler = make_handler(make_sink(path), capacity=10)
    logger = make_logger(handler)
    for number in range(25):
        logger.info("record %d", number, extra={"number": number})
    handler.flush()
    lines = read_lines(path)
    assert [line["extra"]["number"] for line in lines] == list(range(25))


def test_close_is_idempotent_and_later_batches_raise(path, make_sink):
    """``close()`` twice is fine; a batch after it raises ValueError."""
    sink = make_sink(path)
    sink([log_record()])
    sink.close()
    sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink([log_record()])


def test_bad_settings_are_rejected(path):
    """A non-bool fsync and an unknown encoding fail at construction."""
    with pytest.raises(TypeError, match="fsync"):
        JsonLinesSink(path, fsync="yes")
    with pytest.raises(LookupError):
        JsonLinesSink(path, encoding="no-such-codec")


def test_repr_names_the_path(path):
    """The repr shows the path and the fsync setting."""
    assert repr(JsonLinesSink(path)) == f"JsonLinesSink(path={str(path)!r}, fsync=False)"
