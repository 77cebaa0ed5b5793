"""``FallbackSink``, ``replay`` and ``python -m batchlog replay``: no batch lost silently."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from batchlog import BatchingHandler, BatchingProcessor, FailedRecordsError
from batchlog.cli import main
from batchlog.sinks import FIELDS, FallbackSink, JsonLinesSink, SQLiteSink, encode_record, replay
from batchlog.sinks.fallback import FallbackMetrics

REPO_ROOT = Path(__file__).resolve().parents[1]


class FailingSink:
    """A sink that always raises, and remembers whether it was closed."""

    def __init__(self):
        self.closed = False

    def __call__(self, batch):
        raise ConnectionError("database unreachable")

    def close(self):
        self.closed = True


@pytest.fixture
def dead_letter_path(tmp_path):
    return tmp_path / "dead-letter.jsonl"


@pytest.fixture
def make_sink(log_capture):
    """Return ``make_sink(primary, path, **kwargs)``; every sink is closed at teardown.

    Failures are reported to a capturing logger (not stderr) unless ``logger`` is given.
    """
    sinks: list[FallbackSink] = []
    logger, _ = log_capture

    def make(primary, path, **kwargs):
        kwargs.setdefault("logger", logger)
        sink = FallbackSink(primary, path, **kwargs)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


@pytest.fixture
def closing():
    """Return ``closing(sink)``: closes ``sink`` at teardown and returns it."""
    sinks = []

    def register(sink):
        sinks.append(sink)
        return sink

    yield register
    for sink in sinks:
        sink.close()


def log_record(message="hello", **extra):
    record = logging.makeLogRecord({"name": "app", "msg": message, "levelno": logging.INFO})
    record.__dict__.update(extra)
    return record


def read_lines(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def write_dead_letter(path, batches):
    """Dead-letter each batch in ``batches`` through a FallbackSink whose primary fails."""
    sink = FallbackSink(FailingSink(), path, fsync=False, logger="batchlog-tests.silent")
    logging.getLogger("batchlog-tests.silent").disabled = True
    try:
        for batch in batches:
            sink(batch)
    finally:
        sink.close()


def test_primary_gets_the_batch_when_it_works(dead_letter_path, make_sink, sink):
    """A working primary gets the batch and no dead-letter file appears."""
    batch = [log_record("a"), {"event": "b"}]
    make_sink(sink, dead_letter_path)(batch)
    assert ([batch], dead_letter_path.exists()) == (sink.batches, False)


def test_failed_batch_goes_to_the_dead_letter_file(dead_letter_path, make_sink):
    """When the primary raises, each record is written in an envelope, one per line."""
    batch = [log_record("a", user="ada"), {"event": "b", "level": "error"}]
    make_sink(FailingSink(), dead_letter_path)(batch)
    lines = read_lines(dead_letter_path)
    assert [encode_record(batch[0])["message"], "b"] == [
        line["record"]["message"] for line in lines
    ]
    assert lines[0]["record"] == encode_record(batch[0])
    assert {"record", "error", "failed_at"} == set(lines[0])
    assert lines[0]["error"] == "ConnectionError: database unreachable"
    assert lines[0]["failed_at"].endswith("Z")


def test_counters_count_failures_batches_and_records(dead_letter_path, make_sink):
    """The counters count primary failures and what was dead-lettered."""
    sink = make_sink(FailingSink(), dead_letter_path)
    sink([log_record(), log_record()])
    sink([log_record()])
    assert (sink.primary_failures, sink.dead_lettered_batches, sink.dead_lettered_records) == (
        2,
        2,
        3,
    )


def test_metrics_is_a_frozen_snapshot(dead_letter_path, make_sink):
    """``metrics`` is a frozen FallbackMetrics with every counter."""
    sink = make_sink(FailingSink(), dead_letter_path)
    sink([log_record()])
    metrics = sink.metrics
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.primary_failures = 0
    assert FallbackMetrics(1, 1, 1, 0) == metrics
    assert metrics.as_dict() == {
        "primary_failures": 1,
        "dead_lettered_batches": 1,
        "dead_lettered_records": 1,
        "dead_letter_failures": 0,
    }


def test_failure_is_reported_once_per_batch(dead_letter_path, make_sink, log_capture):
    """Each failed batch is reported once to the logger, with the primary's exception."""
    _, capture = log_capture
    make_sink(FailingSink(), dead_letter_path)([log_record(), log_record()])
    (report,) = capture.records
    assert (report.levelno, report.exc_info[0]) == (logging.ERROR, ConnectionError)
    assert "dead-letter file" in report.getMessage()


