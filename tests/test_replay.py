"""``replay`` exactly once: checkpoints, quarantine, partial failures, async sinks, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from batchlog import FailedRecordsError
from batchlog.cli import main
from batchlog.sinks import FallbackSink, HTTPSink, PostgresSink, SQLiteSink, replay
from batchlog.sinks.fallback import ReplayCheckpointError, ReplayResult

REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


class FailingPrimary:
    """A primary that always raises, so every batch is dead-lettered."""

    def __call__(self, batch):
        raise ConnectionError("database unreachable")


def write_dead_letter(path, messages, *, per_batch=1, fsync=False):
    """Dead-letter one structlog event per message, ``per_batch`` per batch."""
    logging.getLogger("batchlog-tests.replay-silent").disabled = True
    sink = FallbackSink(FailingPrimary(), path, fsync=False, logger="batchlog-tests.replay-silent")
    try:
        for start in range(0, len(messages), per_batch):
            sink([{"event": message} for message in messages[start : start + per_batch]])
    finally:
        sink.close()


def messages_of(records):
    return [record["message"] for record in records]


def read_lines(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


class Sink:
    """Keeps every record it is given; ``before``/``after`` hooks run on chosen batches."""

    def __init__(self, *, before=None, after=None):
        self.batches = []
        self.calls = 0
        self.before = before or {}  # batch number (0-based) -> exception raised before storing
        self.after = after or {}  # batch number -> exception raised after storing

    def __call__(self, batch):
        number = self.calls
        self.calls += 1
        if number in self.before:
            raise self.before[number]
        self.batches.append(list(batch))
        if number in self.after:
            raise self.after[number]

    @property
    def messages(self):
        return [record["message"] for batch in self.batches for record in batch]


@pytest.fixture
def dead_letter(tmp_path):
    """A dead-letter file of ten records, m0..m9, one per line."""
    path = tmp_path / "dead-letter.jsonl"
    write_dead_letter(path, [f"m{n}" for n in range(10)])
    return path


ALL = [f"m{n}" for n in range(10)]


# --------------------------------------------------------------------------- exactly once


def test_replay_twice_delivers_nothing_the_second_time(dead_letter):
    """A second replay of the same file sends nothing and says all were done before."""
    sink = Sink()
    first = replay(dead_letter, sink, batch_size=3)
    second = replay(dead_letter, sink, batch_size=3)
    assert sink.messages == ALL
    assert (first.delivered, first.already_done, first.left) == (10, 0, 0)
    assert (second.delivered, second.already_done, second.left) == (0, 10, 0)


def test_records_appended_after_a_replay_go_in_the_next_one(dead_letter):
    """Records appended after a replay are replayed, alone, by the next run."""
    sink = Sink()
    replay(dead_letter, sink, batch_size=4)
    write_dead_letter(dead_letter, ["late0", "late1"])
    result = replay(dead_letter, sink, batch_size=4)
    assert [*ALL, "late0", "late1"] == sink.messages
    assert (result.delivered, result.already_done) == (2, 10)


def test_records_appended_during_a_replay_go_in_the_next_one(dead_letter):
    """A run reads up to the size the file had when it began; the next run takes the rest."""
    appended = []

    def sink(batch):
        if not appended:
            write_dead_letter(dead_letter, ["during0", "during1"])  # a FallbackSink appends
            appended.append(True)
        stored.extend(record["message"] for record in batch)

    stored = []
    first = replay(dead_letter, sink, batch_size=4)
    second = replay(dead_letter, sink, batch_size=4)
    assert (first.delivered, second.delivered, second.already_done) == (10, 2, 10)
    assert stored == [*ALL, "during0", "during1"]


def test_replays_while_a_fallback_sink_appends_deliver_each_record_once(tmp_path):
    """Replays run while another thread dead-letters: each record once, none quarantined.

    Gated, not left to scheduling: one replay waits inside its sink while the appender
    writes the second half, so a run and the appending surely overlap.
    """
    path = tmp_path / "dead-letter.jsonl"
    first_half = [f"r{n}" for n in range(1500)]
    gate_record = ["gate"]
    second_half = [f"r{n}" for n in range(1500, 3000)]
    first_half_written = threading.Event()
    replay_in_sink = threading.Event()
    second_half_written = threading.Event()
    done = threading.Event()
    failures = []

    def append():
        try:
            write_dead_letter(path, first_half, per_batch=7, fsync=True)
            first_half_written.set()
            write_dead_letter(path, gate_record)  # sent by a run that began after the set
            if not replay_in_sink.wait(60):
                raise TimeoutError("no replay reached the sink")  # noqa: TRY301
            write_dead_letter(path, second_half, per_batch=7, fsync=True)
        except Exception as exc:  # noqa: BLE001 -- reported by the assertion below
            failures.append(exc)
        finally:
            second_half_written.set()
            done.set()

    class GatedSink(Sink):
        def __call__(self, batch):
            if first_half_written.is_set() and not replay_in_sink.is_set():
                replay_in_sink.set()  # this run began before the second half: it waits
                assert second_half_written.wait(60)
            super().__call__(batch)

    write_dead_letter(path, ["first"])
    thread = threading.Thread(target=append)
    sink = GatedSink()
    runs = 0
    thread.start()
    try:
        while not done.is_set():
            result = replay(path, sink, batch_size=50)
            assert result.quarantined == 0
            runs += 1
    finally:
        thread.join(60)
    final = replay(path, sink, batch_size=50)
    assert failures == []
    assert replay_in_sink.is_set()  # the overlap happened
    assert (final.quarantined, final.left) == (0, 0)
    assert sink.messages == ["first", *first_half, *gate_record, *second_half]
    assert runs >= 1


def test_the_result_is_a_frozen_dataclass_with_the_paths(dead_letter):
    """``replay`` returns a frozen ReplayResult naming the checkpoint and quarantine files."""
    result = replay(dead_letter, Sink())
    assert isinstance(result, ReplayResult)
    with pytest.raises(AttributeError):
        result.delivered = 0
    assert result.checkpoint_path == f"{dead_letter}.checkpoint"
    assert result.quarantine_path == f"{dead_letter}.quarantine.jsonl"
    assert (result.offset, result.size, result.finished) == (
        dead_letter.stat().st_size,
        dead_letter.stat().st_size,
        True,
    )


@pytest.mark.parametrize("batch_number", [0, 1, 3])
def test_an_interrupt_before_batch_k_resumes_at_batch_k(dead_letter, batch_number):
    """KeyboardInterrupt raised by the sink on batch k: the next run starts at batch k."""
    sink = Sink(before={batch_number: KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        replay(dead_letter, sink, batch_size=3)
    assert ALL[: 3 * batch_number] == sink.messages
    result = replay(dead_letter, sink, batch_size=3)
    assert sink.messages == ALL
    assert (result.delivered, result.already_done) == (10 - 3 * batch_number, 3 * batch_number)


def test_an_interrupt_after_delivery_resends_only_the_batch_in_flight(dead_letter):
    """A batch stored but not acknowledged (interrupted) is the only one sent twice."""
    sink = Sink(after={1: KeyboardInterrupt()})  # batch 1 (m3..m5) stored, then interrupted
    with pytest.raises(KeyboardInterrupt):
        replay(dead_letter, sink, batch_size=3)
    replay(dead_letter, sink, batch_size=3)
    assert [*ALL[:6], *ALL[3:]] == sink.messages


@pytest.mark.parametrize(
    ("step", "call", "resent"),
    [
        ("fsync", 3, ALL[3:6]),  # the temporary file's fsync of the 2nd checkpoint
        ("replace", 2, ALL[3:6]),  # its rename
        ("fsync", 4, []),  # the folder's fsync, after the rename: the checkpoint moved
    ],
    ids=["fsync-file", "rename", "fsync-folder"],
)
def test_an_interrupt_while_the_checkpoint_is_written_resends_at_most_that_batch(
    dead_letter, monkeypatch, step, call, resent
):
    """Interrupted between delivery and the checkpoint's rename: only that batch is resent."""
    real = getattr(os, step)
    calls = []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args)

    sink = Sink()
    monkeypatch.setattr(os, step, interrupted)
    with pytest.raises(KeyboardInterrupt):
        replay(dead_letter, sink, batch_size=3)
    monkeypatch.setattr(os, step, real)
    replay(dead_letter, sink, batch_size=3)
    assert sink.messages == [*ALL[:6], *resent, *ALL[6:]]


