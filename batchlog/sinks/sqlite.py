"""``SQLiteSink``: an SQLite database, one transaction per batch (the embedded default).

The table (``logs`` unless configured) has one column per field of the common encoding
(``batchlog.sinks.FIELDS``) after an ``INTEGER PRIMARY KEY``::

    CREATE TABLE IF NOT EXISTS logs (
        id            INTEGER PRIMARY KEY,   -- insertion order
        timestamp     TEXT,                  -- RFC 3339 UTC, microseconds: sorts as time
        level         TEXT,                  -- "INFO"
        level_number  INTEGER,               -- 20
        logger        TEXT,
        message       TEXT,
        exception     TEXT,                  -- traceback text
        stack         TEXT,
        thread        INTEGER,
        thread_name   TEXT,
        process       INTEGER,
        process_name  TEXT,
        module        TEXT,
        function      TEXT,
        line          INTEGER,
        path          TEXT,
        extra         TEXT NOT NULL DEFAULT '{}'  -- JSON object: use json_extract()
    );
    CREATE INDEX IF NOT EXISTS logs_timestamp ON logs (timestamp);
    CREATE INDEX IF NOT EXISTS logs_level_number ON logs (level_number);

For example ``SELECT timestamp, message FROM logs WHERE level_number >= 40 AND
json_extract(extra, '$.user') = 'ada' ORDER BY timestamp``.

sqlite3 is imported on the first batch, never by ``import batchlog.sinks``.
"""

from __future__ import annotations

import contextlib
import operator
import os
import re
import time
from typing import TYPE_CHECKING, Any

from .._types import AnyRecord
from .._validate import check_choice, check_pattern, check_seconds
from ..errors import FailedRecordsError
from ._base import SinkBase, check_file_path, keep_until_exit
from ._encode import FIELDS, encode_record, json_bytes
from .jsonl import StrPath

if TYPE_CHECKING:
    import sqlite3

__all__ = ["COLUMNS", "DEFAULT_PATH", "SQLiteSink", "create_table_sql", "row_values"]

#: Where ``SQLiteSink`` writes when no path is given.
DEFAULT_PATH = "batchlog.sqlite3"

#: The column declarations, one per field of ``batchlog.sinks.FIELDS``, in order.
COLUMNS: dict[str, str] = {
    "timestamp": "TEXT",
    "level": "TEXT",
    "level_number": "INTEGER",
    "logger": "TEXT",
    "message": "TEXT",
    "exception": "TEXT",
    "stack": "TEXT",
    "thread": "INTEGER",
    "thread_name": "TEXT",
    "process": "INTEGER",
    "process_name": "TEXT",
    "module": "TEXT",
    "function": "TEXT",
    "line": "INTEGER",
    "path": "TEXT",
    "extra": "TEXT NOT NULL DEFAULT '{}'",
}

# A plain identifier only: configuration can never smuggle SQL into a statement.
# SQLite reserves names starting with "sqlite_" (any case) for itself.
_TABLE_NAME = re.compile(r"(?!(?i:sqlite_))[A-Za-z_][A-Za-z0-9_]{0,62}")
_TABLE_NAME_ALLOWED = (
    "a plain SQL identifier (letters, digits and underscores, not starting with a digit "
    "or 'sqlite_', at most 63 characters)"
)
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_INT64 = (-(2**63), 2**63 - 1)
_SQLITE_BUSY = 5  # the primary result code of "database is locked" (sqlite3.SQLITE_BUSY, 3.11+)
_LONGEST_SETUP_PAUSE = 0.05  # seconds between two tries of a locked setup, at most
_IN_MEMORY = frozenset({":memory:", ""})  # databases in this process's memory, not in a file

# Database files this process must not write: it was forked while a connection to one was
# in use, and SQLite keeps its locks' state per process and per file (inherited by children).
_forked_mid_batch: set[str] = set()


