r"""``PostgresSink``: a PostgreSQL table, one ``COPY`` in one transaction per batch.

The table (``logs`` unless configured) has one column per field of the common encoding
(``batchlog.sinks.FIELDS``) after an identity column::

    CREATE TABLE IF NOT EXISTS logs (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order
        "timestamp"   timestamptz,
        level         text,           -- "INFO"
        level_number  integer,        -- 20
        logger        text,
        message       text,
        exception     text,           -- traceback text
        stack         text,
        thread        bigint,
        thread_name   text,
        process       integer,
        process_name  text,
        module        text,
        "function"    text,
        line          integer,
        path          text,
        extra         jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS logs_timestamp ON logs ("timestamp");
    CREATE INDEX IF NOT EXISTS logs_level_number ON logs (level_number);

For example ``SELECT "timestamp", message FROM logs WHERE level_number >= 40 AND
extra->>'user' = 'ada' ORDER BY "timestamp"``.

A value that does not fit its column (a timestamp PostgreSQL could not read, a number out
of range) is stored as NULL there and kept as given in ``extra`` under the field's name.
NUL characters and lone surrogates, which PostgreSQL text cannot hold, are stored as the
shared encoding spells them (``\x00``, ``\udcff``), a hand-made encoded record's too
(``batchlog.sinks.encode_record`` makes it storable).

Beside the table, with ``exactly_once`` (the default), ``<table>_batch_ids`` keeps the id
of each stored batch for a day (``BATCH_ID_RETENTION``)::

    CREATE TABLE IF NOT EXISTS logs_batch_ids (
        batch_id   uuid PRIMARY KEY,
        stored_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS logs_batch_ids_stored_at ON logs_batch_ids (stored_at);

psycopg 3 is imported when a sink is made, never by ``import batchlog.sinks``
(``pip install 'batchlog[postgres]'``).
"""

from __future__ import annotations

import datetime
import math
import os
import re
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from .._types import AnyRecord
from .._validate import check_bool, check_callable, check_pattern, check_seconds
from ..errors import FailedRecordsError
from ._base import SinkBase, redact
from ._encode import FIELDS, encode_record, storable_text, to_json
from ._retry import make_retrying

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["BATCH_ID_RETENTION", "COLUMNS", "PostgresSink"]

#: The column types, one per field of ``batchlog.sinks.FIELDS``, in order.
COLUMNS: dict[str, str] = {
    "timestamp": "timestamptz",
    "level": "text",
    "level_number": "integer",
    "logger": "text",
    "message": "text",
    "exception": "text",
    "stack": "text",
    "thread": "bigint",
    "thread_name": "text",
    "process": "integer",
    "process_name": "text",
    "module": "text",
    "function": "text",
    "line": "integer",
    "path": "text",
    "extra": "jsonb NOT NULL DEFAULT '{}'",
}
assert tuple(COLUMNS) == FIELDS, "one column per encoded field, in order"  # noqa: S101

# Lower-case identifiers only (PostgreSQL folds unquoted names to lower case, and the
# sink quotes them): configuration can never smuggle SQL, nor a surprising name, in.
_IDENTIFIER = r"[a-z_][a-z0-9_]{0,62}"
_TABLE_NAME = re.compile(rf"(?:{_IDENTIFIER}\.)?{_IDENTIFIER}")
_TABLE_NAME_ALLOWED = (
    "'name' or 'schema.name', each a lower-case SQL identifier "
    "(a-z, 0-9 and _, not starting with a digit, at most 63 characters)"
)
_INTEGER_RANGES = {"integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
# Connection parameters that are secrets: never in a repr or a message.
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
_SHOWN_PARAMETERS = ("host", "hostaddr", "port", "dbname", "user")
_DEFAULT_CONNECT_TIMEOUT = 10
_INSTALL_HINT = "PostgresSink needs psycopg 3: pip install 'batchlog[postgres]'"


def _import_psycopg() -> None:
    try:
        import psycopg  # noqa: F401 -- imported for the check; methods import it again
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc


def _check_table(table: object) -> tuple[str, ...]:
    """Return ``table`` split into its schema (if any) and name.

    Raises:
        ValueError: ``table`` is not ``name`` or ``schema.name`` of lower-case identifiers.
    """
    checked = check_pattern("table", table, _TABLE_NAME, allowed=_TABLE_NAME_ALLOWED)
    return tuple(checked.split("."))


def _timestamp(value: Any) -> datetime.datetime | None:
    """Return ``value`` (RFC 3339 or ISO 8601 text) as an aware datetime; None if unreadable."""
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str):
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
    else:
        return None
    return moment if moment.tzinfo is not None else moment.astimezone()  # naive: local time