def test_an_interrupt_in_the_progress_callback_leaves_nothing_in_doubt(dead_letter):
    """The progress callback runs once the checkpoint is on disk: nothing is resent."""
    calls = []

    def progress(result):
        calls.append(result)
        if result.delivered == 6:
            raise KeyboardInterrupt

    sink = Sink()
    with pytest.raises(KeyboardInterrupt):
        replay(dead_letter, sink, batch_size=3, progress=progress)
    replay(dead_letter, sink, batch_size=3)
    assert sink.messages == ALL
    assert [result.delivered for result in calls] == [0, 3, 6]
    assert [result.left for result in calls] == [10, 7, 4]


CRASHING_SCRIPT = """
import json, os, sys
from batchlog.sinks import replay

store, crash_at = sys.argv[2], int(sys.argv[3])
calls = 0

def sink(batch):
    global calls
    with open(store, "a", encoding="utf-8") as file:
        file.write("".join(json.dumps(r["message"]) + "\\n" for r in batch))
        file.flush()
        os.fsync(file.fileno())
    calls += 1
    if calls == crash_at:
        os._exit(3)  # a crash: stored, but no checkpoint, no cleanup

replay(sys.argv[1], sink, batch_size=3)
"""


@pytest.mark.subprocess
def test_a_crash_after_delivery_resends_only_the_batch_in_flight(dead_letter, tmp_path):
    """A process that dies right after a batch was stored: the next run resends only it."""
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_SCRIPT, encoding="utf-8")
    store = tmp_path / "store.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def run(crash_at):
        return subprocess.run(
            [sys.executable, str(script), str(dead_letter), str(store), str(crash_at)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    crashed = run(crash_at=2)
    finished = run(crash_at=0)
    assert (crashed.returncode, finished.returncode, finished.stderr) == (3, 0, "")
    assert [*ALL[:6], *ALL[3:]] == read_lines(store)


# --------------------------------------------------------------------------- quarantine


def test_lines_that_are_not_records_are_quarantined_with_a_reason(tmp_path):
    """Not JSON, not an object, not UTF-8, not a record: quarantined; the rest replays."""
    path = tmp_path / "dead-letter.jsonl"
    write_dead_letter(path, ["a"])
    with path.open("ab") as file:
        file.write(b'{not json\n[1, 2]\n\xff\xfe\n\n{"other": 1}\n')
    write_dead_letter(path, ["b"])
    sink = Sink()
    result = replay(path, sink, batch_size=2)
    assert sink.messages == ["a", "b"]
    assert (result.delivered, result.quarantined, result.left) == (2, 4, 0)
    entries = read_lines(result.quarantine_path)
    assert [entry["line"] for entry in entries] == [
        "{not json",
        "[1, 2]",
        "\ufffd\ufffd",
        '{"other": 1}',
    ]
    reasons = [entry["reason"] for entry in entries]
    assert reasons[0].startswith("not JSON (")
    assert reasons[1].startswith("neither a dead-letter entry")
    assert reasons[2].startswith("not UTF-8 (")
    assert reasons[3].startswith("neither a dead-letter entry")
    assert all("\n" not in reason for reason in reasons)
    offsets = [entry["offset"] for entry in entries]
    data = path.read_bytes()
    assert [data[offset : data.index(b"\n", offset) + 1] for offset in offsets] == [
        b"{not json\n",
        b"[1, 2]\n",
        b"\xff\xfe\n",
        b'{"other": 1}\n',
    ]
    assert {str(path)} == {entry["source"] for entry in entries}


def test_a_last_line_without_its_newline_is_left_for_the_next_run(dead_letter):
    """A last line still being written is neither sent nor quarantined; finished, it goes."""
    with dead_letter.open("a", encoding="utf-8") as file:
        file.write('{"record": {"message": "half')
    first = replay(dead_letter, Sink())
    assert (first.delivered, first.quarantined, first.left, first.finished) == (10, 0, 1, False)
    assert not Path(first.quarantine_path).exists()
    with dead_letter.open("a", encoding="utf-8") as file:
        file.write('"}}\n')
    sink = Sink()
    second = replay(dead_letter, sink)
    assert (["half"], second.left) == (sink.messages, 0)


def test_records_the_sink_refuses_are_quarantined_and_the_rest_delivered(dead_letter):
    """A FailedRecordsError naming some records: those quarantined, the others delivered."""
    stored = []

    def sink(batch):
        refused = [record for record in batch if record["message"] in {"m1", "m7"}]
        stored.extend(record["message"] for record in batch if record not in refused)
        if refused:
            raise FailedRecordsError(refused, cause=ValueError("value too long\nfor column"))

    result = replay(dead_letter, sink, batch_size=4)
    assert [m for m in ALL if m not in {"m1", "m7"}] == stored
    assert (result.delivered, result.quarantined, result.finished) == (8, 2, True)
    entries = read_lines(result.quarantine_path)
    assert [entry["record"]["message"] for entry in entries] == ["m1", "m7"]
    assert entries[0]["reason"] == "refused by the sink: ValueError: value too long for column"
    assert replay(dead_letter, sink).delivered == 0  # and not again


def test_the_quarantine_file_replays_like_a_dead_letter_file(dead_letter):
    """Quarantined records keep their envelope: once fixed, the quarantine file replays."""

    def refuse_m2(batch):
        refused = [record for record in batch if record["message"] == "m2"]
        if refused:
            raise FailedRecordsError(refused)

    quarantine = replay(dead_letter, refuse_m2).quarantine_path
    sink = Sink()
    assert replay(quarantine, sink).delivered == 1
    assert sink.messages == ["m2"]


def test_a_row_sqlite_refuses_is_quarantined(tmp_path):
    """A real SQLiteSink whose table refuses one row (a trigger): just it is quarantined."""
    database = tmp_path / "logs.sqlite3"
    with contextlib.closing(SQLiteSink(database)) as sqlite:
        sqlite([{"event": "before"}])
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute(
            "CREATE TRIGGER no_bad BEFORE INSERT ON logs WHEN NEW.message = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'bad message'); END"
        )
        connection.commit()
    path = tmp_path / "dead-letter.jsonl"
    write_dead_letter(path, ["ok0", "bad", "ok1"], per_batch=3)
    with contextlib.closing(SQLiteSink(database)) as sqlite:
        result = replay(path, sqlite)
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT message FROM logs ORDER BY id").fetchall()
    assert rows == [("before",), ("ok0",), ("ok1",)]
    assert (result.delivered, result.quarantined) == (2, 1)
    (entry,) = read_lines(result.quarantine_path)
    assert entry["record"]["message"] == "bad"
    assert entry["reason"] == "refused by the sink: sqlite3.IntegrityError: bad message"


def test_a_line_a_crashed_writer_cut_short_is_quarantined_once_completed(dead_letter):
    """A cut line that the next append completes is not JSON: quarantined, text kept."""
    with dead_letter.open("a", encoding="utf-8") as file:
        file.write('{"record": {"mess')  # a writer died here
    write_dead_letter(dead_letter, ["after"])  # a new one appends
    sink = Sink()
    result = replay(dead_letter, sink)
    assert (sink.messages, result.quarantined) == ([*ALL], 1)
    (entry,) = read_lines(result.quarantine_path)
    assert entry["line"].startswith('{"record": {"mess{"record":')
    assert entry["reason"].startswith("not JSON (")


def test_a_document_elasticsearch_refuses_is_quarantined(tmp_path):
    """A real HTTPSink: a ``_bulk`` answer refusing one document quarantines just its record."""
    path = tmp_path / "dead-letter.jsonl"
    write_dead_letter(path, [f"doc{n}" for n in range(5)], per_batch=5)

    def refuse_third(body):
        items = [{"create": {"status": 201}} for _ in body.splitlines()[::2]]
        items[2] = {"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}
        return 200, json.dumps({"errors": True, "items": items}).encode()

    server = LocalServer(refuse_third)
    http = HTTPSink(f"{server.url}/_bulk", encoder="elasticsearch", gzip=False, max_attempts=1)
    try:
        result = replay(path, http)
        again = replay(path, http)
    finally:
        http.close()
        server.stop()
    assert (result.delivered, result.quarantined, again.delivered) == (4, 1, 0)
    (entry,) = read_lines(result.quarantine_path)
    assert entry["record"]["message"] == "doc2"
    assert entry["reason"].startswith("refused by the sink: ")
    assert "mapper_parsing_exception" in entry["reason"]
    assert len(server.bodies) == 1  # one request: the second replay sent nothing


# --------------------------------------------------------------------------- failures


class RetryableError(FailedRecordsError):
    """A partial failure the sink marks as passing (as DeliveryError does for a 503)."""

    retryable = True


@pytest.mark.parametrize(
    "failure",
    [ConnectionError("refused"), RetryableError(None, cause=OSError("down"))],
    ids=["exception", "retryable-failed-records-none"],
)
def test_a_failed_batch_stops_the_replay_and_the_next_run_resumes(dead_letter, failure):
    """A whole batch failing stops the replay at it; the next run resumes there."""
    sink = Sink(before={2: failure})
    seen = []
    with pytest.raises(type(failure)):
        replay(dead_letter, sink, batch_size=3, progress=seen.append)
    assert (ALL[:6], seen[-1].delivered, seen[-1].left) == (sink.messages, 6, 4)
    assert not Path(seen[-1].quarantine_path).exists()
    result = replay(dead_letter, sink, batch_size=3)
    assert (ALL, result.delivered, result.already_done) == (sink.messages, 4, 6)


def test_a_sink_refusing_every_record_alone_stops_and_quarantines_nothing(dead_letter):
    """Every record refused, alone too, and nothing delivered in the run: stop as before."""
    calls = []

    def sink(batch):
        calls.append(len(batch))
        raise FailedRecordsError(list(batch), cause=ConnectionError("refused"))

    with pytest.raises(FailedRecordsError):
        replay(dead_letter, sink, batch_size=4)
    assert calls == [4, 1, 1, 1, 1]  # the batch, then each of its records alone
    assert not Path(f"{dead_letter}.quarantine.jsonl").exists()
    assert not Path(f"{dead_letter}.checkpoint").exists()


class RefusesOne(Sink):
    """A sink that fails a whole batch holding ``bad`` (it cannot say which record)."""

    def __init__(self, bad, *, named=None):
        super().__init__()
        self.bad = bad
        self.named = named  # None: FailedRecordsError(None); "all": it names every record
        self.sizes = []

    def __call__(self, batch):
        self.sizes.append(len(batch))
        if any(record["message"] == self.bad for record in batch):
            records = None if self.named is None else list(batch)
            raise FailedRecordsError(records, cause=ValueError(f"cannot store {self.bad}"))
        super().__call__(batch)


@pytest.mark.parametrize("named", [None, "all"], ids=["records-none", "every-record-named"])
def test_a_batch_refused_whole_is_resent_alone_and_the_bad_record_quarantined(dead_letter, named):
    """One bad record failing its whole batch: the batch goes again record by record."""
    sink = RefusesOne("m4", named=named)
    result = replay(dead_letter, sink, batch_size=3)
    assert [m for m in ALL if m != "m4"] == sink.messages
    assert (result.delivered, result.quarantined, result.left) == (9, 1, 0)
    assert sink.sizes == [3, 3, 1, 1, 1, 3, 1]  # m3..m5 refused whole, then one by one
    (entry,) = read_lines(result.quarantine_path)
    assert entry["record"]["message"] == "m4"
    assert entry["reason"] == "refused by the sink: ValueError: cannot store m4"
    again = replay(dead_letter, sink, batch_size=3)
    assert (again.delivered, again.quarantined, again.already_done) == (0, 0, 10)


def test_a_bad_record_in_the_first_batch_is_quarantined_when_another_goes_alone(dead_letter):
    """First batch of the run refused whole: a record of it delivered alone shows the sink
    works, so the one refused alone is quarantined."""
    sink = RefusesOne("m1")
    result = replay(dead_letter, sink, batch_size=3)
    assert (result.delivered, result.quarantined) == (9, 1)
    assert [m for m in ALL if m != "m1"] == sink.messages


def test_a_last_line_alone_behind_good_batches_is_quarantined_not_a_dead_end(dead_letter):
    """The last record, alone in its batch and refused, is quarantined once; not resent."""
    sink = RefusesOne("m9")
    result = replay(dead_letter, sink, batch_size=3)
    assert (result.delivered, result.quarantined, result.left) == (9, 1, 0)
    assert sink.sizes == [3, 3, 3, 1]  # refused alone already: not sent a second time
    assert read_lines(result.quarantine_path)[0]["record"]["message"] == "m9"
    assert replay(dead_letter, sink, batch_size=3).already_done == 10


def test_a_lone_record_refused_in_a_run_that_delivered_nothing_stops(dead_letter):
    """A run whose only batch is one refused record: nothing shows the sink works; stop."""
    sink = RefusesOne("m9")
    replay(dead_letter, Sink(), batch_size=3)  # an earlier run finished m0..m9 ...
    write_dead_letter(dead_letter, ["m9"])  # ... and m9 comes again, alone
    with pytest.raises(FailedRecordsError):
        replay(dead_letter, sink, batch_size=3)
    assert not Path(f"{dead_letter}.quarantine.jsonl").exists()


def test_a_failure_while_sending_alone_keeps_what_was_delivered_alone(dead_letter):
    """The sink going away during the one-by-one resend: the records delivered alone are
    checkpointed, the failure is raised, and the next run sends only the rest."""
    calls = []
    stored = []

    def sink(batch):
        calls.append([record["message"] for record in batch])
        if len(calls) == 1:
            raise FailedRecordsError(None, cause=ValueError("one is bad"))
        if len(calls) == 3:
            raise ConnectionError("gone")
        stored.extend(record["message"] for record in batch)

    with pytest.raises(ConnectionError):
        replay(dead_letter, sink, batch_size=4)
    assert stored == ["m0"]
    result = replay(dead_letter, sink, batch_size=4)
    assert (stored, result.already_done, result.quarantined) == (ALL, 1, 0)


def test_an_http_401_quarantines_nothing(dead_letter):
    """A real HTTP sink answered 401 for every request: the replay stops, the file stays
    whole, nothing is quarantined (every record refused alone, none delivered)."""
    server = LocalServer(lambda body: (401, b"bad token"))
    sink = HTTPSink(server.url, gzip=False, max_attempts=1)
    try:
        with pytest.raises(FailedRecordsError, match="401"):
            replay(dead_letter, sink, batch_size=4)
    finally:
        sink.close()
        server.stop()
    assert not Path(f"{dead_letter}.quarantine.jsonl").exists()
    assert not Path(f"{dead_letter}.checkpoint").exists()


def test_a_passing_partial_failure_keeps_the_delivered_part_and_retries_the_rest(dead_letter):
    """Records delivered before a retryable failure are not resent; the failed ones are."""
    failing = [True]
    stored = []

    def sink(batch):
        if failing[0] and len(batch) > 2:
            failing[0] = False
            stored.extend(record["message"] for record in batch[:2])
            raise RetryableError(list(batch[2:]), cause=ConnectionError("reset"))
        stored.extend(record["message"] for record in batch)

    with pytest.raises(RetryableError):
        replay(dead_letter, sink, batch_size=4)
    assert stored == ["m0", "m1"]
    result = replay(dead_letter, sink, batch_size=4)
    assert (ALL, result.quarantined, result.already_done) == (stored, 0, 2)


def test_records_delivered_after_a_passing_failure_in_mid_batch_are_not_resent(dead_letter):
    """A retryable failure of one record mid-batch: the records after it are not resent."""
    stored = []
    calls = []

    def sink(batch):
        calls.append([record["message"] for record in batch])
        if len(calls) == 1:
            stored.extend(record["message"] for record in batch if record["message"] != "m1")
            raise RetryableError([batch[1]], cause=ConnectionError("reset"))
        stored.extend(record["message"] for record in batch)

    with pytest.raises(RetryableError):
        replay(dead_letter, sink, batch_size=4)
    result = replay(dead_letter, sink, batch_size=4)
    assert calls[1] == ["m1", "m4"]  # m2, m3 are done: skipped (their lines count in the step)
    assert sorted(stored) == sorted(ALL)
    assert (len(stored), result.already_done, result.delivered) == (10, 3, 7)


class LocalServer:
    """An HTTP server on 127.0.0.1; ``answer(body)`` gives each request's status and body."""

    def __init__(self, answer):
        self.bodies = []  # the bodies answered with a 2xx
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, content = answer(body)
                if status < 300:
                    server.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def messages(self):
        return [json.loads(line)["message"] for body in self.bodies for line in body.splitlines()]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def test_an_http_batch_split_in_requests_is_resumed_after_the_delivered_part(dead_letter):
    """HTTPSink: a split batch whose second request failed is resumed after the first."""
    requests = []

    def second_fails(body):
        requests.append(body)
        return (503, b"busy") if len(requests) == 2 else (200, b"")

    server = LocalServer(second_fails)
    http = HTTPSink(f"{server.url}/ingest", gzip=False, max_attempts=1, max_body_bytes=700)
    try:
        with pytest.raises(Exception, match="503"):
            replay(dead_letter, http, batch_size=10)
        delivered_first = len(server.messages)
        result = replay(dead_letter, http, batch_size=10)
    finally:
        http.close()
        server.stop()
    assert 0 < delivered_first < 10
    assert (ALL, result.already_done) == (server.messages, delivered_first)


@pytest.fixture(scope="module")
def postgres_conninfo():
    """A connection string to this test process's PostgreSQL server (``pg_server``)."""
    required = os.environ.get("BATCHLOG_REQUIRE_POSTGRES") == "1"
    if not required:
        pytest.importorskip("psycopg")
    from pg_server import PostgresUnavailableError, shared_server

    try:
        return shared_server().conninfo()
    except PostgresUnavailableError as exc:
        if required:
            pytest.fail(f"BATCHLOG_REQUIRE_POSTGRES=1 but PostgreSQL did not start: {exc}")
        pytest.skip(f"PostgreSQL could not be started: {exc}")


@pytest.mark.postgres
def test_into_postgres_a_refused_row_is_quarantined_and_an_outage_resumed(
    dead_letter, postgres_conninfo
):
    """A real PostgresSink: a row a CHECK refuses is quarantined, the others stored once;
    the server unreachable stops the replay, and the next run resumes exactly once."""
    import psycopg
    from pg_server import free_port

    table = f"replay_{uuid.uuid4().hex[:10]}"
    unreachable = PostgresSink(
        f"host=127.0.0.1 port={free_port()} dbname=x connect_timeout=2",
        table=table,
        max_attempts=1,
    )
    sink = PostgresSink(postgres_conninfo, table=table, max_attempts=1)
    try:
        sink([{"event": "before"}])
        with psycopg.connect(postgres_conninfo, autocommit=True) as admin:
            admin.execute(f"ALTER TABLE {table} ADD CONSTRAINT no_m7 CHECK (message <> 'm7')")
            calls = []

            def goes_down(batch):  # the first batch is stored, then the server is gone
                calls.append(len(batch))
                (sink if len(calls) == 1 else unreachable)(batch)

            with pytest.raises(psycopg.OperationalError):
                replay(dead_letter, goes_down, batch_size=4)
            first = replay(dead_letter, sink, batch_size=4)
            second = replay(dead_letter, sink, batch_size=4)
            rows = admin.execute(f"SELECT message FROM {table} ORDER BY id").fetchall()  # noqa: S608
            admin.execute(f"DROP TABLE {table}, {table}_batch_ids")
    finally:
        unreachable.close()
        sink.close()
    assert [message for (message,) in rows] == ["before", *(m for m in ALL if m != "m7")]
    assert calls == [4, 4]
    assert (first.delivered, first.quarantined, first.already_done) == (5, 1, 4)
    assert (second.delivered, second.already_done) == (0, 10)
    (entry,) = read_lines(first.quarantine_path)
    assert entry["record"]["message"] == "m7"
    assert "no_m7" in entry["reason"]


# --------------------------------------------------------------------------- checkpoint file


def test_a_truncated_file_is_refused_naming_it(dead_letter):
    """A file shorter than its checkpoint says was replayed: a clear error, nothing sent."""
    replay(dead_letter, Sink())
    dead_letter.write_bytes(dead_letter.read_bytes()[:100])
    sink = Sink()
    with pytest.raises(ReplayCheckpointError, match="truncated") as error:
        replay(dead_letter, sink)
    assert str(dead_letter) in str(error.value)
    assert isinstance(error.value, ValueError)
    assert sink.batches == []


def test_a_replaced_file_is_refused_naming_it(dead_letter, tmp_path):
    """A different file at the same path (longer than the checkpoint): refused, named."""
    replay(dead_letter, Sink())
    other = tmp_path / "other.jsonl"
    write_dead_letter(other, [f"other{n}" for n in range(20)])
    os.replace(other, dead_letter)
    sink = Sink()
    with pytest.raises(ReplayCheckpointError, match="replaced") as error:
        replay(dead_letter, sink)
    assert f"delete '{dead_letter}.checkpoint'" in str(error.value)
    assert sink.batches == []


def test_a_damaged_checkpoint_is_refused_naming_it(dead_letter):
    """A checkpoint that is not one: a clear error naming it, nothing sent."""
    Path(f"{dead_letter}.checkpoint").write_text('{"version": 1, "offset": -4}')
    with pytest.raises(ReplayCheckpointError, match="is not a replay checkpoint"):
        replay(dead_letter, Sink())


def test_checkpoint_and_quarantine_paths_can_be_chosen(dead_letter, tmp_path):
    """``checkpoint_path`` and ``quarantine_path`` put the two files where asked."""
    with dead_letter.open("a", encoding="utf-8") as file:
        file.write("junk\n")
    result = replay(
        dead_letter,
        Sink(),
        checkpoint_path=tmp_path / "state.json",
        quarantine_path=tmp_path / "poison.jsonl",
    )
    assert (result.checkpoint_path, result.quarantine_path) == (
        str(tmp_path / "state.json"),
        str(tmp_path / "poison.jsonl"),
    )
    assert (tmp_path / "state.json").exists()
    assert [entry["line"] for entry in read_lines(tmp_path / "poison.jsonl")] == ["junk"]


def test_a_checkpoint_path_that_is_the_file_itself_is_refused(dead_letter):
    """The dead-letter file given as its own checkpoint: ValueError naming it."""
    with pytest.raises(ValueError, match=r"checkpoint_path .* is the dead-letter file"):
        replay(dead_letter, Sink(), checkpoint_path=dead_letter)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"sink": "not a sink"}, "sink must be a sink"),
        ({"progress": 3}, "progress must be a callable"),
        ({"remove": "yes"}, "remove must be True or False"),
    ],
    ids=["sink", "progress", "remove"],
)
def test_bad_arguments_are_refused_naming_them_before_anything_is_sent(dead_letter, kwargs, named):
    """A sink, progress or remove of the wrong kind: TypeError naming it, no checkpoint."""
    arguments = {"sink": Sink(), **kwargs}
    with pytest.raises(TypeError, match=named):
        replay(dead_letter, **arguments)
    assert not Path(f"{dead_letter}.checkpoint").exists()


