"""``SQLiteSink``: schema, WAL, one transaction per batch, safe table names, both kinds."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import sqlite3
import threading
from typing import Any

import pytest
from test_sinks_base import run_script

import batchlog.sinks.sqlite
from batchlog import BatchWriter, FailedRecordsError
from batchlog.sinks import FIELDS, SQLiteSink, encode_record
from batchlog.sinks.sqlite import COLUMNS


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "logs.sqlite3"


@pytest.fixture
def make_sink():
    """Return ``make_sink(path, **kwargs)``; every sink made is closed at teardown."""
    sinks: list[SQLiteSink] = []

    def make(path, **kwargs):
        sink = SQLiteSink(path, **kwargs)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


@pytest.fixture
def query(db_path):
    """Return ``query(sql, *params)``: rows from a fresh connection to the test database."""

    def run(sql, *params):
        with contextlib.closing(sqlite3.connect(db_path)) as connection:
            return connection.execute(sql, params).fetchall()

    return run


@pytest.fixture
def connections(monkeypatch):
    """Record every connection the sink opens: (connection, thread, traced statements)."""
    made = []
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        statements: list[str] = []
        connection.set_trace_callback(statements.append)
        made.append((connection, threading.current_thread(), statements))
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)
    return made


def log_record(message="hello", level=logging.INFO, **extra):
    record = logging.makeLogRecord({"name": "app", "msg": message, "levelno": level})
    record.levelname = logging.getLevelName(level)
    record.__dict__.update(extra)
    return record


def test_one_column_per_field(db_path, make_sink, query):
    """The table has an integer id and one column per encoded field, in order."""
    make_sink(db_path)([log_record()])
    columns = [(row[1], row[2], row[5]) for row in query("PRAGMA table_info(logs)")]
    assert columns[:1] == [("id", "INTEGER", 1)]
    assert list(FIELDS) == [name for name, _, _ in columns[1:]]


def test_columns_cover_fields():
    """The documented column declarations match FIELDS exactly."""
    assert tuple(COLUMNS) == FIELDS


def test_indexes_on_timestamp_and_level(db_path, make_sink, query):
    """Indexes exist on the timestamp and on the level number."""
    make_sink(db_path)([log_record()])
    indexed = {
        name: [row[2] for row in query(f"PRAGMA index_info({name})")]
        for _, name, *_ in query("PRAGMA index_list(logs)")
    }
    assert indexed == {"logs_timestamp": ["timestamp"], "logs_level_number": ["level_number"]}


def test_wal_mode(db_path, make_sink, query):
    """The database is in WAL mode."""
    make_sink(db_path)([log_record()])
    assert query("PRAGMA journal_mode") == [("wal",)]


def test_one_transaction_per_batch(db_path, make_sink, connections):
    """A batch is one BEGIN and one COMMIT, however many records it holds."""
    sink = make_sink(db_path)
    sink([log_record("warm-up")])
    statements = connections[0][2]
    statements.clear()
    sink([log_record(str(number)) for number in range(20)])
    keywords = [statement.split()[0].upper() for statement in statements]
    assert (keywords.count("BEGIN"), keywords.count("COMMIT"), keywords.count("INSERT")) == (
        1,
        1,
        20,
    )


def test_failed_batch_stores_nothing(db_path, make_sink, query):
    """When a row rolls the transaction back, nothing of the batch is stored; it raises."""
    sink = make_sink(db_path)
    sink([log_record("first")])
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        connection.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON logs WHEN NEW.message = 'poison' "
            "BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END"
        )
        connection.commit()
    with pytest.raises(sqlite3.IntegrityError, match="poisoned"):
        sink([log_record("fine"), log_record("poison"), log_record("fine too")])
    sink([log_record("after")])
    assert query("SELECT message FROM logs ORDER BY id") == [("first",), ("after",)]


@pytest.mark.parametrize(
    "table",
    ["logs; DROP TABLE x", "1abc", "", "a-b", 'x"', "sqlite_master", "a" * 64, None],
)
def test_bad_table_names_are_rejected(db_path, table):
    """A table name that is not a plain identifier raises ValueError naming ``table``."""
    with pytest.raises(ValueError, match=r"^table must be a plain SQL identifier"):
        SQLiteSink(db_path, table=table)


def test_custom_table(db_path, make_sink, query):
    """Records go to the configured table, with its own indexes."""
    make_sink(db_path, table="audit_2026")([log_record("x")])
    assert query("SELECT message FROM audit_2026") == [("x",)]
    assert {"audit_2026_timestamp", "audit_2026_level_number"} == {
        row[1] for row in query("PRAGMA index_list(audit_2026)")
    }


def test_connection_is_opened_on_the_first_batch(db_path, make_sink, connections):
    """Making the sink opens nothing; the first batch does."""
    sink = make_sink(db_path)
    assert (connections, db_path.exists()) == ([], False)
    sink([log_record()])
    assert len(connections) == 1


def test_connection_is_made_on_the_worker_thread(
    db_path, make_sink, make_handler, make_logger, connections
):
    """Behind a BatchingHandler, the connection is opened on the writer's thread."""
    handler = make_handler(make_sink(db_path), capacity=5)
    make_logger(handler).info("hello")
    handler.flush()
    assert [f"batchlog-{handler.writer.name}"] == [thread.name for _, thread, _ in connections]


