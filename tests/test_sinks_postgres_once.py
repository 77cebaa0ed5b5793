"""PostgresSink: each record stored once, refused ones isolated, timeouts, the table checked.

Against the real PostgreSQL server of the test process (the fixtures in ``conftest.py``);
a lost ``COMMIT`` answer is made by a proxy (``pg_proxy``) between the sink and the server.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from pg_proxy import CommitAnswerDroppingProxy
from pg_server import DATABASE, REQUIRED, SUPERUSER, PostgresServer
from test_sinks_postgres import make_record, messages

if REQUIRED:
    import psycopg
else:
    psycopg = pytest.importorskip("psycopg")

from batchlog import FailedRecordsError
from batchlog.sinks import PostgresSink

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy(postgres_server: PostgresServer) -> Iterator[CommitAnswerDroppingProxy]:
    """A proxy to the server that can lose the answer to a COMMIT; closed at teardown."""
    made = CommitAnswerDroppingProxy(postgres_server.port)
    yield made
    made.close()


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of every ``COPY`` the sinks start (a spy on psycopg)."""
    counts: list[int] = []
    original = PostgresSink._copy

    def spy(sink: PostgresSink, cursor: Any, rows: list[Any]) -> None:
        counts.append(len(rows))
        original(sink, cursor, rows)

    monkeypatch.setattr(PostgresSink, "_copy", spy)
    return counts


def batch_ids(admin: Any, table: str) -> list[uuid.UUID]:
    rows = admin.execute(f"SELECT batch_id FROM {table}_batch_ids").fetchall()  # noqa: S608
    return [batch_id for (batch_id,) in rows]


def forbid(admin: Any, table: str, *poison: str) -> None:
    """Add a CHECK constraint to ``table`` refusing rows whose message is one of ``poison``."""
    listed = ", ".join(f"'{message}'" for message in poison)
    admin.execute(f"ALTER TABLE {table} ADD CONSTRAINT no_poison CHECK (message NOT IN ({listed}))")


# ------------------------------------------------------------------ refused records


def test_a_refused_record_costs_only_itself(make_postgres_sink, admin, table, sleeps):
    """A row the table's CHECK refuses: the others stored once, in order; it alone is named."""
    sink = make_postgres_sink()
    sink([make_record("before")])
    forbid(admin, table, "poison")
    batch = [make_record(f"ok {number}") for number in range(5)]
    poison = make_record("poison")
    batch.insert(2, poison)

    with pytest.raises(FailedRecordsError) as raised:
        sink(batch)

    assert [poison] == raised.value.records
    assert isinstance(raised.value.cause, psycopg.errors.CheckViolation)
    assert raised.value.__cause__ is raised.value.cause
    assert ["before"] + [f"ok {number}" for number in range(5)] == messages(admin, table)
    assert sleeps == []  # a refusal is not a connection problem: no retry


def test_a_value_over_the_column_length_is_isolated(make_postgres_sink, admin, table):
    """A ``varchar(n)`` of the user's table: the too-long record fails, the rest is stored."""
    sink = make_postgres_sink()
    sink([make_record("first")])
    admin.execute(f"ALTER TABLE {table} ALTER COLUMN message TYPE varchar(10)")
    long = make_record("x" * 11)

    with pytest.raises(FailedRecordsError) as raised:
        sink([make_record("short"), long, make_record("also short")])

    assert [long] == raised.value.records
    assert isinstance(raised.value.cause, psycopg.errors.StringDataRightTruncation)
    assert messages(admin, table) == ["first", "short", "also short"]


def test_one_refused_record_costs_a_few_copies(make_postgres_sink, admin, table, copies):
    """The common case is fast: the server names the bad row, so a few COPYs, not one per row."""
    sink = make_postgres_sink()
    sink([make_record("warm-up")])
    forbid(admin, table, "poison")
    copies.clear()
    batch = [make_record(f"ok {number}") for number in range(1000)]
    batch[700] = make_record("poison")

    with pytest.raises(FailedRecordsError):
        sink(batch)

    assert len(copies) <= 5
    assert len(messages(admin, table)) == 1 + 999


