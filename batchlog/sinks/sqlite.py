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
import threading
from typing import TYPE_CHECKING, Any

from .._types import AnyRecord
from .._validate import check_choice, check_pattern, check_seconds
from ._encode import FIELDS, encode_record, to_json
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


def _bindable(value: Any) -> Any:
    """Return ``value`` as SQLite can store it: text, a 64-bit integer, a float or NULL."""
    if value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return int(value) if _INT64[0] <= value <= _INT64[1] else str(value)
    return to_json(value)  # only a hand-made "encoded" record holds anything else


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
    return (*fields, to_json(extra) if extra else "{}")


class SQLiteSink:
    """Stores each record as one row of an SQLite table; one transaction per batch.

    The schema is in this module's docstring: one column per field of the common
    encoding, ``extra`` as JSON text, indexes on ``timestamp`` and ``level_number``.

    The connection is opened on the first batch, so on the writer's worker thread, and the
    table and indexes are created if missing. The database is put in WAL mode, so readers
    never block the writer, with ``synchronous`` (default ``NORMAL``: a committed batch
    survives a crash of the application; ``FULL`` also survives a power loss). Each
    batch is one ``BEGIN IMMEDIATE`` … ``executemany`` … ``COMMIT``; if anything fails the
    transaction is rolled back and the call raises, so the writer counts the batch as
    failed and no half batch is stored.

    The writer never runs two batches at once, but ``close()`` (or the interpreter's
    exit) may run on another thread, so the connection is made with
    ``check_same_thread=False`` and guarded by a lock. In a child made by ``os.fork()``
    the sink opens a connection of its own.

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
    """

    __slots__ = (
        "_closed",
        "_connection",
        "_insert",
        "_lock",
        "_pid",
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
        columns = ", ".join(FIELDS)
        placeholders = ", ".join("?" * len(FIELDS))
        # The table name passed _check_table: an identifier, never configuration-made SQL.
        self._insert = f"INSERT INTO {self.table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._closed = False
        self._lock = threading.Lock()

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

        with self._lock:
            if self._closed:
                msg = f"{self!r} is closed"
                raise ValueError(msg)
            connection = self._current_connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                try:
                    connection.executemany(self._insert, rows)
                except OverflowError:
                    # An integer beyond 64 bits (only a hand-made encoded record has one):
                    # start the batch again with every value converted carefully.
                    connection.execute("ROLLBACK")
                    connection.execute("BEGIN IMMEDIATE")
                    careful = [tuple(map(_bindable, row)) for row in rows]
                    connection.executemany(self._insert, careful)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the first error is the news
                        connection.execute("ROLLBACK")
                raise

    def _current_connection(self) -> sqlite3.Connection:
        """Return the connection, opening it (and the schema) on first use or after a fork."""
        connection = self._connection
        pid = os.getpid()
        if connection is not None and self._pid == pid:
            return connection
        import sqlite3

        # isolation_level=None: the sink issues BEGIN and COMMIT itself, one per batch.
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, check_same_thread=False, isolation_level=None
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute("BEGIN IMMEDIATE")
            for statement in create_table_sql(self.table):
                connection.execute(statement)
            connection.execute("COMMIT")
        except BaseException:
            connection.close()
            raise
        # A connection inherited over fork belongs to the parent: leave it alone.
        self._connection, self._pid = connection, pid
        return connection

    def close(self) -> None:
        """Close the connection (if it was opened). Idempotent; later batches raise."""
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
            mine = self._pid == os.getpid()
        if connection is not None and mine:
            connection.close()