def _row(record: AnyRecord) -> tuple[Any, ...]:
    """Return the column values of ``record``, in the order of ``COLUMNS``."""
    encoded = encode_record(record)
    raw_extra = encoded.get("extra")
    extra: dict[str, Any] = dict(raw_extra) if isinstance(raw_extra, Mapping) else {}
    if raw_extra is not None and not isinstance(raw_extra, Mapping):
        extra["extra"] = raw_extra
    values: list[Any] = []
    for name, column_type in COLUMNS.items():
        if name == "extra":
            continue
        value = encoded.get(name)
        stored: Any
        if value is None:
            stored = None
        elif column_type == "timestamptz":
            stored = _timestamp(value)
        elif column_type in _INTEGER_RANGES:
            low, high = _INTEGER_RANGES[column_type]
            fits = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
            stored = value if fits else None
        else:
            # Text of encode_record is storable already (NUL spelt out, no lone
            # surrogate: the shared form, see encode_record); so is to_json's.
            stored = storable_text(value) if isinstance(value, str) else to_json(value)
        if stored is None and value is not None:
            extra.setdefault(name, value)  # did not fit its column: keep it as given
        values.append(stored)
    values.append(to_json(extra))  # storable JSON: jsonb takes it (no \u0000, valid UTF-8)
    return tuple(values)


def _disown(connection: psycopg.Connection[Any]) -> None:
    """Close a connection inherited through ``os.fork()`` without ending the parent's session.

    The child's copy of the socket is first replaced by ``/dev/null``, so libpq's goodbye
    (which would end the session the parent still uses) goes nowhere.
    """
    import psycopg

    try:
        descriptor = connection.fileno()
    except psycopg.Error:  # already closed: nothing to send
        descriptor = -1
    if descriptor >= 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, descriptor)
        finally:
            os.close(devnull)
    connection.close()


def _connection_error_text(exc: Exception) -> str:
    """Return why libpq refused the connection settings, unless it may quote the password."""
    text = str(exc).strip()
    if text.startswith("invalid connection option"):
        return f": {text}"
    return " (details withheld: they could quote the password)"


#: How long the id of a stored batch is kept (a PostgreSQL interval): far longer than the
#: retries of one batch can last, so a retry always finds the id of its own earlier attempt.
BATCH_ID_RETENTION = "1 day"
_PRUNE_EVERY = 1000  # batches between two prunings of the batch ids (and on each connect)
_BATCH_IDS_SUFFIX = "_batch_ids"

_TEXT_TYPES = frozenset({"text", "character varying", "character"})
# The column types each type of COLUMNS can go into without loss (COPY sends text).
_ACCEPTED_TYPES: dict[str, frozenset[str]] = {
    "timestamptz": frozenset({"timestamp with time zone"}) | _TEXT_TYPES,
    "text": _TEXT_TYPES,
    "integer": frozenset({"integer", "bigint", "numeric"}) | _TEXT_TYPES,
    "bigint": frozenset({"bigint", "numeric"}) | _TEXT_TYPES,
    "jsonb": frozenset({"jsonb", "json"}) | _TEXT_TYPES,
    "uuid": frozenset({"uuid"}),
}
_LOG_COLUMN_TYPES = {field: declaration.split()[0] for field, declaration in COLUMNS.items()}
_BATCH_ID_COLUMN_TYPES = {"batch_id": "uuid", "stored_at": "timestamptz"}
# Per column: its name, its type (a domain's base type), whether an INSERT must give it (NOT
# NULL, no default, not generated), whether an INSERT may not give it (generated).
_COLUMNS_QUERY = """
SELECT a.attname,
       pg_catalog.format_type(coalesce(nullif(t.typbasetype, 0), t.oid), NULL),
       a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '',
       a.attidentity = 'a' OR a.attgenerated <> ''
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
# "COPY logs, line 3: ..." or "COPY logs, line 3, column v: ...": the row PostgreSQL refused.
_COPY_LINE = re.compile(r"^COPY .*?, line (\d+)", re.MULTILINE)
# Options renamed in 0.2.0 to HTTPSink's names: a clear error, not "invalid connection option".
_RENAMED = {
    "retries": "max_attempts (retries + 1: the first attempt counts)",
    "backoff": "backoff_initial",
    "max_backoff": "backoff_max",
}

#: What ``_store`` returns: the refused records, as (index in the batch, the server's error).
_Refusals = list[tuple[int, Exception]]


class _ConnectionLostError(Exception):
    """An attempt lost its connection (the only failure that is retried); wraps the error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _is_connection_lost(exc: BaseException) -> bool:
    return isinstance(exc, _ConnectionLostError)


