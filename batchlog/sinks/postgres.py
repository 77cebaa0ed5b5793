"""``PostgresSink``: a PostgreSQL table, one ``COPY`` in one transaction per batch.

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
NUL characters, which PostgreSQL text cannot hold, become U+FFFD.

psycopg 3 is imported when a sink is made, never by ``import batchlog.sinks``
(``pip install 'batchlog[postgres]'``).
"""

from __future__ import annotations

import datetime
import math
import os
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from .._types import AnyRecord
from .._validate import check_bool, check_callable, check_int, check_pattern, check_seconds
from ._base import SinkBase
from ._encode import FIELDS, encode_record, to_json

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["COLUMNS", "PostgresSink"]

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


def _text(value: str) -> str:
    """Return ``value`` as PostgreSQL text can hold it: no NUL, valid UTF-8."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # lone surrogates, e.g. from undecodable file names
            value = value.encode(errors="backslashreplace").decode()
    return value


def _clean_json(value: Any) -> Any:
    """Return ``value`` (JSON-ready) with every string made storable by ``_text``."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping):
        return {_text(str(key)): _clean_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(item) for item in value]
    return value


def _jsonb(extra: Mapping[str, Any]) -> str:
    text = to_json(extra)
    # jsonb rejects \u0000 and text rejects lone surrogates: clean only when needed.
    if "\\u0000" in text or not text.isascii():
        text = to_json(_clean_json(extra))
    return text


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
            stored = _text(value if isinstance(value, str) else to_json(value))
        if stored is None and value is not None:
            extra.setdefault(name, value)  # did not fit its column: keep it as given
        values.append(stored)
    values.append(_jsonb(extra))
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