def test_remove_deletes_the_file_and_its_checkpoint_when_all_is_done(dead_letter):
    """``remove=True``: file and checkpoint deleted once every line is finished."""
    result = replay(dead_letter, Sink(), remove=True)
    assert (result.removed, dead_letter.exists(), Path(result.checkpoint_path).exists()) == (
        True,
        False,
        False,
    )


def test_remove_keeps_a_file_with_a_line_left(dead_letter):
    """``remove=True`` keeps the file while a line is left (a write in progress)."""
    with dead_letter.open("a", encoding="utf-8") as file:
        file.write('{"record"')
    result = replay(dead_letter, Sink(), remove=True)
    assert (result.removed, dead_letter.exists()) == (False, True)


# --------------------------------------------------------------------------- one run at a time


def test_a_second_replay_while_one_runs_refuses_at_once(dead_letter):
    """Two replays of one file at once (threads, gated): the second refuses, naming the
    lock file, and sends nothing; the first delivers everything once."""
    in_sink = threading.Event()
    let_go = threading.Event()
    first_sink = Sink()
    second_sink = Sink()
    outcome = []

    def gated(batch):
        in_sink.set()
        assert let_go.wait(60)
        first_sink(batch)

    thread = threading.Thread(target=lambda: outcome.append(replay(dead_letter, gated)))
    thread.start()
    try:
        assert in_sink.wait(60)
        lock_file = f"{dead_letter}.checkpoint.lock"
        with pytest.raises(ReplayCheckpointError, match="another replay of") as refused:
            replay(dead_letter, second_sink)
        assert lock_file in str(refused.value)
    finally:
        let_go.set()
        thread.join(60)
    assert (second_sink.calls, first_sink.messages, outcome[0].delivered) == (0, ALL, 10)
    assert replay(dead_letter, second_sink).already_done == 10  # the lock was let go


