"""PostgresSink against a real PostgreSQL server that the tests start themselves.

The server (see ``pg_server.py``) is started once per session on a free loopback port. If
it cannot be started the tests that need it skip, saying why, unless
``BATCHLOG_REQUIRE_POSTGRES=1``, when they fail instead. The fixtures (``postgres_server``,
``conninfo``, ``admin``, ``table``, ``sleeps``, ``make_postgres_sink``) are in ``conftest.py``.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import logging.config
import os
import re
import subprocess
import sys
import traceback
from typing import Any

import pytest
from pg_server import REQUIRED, free_port
from test_sinks_base import assert_each_batch_stored_once, run_fork_script

if REQUIRED:
    import psycopg  # must be importable: fail loudly rather than skip
else:
    psycopg = pytest.importorskip("psycopg")

from batchlog.sinks import PostgresSink

_numbers = itertools.count(1)
PASSWORD = "hunter2-do-not-show"  # noqa: S105 -- a fake, checked to be never shown


def make_record(message: str, level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("tests.pg", level, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def terminate_backends(admin: Any, application_name: str) -> int:
    """End the sessions of ``application_name`` and wait until they are gone."""
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    ).fetchall()
    assert all(ended for (ended,) in rows)
    return len(rows)


def messages(admin: Any, table: str) -> list[str]:
    rows = admin.execute(f"SELECT message FROM {table} ORDER BY id").fetchall()  # noqa: S608
    return [message for (message,) in rows]


# ------------------------------------------------------------------ the table


@pytest.mark.postgres
def test_table_is_created_with_typed_columns_and_indexes(make_postgres_sink, admin, table):
    """The first batch creates the table: one typed column per field, two indexes."""
    make_postgres_sink()([make_record("hello")])

    columns = admin.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    indexes = admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,)
    ).fetchall()

    assert columns == [
        ("id", "bigint"),
        ("timestamp", "timestamp with time zone"),
        ("level", "text"),
        ("level_number", "integer"),
        ("logger", "text"),
        ("message", "text"),
        ("exception", "text"),
        ("stack", "text"),
        ("thread", "bigint"),
        ("thread_name", "text"),
        ("process", "integer"),
        ("process_name", "text"),
        ("module", "text"),
        ("function", "text"),
        ("line", "integer"),
        ("path", "text"),
        ("extra", "jsonb"),
    ]
    definitions = " ".join(definition for (definition,) in indexes)
    assert f"{table}_timestamp" in definitions
    assert f"{table}_level_number" in definitions
    assert "(level_number)" in definitions
    assert '("timestamp")' in definitions


@pytest.mark.postgres
def test_schema_qualified_table_is_used(make_postgres_sink, admin, table):
    """``schema.name`` puts the table in that schema."""
    schema = f"audit_{next(_numbers)}"
    admin.execute(f"CREATE SCHEMA {schema}")

    make_postgres_sink(table=f"{schema}.{table}")([make_record("in a schema")])

    assert messages(admin, f"{schema}.{table}") == ["in a schema"]


@pytest.mark.postgres
def test_connection_is_opened_on_first_batch(make_postgres_sink, admin):
    """Making a sink connects nowhere; the first batch does."""
    name = f"batchlog-lazy-{next(_numbers)}"
    count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    sink = make_postgres_sink(application_name=name)
    assert admin.execute(count, (name,)).fetchone() == (0,)

    sink([make_record("first")])

    assert admin.execute(count, (name,)).fetchone() == (1,)


# ------------------------------------------------------------------ both record kinds


@pytest.mark.postgres
def test_log_records_through_handler_are_stored_with_queryable_extras(
    make_postgres_sink, make_handler, make_logger, admin, table
):
    """LogRecords logged through BatchingHandler arrive with their extras in jsonb."""
    handler = make_handler(make_postgres_sink(), capacity=2)
    logger = make_logger(handler)

    logger.info("hello %s", "ada", extra={"user": "ada", "attempt": 3})
    logger.warning("low disk", extra={"user": "bob"})
    try:
        1 / 0  # noqa: B018 -- raise something to log
    except ZeroDivisionError:
        logger.exception("failed", extra={"user": "ada"})
    handler.flush()

    rows = admin.execute(
        f"SELECT message, level, level_number, logger, extra->>'user',"  # noqa: S608
        f" (extra->>'attempt')::int, exception, \"timestamp\" FROM {table} ORDER BY id"
    ).fetchall()
    assert [row[0] for row in rows] == ["hello ada", "low disk", "failed"]
    assert [row[1:3] for row in rows] == [("INFO", 20), ("WARNING", 30), ("ERROR", 40)]
    assert {logger.name} == {row[3] for row in rows}
    assert [row[4] for row in rows] == ["ada", "bob", "ada"]
    assert [row[5] for row in rows] == [3, None, None]
    assert rows[2][6] is not None
    assert "ZeroDivisionError" in rows[2][6]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert all(abs(row[7] - now) < datetime.timedelta(minutes=1) for row in rows)
    ada = admin.execute(
        f"SELECT count(*) FROM {table} WHERE extra->>'user' = 'ada'"  # noqa: S608
    ).fetchone()
    assert ada == (2,)
    assert handler.metrics.records_processed == 3


@pytest.mark.postgres
def test_structlog_events_through_processor_are_stored_with_queryable_extras(
    make_postgres_sink, make_processor, admin, table
):
    """structlog event dicts through BatchingProcessor arrive with their extras in jsonb."""
    structlog = pytest.importorskip("structlog")
    processor = make_processor(make_postgres_sink(), capacity=10)

    with pytest.raises(structlog.DropEvent):
        processor(
            None,
            "info",
            {
                "event": "login",
                "level": "info",
                "logger": "auth",
                "timestamp": "2024-05-01T12:00:00.000001Z",
                "user": "bob",
                "roles": ["admin", "dev"],
            },
        )
    assert processor.flush()

    row = admin.execute(
        f'SELECT message, level, level_number, logger, "timestamp",'  # noqa: S608
        f" extra->>'user', extra->'roles'->>1 FROM {table}"
    ).fetchone()
    moment = datetime.datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=datetime.timezone.utc)
    assert ("login", "INFO", 20, "auth", moment, "bob", "dev") == row


@pytest.mark.postgres
def test_values_that_do_not_fit_their_column_are_kept_in_extra(make_postgres_sink, admin, table):
    """Odd values never fail a batch: NUL, lone surrogates, bad timestamps, huge numbers."""
    sink = make_postgres_sink()
    sink(
        [
            {"event": "nul\x00here", "timestamp": "yesterday", "lineno": "12", "k": "v\x00"},
            {"event": "surrogate \udcff", "thread": 2**70, "bad\udcffkey": "x"},
        ]
    )

    rows = admin.execute(
        f'SELECT message, "timestamp", line, thread, extra FROM {table} ORDER BY id'  # noqa: S608
    ).fetchall()
    # NUL and lone surrogates as the shared encoding spells them, in every sink.
    assert rows[0][0] == "nul\\x00here"
    assert rows[0][1] is None
    assert rows[0][2] is None
    assert {"timestamp": "yesterday", "line": "12", "k": "v\\x00"}.items() <= rows[0][4].items()
    assert rows[1][0] == "surrogate \\udcff"
    assert rows[1][3] is None
    assert str(rows[1][4]["thread"]) == str(2**70)  # as the encoder gave it: number or text
    assert rows[1][4]["bad\\udcffkey"] == "x"


@pytest.mark.postgres
def test_dictconfig_builds_the_sink_from_plain_values(conninfo, admin, table):
    """A handler configured by dictConfig with plain values stores records."""
    logger_name = f"batchlog-tests.dictconfig-{next(_numbers)}"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "postgres": {
                    "class": "batchlog.BatchingHandler",
                    "sink": {
                        "()": "batchlog.sinks.PostgresSink",
                        "conninfo": conninfo,
                        "table": table,
                    },
                    "capacity": 10,
                    "flush_interval": 60,
                },
            },
            "loggers": {
                logger_name: {"level": "INFO", "handlers": ["postgres"], "propagate": False}
            },
        }
    )
    logger = logging.getLogger(logger_name)
    (handler,) = logger.handlers
    try:
        logger.info("configured", extra={"user": "eve"})
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()

    assert admin.execute(
        f"SELECT message, extra->>'user' FROM {table}"  # noqa: S608
    ).fetchall() == [("configured", "eve")]


# ------------------------------------------------------------------ COPY and transactions


@pytest.mark.postgres
def test_each_batch_is_one_copy_statement(make_postgres_sink, admin, table, monkeypatch):
    """Every batch is written by exactly one ``COPY ... FROM STDIN``."""
    statements: list[str] = []
    original_copy = psycopg.Cursor.copy

    def spy_copy(cursor, statement, *args, **kwargs):
        statements.append(statement.as_string(cursor))
        return original_copy(cursor, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy_copy)
    sink = make_postgres_sink()

    sink([make_record(f"first {number}") for number in range(5)])
    sink([make_record(f"second {number}") for number in range(3)])

    assert len(statements) == 2
    prefix = f'COPY "{table}" ("timestamp", "level", "level_number",'
    assert all(statement.startswith(prefix) for statement in statements)
    assert all(statement.endswith('"extra") FROM STDIN') for statement in statements)
    assert len(messages(admin, table)) == 8


# ------------------------------------------------------------------ lost connections


@pytest.mark.postgres
def test_backend_terminated_between_batches_loses_nothing(
    make_postgres_sink, make_handler, make_logger, admin, table
):
    """After the sink's session is killed between batches, the next batch still arrives."""
    name = f"batchlog-between-{next(_numbers)}"
    sleeps: list[float] = []
    sink = make_postgres_sink(application_name=name, backoff_initial=0.25, sleep=sleeps.append)
    handler = make_handler(sink, capacity=3)
    logger = make_logger(handler)
    for number in range(3):
        logger.info("before %d", number)
    handler.flush()

    assert terminate_backends(admin, name) == 1
    for number in range(3):
        logger.info("after %d", number)
    handler.flush()

    expected = [f"before {n}" for n in range(3)] + [f"after {n}" for n in range(3)]
    assert expected == messages(admin, table)
    assert sleeps == [0.25]
    assert handler.metrics.records_failed == 0
    assert handler.metrics.records_processed == 6