def _failed_line(error: Exception) -> int | None:
    """Return the line of the ``COPY`` that ``error`` names (1 is the first row), if any.

    The context is in the server's ``lc_messages`` language; in another one, no line is
    found and the caller bisects instead.
    """
    diag = getattr(error, "diag", None)
    context = getattr(diag, "context", None)
    if not isinstance(context, str):
        return None
    lines = _COPY_LINE.findall(context)
    return int(lines[-1]) if lines else None


def _split(part: list[int], line: int | None) -> list[list[int]]:
    """Split a failed part: around the row the server named (if it did), else in halves.

    The rows before the named one passed the server's checks (one ``COPY`` will do); the
    named one is tried alone; the rest, not yet seen, in halves. Every piece is smaller
    than ``part`` (of two rows or more), so the search ends, after at most about two
    ``COPY`` statements per row even when every row is refused.
    """
    if line is None or not 1 <= line <= len(part):
        middle = len(part) // 2
        return [part[:middle], part[middle:]]
    rest = part[line:]
    middle = len(rest) // 2
    return [part[: line - 1], [part[line - 1]], rest[:middle], rest[middle:]]


def _schema_problems(
    connection: psycopg.Connection[Any], table: str, wanted: Mapping[str, str]
) -> list[str] | None:
    """Return what keeps the sink from writing ``wanted`` columns to ``table`` (None: no table).

    ``table`` is the quoted SQL name; ``wanted`` maps each column the sink writes to its type.
    """
    (oid,) = connection.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone() or (None,)
    if oid is None:
        return None
    found = {
        name: (column_type, required, generated)
        for name, column_type, required, generated in connection.execute(_COLUMNS_QUERY, (oid,))
    }
    problems: list[str] = []
    missing = [name for name in wanted if name not in found]
    if missing:
        problems.append("missing column(s) " + ", ".join(missing))
    for name, wanted_type in wanted.items():
        if name not in found:
            continue
        column_type, _, generated = found[name]
        if column_type not in _ACCEPTED_TYPES[wanted_type]:
            problems.append(f"column {name} is {column_type}, where the sink writes {wanted_type}")
        elif generated:
            problems.append(f"column {name} is generated by the database, but the sink writes it")
    problems.extend(
        f"column {name} is NOT NULL without a default, and the sink does not write it"
        for name, (_, required, _) in found.items()
        if required and name not in wanted
    )
    return problems