@pytest.mark.parametrize("every", [1, 2, 7])
def test_many_refused_records_cost_a_bounded_number_of_copies(
    make_postgres_sink, admin, table, copies, every
):
    """Every ``every``-th record refused: each other one stored once, at most ~2 COPYs a row."""
    sink = make_postgres_sink()
    sink([make_record("warm-up")])
    forbid(admin, table, "poison")
    copies.clear()
    size = 200
    batch = [make_record("poison" if n % every == 0 else f"ok {n}") for n in range(size)]

    with pytest.raises(FailedRecordsError) as raised:
        sink(batch)

    expected_refused = [record for n, record in enumerate(batch) if n % every == 0]
    assert expected_refused == raised.value.records
    assert ["warm-up"] + [f"ok {n}" for n in range(size) if n % every] == messages(admin, table)
    assert len(copies) <= 2 * size + 1
    assert sum(copies) <= size * 20  # rows sent: O(n log n), never O(n^2) (200 * 200)


@pytest.fixture
def no_line_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink finds no row number in COPY errors (as with another ``lc_messages``)."""
    import batchlog.sinks.postgres as postgres_module

    monkeypatch.setattr(postgres_module, "_failed_line", lambda error: None)


@pytest.mark.parametrize("every", [1, 3, 50])
@pytest.mark.usefixtures("no_line_numbers")
def test_without_the_servers_line_number_the_batch_is_bisected(
    make_postgres_sink, admin, table, copies, every
):
    """An error naming no row (another lc_messages language): halves, same outcome, bounded."""
    sink = make_postgres_sink()
    sink([make_record("warm-up")])
    forbid(admin, table, "poison")
    copies.clear()
    size = 100
    batch = [make_record("poison" if n % every == 0 else f"ok {n}") for n in range(size)]

    with pytest.raises(FailedRecordsError) as raised:
        sink(batch)

    assert [record for n, record in enumerate(batch) if n % every == 0] == raised.value.records
    assert ["warm-up"] + [f"ok {n}" for n in range(size) if n % every] == messages(admin, table)
    assert len(copies) <= 2 * size


def test_a_batch_with_no_storable_record_fails_whole(make_postgres_sink, admin, table, make_writer):
    """All records refused: the writer counts them all failed; nothing is stored."""
    sink = make_postgres_sink()
    sink([make_record("warm-up")])
    forbid(admin, table, "poison")
    failures: list[tuple[Exception, list[Any]]] = []
    writer = make_writer(sink, on_error=lambda exc, batch: failures.append((exc, batch)))
    for _ in range(4):
        writer.add(make_record("poison"))

    assert writer.flush(timeout=30)

    assert (writer.metrics.records_failed, writer.metrics.records_processed) == (4, 0)
    assert [len(batch) for _, batch in failures] == [4]
    assert messages(admin, table) == ["warm-up"]


def test_writer_counts_only_the_refused_record_failed(
    make_postgres_sink, admin, table, make_writer
):
    """Through a writer: one failed, the rest processed; on_error gets just the refused one."""
    sink = make_postgres_sink()
    sink([make_record("warm-up")])
    forbid(admin, table, "poison")
    failures: list[tuple[Exception, list[Any]]] = []
    writer = make_writer(sink, on_error=lambda exc, batch: failures.append((exc, batch)))
    records = [make_record("a"), make_record("poison"), make_record("b")]
    for record in records:
        writer.add(record)

    assert writer.flush(timeout=30)

    assert (writer.metrics.records_failed, writer.metrics.records_processed) == (1, 2)
    assert [[records[1]]] == [batch for _, batch in failures]
    assert messages(admin, table) == ["warm-up", "a", "b"]


def test_fallback_dead_letters_only_the_refused_record(make_postgres_sink, admin, table, tmp_path):
    """``FallbackSink`` over the sink writes just the refused record to the dead-letter file."""
    from batchlog.sinks import FallbackSink

    sink = make_postgres_sink()
    sink([make_record("warm-up")])
    forbid(admin, table, "poison")
    dead_letters = tmp_path / "dead.jsonl"
    fallback = FallbackSink(sink, dead_letters)
    try:
        fallback([make_record("a"), make_record("poison"), make_record("b")])
    except FailedRecordsError:
        pass  # whether it re-raises is FallbackSink's business; the file is the point
    finally:
        fallback.close()

    lines = dead_letters.read_text().splitlines()
    assert len(lines) == 1
    assert "poison" in lines[0]
    assert messages(admin, table) == ["warm-up", "a", "b"]


def test_a_batch_the_server_refuses_as_a_whole_stores_nothing(
    make_postgres_sink, admin, table, sleeps
):
    """A statement-level refusal (a trigger raising) fails the batch whole, without retry."""
    sink = make_postgres_sink()
    sink([make_record("before")])
    admin.execute(
        "CREATE FUNCTION refuse_all() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'no logs today'; END $$"
    )
    admin.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH STATEMENT"
        " EXECUTE FUNCTION refuse_all()"
    )
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="no logs today"):
            sink([make_record("ok 1"), make_record("ok 2")])
        admin.execute(f"DROP TRIGGER refuse ON {table}")
        sink([make_record("after")])
    finally:
        admin.execute("DROP FUNCTION refuse_all() CASCADE")

    assert messages(admin, table) == ["before", "after"]
    assert sleeps == []


# ------------------------------------------------------------------ a lost COMMIT answer


def test_commit_answer_lost_stores_the_batch_once(make_postgres_sink, admin, table, proxy, sleeps):
    """The connection is cut after the server committed, before the client heard: stored once."""
    sink = make_postgres_sink(conninfo=proxy.conninfo(DATABASE, SUPERUSER))
    sink([make_record("warm-up")])
    proxy.arm()
    batch = [make_record(f"row {number}") for number in range(50)]

    sink(batch)

    assert proxy.dropped.is_set()
    assert len(sleeps) == 1  # the retry that found the batch stored
    assert ["warm-up"] + [f"row {number}" for number in range(50)] == messages(admin, table)
    assert len(batch_ids(admin, table)) == 2


def test_commit_answer_lost_without_exactly_once_stores_the_batch_twice(
    make_postgres_sink, admin, table, proxy
):
    """The fault the batch id guards against is real: without it the retry stores it again."""
    sink = make_postgres_sink(conninfo=proxy.conninfo(DATABASE, SUPERUSER), exactly_once=False)
    sink([make_record("warm-up")])  # the table's own COMMIT is not the one to lose
    proxy.arm()

    sink([make_record("twice")])

    assert proxy.dropped.is_set()
    assert messages(admin, table) == ["warm-up", "twice", "twice"]


def test_commit_answer_lost_still_names_the_refused_record(make_postgres_sink, admin, table, proxy):
    """The attempt that committed had refused a record: the retry that finds it says so."""
    sink = make_postgres_sink(conninfo=proxy.conninfo(DATABASE, SUPERUSER))
    sink([make_record("warm-up")])
    forbid(admin, table, "poison")
    poison = make_record("poison")
    proxy.arm()

    with pytest.raises(FailedRecordsError) as raised:
        sink([make_record("a"), poison, make_record("b")])

    assert proxy.dropped.is_set()
    assert [poison] == raised.value.records
    assert messages(admin, table) == ["warm-up", "a", "b"]


def test_old_batch_ids_are_pruned_when_the_sink_connects(make_postgres_sink, admin, table):
    """Ids older than a day are deleted on each new connection; recent ones are kept."""
    make_postgres_sink()([make_record("first")])
    old, recent = uuid.uuid4(), uuid.uuid4()
    admin.execute(
        f"INSERT INTO {table}_batch_ids VALUES (%s, now() - interval '2 days'), (%s, now())",  # noqa: S608
        (old, recent),
    )

    make_postgres_sink()([make_record("second")])

    ids = batch_ids(admin, table)
    assert old not in ids
    assert recent in ids
    assert len(ids) == 3  # two batches and the recent id


# ------------------------------------------------------------------ statement timeout


def test_statement_timeout_is_set_on_the_session(make_postgres_sink):
    """``statement_timeout`` (seconds) becomes the session's setting (milliseconds)."""
    sink = make_postgres_sink(statement_timeout=1.5)
    sink([make_record("hello")])

    assert sink._connection.execute("SHOW statement_timeout").fetchone() == ("1500ms",)