def test_failure_goes_to_stderr_without_a_logger(dead_letter_path, closing, capsys):
    """Without a logger the report goes to stderr."""
    closing(FallbackSink(FailingSink(), dead_letter_path))([log_record()])
    assert "ConnectionError: database unreachable" in capsys.readouterr().err


def test_writer_counts_a_dead_lettered_batch_as_processed(dead_letter_path, make_sink, make_writer):
    """A batch safe in the dead-letter file counts as processed, not failed."""
    writer = make_writer(make_sink(FailingSink(), dead_letter_path), capacity=3)
    for number in range(5):
        writer.add(log_record(str(number)))
    assert writer.flush(timeout=10)
    metrics = writer.metrics
    assert (metrics.records_processed, metrics.records_failed) == (5, 0)


def test_dead_letter_failure_raises_the_primary_error(tmp_path, make_sink):
    """If the dead-letter file cannot be written either, the primary's error is raised."""
    path = tmp_path / "dead.jsonl"
    sink = make_sink(FailingSink(), path)
    path.mkdir()  # a directory now: cannot be opened for writing
    with pytest.raises(ConnectionError, match="unreachable"):
        sink([log_record()])
    assert (
        sink.primary_failures,
        sink.dead_lettered_batches,
        sink.metrics.dead_letter_failures,
    ) == (
        1,
        0,
        1,
    )


def test_writer_counts_a_batch_lost_twice_as_failed(tmp_path, make_sink, make_writer):
    """When both primary and dead-letter fail, the writer counts the batch as failed."""
    path = tmp_path / "dead.jsonl"
    writer = make_writer(
        make_sink(FailingSink(), path), capacity=10, on_error=lambda exc, batch: None
    )
    path.mkdir()  # a directory now: the dead letters cannot be written either
    writer.add(log_record())
    writer.add(log_record())
    assert writer.flush(timeout=10)
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (0, 2)


def test_primary_from_plain_configuration(dead_letter_path, make_sink, tmp_path):
    """The primary can be a mapping of plain values, as dictConfig passes it."""
    db_path = tmp_path / "logs.sqlite3"
    sink = make_sink({"()": "batchlog.sinks.SQLiteSink", "path": str(db_path)}, dead_letter_path)
    sink([log_record("configured")])
    sink.close()
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        assert connection.execute("SELECT message FROM logs").fetchall() == [("configured",)]


def test_close_closes_primary_and_dead_letter_file(dead_letter_path, make_sink):
    """``close()`` closes the primary and the dead-letter sink; twice is fine."""
    primary = FailingSink()
    sink = make_sink(primary, dead_letter_path)
    sink.close()
    sink.close()
    assert primary.closed
    with pytest.raises(ValueError, match="closed"):
        sink.dead_letter([log_record()])


def test_dead_letter_is_fsynced_by_default(dead_letter_path, make_sink, monkeypatch):
    """Dead-lettered batches are fsynced unless ``fsync=False``."""
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    make_sink(FailingSink(), dead_letter_path)([log_record()])
    assert len(synced) == 1


def test_replay_into_sqlite_delivers_exactly_those_records(dead_letter_path, tmp_path, closing):
    """Replaying into SQLiteSink stores exactly the dead-lettered records, in order."""
    batches = [[log_record("a", user="ada"), {"event": "b", "n": 1}], [log_record("c")]]
    write_dead_letter(dead_letter_path, batches)
    expected = [line["record"] for line in read_lines(dead_letter_path)]
    db_path = tmp_path / "replayed.sqlite3"
    assert replay(dead_letter_path, closing(SQLiteSink(db_path)), batch_size=2).delivered == 3
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        rows = connection.execute(f"SELECT {', '.join(FIELDS)} FROM logs ORDER BY id").fetchall()  # noqa: S608
    stored = [dict(zip(FIELDS, row)) for row in rows]
    for record in stored:
        record["extra"] = json.loads(record["extra"])
    assert expected == stored