@pytest.mark.subprocess
def test_a_replay_in_another_process_holds_the_file(dead_letter, tmp_path):
    """A replay running in another process: this one refuses with ReplayCheckpointError."""
    script = tmp_path / "hold.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from batchlog.sinks import replay

            def sink(batch):
                print("in sink", flush=True)
                sys.stdin.readline()  # held until the test lets it go

            print(replay(sys.argv[1], sink).delivered, flush=True)
            """
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(dead_letter)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline() == "in sink\n"
        sink = Sink()
        with pytest.raises(ReplayCheckpointError, match=r"another replay of .* is running"):
            replay(dead_letter, sink)
        assert sink.calls == 0
        child.stdin.write("go\n")
        child.stdin.flush()
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
    assert (child.returncode, out.strip()) == (0, "10")


def test_the_checkpoints_temporary_file_has_a_name_of_its_own(dead_letter):
    """The checkpoint is written through a uniquely named temporary file, then removed:
    a leftover ``FILE.checkpoint.tmp`` (here a directory) is no obstacle."""
    (dead_letter.parent / f"{dead_letter.name}.checkpoint.tmp").mkdir()
    result = replay(dead_letter, Sink(), batch_size=3)
    assert (result.delivered, result.left) == (10, 0)
    left_over = sorted(path.name for path in dead_letter.parent.iterdir())
    assert left_over == sorted(
        [
            dead_letter.name,
            f"{dead_letter.name}.checkpoint",
            f"{dead_letter.name}.checkpoint.lock",
            f"{dead_letter.name}.checkpoint.tmp",
        ]
    )


def test_remove_deletes_the_lock_file_too(dead_letter):
    """``remove=True``: the file, its checkpoint and its lock file are gone."""
    assert replay(dead_letter, Sink(), remove=True).removed
    assert list(dead_letter.parent.iterdir()) == []


# --------------------------------------------------------------------------- async sinks


class AsyncSink:
    """A real async sink: awaits the loop between records; notes the loop of each batch."""

    def __init__(self, refuse=()):
        self.messages = []
        self.loops = []
        self.refuse = set(refuse)

    async def __call__(self, batch):
        self.loops.append(asyncio.get_running_loop())
        refused = []
        for record in batch:
            await asyncio.sleep(0)
            if record["message"] in self.refuse:
                refused.append(record)
            else:
                self.messages.append(record["message"])
        if refused:
            raise FailedRecordsError(refused, cause=ValueError("refused"))


def test_an_async_sink_is_awaited_on_one_loop_closed_at_the_end(dead_letter):
    """An async sink's batches are awaited on one event loop, made for the replay and closed."""
    sink = AsyncSink()
    result = replay(dead_letter, sink, batch_size=3)
    assert (ALL, result.delivered) == (sink.messages, 10)
    assert (len(sink.loops), len(set(map(id, sink.loops)))) == (4, 1)
    assert sink.loops[0].is_closed()