def _is_busy(exc: Exception) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another connection holds a lock)."""
    code = getattr(exc, "sqlite_errorcode", None)  # 3.11+; extended codes keep it in the low byte
    if isinstance(code, int):
        return code & 0xFF == _SQLITE_BUSY
    return str(exc).startswith("database is locked")


def _check_table(table: object) -> str:
    return check_pattern("table", table, _TABLE_NAME, allowed=_TABLE_NAME_ALLOWED)


def create_table_sql(table: str = "logs") -> list[str]:
    """Return the statements that create ``table`` and its indexes (if missing).

    Raises:
        ValueError: ``table`` is not a plain identifier.

    .. versionadded:: 0.1.0
    """
    table = _check_table(table)
    columns = ",\n    ".join(f"{name} {declaration}" for name, declaration in COLUMNS.items())
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (\n    id INTEGER PRIMARY KEY,\n    {columns}\n)",
        f"CREATE INDEX IF NOT EXISTS {table}_timestamp ON {table} (timestamp)",
        f"CREATE INDEX IF NOT EXISTS {table}_level_number ON {table} (level_number)",
    ]


#: Errors of one record's values, not of the database: the rest of a batch still goes in.
#: With sqlite3's IntegrityError (a constraint or trigger of the table refused the row) and
#: DataError (a value over SQLite's length limit), added on the first batch (sqlite3 is
#: imported then, not by ``import batchlog.sinks``).
_RECORD_ERRORS: tuple[type[Exception], ...] = (UnicodeEncodeError, OverflowError, ValueError)
_record_errors_found: tuple[type[Exception], ...] | None = None


def _record_errors() -> tuple[type[Exception], ...]:
    global _record_errors_found  # noqa: PLW0603 -- computed once, replaced whole
    found = _record_errors_found
    if found is None:
        import sqlite3

        found = _record_errors_found = (*_RECORD_ERRORS, sqlite3.IntegrityError, sqlite3.DataError)
    return found


def _bindable(value: Any) -> Any:
    """Return ``value`` as SQLite can store it: text, a 64-bit integer, a float or NULL."""
    if value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return int(value) if _INT64[0] <= value <= _INT64[1] else str(value)
    return json_bytes(value).decode("utf-8")  # only a hand-made record holds anything else


_FIELD_VALUES = operator.itemgetter(*FIELDS)  # every field, in column order, in C
_PLAIN_TYPES = frozenset({str, int, float, type(None)})


def row_values(record: AnyRecord) -> tuple[Any, ...]:
    """Return the column values ``SQLiteSink`` stores for ``record``, in ``FIELDS`` order.

    ``extra`` is JSON text. For code that must store exactly what the sink stores (the
    sink benchmark's one-row-at-a-time baseline, say).

    .. versionadded:: 0.2.0
    """
    *fields, extra = _FIELD_VALUES(encode_record(record))
    # The encoding gives plain values (ints of ordinary records fit 64 bits): convert one
    # by one only when something else turns up.
    if not _PLAIN_TYPES.issuperset(map(type, fields)):
        fields = [_bindable(value) for value in fields]
    # Text, not bytes: SQLite would store bytes as a BLOB, which json_extract reads as JSONB.
    return (*fields, json_bytes(extra).decode("utf-8") if extra else "{}")


class SQLiteSink(SinkBase):
    """Stores each record as one row of an SQLite table; one transaction per batch.

    The schema is in this module's docstring: one column per field of the common
    encoding, ``extra`` as JSON text, indexes on ``timestamp`` and ``level_number``.

    The connection is opened on the first batch, so on the writer's worker thread, and the
    table and indexes are created if missing. The database is put in WAL mode, so readers
    never block the writer, with ``synchronous`` (default ``NORMAL``: a committed batch
    survives a crash of the application; ``FULL`` also survives a power loss). Processes
    that open a new database at once wait for each other there, up to ``busy_timeout``. Each
    batch is one ``BEGIN IMMEDIATE`` … ``executemany`` … ``COMMIT``; if the database fails
    the transaction is rolled back and the call raises, so the writer counts the batch as
    failed and no half batch is stored. A record the table refuses on its own (a
    constraint or trigger, a value over SQLite's length limit) is left out: the others are
    committed and the call raises ``batchlog.FailedRecordsError`` naming just it. Text
    holding NUL or a lone surrogate is stored in the shared encoding's form
    (``batchlog.sinks.encode_record``), never refused.

    The writer never runs two batches at once, but ``close()`` (or the interpreter's
    exit) may run on another thread, so the connection is made with
    ``check_same_thread=False`` and guarded by the sink's lock; ``close()`` waits for a
    batch in flight and closes the connection, and after ``reopen()`` the next batch opens
    one again.

    In a child made by ``os.fork()`` the sink opens a connection of its own on its first
    batch (see ``batchlog.sinks.SinkBase``). SQLite keeps its locks' state per process and
    the child inherits the parent's (https://www.sqlite.org/howtocorrupt.html#fork), so:
    forked between two batches, the child closes its copy of the parent's connection,
    which clears that state (the parent's own locks are untouched); forked while the
    parent was writing a batch, the child cannot close it (that would wait forever for
    the parent's thread, or roll back the parent's transaction), and in such a child every
    batch of a sink writing to that file raises ``sqlite3.OperationalError`` saying so: a
    connection there could lose records silently. Make the sink after the fork
    (gunicorn's ``post_fork``, say) to be sure.

    Build it from configuration with plain values:
    ``{"()": "batchlog.sinks.SQLiteSink", "path": "app-logs.sqlite3"}``.

    Args:
        path: The database file (``":memory:"`` works, for tests).
        table: The table to insert into: a plain identifier, at most 63 characters.
        busy_timeout: Seconds to wait for another connection's lock before failing.
        synchronous: SQLite's ``PRAGMA synchronous``: ``"OFF"``, ``"NORMAL"``,
            ``"FULL"`` or ``"EXTRA"`` (any case).

    Raises:
        ValueError: ``table`` is not a plain identifier, ``busy_timeout`` is negative or
            ``synchronous`` names no mode.
        TypeError: ``path`` is not a path.

    A call raises ``sqlite3.Error`` when the database cannot be written, and
    ``ValueError`` after ``close``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A ``batchlog.sinks.SinkBase``: ``reopen()``, fork safety; processes creating a
       database together wait for each other instead of failing "database is locked".
    """

    __slots__ = (
        "_connection",
        "_insert",
        "busy_timeout",
        "path",
        "synchronous",
        "table",
    )

    def __init__(
        self,
        path: StrPath = DEFAULT_PATH,
        *,
        table: str = "logs",
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            msg = f"path must be a str or os.PathLike, not {path!r}"
            raise TypeError(msg)
        self.table = _check_table(table)
        self.busy_timeout = check_seconds("busy_timeout", busy_timeout)
        self.synchronous = check_choice("synchronous", synchronous, _SYNCHRONOUS)
        self.path: str = os.fspath(path)
        if self.path not in _IN_MEMORY:
            check_file_path(self.path)
        columns = ", ".join(FIELDS)
        placeholders = ", ".join("?" * len(FIELDS))
        # The table name passed _check_table: an identifier, never configuration-made SQL.
        self._insert = f"INSERT INTO {self.table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        self._connection: sqlite3.Connection | None = None
        super().__init__()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, table={self.table!r})"

    def __call__(self, batch: list[AnyRecord]) -> None:
        """Insert one row per record of ``batch`` in one transaction.

        Raises:
            sqlite3.Error: The database could not be opened or written; nothing of the
                batch was stored.
            ValueError: The sink is closed.
        """
        rows = [row_values(record) for record in batch]  # encode before taking the write lock
        if not rows:
            return
        import sqlite3

        with self._sink_lock():
            self._check_open()
            connection = self._current_connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                try:
                    connection.executemany(self._insert, rows)
                except _record_errors() as error:
                    if not connection.in_transaction:  # RAISE(ROLLBACK): the batch is gone
                        raise
                    # Start the batch again, row by row: the others are stored and the
                    # records that cannot be (a CHECK or a trigger of the table refuses
                    # them, say) are named.
                    connection.execute("ROLLBACK")
                    connection.execute("BEGIN IMMEDIATE")
                    if isinstance(error, OverflowError):
                        # An integer beyond 64 bits (only a hand-made encoded record has
                        # one): every value converted carefully.
                        rows = [tuple(map(_bindable, row)) for row in rows]
                    failed = self._insert_each(connection, batch, rows)
                else:
                    failed = []
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the first error is the news
                        connection.execute("ROLLBACK")
                raise
        if failed:
            records = [record for record, _ in failed]
            raise FailedRecordsError(records, cause=failed[0][1]) from failed[0][1]

    def _insert_each(
        self, connection: sqlite3.Connection, batch: list[AnyRecord], rows: list[tuple[Any, ...]]
    ) -> list[tuple[AnyRecord, Exception]]:
        """Insert row by row in the open transaction; return the records that failed."""
        failed = []
        for record, row in zip(batch, rows):
            try:
                connection.execute(self._insert, row)
            except _record_errors() as error:
                if not connection.in_transaction:  # RAISE(ROLLBACK): the batch is gone
                    raise
                failed.append((record, error))  # only that statement failed
        return failed

    def _current_connection(self) -> sqlite3.Connection:
        """Return the connection, opening it (and the schema) on first use or after a fork."""
        connection = self._connection
        if connection is not None:
            return connection
        import sqlite3

        if _forked_mid_batch and self._file() in _forked_mid_batch:
            msg = (
                f"{self!r} cannot write in this process: it was forked while the parent's "
                "sink was writing a batch, and the SQLite lock state it inherited could "
                "block or lose records here (see SQLiteSink: make the sink after the fork)"
            )
            raise sqlite3.OperationalError(msg)

        # isolation_level=None: the sink issues BEGIN and COMMIT itself, one per batch.
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, check_same_thread=False, isolation_level=None
        )
        try:
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            self._set_up(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _set_up(self, connection: sqlite3.Connection) -> None:
        """Put the database in WAL mode and create the schema, waiting while it is locked.

        Processes opening a new database at once race here, and SQLite answers "database
        is locked" at once, without waiting ``busy_timeout``, where waiting could deadlock
        (switching to WAL needs the database to itself): so each step is tried again, until
        ``busy_timeout`` has passed. The mode is read first, since setting it (even to what
        it is) takes that lock.
        """
        import sqlite3

        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
                if str(mode).lower() not in {"wal", "memory"}:  # ":memory:" has no WAL
                    connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("BEGIN IMMEDIATE")
                for statement in create_table_sql(self.table):
                    connection.execute(statement)
                connection.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the first error is the news
                        connection.execute("ROLLBACK")
                left = deadline - time.monotonic()
                if not _is_busy(exc) or left <= 0:
                    raise
            else:
                return
            time.sleep(min(pause, left))
            pause = min(pause * 2, _LONGEST_SETUP_PAUSE)

    def _release(self) -> None:
        """Close the connection, if one was opened (``close()`` holds the lock)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    _hold_across_fork = True  # a child forked mid-batch could not write the file safely

    def _forget_inherited(self, *, busy: bool) -> None:
        """In a forked child: let go of the parent's connection; the next batch opens one.

        Idle at the fork, it is closed: that clears the lock state SQLite keeps per process,
        which the child inherited, so the child's own connection takes real locks (kept,
        the parent's last close could delete the WAL under the child's writes). Busy, it
        is kept, untouched, until the child ends: closing would wait for the SQLite mutex
        of the parent's thread, which this child does not have, or roll back the parent's
        open transaction in the WAL index the parent shares.
        """
        connection, self._connection = self._connection, None
        # in_transaction only reads a flag (sqlite3_get_autocommit): no mutex, no I/O.
        if busy or (connection is not None and connection.in_transaction):
            # Busy, the lock may cover a connection still being set up: the file's state
            # is suspect either way, for every sink of this process writing to it.
            file = self._file()
            if file is not None:
                _forked_mid_batch.add(file)
            if connection is not None:
                keep_until_exit(connection)
        elif connection is not None:
            connection.close()

    def _file(self) -> str | None:
        """The database file, as one path whatever the sink was given; None in memory."""
        return None if self.path in _IN_MEMORY else os.path.realpath(self.path)
