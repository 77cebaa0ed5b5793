"""``BatchingHandler``: a ``logging.Handler`` that hands records to a sink in batches.

On the caller's thread ``handle`` does the least that keeps the record stable: filters,
and only for a record whose message could still change (mutable arguments, a non-string
message) or that carries a live traceback, a copy with the message merged and the
exception rendered to text. Everything else, formatting included, happens on the writer's
worker thread.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import sys
import uuid
from typing import Any, Callable

from ._report import StderrReporter
from ._sinkspec import resolve_sink
from ._types import Sink
from ._validate import check_seconds, level_number, number_from_config
from .metrics import Metrics
from .overflow import OverflowPolicyLike
from .writer import BatchWriter, unique_name

__all__ = ["DEFAULT_FLUSH_TIMEOUT", "BatchingHandler"]

_HANDLE_RETURNS_RECORD = sys.version_info >= (3, 12)

#: Seconds ``flush()`` and ``close()`` wait for the sink before giving up, by default.
DEFAULT_FLUSH_TIMEOUT = 10.0

# Arguments of these exact types cannot change after the call, so "%s" % arg gives the
# same text on the worker thread as it would have on the caller's: no copy needed.
_STABLE_ARG_TYPES = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        complex,
        decimal.Decimal,
        uuid.UUID,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
    }
)


def _copy_record(record: logging.LogRecord) -> logging.LogRecord:
    """Return a shallow copy of ``record`` (its attributes, not a call to ``__init__``)."""
    cls = type(record)
    copy = cls.__new__(cls)
    copy.__dict__.update(record.__dict__)
    return copy


def _logging_lock_held() -> bool:
    """Whether this thread holds the logging module's lock.

    dictConfig holds it while it closes old handlers; waiting for the sink then could
    deadlock a sink that logs.
    """
    is_owned: Callable[[], bool] | None = getattr(
        getattr(logging, "_lock", None), "_is_owned", None
    )
    return bool(is_owned and is_owned())


class BatchingHandler(logging.Handler):
    """A ``logging.Handler`` that hands records to ``sink`` in batches.

    Args:
        sink: A callable taking ``list[logging.LogRecord]``; or an import string
            (``"pkg.mod:attr"``, ``"pkg.mod.attr"``, ``"ext://pkg.mod.attr"``); or a mapping
            ``{"()": factory, **kwargs}`` called to build it. If it has ``close()``, the
            handler calls it after the last batch.
        capacity: Most records per batch.
        flush_interval: The longest a record waits, in seconds.
        overflow: What to do when the queue is full: ``"block"`` (wait, at most
            ``block_timeout``), ``"drop_newest"`` or ``"drop_oldest"``.
        block_timeout: With ``"block"``, most seconds to wait before dropping the record.
        flush_level: A record at or above this level triggers a flush at once (the
            caller does not wait for it).
        max_queue_size: Most records held; see ``batchlog.BatchWriter``.
        clear_buffers: See ``batchlog.BatchWriter``.
        level: The handler's level.
        name: The writer's name (thread name, reports); default: the handler's class.
        flush_timeout: Most seconds ``flush`` and ``close`` wait for the sink
            (``logging.shutdown()`` calls both at exit); None waits as long as it takes.

    The records the sink receives are stable: ``record.getMessage()`` gives the text as it
    was when logged, and an exception is already text in ``exc_text`` (``exc_info`` is
    None). A record whose arguments could change later, or that carried an exception, was
    copied at emit time; any other is the logged record itself, shared with other
    handlers, so a sink must not modify it.

    Formatted text: give the handler a formatter (``setFormatter``, or dictConfig's
    ``formatter``) and every record the sink receives is a copy with a ``formatted``
    attribute holding the formatter's output (and ``message``, ``asctime`` set by it).
    Formatting runs on the worker thread, never the caller's. Without a formatter nothing
    is formatted, which is the cheapest: use ``record.getMessage()``.

    Records the sink itself logs through this handler are dropped (and counted in
    ``metrics.records_dropped``) so a sink cannot feed itself forever.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        sink: object,
        capacity: int = 100,
        flush_interval: float = 5.0,
        *,
        overflow: OverflowPolicyLike = "block",
        block_timeout: float | None = None,
        flush_level: int | str | None = None,
        max_queue_size: int | None = None,
        clear_buffers: bool = False,
        level: int | str = logging.NOTSET,
        name: str | None = None,
        flush_timeout: float | None = DEFAULT_FLUSH_TIMEOUT,
    ) -> None:
        super().__init__(level_number(level))
        capacity = number_from_config(capacity, int)
        flush_interval = number_from_config(flush_interval, float)
        max_queue_size = number_from_config(max_queue_size, int)
        block_timeout = number_from_config(block_timeout, float)
        flush_timeout = number_from_config(flush_timeout, float)
        self._sink = resolve_sink(sink)
        self._flush_level = (
            None if flush_level is None else level_number(flush_level, what="flush_level")
        )
        self.flush_timeout = check_seconds("flush_timeout", flush_timeout, allow_none=True)
        self._reporter = StderrReporter()
        self._writer: BatchWriter[logging.LogRecord] = BatchWriter(
            capacity,
            flush_interval,
            self._deliver,
            max_queue_size=max_queue_size,
            clear_buffers=clear_buffers,
            on_error=self._on_sink_error,
            on_close=self._close_sink,
            name=name or unique_name(type(self).__name__),
            overflow=overflow,
            block_timeout=block_timeout,
            close_at_exit=False,  # logging.shutdown() closes it, after other atexit hooks log
        )
        self._offer = self._writer.offer

    # ------------------------------------------------------------------ public surface

    @property
    def writer(self) -> BatchWriter[logging.LogRecord]:
        """The ``batchlog.BatchWriter`` behind this handler."""
        return self._writer

    @property
    def metrics(self) -> Metrics:
        """The writer's ``batchlog.Metrics``."""
        return self._writer.metrics

    @property
    def sink(self) -> Sink:
        """The sink batches go to."""
        return self._sink

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self._writer.name!r} ({level}) sink={self._sink!r}>"

    # ------------------------------------------------------------------ caller's thread

    def handle(  # noqa: PLR0912 -- one frame on purpose: this is the caller's whole cost
        self, record: logging.LogRecord, *, _filtered: bool = False
    ) -> Any:
        """Filter ``record`` and hand it to the writer by the overflow policy; never raises.

        This is the caller's whole cost, so it runs in one frame, takes no lock, and uses
        the writer's lock-free fast path inline; the overflow policy is consulted only
        when the queue is full or closed.

        Returns what ``logging.Handler.handle`` returns: whether the record passed the
        filters (on Python 3.12+, the record itself when it did).
        """
        if self.filters and not _filtered:
            result = self.filter(record)
            if not result:
                return result
            if isinstance(result, logging.LogRecord):
                record = result
        offered = False
        try:
            # Merge the message now (a bad format fails here, as in the stdlib), but copy
            # the record only if what the sink would see could still change.
            args = record.args
            msg = record.msg
            if type(msg) is not str or record.exc_info:
                record = self._freeze(record)
            elif args:
                # Immutable arguments need no copy, but the merge must still work now.
                if type(args) is not tuple:  # a mapping of arguments may be mutated later
                    record = self._freeze(record)
                elif len(args) == 1:  # the common case, without a loop
                    if type(args[0]) in _STABLE_ARG_TYPES:
                        msg % args  # a bad format raises here, as it would in the stdlib
                    else:
                        record = self._freeze(record)
                else:
                    for arg in args:
                        if type(arg) not in _STABLE_ARG_TYPES:
                            record = self._freeze(record)
                            break
                    else:
                        msg % args
            offered = True
            # By the overflow policy; a refused record is counted in records_dropped.
            accepted = self._offer(record)
            flush_level = self._flush_level
            if accepted and flush_level is not None and record.levelno >= flush_level:
                self._writer.flush(timeout=0)  # wake the worker; do not wait for the sink
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 -- logging never raises into the caller
            if not offered:
                self._writer.count_drop()  # e.g. a message that cannot be merged
            self.handleError(record)
        return record if _HANDLE_RETURNS_RECORD else True

    def emit(self, record: logging.LogRecord) -> None:
        """Hand ``record`` to the writer by the overflow policy, unfiltered; never raises."""
        self.handle(record, _filtered=True)

    def _freeze(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return a copy with the message merged now and the traceback as text.

        Nothing the caller still holds (arguments, frames) can then change it or be kept
        alive by it.
        """
        copy = _copy_record(record)
        if type(record.msg) is dict and not record.args:
            # structlog's ProcessorFormatter carries the event dict as msg: keep it a dict.
            copy.msg = record.msg.copy()
        else:
            copy.msg = record.getMessage()
            copy.args = None
        if record.exc_info:
            if not record.exc_text:
                formatter = self.formatter or logging.Formatter()
                copy.exc_text = formatter.formatException(record.exc_info)
            copy.exc_info = None
        return copy

    # ------------------------------------------------------------------ worker thread

    def _deliver(self, batch: list[logging.LogRecord]) -> None:
        """Format the batch if a formatter is set (on the worker thread); call the sink."""
        if self.formatter is not None:
            self._sink([self._formatted_copy(record) for record in batch])
            return
        self._sink(batch)  # stable as they are: merged (or copied) at emit

    def _placeholder(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return a copy of an unformattable ``record`` whose message says what it was."""
        copy = _copy_record(record)
        fallback = f"<unformattable record: msg={record.msg!r} args={record.args!r}>"
        copy.msg, copy.args = fallback, None
        copy.message = copy.formatted = fallback
        return copy

    def _formatted_copy(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return a copy of ``record`` carrying ``formatted``; the original is untouched."""
        copy = _copy_record(record)
        try:
            copy.formatted = self.format(copy)  # also sets copy.message, asctime, exc_text
        except Exception:  # noqa: BLE001 -- one bad record must not sink the batch
            self.handleError(record)
            return self._placeholder(record)
        return copy

    def _on_sink_error(self, exc: Exception, batch: list[logging.LogRecord]) -> None:
        if logging.raiseExceptions:  # like handleError: silent when the app asks for that
            self._reporter.report(
                f"{type(self).__name__} {self._writer.name!r}: the sink raised on a batch "
                f"of {len(batch)} records (counted in metrics.records_failed)",
                exc,
            )

    def _close_sink(self) -> None:
        close = getattr(self._sink, "close", None)
        if callable(close):
            close()

    # ------------------------------------------------------------------ flush and close

    def flush(self) -> None:
        """Hand every record emitted so far to the sink and wait (at most ``flush_timeout``).

        Use ``handler.writer.flush(timeout)`` to learn whether it finished in time.
        """
        if _logging_lock_held():
            self._writer.flush(timeout=0)  # start it; waiting could deadlock a logging sink
        else:
            self._writer.flush(self.flush_timeout)

    def close(self) -> None:
        """Deliver every record (waiting at most ``flush_timeout``), close the sink, detach.

        Idempotent. ``logging.shutdown()`` calls it at exit.
        """
        try:
            if _logging_lock_held():
                # Waiting could deadlock a sink that logs. The worker finishes in the
                # background, and batchlog's exit hook waits for it if the process ends
                # first (logging.shutdown() no longer knows this handler).
                self._writer.close_at_exit = True
                self._writer.close(timeout=0)
            else:
                self._writer.close(self.flush_timeout)
        finally:
            super().close()

    def set_name(self, name: str) -> None:
        """Set the handler's name (dictConfig does) and name its writer after it."""
        super().set_name(name)
        if name:
            self._writer.name = name

    # logging.Handler.name is a property bound to the base class's set_name: rebind it.
    name = property(logging.Handler.get_name, set_name)