def test_an_async_def_function_sink_is_awaited(dead_letter):
    """An ``async def`` function works as well as an object with an async ``__call__``."""
    stored = []

    async def sink(batch):
        await asyncio.sleep(0)
        stored.extend(record["message"] for record in batch)

    assert replay(dead_letter, sink).delivered == 10
    assert stored == ALL


def test_an_async_sink_refusing_records_quarantines_them(dead_letter):
    """An async sink's FailedRecordsError quarantines those records, as a sync one's."""
    sink = AsyncSink(refuse={"m4"})
    result = replay(dead_letter, sink, batch_size=4)
    assert ([m for m in ALL if m != "m4"], result.quarantined) == (sink.messages, 1)


def test_an_async_sink_failing_stops_the_replay_and_closes_its_loop(dead_letter):
    """An async sink raising stops the replay; its loop is closed; the next run resumes."""
    loops = []
    stored = []

    async def sink(batch):
        loops.append(asyncio.get_running_loop())
        if len(loops) == 2:
            raise ConnectionError("refused")
        stored.extend(record["message"] for record in batch)

    with pytest.raises(ConnectionError):
        replay(dead_letter, sink, batch_size=5)
    assert loops[0].is_closed()
    replay(dead_letter, sink, batch_size=5)
    assert stored == ALL