#: The statement timeout of the sink that meets a locked table: far longer than any other
#: statement of its batch takes on a busy machine, so only the lock wait can reach it.
LOCKED_TIMEOUT = 3.0


def locked_sink(make_postgres_sink: Callable[..., PostgresSink]) -> PostgresSink:
    """A sink with the short ``statement_timeout``, on a table made by another sink.

    ``create_table=False``: its first batch runs no ``CREATE INDEX``, which would wait for
    the lock too; what it does run besides the ``COPY`` reads only the catalog and the
    batch ids, which the lock does not touch.
    """
    return make_postgres_sink(statement_timeout=LOCKED_TIMEOUT, create_table=False)


def test_locked_table_fails_the_batch_after_the_statement_timeout(
    make_postgres_sink, admin, table, conninfo, sleeps
):
    """A table locked by another session: the batch fails after the timeout, not forever."""
    plain = make_postgres_sink()  # the default timeout (30 s): "before" and "after" never meet it
    plain([make_record("before")])
    sink = locked_sink(make_postgres_sink)
    with psycopg.connect(conninfo) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # held until rollback

        with pytest.raises(psycopg.errors.QueryCanceled, match=r"statement_timeout=3 s"):
            sink([make_record("while locked")])

        locker.rollback()
    plain([make_record("after")])

    assert messages(admin, table) == ["before", "after"]
    assert sleeps == []  # the connection was fine: not retried