def test_replay_sends_batches_of_batch_size(dead_letter_path, sink):
    """Records are replayed in order, at most ``batch_size`` per call."""
    write_dead_letter(dead_letter_path, [[log_record(str(n)) for n in range(5)]])
    assert replay(dead_letter_path, sink, batch_size=2).delivered == 5
    assert [[r["message"] for r in batch] for batch in sink.batches] == [
        ["0", "1"],
        ["2", "3"],
        ["4"],
    ]


def test_replay_remove_deletes_the_file(dead_letter_path, sink):
    """With ``remove=True`` the file is deleted after a successful replay."""
    write_dead_letter(dead_letter_path, [[log_record()]])
    replay(dead_letter_path, sink, remove=True)
    assert not dead_letter_path.exists()


def test_replay_keeps_the_file_when_the_sink_fails(dead_letter_path):
    """If the sink raises, the error propagates and the file stays."""
    write_dead_letter(dead_letter_path, [[log_record()]])
    with pytest.raises(ConnectionError):
        replay(dead_letter_path, FailingSink(), remove=True)
    assert dead_letter_path.exists()


def test_replay_leaves_a_last_line_cut_short(dead_letter_path, sink):
    """A last line without its newline (a write in progress) is left for the next run."""
    write_dead_letter(dead_letter_path, [[log_record()]])
    with dead_letter_path.open("a", encoding="utf-8") as file:
        file.write('{"record": {"tim')
    result = replay(dead_letter_path, sink)
    assert (len(sink.records), result.quarantined, result.left) == (1, 0, 1)


def test_replay_reads_json_lines_sink_files(tmp_path, sink):
    """A JsonLinesSink file (bare encoded records) replays too."""
    path = tmp_path / "app.jsonl"
    jsonl = JsonLinesSink(path)
    try:
        jsonl([log_record("plain")])
    finally:
        jsonl.close()
    assert replay(path, sink).delivered == 1
    assert sink.records[0]["message"] == "plain"


def test_replay_rejects_a_bad_batch_size(dead_letter_path, sink):
    """``batch_size`` below 1 raises ValueError."""
    with pytest.raises(ValueError, match="batch_size"):
        replay(dead_letter_path, sink, batch_size=0)


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "batchlog", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.subprocess
def test_cli_replays_into_sqlite(dead_letter_path, tmp_path):
    """``python -m batchlog replay FILE --sink sqlite:DB`` stores the records and exits 0."""
    write_dead_letter(dead_letter_path, [[log_record("a"), log_record("b")]])
    db_path = tmp_path / "cli.sqlite3"
    result = run_cli("replay", dead_letter_path, "--sink", f"sqlite:{db_path}", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert "replayed 2 records" in result.stdout
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        assert connection.execute("SELECT message FROM logs").fetchall() == [("a",), ("b",)]


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "args",
    [
        [],
        ["replay"],
        ["replay", "{file}", "--sink", "no_such_module_xyz:Sink"],
        ["replay", "{file}", "--sink", "sqlite:"],
        ["replay", "{file}", "--sink", "json.decoder:JSONDecoder"],
        ["replay", "missing.jsonl", "--sink", "sqlite:x.sqlite3"],
        ["replay", "{file}", "--sink", "sqlite:x.sqlite3", "--batch-size", "0"],
    ],
    ids=["no-command", "no-args", "bad-import", "no-path", "not-a-sink", "no-file", "batch-0"],
)
def test_cli_bad_usage_is_one_line_and_exit_2(args, dead_letter_path, tmp_path):
    """Bad usage exits 2 with a one-line error on stderr and no traceback."""
    write_dead_letter(dead_letter_path, [[log_record()]])
    result = run_cli(*(arg.format(file=dead_letter_path) for arg in args), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_remove_deletes_the_file_after_delivery(dead_letter_path, tmp_path, capsys):
    """``replay --remove`` delivers into ``jsonl:PATH``, then deletes the dead-letter file."""
    write_dead_letter(dead_letter_path, [[log_record("kept")]])
    target = tmp_path / "replayed.jsonl"
    code = main(["replay", str(dead_letter_path), "--sink", f"jsonl:{target}", "--remove"])
    assert (code, dead_letter_path.exists()) == (0, False)
    assert [line["message"] for line in read_lines(target)] == ["kept"]
    assert "replayed 1 records" in capsys.readouterr().out


def test_cli_sink_failure_is_one_line_and_exit_1(dead_letter_path, tmp_path, capsys):
    """A sink that fails while replaying gives exit code 1, one line, and keeps the file."""
    write_dead_letter(dead_letter_path, [[log_record()]])
    database = tmp_path / "other.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE logs (unrelated TEXT)")  # every insert fails
    code = main(["replay", str(dead_letter_path), "--sink", f"sqlite:{database}", "--remove"])
    error = capsys.readouterr().err
    assert (code, len(error.splitlines()), dead_letter_path.exists()) == (1, 1, True)
    assert "OperationalError" in error