def test_an_interrupt_while_an_async_batch_waits_cancels_it_and_resumes(dead_letter):
    """Ctrl-C while an async batch is pending: its task is cancelled, the loop closed, and
    the next run resends only that batch."""
    stored = []
    cancelled = []
    loops = []

    def interrupt():
        raise KeyboardInterrupt

    async def sink(batch):
        loops.append(asyncio.get_running_loop())
        if len(loops) == 2:
            loops[-1].call_soon(interrupt)  # as a signal would, while the batch waits
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
        stored.extend(record["message"] for record in batch)

    with pytest.raises(KeyboardInterrupt):
        replay(dead_letter, sink, batch_size=4)
    assert (cancelled, loops[0].is_closed(), stored) == ([True], True, ALL[:4])
    replay(dead_letter, sink, batch_size=4)
    assert stored == ALL


class LineServer:
    """A TCP server on 127.0.0.1 that keeps the lines each connection sends."""

    def __init__(self):
        import socketserver

        self.connections = []  # one list of lines per connection, complete once it closed
        self.closed = threading.Event()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                lines = [line.decode().rstrip("\n") for line in self.rfile]
                server.connections.append(lines)
                server.closed.set()

        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.tcp.daemon_threads = True
        self.thread = threading.Thread(target=self.tcp.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.tcp.server_address[1]

    def stop(self):
        self.tcp.shutdown()
        self.tcp.server_close()
        self.thread.join(10)


class ConnectionSink:
    """An async sink holding an ``asyncio.open_connection`` stream, opened at its first
    batch (bound to the loop it runs on) and closed, with a last line, by ``aclose()``."""

    def __init__(self, port):
        self.port = port
        self.writer = None

    async def __call__(self, batch):
        if self.writer is None:
            _, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(b"".join(f"{r['message']}\n".encode() for r in batch))
        await self.writer.drain()

    async def aclose(self):
        if self.writer is not None:
            self.writer.write(b"bye\n")
            await self.writer.drain()
            self.writer.close()
            await self.writer.wait_closed()


@pytest.fixture
def line_server():
    server = LineServer()
    yield server
    server.stop()


def test_close_sink_closes_a_loop_bound_connection_on_the_same_loop(dead_letter, line_server):
    """``close_sink=True``: an async sink's ``aclose()`` runs on the loop its batches ran
    on, so a stream opened there closes cleanly (no "Event loop is closed")."""
    sink = ConnectionSink(line_server.port)
    result = replay(dead_letter, sink, batch_size=4, close_sink=True)
    assert line_server.closed.wait(60)
    assert result.delivered == 10
    assert line_server.connections == [[*ALL, "bye"]]


def test_close_sink_closes_a_sync_sink_too_and_is_off_by_default(dead_letter):
    """``close_sink=True`` calls a sync sink's ``close()``; without it the sink stays open."""
    closed = []

    class Closable(Sink):
        def close(self):
            closed.append(True)

    replay(dead_letter, Closable())
    assert closed == []
    write_dead_letter(dead_letter, ["late"])
    replay(dead_letter, Closable(), close_sink=True)
    assert closed == [True]


def test_close_sink_closes_the_sink_after_a_failed_run(dead_letter):
    """The sink is closed however the run ends; the run's failure is what is raised."""
    closed = []

    class Failing(Sink):
        def close(self):
            closed.append(True)

    with pytest.raises(ConnectionError):
        replay(dead_letter, Failing(before={0: ConnectionError("down")}), close_sink=True)
    assert closed == [True]


def test_no_task_destroyed_report_after_an_interrupt_with_a_stubborn_task(dead_letter, caplog):
    """Ctrl-C while an async sink's task ignores cancellation: the replay ends without
    closing a loop under a pending task (no "Task was destroyed" report, no warning)."""
    import gc

    def interrupt():
        raise KeyboardInterrupt

    async def stubborn():
        while True:  # ignores cancellation: outlives the grace the replay gives it
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)  # a timer: the loop itself keeps the task alive

    async def sink(batch):
        loop = asyncio.get_running_loop()
        loop.create_task(stubborn())  # noqa: RUF006 -- left behind on purpose
        loop.call_soon(interrupt)  # as a signal would, while the batch waits
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(KeyboardInterrupt):
        replay(dead_letter, sink, batch_size=4)
    gc.collect()
    assert [r.getMessage() for r in caplog.records if "destroyed" in r.getMessage()] == []