def test_locked_table_counts_the_batch_failed_in_the_writer(
    make_postgres_sink, admin, table, conninfo, make_writer
):
    """Through a writer, the timed-out batch is counted failed and the writer goes on."""
    make_postgres_sink()(
        [make_record("before")]
    )  # the default timeout: only the locked batch meets it
    sink = locked_sink(make_postgres_sink)
    errors: list[Exception] = []
    writer = make_writer(sink, on_error=lambda exc, batch: errors.append(exc))
    with psycopg.connect(conninfo) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # held until rollback
        writer.add(make_record("while locked"))
        assert writer.flush(timeout=30)
        locker.rollback()
    writer.add(make_record("after"))  # one row, no lock: far within the timeout
    assert writer.flush(timeout=30)

    assert (writer.metrics.records_failed, writer.metrics.records_processed) == (1, 1)
    assert [psycopg.errors.QueryCanceled] == [type(error) for error in errors]
    assert messages(admin, table) == ["before", "after"]


# ------------------------------------------------------------------ the table checked


def test_table_with_missing_columns_is_named_with_them(make_postgres_sink, admin, table):
    """An existing table lacking columns: a clear error naming it and them, on every batch."""
    admin.execute(f"CREATE TABLE {table} (id bigint, message text, extra jsonb)")
    sink = make_postgres_sink()

    for _ in range(2):  # every batch says the same, not a COPY error
        with pytest.raises(psycopg.ProgrammingError) as raised:
            sink([make_record("lost")])
        text = str(raised.value)
        assert f"table {table} does not match what the sink writes" in text
        assert "missing column(s) timestamp, level, level_number, logger, exception" in text
        assert "Alter it" in text


def test_table_with_a_column_of_the_wrong_type_is_fixed_and_then_used(
    make_postgres_sink, admin, table
):
    """``thread integer`` (too small for thread ids) is named; after ALTER the sink writes."""
    sink = make_postgres_sink()
    sink([make_record("first")])
    admin.execute(f"ALTER TABLE {table} ALTER COLUMN thread TYPE integer USING NULL")
    admin.execute(f"ALTER TABLE {table} ADD COLUMN host text NOT NULL DEFAULT 'x'")
    admin.execute(f"ALTER TABLE {table} ALTER COLUMN host DROP DEFAULT")
    sink.close()
    sink.reopen()

    with pytest.raises(psycopg.ProgrammingError) as raised:
        sink([make_record("refused")])
    text = str(raised.value)
    assert "column thread is integer, where the sink writes bigint" in text
    assert "column host is NOT NULL without a default, and the sink does not write it" in text

    admin.execute(f"ALTER TABLE {table} ALTER COLUMN thread TYPE bigint")
    admin.execute(f"ALTER TABLE {table} ALTER COLUMN host SET DEFAULT 'here'")
    sink([make_record("second")])
    assert messages(admin, table) == ["first", "second"]


def test_wider_column_types_are_accepted(make_postgres_sink, admin, table):
    """A table with text, numeric and json where the sink's schema has narrower types works."""
    columns = ", ".join(
        f'"{name}" {kind}'
        for name, kind in {
            "timestamp": "text",
            "level": "varchar(20)",
            "level_number": "bigint",
            "logger": "text",
            "message": "text",
            "exception": "text",
            "stack": "text",
            "thread": "numeric",
            "thread_name": "text",
            "process": "bigint",
            "process_name": "text",
            "module": "text",
            "function": "text",
            "line": "numeric",
            "path": "text",
            "extra": "json",
        }.items()
    )
    admin.execute(f"CREATE TABLE {table} ({columns})")

    make_postgres_sink()([make_record("fits")])

    assert admin.execute(f"SELECT message FROM {table}").fetchall() == [("fits",)]  # noqa: S608


