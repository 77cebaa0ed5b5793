"""``HandlerSink``: hands each record of a batch to ordinary ``logging.Handler`` objects.

Put it behind a ``batchlog.BatchingHandler`` and any stdlib handler (a
``FileHandler``, a ``SysLogHandler``, an ``SMTPHandler``) is fed in batches from the
writer's worker thread instead of from the threads that log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

from .._sinkspec import build_from_spec
from .._types import AnyRecord
from ._base import SinkBase
from ._encode import LOGRECORD_ATTRIBUTES, encode_record, timestamp_seconds

__all__ = ["HandlerLike", "HandlerSink", "to_log_record"]

#: A handler, or what names or builds one (see ``HandlerSink``).
HandlerLike = Union[logging.Handler, str, Mapping[str, Any]]


def _build_handler(spec: object, position: str) -> logging.Handler:
    """Return the handler that ``spec`` is, names, or describes."""
    what = f"handler {position}"
    obj = build_from_spec(spec, what=what)
    if isinstance(obj, type) and issubclass(obj, logging.Handler):
        obj = obj()  # a handler class named by an import string: its defaults
    if not isinstance(obj, logging.Handler):
        msg = f"{what} must be a logging.Handler (or name or build one), not {obj!r}"
        raise TypeError(msg)
    return obj


def to_log_record(record: AnyRecord) -> logging.LogRecord:
    """Return ``record`` as a LogRecord: itself if it is one, else built from its encoding.

    A structlog event dict (or an encoded record) becomes a record with the encoded
    ``logger`` as ``name`` (``"root"`` if none), ``levelno``/``levelname`` (INFO if
    none), ``msg`` the message (``args`` empty), ``created`` from the timestamp,
    ``exc_text`` and ``stack_info`` from ``exception`` and ``stack``, the call-site fields
    where known (``thread``/``process`` are None otherwise, as with
    ``logging.logThreads = False``), and each ``extra`` field as an attribute, except one
    whose name a LogRecord already uses.

    .. versionadded:: 0.1.0
    """
    if isinstance(record, logging.LogRecord):
        return record
    encoded = encode_record(record)
    level_number = encoded.get("level_number")
    if not isinstance(level_number, int):
        level_number = logging.INFO
    level_name = encoded.get("level") or logging.getLevelName(level_number)
    message = encoded.get("message")
    pathname = encoded.get("path")
    line = encoded.get("line")
    attributes: dict[str, Any] = {
        key: value
        for key, value in (encoded.get("extra") or {}).items()
        if key not in LOGRECORD_ATTRIBUTES
    }
    attributes.update(
        name=encoded.get("logger") or "root",
        levelno=level_number,
        levelname=level_name,
        msg="" if message is None else message,
        args=(),
        exc_info=None,
        exc_text=encoded.get("exception"),
        stack_info=encoded.get("stack"),
        thread=encoded.get("thread"),
        threadName=encoded.get("thread_name"),
        process=encoded.get("process"),
        processName=encoded.get("process_name"),
        funcName=encoded.get("function"),
        lineno=line if isinstance(line, int) else 0,
    )
    if pathname:
        filename = os.path.basename(pathname)
        attributes.update(
            pathname=pathname, filename=filename, module=os.path.splitext(filename)[0]
        )
    if encoded.get("module"):
        attributes["module"] = encoded["module"]
    log_record = logging.makeLogRecord(attributes)
    created = timestamp_seconds(encoded.get("timestamp"))
    if created is not None:
        # Shift relativeCreated with created, without reading logging's private start time.
        log_record.relativeCreated -= (log_record.created - created) * 1000.0
        log_record.created = created
        log_record.msecs = (created - int(created)) * 1000.0
    return log_record


class HandlerSink(SinkBase):
    """Hands each record of a batch to ordinary ``logging.Handler`` objects.

    For each record, in order, every handler whose level the record meets gets
    ``handler.handle(record)`` (so its filters, lock, formatter and ``handleError`` work
    as usual); after the batch each handler is flushed once. structlog event dicts (and
    encoded records) are turned into LogRecords first (see ``to_log_record``).

    Records from a ``batchlog.BatchingHandler`` are shared with the logger's other
    handlers; ordinary handlers do not modify records, so that is safe.

    If a handler raises (stdlib handlers report their own errors through
    ``handleError`` instead), the other handlers still get the batch, and the call
    raises the first error afterwards, so the writer counts the batch as failed.

    ``close()`` closes every handler (after a batch in flight); after ``reopen()`` the
    sink hands records to the same handlers again, which reopen what they need as
    ``logging.FileHandler`` does. In a child made by ``os.fork()`` the sink makes its own
    lock (see ``batchlog.sinks.SinkBase``); the handlers are the child's copies, whose
    locks ``logging`` re-makes in the child itself.

    In configuration, handlers can be given by import string (``"pkg.mod:handler"``,
    ``"ext://pkg.mod.handler"``; a Handler class is called with no arguments) or as a
    mapping ``{"()": "logging.FileHandler", "filename": "app.log"}``, with the
    ``targets`` keyword::

        {"()": "batchlog.sinks.HandlerSink",
         "targets": [{"()": "logging.StreamHandler", "stream": "ext://sys.stdout"}]}

    Args:
        *handlers: The handlers, or import strings or mappings that name or build them.
        targets: More handlers, for configuration (which passes keywords only).

    Raises:
        ValueError: An import string does not import, or a mapping has no ``"()"``.
        TypeError: Something given is not, and does not build, a ``logging.Handler``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A ``batchlog.sinks.SinkBase``: ``reopen()``, fork safety.
    """

    __slots__ = ("handlers",)

    def __init__(self, *handlers: HandlerLike, targets: Sequence[HandlerLike] = ()) -> None:
        if isinstance(targets, (str, Mapping)):
            targets = [targets]
        # Indexing (not iterating) lets dictConfig's ConvertingList resolve "ext://" items.
        given = [*handlers, *(targets[index] for index in range(len(targets)))]
        self.handlers: tuple[logging.Handler, ...] = tuple(
            _build_handler(spec, f"#{number}") for number, spec in enumerate(given, 1)
        )
        super().__init__()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.handlers))})"

    def __call__(self, batch: list[AnyRecord]) -> None:
        """Hand every record of ``batch`` to every handler it meets the level of; flush each.

        Raises:
            Exception: The first exception a handler raised (after all were served).
            ValueError: The sink is closed.
        """
        with self._sink_lock():
            self._check_open()
            handlers = self.handlers
            failures: list[Exception] = []
            for record in batch:
                log_record = to_log_record(record)
                level = log_record.levelno
                for handler in handlers:
                    if level < handler.level:
                        continue  # as Logger.callHandlers: handle() itself ignores the level
                    try:
                        handler.handle(log_record)
                    except Exception as exc:  # noqa: BLE001 -- one handler must not starve the rest
                        failures.append(exc)
            for handler in handlers:
                try:
                    handler.flush()
                except Exception as exc:  # noqa: BLE001 -- flush the others all the same
                    failures.append(exc)
        if failures:
            raise failures[0]

    def close(self) -> None:
        """Close every handler (each even if another fails). Idempotent.

        Raises:
            Exception: The first exception a handler's ``close()`` raised.
        """
        super().close()

    def _release(self) -> None:
        """Close every handler, each even if another fails (``close()`` holds the lock)."""
        failures: list[Exception] = []
        for handler in self.handlers:
            try:
                handler.close()
            except Exception as exc:  # noqa: BLE001 -- close the others all the same
                failures.append(exc)
        if failures:
            raise failures[0]