@pytest.mark.postgres
def test_backend_terminated_during_copy_stores_the_batch_once(
    make_postgres_sink, admin, table, sleeps, monkeypatch
):
    """A session killed halfway through a COPY: the half is rolled back, the retry stores all."""
    name = f"batchlog-during-{next(_numbers)}"
    sink = make_postgres_sink(application_name=name)
    sink([make_record("warm-up")])  # the table exists; the next batch is pure COPY
    original_write_row = psycopg.Copy.write_row
    rows_written = itertools.count(1)
    terminated: list[int] = []

    def write_row_then_terminate(copy, row):
        original_write_row(copy, row)
        if next(rows_written) == 1500 and not terminated:  # well past psycopg's buffer
            terminated.append(terminate_backends(admin, name))

    monkeypatch.setattr(psycopg.Copy, "write_row", write_row_then_terminate)
    batch = [make_record(f"row {number:05d} " + "x" * 100) for number in range(3000)]

    sink(batch)

    assert terminated == [1]
    stored = messages(admin, table)
    assert ["warm-up"] + [record.msg for record in batch] == stored
    assert len(sleeps) == 1


@pytest.mark.postgres
def test_reconnect_happens_for_every_lost_connection(make_postgres_sink, admin, table):
    """The sink survives several terminations in a row, each between two batches."""
    name = f"batchlog-again-{next(_numbers)}"
    sink = make_postgres_sink(application_name=name)
    for number in range(3):
        sink([make_record(f"batch {number}")])
        terminate_backends(admin, name)
    sink([make_record("last")])

    assert messages(admin, table) == ["batch 0", "batch 1", "batch 2", "last"]