def test_writer_counts_a_mismatched_table_failed(make_postgres_sink, admin, table, make_writer):
    """The schema error reaches on_error and counts the batch failed."""
    admin.execute(f"CREATE TABLE {table} (message text)")
    errors: list[Exception] = []
    writer = make_writer(make_postgres_sink(), on_error=lambda exc, batch: errors.append(exc))
    writer.add(make_record("lost"))

    assert writer.flush(timeout=30)

    assert writer.metrics.records_failed == 1
    assert [psycopg.ProgrammingError] == [type(error) for error in errors]
    assert "does not match" in str(errors[0])


def test_missing_table_without_create_table_says_what_to_do(make_postgres_sink, table):
    """``create_table=False`` and no table: the error names it and the option."""
    sink = make_postgres_sink(create_table=False)

    with pytest.raises(
        psycopg.ProgrammingError, match=f"table {table} does not exist.*create_table=True"
    ):
        sink([make_record("lost")])


def test_missing_batch_id_table_without_create_table_shows_how_to_make_it(
    make_postgres_sink, admin, table
):
    """The log table made by hand but not the batch ids: the error gives the statement."""
    make_postgres_sink(exactly_once=False)([make_record("first")])
    sink = make_postgres_sink(create_table=False)

    with pytest.raises(psycopg.ProgrammingError) as raised:
        sink([make_record("lost")])
    text = str(raised.value)
    assert f'table "{table}_batch_ids"' in text
    assert "does not exist" in text
    assert f'CREATE TABLE IF NOT EXISTS "{table}_batch_ids"' in text
    assert "exactly_once=False" in text

    admin.execute(text.split("Create it with: ")[1].split("; or pass", maxsplit=1)[0])
    sink([make_record("second")])
    assert messages(admin, table) == ["first", "second"]


def test_exactly_once_false_makes_no_batch_id_table(make_postgres_sink, admin, table):
    """Without ``exactly_once`` the sink neither creates nor needs ``<table>_batch_ids``."""
    make_postgres_sink(exactly_once=False)([make_record("hello")])

    found = admin.execute("SELECT to_regclass(%s)", (f"{table}_batch_ids",)).fetchone()
    assert found == (None,)
    assert messages(admin, table) == ["hello"]


def test_batch_id_table_of_a_63_character_table_is_shortened_and_used(
    make_postgres_sink, admin, table
):
    """The longest table name: ``<table>_batch_ids`` cut to 63 bytes, made, claimed, checked."""
    long_table = (table + "_" + "x" * 63)[:63]
    batch_ids = long_table[: 63 - len("_batch_ids")] + "_batch_ids"
    make_postgres_sink(table=long_table)([make_record("first")])
    make_postgres_sink(table=long_table, create_table=False)([make_record("second")])  # checked too

    assert messages(admin, long_table) == ["first", "second"]
    assert admin.execute(f"SELECT count(*) FROM {batch_ids}").fetchone() == (2,)  # noqa: S608
    indexes = admin.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = %s", (batch_ids,)
    ).fetchall()
    assert (batch_ids[: 63 - len("_stored_at")] + "_stored_at",) in indexes


# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("old", "new"),
    [("retries", "max_attempts"), ("backoff", "backoff_initial"), ("max_backoff", "backoff_max")],
)
def test_renamed_retry_options_say_their_new_name(old, new):
    """The 0.1 names of the retry options raise a TypeError naming the new one."""
    with pytest.raises(TypeError, match=f"{old} was renamed in 0.2.0: use {new}"):
        PostgresSink("host=127.0.0.1", **{old: 1})


def test_exactly_once_must_be_a_bool():
    """``exactly_once`` is checked like ``create_table``."""
    with pytest.raises(TypeError, match="exactly_once"):
        PostgresSink("host=127.0.0.1", exactly_once="yes")


def test_handler_counts_only_the_refused_record_failed(
    make_postgres_sink, make_handler, make_logger, admin, table
):
    """A refused record through BatchingHandler: the others arrive, metrics count one failed."""
    sink = make_postgres_sink()
    sink([make_record("warm-up")])
    forbid(admin, table, "poison")
    handler = make_handler(sink, capacity=3)
    logger = make_logger(handler)
    for message in ("a", "poison", "b"):
        logger.log(logging.INFO, message)
    handler.flush()

    assert messages(admin, table) == ["warm-up", "a", "b"]
    assert (handler.metrics.records_failed, handler.metrics.records_processed) == (1, 2)