def test_log_records_are_stored(db_path, make_sink, query):
    """A LogRecord's encoded fields land in their columns."""
    record = log_record("disk full", logging.ERROR, exc_text="Traceback: boom")
    make_sink(db_path)([record])
    encoded = encode_record(record)
    row = query(f"SELECT {', '.join(FIELDS)} FROM logs")[0]  # noqa: S608
    assert dict(zip(FIELDS, row)) == {**encoded, "extra": "{}"}


def test_event_dicts_are_stored(db_path, make_sink, query):
    """A structlog event dict's fields land in their columns."""
    event = {
        "event": "user logged in",
        "level": "warning",
        "logger": "auth",
        "timestamp": "2026-01-02T03:04:05.000006Z",
    }
    make_sink(db_path)([event])
    assert query("SELECT timestamp, level, level_number, logger, message FROM logs") == [
        ("2026-01-02T03:04:05.000006Z", "WARNING", 30, "auth", "user logged in")
    ]


def test_extras_are_stored_as_json(db_path, make_sink, query):
    """``extra`` is a JSON object that ``json_extract`` can read."""
    make_sink(db_path)(
        [log_record("a", user="ada", tags=["x"]), {"event": "b", "user": "bob", "obj": object}]
    )
    rows = query("SELECT json_extract(extra, '$.user'), extra FROM logs ORDER BY id")
    assert [user for user, _ in rows] == ["ada", "bob"]
    assert json.loads(rows[0][1]) == {"user": "ada", "tags": ["x"]}


def test_huge_integers_do_not_fail_the_batch(db_path, make_sink, query):
    """An integer too big for SQLite is stored (as a number) rather than failing the batch."""
    record = encode_record(log_record())
    record["thread"] = 2**70
    make_sink(db_path)([record])
    assert query("SELECT thread FROM logs") == [(float(2**70),)]


def test_end_to_end_through_batching_handler(db_path, make_sink, make_handler, make_logger, query):
    """Everything logged through ``BatchingHandler(SQLiteSink(path))`` is stored, in order."""
    handler = make_handler(make_sink(db_path), capacity=7)
    logger = make_logger(handler)
    for number in range(30):
        logger.warning("record %d", number, extra={"number": number})
    handler.flush()
    rows = query("SELECT message, json_extract(extra, '$.number') FROM logs ORDER BY id")
    assert [(f"record {number}", number) for number in range(30)] == rows