def test_server_that_stays_down_raises_after_bounded_retries(sleeps):
    """With nothing listening, a call raises after ``max_attempts`` attempts, sleeps growing."""
    sink = PostgresSink(
        host="127.0.0.1",
        port=free_port(),
        dbname="nothing",
        max_attempts=4,
        backoff_initial=0.25,
        backoff_max=0.75,
        backoff_jitter=0.0,
        sleep=sleeps.append,
    )

    with pytest.raises(psycopg.OperationalError, match="in 4 attempts"):
        sink([make_record("lost")])

    assert sleeps == [0.25, 0.5, 0.75]
    sink.close()


def test_backoff_jitter_adds_at_most_its_seconds(sleeps):
    """Each sleep is the exponential backoff plus between 0 and ``backoff_jitter`` seconds."""
    sink = PostgresSink(
        host="127.0.0.1",
        port=free_port(),
        max_attempts=4,
        backoff_initial=0.25,
        backoff_max=10.0,
        backoff_jitter=0.1,
        sleep=sleeps.append,
    )

    with pytest.raises(psycopg.OperationalError, match="in 4 attempts"):
        sink([make_record("lost")])

    assert len(sleeps) == 3
    assert all(base <= slept <= base + 0.1 for base, slept in zip([0.25, 0.5, 1.0], sleeps))
    sink.close()