class PostgresSink(SinkBase):
    """Stores each record as one row of a PostgreSQL table: one ``COPY`` per batch.

    The schema is in this module's docstring: one column per field of the common
    encoding (``timestamp`` as ``timestamptz``, ``extra`` as ``jsonb``, so
    ``extra->>'user'`` works), indexes on ``timestamp`` and ``level_number``.

    The connection is opened on the first batch, so on the writer's worker thread, and the
    table and its indexes are created if missing (under an advisory lock, so processes
    starting together do not race). Then, on every new connection, the table's columns
    are checked: a missing column, one of a type that cannot hold what the sink writes
    (``thread`` as ``integer``, say), a generated column the sink writes, or a ``NOT
    NULL`` column without a default that it does not write fails the batch with a
    ``psycopg.ProgrammingError`` naming the table, each such column and what to do, and
    so does every batch until the table is fixed (no cryptic ``COPY`` error).

    Each batch is one transaction holding one ``COPY table (columns) FROM STDIN``.

    Refused records: if the server refuses some rows (a data or integrity error: a value
    over a ``varchar(n)`` or ``CHECK`` constraint of the table, say), the other records
    are still stored, each once and in order, in one transaction: the batch is copied
    again without them (each part in a savepoint, split where the server's error says the
    bad row is, else in halves), and the call raises ``batchlog.FailedRecordsError``
    naming just the refused records, with the first refusal as its ``cause``. The writer
    counts only those as failed and ``batchlog.sinks.FallbackSink`` dead-letters only
    those. One refused record costs four more ``COPY`` statements (in a batch of 1,000:
    5 in all, sending 2,000 rows); however many are refused, at most about two per
    record, sending ``O(n log n)`` rows.

    Lost connections: if the connection fails (the server restarted, the backend was
    terminated, the network dropped), the half-copied transaction is gone with it, so the
    sink reconnects and copies the same batch again, by the retry options (tenacity, as
    ``HTTPSink``): at most ``max_attempts`` attempts, none starting after
    ``max_retry_time`` seconds, sleeping ``backoff_initial * 2 ** (retry - 1)`` seconds
    plus up to ``backoff_jitter`` (at most ``backoff_max``) in between. If every attempt
    fails the call raises ``psycopg.OperationalError``, so the writer counts the batch as
    failed. Only a lost connection is retried: other errors (a statement timeout, missing
    privileges) raise at once.

    Exactly once (``exactly_once=True``, the default): each batch gets an id (a UUID),
    inserted into ``<table>_batch_ids`` in the batch's transaction. A connection lost
    after ``COMMIT`` was sent leaves the client not knowing whether the batch was stored;
    the retry inserts the id first, which waits for the earlier transaction if it is still
    finishing and finds the id if it committed: then the batch is not copied again (and
    the records that attempt refused are still named). Ids older than
    ``BATCH_ID_RETENTION`` (a day) are deleted on each new connection and every 1,000
    batches. ``exactly_once=False``: no such table; such a batch may be stored twice.

    Statement timeout: ``statement_timeout`` (seconds; default 30) is set for the sink's
    session when it connects, so a batch waiting on a table that another session locked
    fails after that long, nothing of it stored (a ``psycopg.errors.QueryCanceled``
    saying so), instead of hanging the writer.

    Connection settings go in ``conninfo`` (a libpq string or URI), as keyword
    parameters (``host="db", port=5432, dbname="logs", user="app"``: any libpq
    parameter, overriding the string), or both. The password, wherever it is given, is
    never shown in the sink's repr nor in its error messages. Build it from
    configuration with plain values: ``{"()": "batchlog.sinks.PostgresSink",
    "conninfo": "host=127.0.0.1 port=5433 dbname=logs", "table": "app_logs"}``.

    ``close()`` waits for a batch in flight and closes the connection; after ``reopen()``
    the next batch connects again. In a child made by ``os.fork()`` the sink lets go of
    the parent's connection without ending the parent's session (libpq's goodbye goes to
    ``/dev/null``), even mid-batch, and connects anew on its first batch (see
    ``batchlog.sinks.SinkBase``).

    Args:
        conninfo: A libpq connection string or ``postgresql://`` URI; empty: libpq's
            defaults and ``PG*`` environment variables.
        table: The table: ``name`` or ``schema.name`` (the schema must exist), each a
            lower-case identifier of at most 63 characters; always quoted in SQL.
        create_table: Create the table, its indexes and (with ``exactly_once``) the
            batch-id table if missing (needs the privilege); False: they must exist.
        exactly_once: Keep each batch's id in ``<table>_batch_ids`` (same schema), so a
            batch whose ``COMMIT`` answer was lost is not stored again by the retry.
        connect_timeout: Most seconds to wait for a connection (libpq waits whole
            seconds, at least 2); None: the conninfo's ``connect_timeout``, else 10.
        statement_timeout: Most seconds one statement of a batch may take (a lock wait
            included); None: the server's setting.
        max_attempts: Most attempts per batch, the first included (1: no retries).
        max_retry_time: Seconds after which no further attempt starts; None: no limit.
        backoff_initial: Seconds before the first retry (without jitter).
        backoff_max: Most seconds between two attempts.
        backoff_jitter: Most random seconds added to each backoff.
        sleep: Called with the seconds to wait between attempts (tests pass a fake).
        **params: libpq connection parameters; they override those in ``conninfo``.

    Raises:
        ImportError: psycopg 3 is not installed.
        ValueError: ``table`` is not a valid name, a number is out of range, or the
            connection settings are not valid libpq parameters.
        TypeError: ``conninfo`` is not a str, ``create_table`` or ``exactly_once`` is
            not a bool, ``sleep`` is not callable, or a renamed option (``retries``,
            ``backoff``, ``max_backoff``) is given.

    A call raises ``batchlog.FailedRecordsError`` when the server refused some records
    (the others are stored), ``psycopg.OperationalError`` when the batch could not be
    stored after every attempt, ``psycopg.ProgrammingError`` when the table does not
    match, another ``psycopg.Error`` when the server refused the batch, and
    ``ValueError`` after ``close``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A ``batchlog.sinks.SinkBase``: ``reopen()``; fork safety mid-batch too. Refused
       records are isolated; a batch is stored once even when the answer to its
       ``COMMIT`` is lost (``exactly_once``); ``statement_timeout``; the table's columns
       are checked. The retry options are ``HTTPSink``'s: ``retries`` became
       ``max_attempts`` (one more), ``backoff`` ``backoff_initial``, ``max_backoff``
       ``backoff_max``; new are ``max_retry_time`` and ``backoff_jitter``.
    """

    __slots__ = (
        "_batch_ids_create",
        "_batch_ids_name",
        "_batches_since_prune",
        "_claim_statement",
        "_connection",
        "_conninfo",
        "_copy_statement",
        "_create_statements",
        "_prune_statement",
        "_record_errors",
        "_retrying",
        "_schema_checked",
        "_secrets",
        "_shown_parameters",
        "_table_created",
        "_table_name",
        "_timeout_statement",
        "create_table",
        "exactly_once",
        "statement_timeout",
        "table",
    )

    def __init__(
        self,
        conninfo: str = "",
        *,
        table: str = "logs",
        create_table: bool = True,
        exactly_once: bool = True,
        connect_timeout: float | None = None,
        statement_timeout: float | None = 30.0,
        max_attempts: int = 4,
        max_retry_time: float | None = 60.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        backoff_jitter: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        **params: str | int,
    ) -> None:
        _import_psycopg()
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        parts = _check_table(table)
        if not isinstance(conninfo, str):
            msg = f"conninfo must be a libpq connection string, not {type(conninfo).__name__}"
            raise TypeError(msg)
        for old, new in _RENAMED.items():
            if old in params:
                msg = f"PostgresSink's option {old} was renamed in 0.2.0: use {new}"
                raise TypeError(msg)
        connect_timeout = check_seconds(
            "connect_timeout", connect_timeout, low=0.001, allow_none=True
        )
        self.statement_timeout = check_seconds(
            "statement_timeout", statement_timeout, low=0.001, allow_none=True
        )
        check_callable("sleep", sleep)
        self._retrying = make_retrying(
            retryable=_is_connection_lost,
            max_attempts=max_attempts,
            max_retry_time=max_retry_time,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            backoff_jitter=backoff_jitter,
            sleep=sleep,
        )
        try:
            settings = conninfo_to_dict(conninfo, **params)
            if connect_timeout is not None:
                settings["connect_timeout"] = max(1, math.ceil(connect_timeout))
            settings.setdefault("connect_timeout", _DEFAULT_CONNECT_TIMEOUT)
            settings.setdefault("application_name", "batchlog")
            self._conninfo = make_conninfo("", **settings)
        except psycopg.ProgrammingError as exc:
            msg = f"invalid PostgreSQL connection settings{_connection_error_text(exc)}"
            raise ValueError(msg) from None
        self._secrets = tuple(str(settings[key]) for key in _SECRET_PARAMETERS if settings.get(key))
        self._shown_parameters = " ".join(
            f"{key}={settings[key]}"
            for key in _SHOWN_PARAMETERS
            if key in settings and key not in _SECRET_PARAMETERS
        )
        self.table = ".".join(parts)
        self.create_table = check_bool("create_table", create_table)
        self.exactly_once = check_bool("exactly_once", exactly_once)
        # A statement, once per connection: PgBouncer refuses most settings in libpq's `options`.
        self._timeout_statement = (
            None
            if self.statement_timeout is None
            else sql.SQL("SET statement_timeout = {}").format(
                sql.Literal(max(1, round(self.statement_timeout * 1000)))  # milliseconds
            )
        )
        identifier = sql.Identifier(*parts)
        self._table_name = identifier
        self._copy_statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            identifier, sql.SQL(", ").join(map(sql.Identifier, FIELDS))
        )
        batch_ids_parts = _batch_ids_parts(parts)
        batch_ids = sql.Identifier(*batch_ids_parts)
        self._batch_ids_name = batch_ids
        self._claim_statement = sql.SQL(
            "INSERT INTO {} (batch_id) VALUES (%s) ON CONFLICT (batch_id) DO NOTHING"
        ).format(batch_ids)
        self._prune_statement = sql.SQL("DELETE FROM {} WHERE stored_at < now() - {}").format(
            batch_ids, sql.SQL("interval {}").format(sql.Literal(BATCH_ID_RETENTION))
        )
        self._batch_ids_create = _batch_ids_statements(batch_ids_parts)
        tables, indexes = _create_statements(parts)
        if self.exactly_once:
            tables.extend(self._batch_ids_create)
        self._create_statements = (tables, indexes)
        # A record's own failure, not the database's: the rest of the batch still goes in.
        self._record_errors = (psycopg.DataError, psycopg.IntegrityError, ValueError)
        self._connection: psycopg.Connection[Any] | None = None
        self._table_created = not self.create_table
        self._schema_checked = False
        self._batches_since_prune = 0
        super().__init__()

    def __repr__(self) -> str:
        where = f" {self._shown_parameters}" if self._shown_parameters else ""
        return f"<{type(self).__name__} table={self.table!r}{where}>"

    def __call__(self, batch: list[AnyRecord]) -> None:
        """Store ``batch`` with one ``COPY`` in one transaction, reconnecting if needed.

        Raises:
            batchlog.FailedRecordsError: The server refused these records; every other
                record of the batch was stored, once.
            psycopg.OperationalError: The connection failed on every attempt; nothing of
                the batch was stored.
            psycopg.ProgrammingError: The table does not match what the sink writes.
            psycopg.Error: The server refused the batch (nothing of it was stored).
            ValueError: The sink is closed.
        """
        rows = [_row(record) for record in batch]  # encode once, before any attempt
        if not rows:
            return
        with self._sink_lock():
            self._check_open()
            refused = self._store(rows)
        if refused:
            cause = refused[0][1]
            raise FailedRecordsError([batch[index] for index, _ in refused], cause=cause) from cause

    # ------------------------------------------------------------------ internals

    def _release(self) -> None:
        """Close the connection (``close()`` holds the lock)."""
        self._drop_connection()

    def _forget_inherited(self, *, busy: bool) -> None:  # noqa: ARG002 -- disowned either way
        """In a forked child: let go of the parent's connection, leaving its session be.

        Mid-batch too: libpq takes no lock to close, and its goodbye goes to /dev/null.
        """
        connection, self._connection = self._connection, None
        if connection is not None:
            _disown(connection)

    def _store(self, rows: list[tuple[Any, ...]]) -> _Refusals:
        """Store ``rows``, retrying after a lost connection; return the refused rows."""
        import psycopg

        batch_id = uuid.uuid4() if self.exactly_once else None
        attempts = 0
        # The refusals of each attempt that got as far as sending COMMIT, in order: if a
        # retry finds the batch stored, the last of them committed.
        committing: list[_Refusals] = []

        def attempt() -> _Refusals:
            nonlocal attempts
            attempts += 1
            try:
                return self._write(self._ready_connection(), batch_id, rows, committing)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                connection = self._connection
                if connection is None or connection.closed or connection.broken:
                    self._drop_connection()  # the transaction died with it
                    raise _ConnectionLostError(exc) from exc
                self._drop_unless_idle()
                raise
            except BaseException:
                self._drop_unless_idle()
                raise

        try:
            return self._retrying(attempt)
        except _ConnectionLostError as lost:
            msg = (
                f"{self!r} could not store a batch of {len(rows)} records in "
                f"{attempts} attempts; last error: {self._redact(str(lost.error))}"
            )
            raise psycopg.OperationalError(msg) from lost.error
        except psycopg.errors.QueryCanceled as exc:
            if self.statement_timeout is None:
                raise
            msg = (
                f"{self!r}: the server canceled a statement of a batch of {len(rows)} "
                f"records ({self._redact(str(exc).strip())}); with statement_timeout="
                f"{self.statement_timeout:g} s, a table locked by another session is the "
                "usual cause. Nothing of the batch was stored."
            )
            raise psycopg.errors.QueryCanceled(msg) from exc

    def _write(
        self,
        connection: psycopg.Connection[Any],
        batch_id: uuid.UUID | None,
        rows: list[tuple[Any, ...]],
        committing: list[_Refusals],
    ) -> _Refusals:
        """One attempt: claim the batch id and copy ``rows``, in one transaction."""
        try:
            with connection.transaction(), connection.cursor() as cursor:
                if batch_id is not None and not self._claim(cursor, batch_id):
                    return committing[-1] if committing else []  # stored by an earlier attempt
                self._copy(cursor, rows)
                committing.append([])
        except self._record_errors as exc:  # the server (or psycopg) refused a row
            first_error = exc
        else:
            return []
        # That transaction is rolled back: store the rows the server accepts, in a new one.
        with connection.transaction(), connection.cursor() as cursor:
            if batch_id is not None and not self._claim(cursor, batch_id):
                return committing[-1] if committing else []
            refused = self._isolate(cursor, rows, first_error)
            committing.append(refused)
        return refused

    def _claim(self, cursor: psycopg.Cursor[Any], batch_id: uuid.UUID) -> bool:
        """Insert the batch id; False if it is there (the batch is stored).

        If an earlier attempt's transaction holding it is still finishing on the server,
        this waits for its outcome (the primary key's uniqueness check).
        """
        cursor.execute(self._claim_statement, (batch_id,))
        return cursor.rowcount == 1

    def _copy(self, cursor: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        with cursor.copy(self._copy_statement) as copy:
            for row in rows:
                copy.write_row(row)

    def _isolate(
        self, cursor: psycopg.Cursor[Any], rows: list[tuple[Any, ...]], error: Exception
    ) -> _Refusals:
        """Store, in order, every row of ``rows`` the server accepts; return the others.

        ``rows`` as a whole failed with ``error``. Each part is copied in a savepoint; a
        part that fails is split (see ``_split``) until the refused rows stand alone.
        """
        refused: _Refusals = []
        pending: list[tuple[list[int], Exception | None]] = [(list(range(len(rows))), error)]
        while pending:  # depth first, left to right: rows are stored in batch order
            part, failure = pending.pop()
            if failure is None:
                failure = self._copy_part(cursor, [rows[index] for index in part])
                if failure is None:
                    continue
            if len(part) == 1:
                refused.append((part[0], failure))
                continue
            pieces = _split(part, _failed_line(failure))
            pending.extend((piece, None) for piece in reversed(pieces) if piece)
        return refused

    def _copy_part(
        self, cursor: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]
    ) -> Exception | None:
        """Copy ``rows`` in a savepoint; return the error if a row was refused (none stored)."""
        try:
            with cursor.connection.transaction():  # nested: a savepoint
                self._copy(cursor, rows)
        except self._record_errors as exc:
            return exc
        return None

    def _redact(self, text: str) -> str:
        """Return ``text`` with the password masked (libpq never quotes it; belt and braces)."""
        return redact(text, self._secrets)

    def _ready_connection(self) -> psycopg.Connection[Any]:
        """Return the open connection: connected, the tables made and checked, ids pruned."""
        import psycopg

        connection = self._connection
        if connection is None or connection.closed:
            # autocommit: no transaction lingers between batches; each batch opens its own.
            connection = psycopg.Connection.connect(self._conninfo, autocommit=True)
            self._connection = connection
            self._schema_checked = False
            self._batches_since_prune = _PRUNE_EVERY  # prune on each new connection
            if self._timeout_statement is not None:
                connection.execute(self._timeout_statement)
        if not self._table_created:
            tables, indexes = self._create_statements
            with connection.transaction(), connection.cursor() as cursor:
                for statement in tables:
                    cursor.execute(statement)
                self._check_schema(connection)  # before the indexes, which name columns
                for statement in indexes:
                    cursor.execute(statement)
            self._table_created = self._schema_checked = True
        if not self._schema_checked:
            self._check_schema(connection)
            self._schema_checked = True
        if self.exactly_once:
            if self._batches_since_prune >= _PRUNE_EVERY:
                connection.execute(self._prune_statement)
                self._batches_since_prune = 0
            self._batches_since_prune += 1
        return connection

    def _check_schema(self, connection: psycopg.Connection[Any]) -> None:
        """Raise ``psycopg.ProgrammingError`` saying what to do if the tables do not fit."""
        import psycopg

        table = self._table_name.as_string(connection)
        problems = _schema_problems(connection, table, _LOG_COLUMN_TYPES)
        if problems is None:
            msg = (
                f"{self!r}: table {self.table} does not exist; create it with the schema in "
                "the PostgresSink documentation, or pass create_table=True"
            )
            raise psycopg.ProgrammingError(msg)
        if problems:
            msg = (
                f"{self!r}: table {self.table} does not match what the sink writes: "
                f"{'; '.join(problems)}. Alter it to the schema in the PostgresSink "
                "documentation, or give the sink a table of its own (table=...)"
            )
            raise psycopg.ProgrammingError(msg)
        if not self.exactly_once:
            return
        batch_ids = self._batch_ids_name.as_string(connection)
        problems = _schema_problems(connection, batch_ids, _BATCH_ID_COLUMN_TYPES)
        if problems is None or problems:
            create = "; ".join(
                statement.as_string(connection) for statement in self._batch_ids_create
            )
            what = "does not exist" if problems is None else f"does not fit: {'; '.join(problems)}"
            msg = (
                f"{self!r}: table {batch_ids}, which keeps the ids of stored batches "
                f"(exactly_once=True), {what}. Create it with: {create}; or pass "
                "exactly_once=False (a batch whose COMMIT answer is lost may then be stored "
                "twice)"
            )
            raise psycopg.ProgrammingError(msg)

    def _drop_unless_idle(self) -> None:
        """Drop the connection if it is closed or left inside a transaction."""
        import psycopg

        connection = self._connection
        if connection is not None and (
            connection.closed
            or connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            self._drop_connection()

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _batch_ids_parts(parts: tuple[str, ...]) -> tuple[str, ...]:
    """Return the table of batch ids: ``<table>_batch_ids``, in the same schema, split."""
    # PostgreSQL cuts names at 63 bytes: shorten the table's name, never the suffix.
    return (*parts[:-1], parts[-1][: 63 - len(_BATCH_IDS_SUFFIX)] + _BATCH_IDS_SUFFIX)


def _batch_ids_statements(batch_ids: tuple[str, ...]) -> list[sql.Composed]:
    """Return the statements that create the table of batch ids and its index if missing."""
    from psycopg import sql

    table = sql.Identifier(*batch_ids)
    name = batch_ids[-1]
    return [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "batch_id uuid PRIMARY KEY, stored_at timestamptz NOT NULL DEFAULT now())"
        ).format(table),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (stored_at)").format(
            sql.Identifier(f"{name[: 63 - len('_stored_at')]}_stored_at"), table
        ),
    ]


def _create_statements(parts: tuple[str, ...]) -> tuple[list[sql.Composed], list[sql.Composed]]:
    """Return the statements that create the table, then its indexes, if missing."""
    from psycopg import sql

    table = sql.Identifier(*parts)
    name = parts[-1]
    columns = [
        sql.SQL("id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
        *(
            # The types are the constants of COLUMNS above, never configuration.
            sql.SQL("{} {}").format(sql.Identifier(field), sql.SQL(column_type))
            for field, column_type in COLUMNS.items()
        ),
    ]
    statements = [
        # Serialises creators: two processes starting at once would otherwise race.
        sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(sql.Literal(".".join(parts))),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, sql.SQL(", ").join(columns)),
    ]
    indexes = []
    for field in ("timestamp", "level_number"):
        index = f"{name[: 63 - len(field) - 1]}_{field}"  # PostgreSQL cuts names at 63 bytes
        indexes.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(index), table, sql.Identifier(field)
            )
        )
    return statements, indexes