def test_dictconfig_with_plain_values(db_path, query):
    """dictConfig builds the handler and its SQLite sink from strings and numbers."""
    name = "batchlog-tests.sqlite-dictconfig"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "db": {
                    "class": "batchlog.BatchingHandler",
                    "sink": {"()": "batchlog.sinks.SQLiteSink", "path": str(db_path)},
                    "capacity": 10,
                    "flush_interval": 60,
                }
            },
            "loggers": {name: {"handlers": ["db"], "level": "INFO", "propagate": False}},
        }
    )
    logger = logging.getLogger(name)
    (handler,) = logger.handlers
    try:
        logger.info("configured", extra={"plain": True})
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert query("SELECT message, extra FROM logs") == [("configured", '{"plain":true}')]


def test_close_is_idempotent_and_later_batches_raise(db_path, make_sink):
    """``close()`` twice is fine; a batch after it raises ValueError."""
    sink = make_sink(db_path)
    sink([log_record()])
    sink.close()
    sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink([log_record()])


def test_close_may_run_on_another_thread(db_path, make_sink):
    """The connection is usable and closable from a thread other than the one that made it."""
    sink = make_sink(db_path)
    worker = threading.Thread(target=sink, args=([log_record()],))
    worker.start()
    worker.join()
    sink.close()


def test_bad_settings_are_rejected(db_path):
    """A negative busy timeout and an unknown synchronous mode fail at construction."""
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteSink(db_path, busy_timeout=-1)
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteSink(db_path, synchronous="sometimes")


def test_repr_names_path_and_table(db_path):
    """The repr shows the path and the table."""
    assert repr(SQLiteSink(db_path)) == f"SQLiteSink(path={str(db_path)!r}, table='logs')"


# ------------------------------------------------------------------ a database created at once


class FakeTime:
    """Stands for the sqlite module's ``time``: ``sleep`` advances ``monotonic``, no waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FlakyConnection:
    """A connection whose ``PRAGMA journal_mode=WAL`` raises ``error`` ``failures`` times."""

    def __init__(self, connection: sqlite3.Connection, failures: float, error: str) -> None:
        self._connection = connection
        self.failures = failures
        self.error = error

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "PRAGMA journal_mode=WAL" and self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError(self.error)  # as another process's lock makes it
        return self._connection.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


@pytest.fixture
def fake_time(monkeypatch):
    """The sqlite sink's clock and sleep, faked."""
    fake = FakeTime()
    monkeypatch.setattr(batchlog.sinks.sqlite, "time", fake)
    return fake


@pytest.fixture
def flaky(monkeypatch):
    """Return ``flaky(failures, error)``: the sink's next connection fails to set WAL so."""
    made: list[FlakyConnection] = []

    def arrange(failures: float, error: str = "database is locked") -> list[FlakyConnection]:
        real_connect = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> FlakyConnection:
            made.append(FlakyConnection(real_connect(*args, **kwargs), failures, error))
            return made[-1]

        monkeypatch.setattr(sqlite3, "connect", connect)
        return made

    return arrange


def test_locked_setup_is_tried_again_until_it_works(db_path, make_sink, query, fake_time, flaky):
    """A locked database setting WAL (another process creating it) is retried, growing pauses."""
    flaky(2)
    make_sink(db_path)([log_record("stored")])
    assert fake_time.sleeps == [0.001, 0.002]
    assert query("SELECT message FROM logs") == [("stored",)]
    assert query("PRAGMA journal_mode") == [("wal",)]


def test_setup_locked_for_longer_than_busy_timeout_raises(db_path, make_sink, fake_time, flaky):
    """Still locked once busy_timeout has passed: the batch raises "database is locked"."""
    made = flaky(float("inf"))
    sink = make_sink(db_path, busy_timeout=0.1)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        sink([log_record()])
    assert sum(fake_time.sleeps) == pytest.approx(0.1)
    assert max(fake_time.sleeps) <= 0.05
    with pytest.raises(sqlite3.ProgrammingError):  # the failed connection was closed
        made[0].execute("SELECT 1")