# --------------------------------------------------------------------------- async primary


class AsyncPrimary:
    """A real async sink: yields to the loop, then stores the batch or raises ``failure``."""

    def __init__(self, failure=None):
        self.batches = []
        self.failure = failure

    async def __call__(self, batch):
        await asyncio.sleep(0)
        if self.failure is not None:
            raise self.failure
        self.batches.append(list(batch))


def test_async_primary_gets_a_coroutine_that_delivers(dead_letter_path, make_sink):
    """An async primary: the call returns a coroutine; awaited, it delivers the batch."""
    primary = AsyncPrimary()
    batch = [{"event": "a"}]
    pending = make_sink(primary, dead_letter_path)(batch)
    assert (asyncio.iscoroutine(pending), primary.batches) == (True, [])
    asyncio.run(pending)
    assert ([batch], dead_letter_path.exists()) == (primary.batches, False)


def test_async_primary_failure_is_dead_lettered_once_awaited(dead_letter_path, make_sink):
    """An async primary that raises: its batch is dead-lettered when the coroutine runs."""
    sink = make_sink(AsyncPrimary(ConnectionError("database unreachable")), dead_letter_path)
    pending = sink([{"event": "a"}, {"event": "b"}])
    assert (dead_letter_path.exists(), sink.primary_failures) == (False, 0)  # nothing yet
    asyncio.run(pending)
    lines = read_lines(dead_letter_path)
    assert [line["record"]["message"] for line in lines] == ["a", "b"]
    assert lines[0]["error"] == "ConnectionError: database unreachable"
    assert FallbackMetrics(1, 1, 2, 0) == sink.metrics


def test_async_primary_partial_failure_dead_letters_only_those(dead_letter_path, make_sink):
    """An async primary's FailedRecordsError: only the records it names are dead-lettered."""
    batch = [{"event": "a"}, {"event": "b"}, {"event": "c"}]
    primary = AsyncPrimary(FailedRecordsError([batch[1]], cause=ValueError("refused")))
    sink = make_sink(primary, dead_letter_path)
    asyncio.run(sink(batch))
    assert [line["record"]["message"] for line in read_lines(dead_letter_path)] == ["b"]


def test_async_primary_and_dead_letter_failing_raise_the_primary_error(tmp_path, make_sink):
    """When the dead-letter write fails too, awaiting raises the primary's error."""
    path = tmp_path / "dead.jsonl"
    sink = make_sink(AsyncPrimary(ConnectionError("database unreachable")), path)
    path.mkdir()  # a directory now: the dead letters cannot be written either
    with pytest.raises(ConnectionError, match="unreachable"):
        asyncio.run(sink([{"event": "a"}]))
    assert sink.metrics.dead_letter_failures == 1


def test_a_sync_primary_returning_an_awaitable_is_awaited(dead_letter_path, make_sink):
    """A sync primary that hands back a coroutine: it is awaited, its failure dead-lettered."""
    failing = AsyncPrimary(ConnectionError("down"))

    def primary(batch):  # not async itself: it returns the coroutine it made
        return failing(batch)

    sink = make_sink(primary, dead_letter_path)
    asyncio.run(sink([{"event": "a"}]))
    assert sink.dead_lettered_records == 1


def test_a_generator_based_coroutine_from_the_primary_is_awaited(dead_letter_path, make_sink):
    """A primary returning a ``@types.coroutine`` generator: awaited, its failure dead-lettered."""
    import types

    @types.coroutine
    def failing(batch):
        yield  # a bare yield: one step on the loop
        raise ConnectionError("down")

    sink = make_sink(failing, dead_letter_path)
    asyncio.run(sink([{"event": "a"}]))
    assert (sink.primary_failures, sink.dead_lettered_records) == (1, 1)


def test_an_aclose_only_primary_is_closed_through_the_returned_coroutine(
    dead_letter_path, make_sink
):
    """A primary with only ``aclose()``: ``close()`` returns a coroutine that awaits it."""
    closed = []

    class Primary(AsyncPrimary):
        async def aclose(self):
            await asyncio.sleep(0)
            closed.append(True)

    closing = make_sink(Primary(), dead_letter_path).close()
    assert (asyncio.iscoroutine(closing), closed) == (True, [])
    asyncio.run(closing)
    assert closed == [True]