def test_server_that_stays_down_counts_the_batch_failed(make_writer, sleeps):
    """The writer counts the batch as failed (not processed) and reports the error."""
    errors: list[Exception] = []
    sink = PostgresSink(host="127.0.0.1", port=free_port(), max_attempts=2, sleep=sleeps.append)
    writer = make_writer(sink, on_error=lambda exc, batch: errors.append(exc))
    writer.add(make_record("lost"))

    assert writer.flush(timeout=10)

    assert writer.metrics.records_failed == 1
    assert writer.metrics.records_processed == 0
    assert [psycopg.OperationalError] == [type(error) for error in errors]
    sink.close()


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "1logs",
        "Logs",
        "logs; DROP TABLE users",
        'logs"',
        "a.b.c",
        ".logs",
        "public.",
        "x" * 64,
        "lögs",
        None,
        42,
    ],
)
def test_bad_table_names_are_rejected(bad):
    """Only ``name`` or ``schema.name`` of lower-case identifiers is accepted."""
    with pytest.raises(ValueError, match="table must be"):
        PostgresSink("host=127.0.0.1", table=bad)


@pytest.mark.parametrize(
    ("conninfo", "params"),
    [
        (f"host=127.0.0.1 user=app password={PASSWORD}", {}),
        (f"postgresql://app:{PASSWORD}@127.0.0.1/logs", {}),
        ("host=127.0.0.1", {"user": "app", "password": PASSWORD}),
    ],
    ids=["conninfo", "uri", "keyword"],
)
def test_password_is_not_in_repr_or_errors(conninfo, params, sleeps):
    """The password shows neither in the repr nor in the error of a failed batch."""
    sink = PostgresSink(conninfo, port=free_port(), max_attempts=2, sleep=sleeps.append, **params)

    with pytest.raises(psycopg.OperationalError) as caught:
        sink([make_record("lost")])

    shown = repr(sink) + "".join(traceback.format_exception(caught.type, caught.value, caught.tb))
    assert "127.0.0.1" in repr(sink)
    assert "hunter2" not in shown
    sink.close()


def test_invalid_conninfo_error_does_not_quote_the_password():
    """libpq's complaint about a malformed string is withheld: it could quote the password."""
    with pytest.raises(ValueError, match="invalid PostgreSQL connection settings") as caught:
        PostgresSink("host=127.0.0.1 password=hunter2 twopart")

    assert "hunter2" not in str(caught.value)
    assert "twopart" not in str(caught.value)


def test_unknown_connection_parameter_is_named():
    """A misspelt keyword parameter is named in the error."""
    with pytest.raises(ValueError, match="dbnmae"):
        PostgresSink(dbnmae="logs")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 1.5),
        ("backoff_initial", -0.1),
        ("backoff_max", "1"),
        ("backoff_jitter", -1),
        ("max_retry_time", -1),
        ("connect_timeout", 0),
        ("statement_timeout", 0),
    ],
)
def test_bad_numbers_are_rejected(option, value):
    """Retries, backoffs and timeouts out of range raise ValueError naming the option."""
    with pytest.raises(ValueError, match=option):
        PostgresSink(**{option: value})


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_attempts", 0, "max_attempts must be an int >= 1, not 0"),
        ("max_attempts", True, "max_attempts must be an int >= 1, not True"),
        (
            "max_retry_time",
            -1,
            "max_retry_time must be a finite number of seconds >= 0 or None, not -1",
        ),
        ("backoff_initial", -0.1, "backoff_initial must be a finite number of seconds >= 0"),
        ("backoff_max", "1", "backoff_max must be a number of seconds, not '1'"),
        ("backoff_jitter", float("nan"), "backoff_jitter must be a finite number of seconds"),
    ],
)
def test_retry_options_are_checked_once_with_the_same_message_for_every_sink(
    option, value, message
):
    """make_retrying checks the retry options; both sinks raise its very message."""
    pytest.importorskip("httpx")
    from batchlog.sinks import HTTPSink
    from batchlog.sinks._retry import make_retrying

    options = {
        "max_attempts": 3,
        "max_retry_time": None,
        "backoff_initial": 0.5,
        "backoff_max": 1.0,
        "backoff_jitter": 0.0,
        option: value,
    }
    texts = []
    for make in (
        lambda: make_retrying(retryable=bool, sleep=print, **options),
        lambda: HTTPSink("http://127.0.0.1:9/", **{option: value}),
        lambda: PostgresSink(**{option: value}),
    ):
        with pytest.raises(ValueError, match=re.escape(message)) as raised:
            make()
        texts.append(str(raised.value))

    assert len(set(texts)) == 1, texts