def test_an_async_sink_inside_a_running_loop_is_a_clear_error(dead_letter):
    """From a thread running an event loop, an async sink raises RuntimeError saying why."""

    async def sink(batch):
        pass

    async def main_coroutine():
        with pytest.raises(RuntimeError, match=r"asyncio\.to_thread"):
            replay(dead_letter, sink)

    asyncio.run(main_coroutine())
    assert replay(dead_letter, sink).delivered == 10  # nothing was counted delivered


# --------------------------------------------------------------------------- the command


@pytest.fixture
def sink_module(tmp_path, monkeypatch):
    """An importable module with sinks for the command line: ``store``, ``fail``, ``stop``."""
    name = f"replay_cli_sinks_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            stored = []
            calls = []

            def store(batch):
                stored.extend(record["message"] for record in batch)

            def fail_second(batch):
                calls.append(len(batch))
                if len(calls) == 2:
                    raise ConnectionError("database unreachable")
                store(batch)

            def interrupt_second(batch):
                calls.append(len(batch))
                if len(calls) == 2:
                    raise KeyboardInterrupt
                store(batch)

            async def store_async(batch):
                await asyncio.sleep(0)
                store(batch)

            class AsyncStore:
                closed = []

                async def __call__(self, batch):
                    await asyncio.sleep(0)
                    store(batch)

                async def aclose(self):
                    await asyncio.sleep(0)
                    AsyncStore.closed.append(True)

            class Connection:
                port = 0
                lines = []

                def __init__(self):
                    self.writer = None

                async def __call__(self, batch):
                    if self.writer is None:
                        _, self.writer = await asyncio.open_connection(
                            "127.0.0.1", Connection.port
                        )
                    for record in batch:
                        self.writer.write((record["message"] + "\\n").encode())
                    await self.writer.drain()

                async def aclose(self):
                    self.writer.write(b"bye\\n")
                    await self.writer.drain()
                    self.writer.close()
                    await self.writer.wait_closed()
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    yield name, module
    sys.modules.pop(name, None)


def test_cli_prints_a_summary_and_exits_0(dead_letter, sink_module, capsys):
    """Success: exit 0 and a summary of delivered, quarantined, already done and left."""
    name, module = sink_module
    with dead_letter.open("a", encoding="utf-8") as file:
        file.write("junk\n")
    code = main(["replay", str(dead_letter), "--sink", f"{name}:store", "--batch-size", "4"])
    out, err = capsys.readouterr()
    assert (code, err, module.stored) == (0, "", ALL)
    assert "replayed 10 records from" in out
    assert "  delivered:    10 records" in out
    assert f"  quarantined:  1 lines (in {dead_letter}.quarantine.jsonl)" in out
    assert "  already done: 0 records" in out
    assert "  left:         0 lines" in out