class PostgresSink(SinkBase):
    """Stores each record as one row of a PostgreSQL table: one ``COPY`` per batch.

    The schema is in this module's docstring: one column per field of the common
    encoding (``timestamp`` as ``timestamptz``, ``extra`` as ``jsonb``, so
    ``extra->>'user'`` works), indexes on ``timestamp`` and ``level_number``.

    The connection is opened on the first batch, so on the writer's worker thread, and the
    table and its indexes are created if missing (under an advisory lock, so processes
    starting together do not race). Each batch is one transaction holding one
    ``COPY table (columns) FROM STDIN``: a batch is stored whole or not at all.

    Lost connections: if the connection fails (``psycopg.OperationalError`` or
    ``InterfaceError``: the server restarted, the backend was terminated, the network
    dropped), the half-copied transaction is gone with it, so the sink reconnects and
    copies the same batch again, up to ``retries`` more times, sleeping ``backoff``,
    then twice that, and so on (at most ``max_backoff``) in between. If every attempt
    fails the call raises, so the writer counts the batch as failed. Only a connection
    lost after ``COMMIT`` was sent but before the server's answer arrived can store a
    batch twice; PostgreSQL cannot tell the client which happened. Other errors (a
    table with different columns, missing privileges) raise at once.

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
        create_table: Create the table and its indexes if missing (needs the privilege);
            False: the table must exist with the columns above.
        connect_timeout: Most seconds to wait for a connection (libpq waits whole
            seconds, at least 2); None: the conninfo's ``connect_timeout``, else 10.
        retries: How many times a batch is copied again after a lost connection.
        backoff: Seconds to sleep before the first retry; doubled for each next one.
        max_backoff: The longest sleep between two attempts, in seconds.
        sleep: Called with the seconds to wait between attempts (tests pass a fake).
        **params: libpq connection parameters; they override those in ``conninfo``.

    Raises:
        ImportError: psycopg 3 is not installed.
        ValueError: ``table`` is not a valid name, a number is out of range, or the
            connection settings are not valid libpq parameters.
        TypeError: ``conninfo`` is not a str, ``create_table`` is not a bool, or
            ``sleep`` is not callable.

    A call raises ``psycopg.OperationalError`` when the batch could not be stored after
    every retry, another ``psycopg.Error`` when the server refused it, and
    ``ValueError`` after ``close``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A ``batchlog.sinks.SinkBase``: ``reopen()``; fork safety mid-batch too.
    """

    __slots__ = (
        "_connection",
        "_conninfo",
        "_copy_statement",
        "_create_statements",
        "_secrets",
        "_shown_parameters",
        "_sleep",
        "_table_ready",
        "backoff",
        "create_table",
        "max_backoff",
        "retries",
        "table",
    )

    def __init__(
        self,
        conninfo: str = "",
        *,
        table: str = "logs",
        create_table: bool = True,
        connect_timeout: float | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        sleep: Callable[[float], object] = time.sleep,
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
        retries = check_int("retries", retries, low=0)
        backoff = check_seconds("backoff", backoff)
        max_backoff = check_seconds("max_backoff", max_backoff)
        connect_timeout = check_seconds(
            "connect_timeout", connect_timeout, low=0.001, allow_none=True
        )
        check_callable("sleep", sleep)
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
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        identifier = sql.Identifier(*parts)
        self._copy_statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            identifier, sql.SQL(", ").join(map(sql.Identifier, FIELDS))
        )
        self._create_statements = _create_statements(parts)
        self._connection: psycopg.Connection[Any] | None = None
        self._table_ready = not self.create_table
        super().__init__()

    def __repr__(self) -> str:
        where = f" {self._shown_parameters}" if self._shown_parameters else ""
        return f"<{type(self).__name__} table={self.table!r}{where}>"

    def __call__(self, batch: list[AnyRecord]) -> None:
        """Store ``batch`` with one ``COPY`` in one transaction, reconnecting if needed.

        Raises:
            psycopg.OperationalError: The connection failed on every attempt; nothing of
                the batch was stored.
            psycopg.Error: The server refused the batch (nothing of it was stored).
            ValueError: The sink is closed.
        """
        rows = [_row(record) for record in batch]  # encode once, before any attempt
        if not rows:
            return
        with self._sink_lock():
            self._check_open()
            self._copy_with_retries(rows)

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

    def _copy_with_retries(self, rows: list[tuple[Any, ...]]) -> None:
        import psycopg

        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                self._sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            try:
                self._copy(self._ready_connection(), rows)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop_connection()  # the transaction died with it: nothing was stored
                if attempt == attempts - 1:
                    msg = (
                        f"{self!r} could not store a batch of {len(rows)} records in "
                        f"{attempts} attempts; last error: {self._redact(str(exc))}"
                    )
                    raise psycopg.OperationalError(msg) from exc
            except BaseException:
                connection = self._connection
                if connection is not None and (
                    connection.closed
                    or connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
                ):
                    self._drop_connection()
                raise
            else:
                return

    def _redact(self, text: str) -> str:
        """Return ``text`` with the password masked (libpq never quotes it; belt and braces)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _ready_connection(self) -> psycopg.Connection[Any]:
        """Return the open connection, connecting (and creating the table) if needed."""
        import psycopg

        connection = self._connection
        if connection is None or connection.closed:
            # autocommit: no transaction lingers between batches; each batch opens its own.
            connection = psycopg.Connection.connect(self._conninfo, autocommit=True)
            self._connection = connection
        if not self._table_ready:
            with connection.transaction(), connection.cursor() as cursor:
                for statement in self._create_statements:
                    cursor.execute(statement)
            self._table_ready = True
        return connection

    def _copy(self, connection: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
        with connection.transaction(), connection.cursor().copy(self._copy_statement) as copy:
            for row in rows:
                copy.write_row(row)

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _create_statements(parts: tuple[str, ...]) -> list[sql.Composed]:
    """Return the statements that create the table and its indexes if missing."""
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
    for field in ("timestamp", "level_number"):
        index = f"{name[: 63 - len(field) - 1]}_{field}"  # PostgreSQL cuts names at 63 bytes
        statements.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(index), table, sql.Identifier(field)
            )
        )
    return statements