def test_close_is_idempotent_and_a_later_batch_raises():
    """``close()`` twice is fine; a batch after it raises ValueError (no reconnect)."""
    sink = PostgresSink(host="127.0.0.1", port=free_port())
    sink.close()
    sink.close()

    with pytest.raises(ValueError, match="closed") as raised:
        sink([make_record("late")])
    assert str(raised.value) == f"{sink!r} is closed"


@pytest.mark.postgres
def test_close_after_a_batch_ends_the_session_and_a_later_batch_raises(
    make_postgres_sink, admin, table
):
    """close() twice is fine, ends the sink's session; a batch after it stores nothing."""
    sink = make_postgres_sink()
    sink([make_record("a")])
    sink.close()
    sink.close()

    with pytest.raises(ValueError, match="is closed"):
        sink([make_record("b")])
    assert (sink.closed, sink._connection, messages(admin, table)) == (True, None, ["a"])


@pytest.mark.postgres
def test_reopen_connects_again_to_the_same_table(make_postgres_sink, admin, table):
    """After close() and reopen() the next batch connects anew and stores in the same table."""
    sink = make_postgres_sink()
    sink([make_record("a")])
    first_backend = sink._connection.info.backend_pid
    sink.close()
    sink.reopen()
    sink([make_record("b")])

    assert not sink.closed
    assert sink._connection.info.backend_pid != first_backend
    assert messages(admin, table) == ["a", "b"]


def test_missing_psycopg_names_the_extra(monkeypatch):
    """Without psycopg, making a sink says which extra to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)

    with pytest.raises(ImportError, match=r"pip install 'batchlog\[postgres\]'"):
        PostgresSink("host=127.0.0.1")


def test_importing_the_sinks_does_not_import_psycopg():
    """``import batchlog.sinks`` (even the postgres module) leaves psycopg unimported."""
    script = (
        "import sys, batchlog.sinks, batchlog.sinks.postgres\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
        "batchlog.sinks.PostgresSink\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported by the lazy export'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr


FORK_SCRIPT = """
import logging, os, sys
from batchlog.sinks import PostgresSink

def record(message):
    return logging.LogRecord("fork", logging.INFO, "fork.py", 1, message, None, None)

sink = PostgresSink(sys.argv[1], table=sys.argv[2], max_attempts=1)  # no retry hides a lost session
sink([record("parent before fork")])
child = os.fork()
if child == 0:
    status = 0
    try:
        sink([record("child")])
        sink.close()
    except BaseException as exc:
        print(f"child: {exc!r}", file=sys.stderr)
        status = 1
    os._exit(status)
_, status = os.waitpid(child, 0)
sink([record("parent after fork")])  # raises if the child ended the parent's session
sink.close()
sys.exit(1 if status else 0)
"""


@pytest.mark.postgres
@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_forked_child_uses_its_own_connection_and_leaves_the_parents(conninfo, admin, table):
    """A child made by fork connects anew; the parent's session survives the child."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, conninfo, table],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert messages(admin, table) == ["parent before fork", "child", "parent after fork"]


@pytest.mark.postgres
@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_fork_mid_copy_stores_each_batch_once_and_leaves_the_parents_session(
    conninfo, table, tmp_path
):
    """Forked while the parent's COPY is open: each batch stored once, the parent's session kept."""
    outcome = run_fork_script(
        """
import psycopg
from batchlog.sinks import PostgresSink

conninfo, table = ARGS

class HeldSink(PostgresSink):
    def _copy(self, cursor, rows):
        self.backends.append(cursor.connection.info.backend_pid)
        with cursor.copy(self._copy_statement) as copy:
            for row in rows:
                copy.write_row(row)
                hold()  # mid-COPY: the parent's transaction is open on the server

sleeps = []
sink = HeldSink(conninfo, table=table, sleep=sleeps.append)
sink.backends = []

def stored():
    with psycopg.connect(conninfo) as reader:
        return [m for (m,) in reader.execute(f"SELECT message FROM {table} ORDER BY id")]

fork_mid_batch(sink, stored, parent_report=lambda: {"backends": sink.backends, "sleeps": sleeps})
""",
        tmp_path,
        conninfo,
        table,
    )
    assert_each_batch_stored_once(outcome)
    (backend, *others) = outcome["report"]["backends"]
    # One session for both of the parent's batches, and no retry: the child did not end it.
    assert (others, outcome["report"]["sleeps"]) == ([backend], [])