def test_a_dropped_coroutine_leaves_no_primary_coroutine_unawaited(dead_letter_path, make_sink):
    """Closing the returned coroutine unawaited closes the primary's too: no warning."""
    sink = make_sink(AsyncPrimary(), dead_letter_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pending = sink([{"event": "a"}])
        pending.close()
        del pending
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


def test_writer_awaits_an_async_primary_and_counts_dead_letters(
    dead_letter_path, make_sink, make_writer
):
    """A BatchWriter awaits the coroutine: delivered and dead-lettered batches both count."""
    working = AsyncPrimary()
    writer = make_writer(make_sink(working, dead_letter_path), capacity=2)
    for number in range(3):
        writer.add({"event": f"ok{number}"})
    assert writer.flush(timeout=10)
    failing_sink = make_sink(AsyncPrimary(ConnectionError("down")), dead_letter_path)
    failing = make_writer(failing_sink, capacity=2)
    for number in range(3):
        failing.add({"event": f"lost{number}"})
    assert failing.flush(timeout=10)
    assert [record["event"] for batch in working.batches for record in batch] == [
        "ok0",
        "ok1",
        "ok2",
    ]
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (3, 0)
    assert (failing.metrics.records_processed, failing.metrics.records_failed) == (3, 0)
    assert [line["record"]["message"] for line in read_lines(dead_letter_path)] == [
        "lost0",
        "lost1",
        "lost2",
    ]


def test_cancelling_an_async_primary_dead_letters_nothing(dead_letter_path, make_sink):
    """A cancelled coroutine is not a primary failure: the cancellation propagates."""
    events = []  # made on the loop that runs them (Python 3.9 binds them at creation)

    async def hung(batch):
        events[0].set()
        await events[1].wait()  # never set: only cancellation ends it

    sink = make_sink(hung, dead_letter_path)

    async def cancel_it():
        events.extend([asyncio.Event(), asyncio.Event()])
        task = asyncio.ensure_future(sink([{"event": "a"}]))
        await events[0].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert (dead_letter_path.exists(), sink.primary_failures) == (False, 0)


class AsyncClosingPrimary(AsyncPrimary):
    """An async primary whose only close is ``async def aclose`` (httpx's spelling)."""

    def __init__(self):
        super().__init__()
        self.closed_on = None

    async def aclose(self):
        await asyncio.sleep(0)
        self.closed_on = asyncio.get_running_loop()


def test_an_async_primary_close_is_returned_to_be_awaited(dead_letter_path):
    """``close()`` with an async primary close returns a coroutine that awaits it."""
    primary = AsyncClosingPrimary()
    sink = FallbackSink(primary, dead_letter_path)
    closing = sink.close()
    assert (asyncio.iscoroutine(closing), sink.dead_letter.closed) == (True, True)
    asyncio.run(closing)
    assert primary.closed_on is not None
    assert sink.close() is None  # idempotent: nothing more to await


def test_a_handler_awaits_an_async_primary_close_on_the_writers_loop(dead_letter_path):
    """Through a BatchingHandler, the primary's async close is awaited on the writer's loop."""
    primary = AsyncClosingPrimary()
    handler = BatchingHandler(FallbackSink(primary, dead_letter_path), capacity=10)
    try:
        handler.handle(log_record("delivered"))
    finally:
        handler.close()
    assert [record.getMessage() for batch in primary.batches for record in batch] == ["delivered"]
    assert primary.closed_on is not None
    assert primary.closed_on.is_closed()  # the writer's loop, closed after on_close


def test_a_processor_awaits_an_async_primary_close(dead_letter_path):
    """Through a BatchingProcessor too, the primary's async close is awaited at close."""
    structlog = pytest.importorskip("structlog")
    primary = AsyncClosingPrimary()
    processor = BatchingProcessor(FallbackSink(primary, dead_letter_path), capacity=10)
    try:
        with pytest.raises(structlog.DropEvent):
            processor(None, "info", {"event": "delivered"})
    finally:
        processor.close()
    assert [event["event"] for batch in primary.batches for event in batch] == ["delivered"]
    assert primary.closed_on is not None