def test_other_setup_errors_are_not_retried(db_path, make_sink, fake_time, flaky):
    """An error other than "database is locked" fails the batch at once."""
    flaky(1, "disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        make_sink(db_path)([log_record()])
    assert fake_time.sleeps == []


def test_wal_mode_is_read_before_it_is_set(db_path, make_sink, connections):
    """A database already in WAL mode is not set again (setting it takes an exclusive lock)."""
    make_sink(db_path)([log_record("first")])
    make_sink(db_path)([log_record("second")])
    (_, _, first_statements), (_, _, second_statements) = connections
    assert "PRAGMA journal_mode=WAL" in first_statements
    assert "PRAGMA journal_mode=WAL" not in second_statements


@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_processes_creating_a_new_database_at_once_all_store_their_batch(tmp_path):
    """Four processes making one new database at once (60 times): no batch is lost."""
    result = run_script(
        """
import logging, multiprocessing, os, sqlite3, sys, tempfile
from batchlog.sinks import SQLiteSink

def write(path, barrier):
    sink = SQLiteSink(path)
    barrier.wait()
    try:
        sink([logging.makeLogRecord({"msg": "x"})])
    except sqlite3.OperationalError as exc:
        print(exc)
        sys.exit(1)

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    failed = 0
    rows = set()
    for round_number in range(60):
        path = os.path.join(sys.argv[1], f"fresh-{round_number}.sqlite3")
        barrier = context.Barrier(4)
        processes = [context.Process(target=write, args=(path, barrier)) for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        failed += sum(process.exitcode != 0 for process in processes)
        with sqlite3.connect(path) as reader:
            rows.add(reader.execute("SELECT count(*) FROM logs").fetchone()[0])
        reader.close()
    print(failed, sorted(rows))
""",
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert result.stdout.splitlines()[-1] == "0 [4]", result.stdout


def refuse_poison(db_path):
    """Create the sink's table with a trigger that refuses any row whose message is 'poison'."""
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        for statement in batchlog.sinks.sqlite.create_table_sql():
            connection.execute(statement)
        connection.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON logs WHEN NEW.message = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
        )
        connection.commit()


def test_a_record_the_table_refuses_fails_alone(db_path, make_sink, query):
    """A row the table refuses: the other 99 records are stored, and the sink raises
    FailedRecordsError naming just that one (the issue saw all 100 fail)."""
    refuse_poison(db_path)
    batch = [log_record(f"record {i}") for i in range(100)]
    batch[42] = log_record("poison")
    with pytest.raises(FailedRecordsError) as caught:
        make_sink(db_path)(batch)
    assert caught.value.records == [batch[42]]
    assert isinstance(caught.value.cause, sqlite3.IntegrityError)
    stored = [row[0] for row in query("SELECT message FROM logs ORDER BY id")]
    assert stored == [f"record {i}" for i in range(100) if i != 42]


def test_text_with_a_lone_surrogate_or_nul_is_stored_spelt_out(db_path, make_sink, query):
    """A lone surrogate and a NUL no longer fail the record: stored as \\udcff and \\x00."""
    make_sink(db_path)([log_record("bad \udcff text"), log_record("nul \x00 text")])
    stored = [row[0] for row in query("SELECT message FROM logs ORDER BY id")]
    assert stored == ["bad \\udcff text", "nul \\x00 text"]


def test_through_a_writer_one_bad_record_counts_one_failed(db_path, make_sink):
    """Through a writer, the refused record alone counts failed and reaches on_error."""
    refuse_poison(db_path)
    batch = [log_record(f"record {i}") for i in range(10)]
    batch[3] = log_record("poison")
    failed = []
    writer = BatchWriter(10, 60.0, make_sink(db_path), on_error=lambda e, b: failed.extend(b))
    for record in batch:
        writer.add(record)
    writer.close(timeout=30)
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (9, 1)
    assert failed == [batch[3]]