def test_cli_failure_exits_1_and_a_rerun_resumes(dead_letter, sink_module, capsys):
    """A failing sink: exit 1, one line on stderr, a summary; the rerun sends the rest."""
    name, module = sink_module
    args = ["replay", str(dead_letter), "--sink", f"{name}:fail_second", "--batch-size", "4"]
    code = main(args)
    out, err = capsys.readouterr()
    assert (code, len(err.splitlines()), module.stored) == (1, 1, ALL[:4])
    assert "failed: ConnectionError: database unreachable" in err
    assert f"run the same command again to resume from {dead_letter}.checkpoint" in err
    assert "  delivered:    4 records" in out
    assert "  left:         6 lines" in out
    code = main(args)
    out, err = capsys.readouterr()
    assert (code, err, module.stored) == (0, "", ALL)
    assert "  already done: 4 records" in out


def test_cli_interrupt_exits_130_and_a_rerun_resumes(dead_letter, sink_module, capsys):
    """Ctrl-C: exit 130 with a one-line note; the rerun sends only what was not sent."""
    name, module = sink_module
    args = ["replay", str(dead_letter), "--sink", f"{name}:interrupt_second", "--batch-size", "4"]
    code = main(args)
    _, err = capsys.readouterr()
    assert (code, module.stored) == (130, ALL[:4])
    assert "interrupted; run the same command again" in err
    assert main(args) == 0
    assert module.stored == ALL


def test_cli_replays_into_an_async_sink(dead_letter, sink_module, capsys):
    """An ``async def`` sink named on the command line is awaited."""
    name, module = sink_module
    assert main(["replay", str(dead_letter), "--sink", f"{name}:store_async"]) == 0
    assert module.stored == ALL
    assert "replayed 10 records" in capsys.readouterr().out


def test_cli_awaits_an_async_sinks_aclose(dead_letter, sink_module, capsys):
    """A sink class with an async ``__call__`` and ``aclose()``: both are awaited."""
    name, module = sink_module
    assert main(["replay", str(dead_letter), "--sink", f"{name}:AsyncStore"]) == 0
    assert (module.stored, module.AsyncStore.closed) == (ALL, [True])
    assert capsys.readouterr().err == ""


def test_cli_closes_a_loop_bound_connection_on_the_loop_it_ran_on(
    dead_letter, sink_module, line_server, capsys
):
    """The review's reproducer: a sink holding an ``asyncio.open_connection`` stream closes
    it in ``aclose()``; the command exits 0 (it raised "Event loop is closed")."""
    name, module = sink_module
    module.Connection.port = line_server.port
    code = main(["replay", str(dead_letter), "--sink", f"{name}:Connection"])
    _, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert line_server.closed.wait(60)
    assert line_server.connections == [[*ALL, "bye"]]


def test_cli_a_second_replay_at_once_exits_1_naming_the_lock(dead_letter, sink_module, capsys):
    """A replay of FILE while another one runs: exit 1, one line naming the lock file."""
    name, module = sink_module
    in_sink = threading.Event()
    let_go = threading.Event()

    def gated(batch):
        in_sink.set()
        assert let_go.wait(60)

    thread = threading.Thread(target=replay, args=(dead_letter, gated))
    thread.start()
    try:
        assert in_sink.wait(60)
        code = main(["replay", str(dead_letter), "--sink", f"{name}:store"])
    finally:
        let_go.set()
        thread.join(60)
    _, err = capsys.readouterr()
    assert (code, len(err.splitlines()), module.stored) == (1, 1, [])
    assert f"another replay of '{dead_letter}' is running" in err
    assert f"{dead_letter}.checkpoint.lock" in err


def test_cli_remove_keeps_the_file_when_a_line_is_left(dead_letter, sink_module, capsys):
    """``--remove`` deletes nothing while a line is left; once finished, file and checkpoint."""
    name, _ = sink_module
    with dead_letter.open("a", encoding="utf-8") as file:
        file.write('{"record": {"message": "half')
    args = ["replay", str(dead_letter), "--sink", f"{name}:store", "--remove"]
    assert (main(args), dead_letter.exists()) == (0, True)
    assert "  left:         1 lines (the next run takes them)" in capsys.readouterr().out
    with dead_letter.open("a", encoding="utf-8") as file:
        file.write('"}}\n')
    assert main(args) == 0
    assert (dead_letter.exists(), Path(f"{dead_letter}.checkpoint").exists()) == (False, False)
    assert not Path(f"{dead_letter}.checkpoint.lock").exists()


def test_cli_a_replaced_file_is_one_line_and_exit_1(dead_letter, sink_module, capsys):
    """A checkpoint that does not fit the file: exit 1, one line naming both, no traceback."""
    name, _ = sink_module
    assert main(["replay", str(dead_letter), "--sink", f"{name}:store"]) == 0
    dead_letter.write_bytes(dead_letter.read_bytes()[:50])
    capsys.readouterr()
    code = main(["replay", str(dead_letter), "--sink", f"{name}:store"])
    _, err = capsys.readouterr()
    assert (code, len(err.splitlines())) == (1, 1)
    assert str(dead_letter) in err
    assert "ReplayCheckpointError" in err


@pytest.mark.subprocess
def test_cli_shows_a_progress_bar_on_a_terminal(dead_letter, tmp_path):
    """On a terminal (forced here) the command draws rich's progress bar on stderr."""
    pytest.importorskip("rich")
    target = tmp_path / "out.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TTY_COMPATIBLE": "1",
        "TTY_INTERACTIVE": "1",
        "COLUMNS": "120",
    }
    result = subprocess.run(
        [sys.executable, "-m", "batchlog", "replay", str(dead_letter), "--sink", f"jsonl:{target}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "lines replayed" in result.stderr
    assert "10 delivered, 0 quarantined" in result.stderr
    assert len(read_lines(target)) == 10


def test_cli_no_progress_draws_nothing(dead_letter, tmp_path, capsys):
    """``--no-progress`` and a stderr that is no terminal: nothing but the summary."""
    target = tmp_path / "out.jsonl"
    assert main(["replay", str(dead_letter), "--sink", f"jsonl:{target}", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert len(read_lines(target)) == 10
