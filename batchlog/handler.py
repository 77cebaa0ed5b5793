"""``BatchingHandler``: a ``logging.Handler`` that hands records to a sink in batches.

On the caller's thread ``handle`` does the least that keeps the record stable: filters,
and only for a record whose message could still change (mutable arguments, a non-string
message) or that carries an exception, a copy with the message merged and the exception
captured (its chain and frame positions, no frame). A format not yet known to merge with
any stable argument is merged once there, so a bad one is reported at the call site.
Everything else, rendering exceptions and formatting included, happens on the writer's
worker thread, whose callbacks hold the handler only weakly.
"""

from __future__ import annotations

import contextvars
import datetime
import decimal
import functools
import linecache
import logging
import operator
import os
import re
import sys
import threading
import traceback
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Callable, Optional

from ._context import OTEL_TRACE_MODULE, add_missing, trace_fields
from ._lifecycle import deliver_on_sigterm as _deliver_on_sigterm
from ._report import StderrReporter
from ._sinkloop import discard_awaitable
from ._sinkspec import close_sink, resolve_sink
from ._sync import new_lock
from ._types import Sink
from ._validate import (
    bool_from_config,
    check_bool,
    check_seconds,
    level_number,
    number_from_config,
)
from .metrics import Metrics
from .overflow import OverflowPolicyLike
from .writer import BatchWriter, unique_name

__all__ = ["DEFAULT_FLUSH_TIMEOUT", "BatchingHandler"]

_HANDLE_RETURNS_RECORD = sys.version_info >= (3, 12)

_MODULES = sys.modules  # read at every emit: is OpenTelemetry in use?

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


#: Formats proven to merge with any one stable argument: the caller skips the merge.
_ONE_ARG_FORMATS: set[str] = set()
#: For each format looked at: how many stable arguments it merges with whatever their
#: values, or -1 when the merge must be tried (a conversion that can fail, like ``%d``).
_ARG_COUNTS: dict[str, int] = {}
_MAX_LEARNED_FORMATS = 4096  # messages built at run time must not grow it without bound
# After a successful merge, every "%" starts a well-formed conversion; this finds its type.
_CONVERSION = re.compile(r"%[-#0 +]*\d*(?:\.\d*)?[hlL]?(.)", re.DOTALL)
_ANY_ARG_CONVERSIONS = frozenset("sra%")  # str(), repr(), ascii() of a stable value never fail


def _stable_argument_count(msg: str) -> int:
    """How many stable arguments ``msg`` merges with, whatever their values; -1 if unsure.

    Only ``%s``, ``%r`` and ``%a`` (with flags, width, precision) and ``%%`` qualify:
    ``%d`` fails for some values, ``%(key)s`` and ``*`` need other arguments.
    """
    if "%(" in msg or "*" in msg:
        return -1
    conversions = _CONVERSION.findall(msg)
    if not _ANY_ARG_CONVERSIONS.issuperset(conversions):
        return -1
    return len(conversions) - conversions.count("%")


def _learn_format(msg: str, arg_count: int) -> None:
    """Remember whether ``msg`` always merges with ``arg_count`` stable arguments."""
    if len(_ARG_COUNTS) >= _MAX_LEARNED_FORMATS:
        return
    count = _stable_argument_count(msg)
    _ARG_COUNTS[msg] = count
    if count == 1 == arg_count:
        _ONE_ARG_FORMATS.add(msg)


# traceback.print_exception (so Formatter.formatException) builds with compact=True (3.10+).
_EXCEPTION_OPTIONS: dict[str, Any] = {"compact": True} if sys.version_info >= (3, 10) else {}
_NO_GLOBALS: dict[str, Any] = {}  # linecache.lazycache was already asked on the caller


class _Frame:
    """What ``traceback`` reads of a frame: its code (no locals, no globals)."""

    __slots__ = ("f_code", "f_globals")

    def __init__(self, code: Any) -> None:
        self.f_code = code
        self.f_globals = _NO_GLOBALS


class _Traceback:
    """What ``traceback`` reads of a traceback entry, holding no frame."""

    __slots__ = ("tb_frame", "tb_lasti", "tb_lineno", "tb_next")

    def __init__(self, code: Any, lineno: int, lasti: int, tb_next: _Traceback | None) -> None:
        self.tb_frame = _Frame(code)
        self.tb_lineno = lineno
        self.tb_lasti = lasti
        self.tb_next = tb_next


_FrameSpot = tuple[Any, int, int]  # (code object, line number, last instruction) of one entry


def _spots(tb: Any) -> list[_FrameSpot]:
    """Where each entry of the traceback ``tb`` stood, keeping code objects, never frames."""
    spots = []
    lazycache = linecache.lazycache
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        lazycache(code.co_filename, frame.f_globals)  # as traceback does: a loader's source
        spots.append((code, tb.tb_lineno, tb.tb_lasti))
        tb = tb.tb_next
    return spots


class _CapturedException:
    """An exception taken on the caller's thread, its text rendered later on the worker.

    The caller pays for what cannot wait: the exception's chain (``__cause__``,
    ``__context__``, groups) as a ``traceback.TracebackException`` without stack, and for
    each stack the code objects and positions of its entries. No frame, local or exception
    object is kept. ``render`` builds the stacks and gives exactly what
    ``logging.Formatter().formatException`` would have; source lines come from
    ``linecache`` then, as they do whenever a traceback is printed.
    """

    __slots__ = ("_exception", "_limit", "_stacks")

    def __init__(self, exc_info: Any) -> None:
        _, value, tb = exc_info
        limit = getattr(sys, "tracebacklimit", None)  # read now, as formatting now would
        self._limit = sys.maxsize if limit is None else max(limit, 0)
        # limit=0: the chain now, no stack walked; the stacks are the expensive part.
        self._exception = traceback.TracebackException(
            type(value), value, tb, limit=0, lookup_lines=False, **_EXCEPTION_OPTIONS
        )
        self._stacks: list[tuple[traceback.TracebackException, list[_FrameSpot]]] = []
        pending: list[tuple[traceback.TracebackException, Any, Any]] = [
            (self._exception, value, tb)
        ]
        while pending:  # the same nodes TracebackException made, with their exceptions
            node, exc, exc_tb = pending.pop()
            self._stacks.append((node, _spots(exc_tb)))
            if exc is None:
                continue
            cause = getattr(node, "__cause__", None)
            if cause is not None:
                pending.append((cause, exc.__cause__, exc.__cause__.__traceback__))
            context = getattr(node, "__context__", None)
            if context is not None:
                pending.append((context, exc.__context__, exc.__context__.__traceback__))
            members = getattr(node, "exceptions", None)
            if members:
                pending.extend(
                    (member, error, error.__traceback__)
                    for member, error in zip(members, exc.exceptions)
                )

    def render(self) -> str:
        """Return the text ``logging.Formatter().formatException`` gives for the exception."""
        for node, spots in self._stacks:
            chain = None
            for code, lineno, lasti in reversed(spots):
                chain = _Traceback(code, lineno, lasti, chain)
            # The public constructor walks our stand-in traceback as it would a real one.
            node.stack = _stack_walker(
                type(None), None, chain, limit=self._limit, lookup_lines=False
            ).stack
        text = "".join(self._exception.format(chain=True))
        return text[:-1] if text[-1:] == "\n" else text


_exc_text = operator.attrgetter("exc_text")
# Typed loosely: it reads tb_frame, tb_lineno, tb_lasti and tb_next of any object.
_stack_walker: Any = traceback.TracebackException


def _render_exceptions(batch: list[logging.LogRecord]) -> None:
    """Replace each captured exception in ``batch`` by its text (the records are copies)."""
    try:
        if not any(map(_exc_text, batch)):  # the common case, in C
            return
    except AttributeError:  # a record made some other way: look at each
        pass
    for record in batch:
        captured = getattr(record, "exc_text", None)
        if type(captured) is _CapturedException:
            try:
                record.exc_text = captured.render()
            except Exception as exc:  # noqa: BLE001 -- the record is delivered regardless
                record.exc_text = f"<exception could not be rendered: {exc!r}>"


def _no_sink(batch: list[logging.LogRecord]) -> None:
    """Stands for the sink while the handler is being built."""


def _uses_default_format_exception(formatter: logging.Formatter) -> bool:
    """Whether ``formatter`` renders exceptions as ``logging.Formatter`` does."""
    return getattr(type(formatter), "formatException", None) is logging.Formatter.formatException


class _Delivery:
    """The writer's ``flush_fn``: renders, formats (if a formatter is set), calls the sink.

    It holds the handler weakly, so the worker thread does not keep a handler nobody
    references alive; the formatter is mirrored here for batches left after that.
    """

    __slots__ = ("formatter", "handler", "owns_sink", "sink", "sink_lock")

    def __init__(self, handler: BatchingHandler, sink: Sink) -> None:
        self.handler = weakref.ref(handler)
        self.sink = sink
        self.formatter: logging.Formatter | None = None
        #: False once a reopened writer took the sink object over: this one must not close it.
        self.owns_sink = True
        self.sink_lock: Any = None  # the handler's, shared by all its writers' deliveries

    def close_sink(self) -> object:
        """The writer's ``on_close``: close the sink, unless a newer writer took it over."""
        with self.sink_lock:
            if self.owns_sink:
                return close_sink(self.sink)
        return None

    def __call__(self, batch: list[Any]) -> object:
        records: list[logging.LogRecord] = batch
        contexts: list[contextvars.Context | None] | None = None
        for item in batch:
            if type(item) is tuple:  # some carry the caller's context (see _Carried)
                records, contexts = _unpack(batch)
                break
        _render_exceptions(records)
        formatter = self.formatter
        # What the sink returns goes back to the writer, which awaits an awaitable.
        if formatter is None:
            return self.sink(records)  # stable as they are: merged (or copied) at emit
        if contexts is None:
            return self.sink([self._formatted_copy(record, formatter) for record in records])
        return self.sink(
            [
                self._formatted_copy(record, formatter, context)
                for record, context in zip(records, contexts)
            ]
        )

    def _formatted_copy(
        self,
        record: logging.LogRecord,
        formatter: logging.Formatter,
        context: contextvars.Context | None = None,
    ) -> logging.LogRecord:
        """Return a copy of ``record`` carrying ``formatted``; the original is untouched.

        With ``context`` (the caller's contextvars, captured at emit) it is formatted
        inside it.
        """
        copy = _copy_record(record)
        handler = self.handler()
        format_record = formatter.format if handler is None else handler.format
        try:
            # Also sets copy.message, asctime (and exc_text, when not rendered yet).
            if context is None:
                copy.formatted = format_record(copy)
            else:
                copy.formatted = context.run(format_record, copy)
        except Exception:  # noqa: BLE001 -- one bad record must not sink the batch
            if handler is not None:
                handler.handleError(record)
            return _placeholder(copy)
        return copy


class _SinkFailureReport:
    """The writer's ``on_error``: reports a failed batch like ``handleError`` would."""

    __slots__ = ("name", "owner", "reporter")

    def __init__(self, owner: str, name: str) -> None:
        self.owner = owner
        self.name = name
        self.reporter = StderrReporter()

    def __call__(self, exc: Exception, batch: list[logging.LogRecord]) -> None:
        if logging.raiseExceptions:  # like handleError: silent when the app asks for that
            self.reporter.report(
                f"{self.owner} {self.name!r}: the sink raised on a batch "
                f"of {len(batch)} records (counted in metrics.records_failed)",
                exc,
            )


#: A record offered with what of the caller's context must travel with it: the span's
#: fields (None: none) and the contextvars for the formatter (None: none). A tuple costs
#: the caller far less than a copy of the record; the worker makes the copy.
_Carried = tuple[logging.LogRecord, Optional[dict[str, Any]], Optional[contextvars.Context]]


def _unpack(
    batch: list[Any],
) -> tuple[list[logging.LogRecord], list[contextvars.Context | None]]:
    """The records of ``batch`` (span fields set, on copies) and each one's contextvars."""
    records: list[logging.LogRecord] = []
    contexts: list[contextvars.Context | None] = []
    for item in batch:
        if type(item) is not tuple:
            records.append(item)
            contexts.append(None)
            continue
        record, fields, context = item
        if fields is not None:
            record = _copy_record(record)  # the caller's record is other handlers' too
            add_missing(record.__dict__, fields)
        records.append(record)
        contexts.append(context)
    return records, contexts


def _placeholder(record: logging.LogRecord) -> logging.LogRecord:
    """Return a copy of an unformattable ``record`` whose message says what it was."""
    copy = _copy_record(record)
    fallback = f"<unformattable record: msg={record.msg!r} args={record.args!r}>"
    copy.msg, copy.args = fallback, None
    copy.message = copy.formatted = fallback
    return copy


def _copy_record(record: logging.LogRecord) -> logging.LogRecord:
    """Return a shallow copy of ``record`` (its attributes, not a call to ``__init__``)."""
    cls = type(record)
    copy = cls.__new__(cls)
    copy.__dict__.update(record.__dict__)
    return copy


_reopening = threading.local()  # .now: this thread is building a reopened handler's sink
_for_fork: weakref.WeakSet[BatchingHandler] = weakref.WeakSet()
_for_fork_lock = threading.Lock()


def _remake_after_fork(handler: BatchingHandler) -> None:
    """Make the handler's own lock anew in a forked child (one held at the fork is lost)."""
    with _for_fork_lock:
        if not _for_fork and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_remake_locks_in_child)
        _for_fork.add(handler)


def _remake_locks_in_child() -> None:
    for handler in list(_for_fork):
        handler._reopen_lock = new_lock()  # noqa: SLF001 -- its own module's class
        handler._sink_lock = new_lock()  # noqa: SLF001 -- likewise
        handler._delivery.sink_lock = handler._sink_lock  # noqa: SLF001 -- the current writer's


def _known_to_logging(handler: logging.Handler) -> bool:
    """Whether ``logging.shutdown()`` at exit will reach ``handler``."""
    refs = getattr(logging, "_handlerList", None)
    if refs is None:
        return False
    with logging._lock:  # type: ignore[attr-defined]  # noqa: SLF001 -- what guards the list
        return any(ref() is handler for ref in refs)


def _known_to_logging_again(handler: logging.Handler) -> bool:
    """After dictConfig forgot it, let ``logging.shutdown()`` at exit close ``handler`` again.

    The reopened handler then gets what any handler gets at exit: the other exit hooks
    log through it first. Returns whether logging knows it now.
    """
    if _known_to_logging(handler):
        return True
    add = getattr(logging, "_addHandlerRef", None)
    if not callable(add):
        return False
    add(handler)
    return True


def _offer_reopening(handler_ref: weakref.ref[BatchingHandler], record: Any) -> bool:
    """A closed handler's ``_offer``: reopen it, then offer ``record``."""
    handler = handler_ref()
    return handler is not None and handler._reopen_and_offer(record)  # noqa: SLF001 -- its own


def _added(earlier: Metrics | None, later: Metrics) -> Metrics:
    """The counts of ``earlier`` writers and a ``later`` one, as one writer's would be."""
    if earlier is None:
        return later
    flush_count = earlier.flush_count + later.flush_count
    total = earlier.total_flush_time + later.total_flush_time
    return Metrics(
        records_added=earlier.records_added + later.records_added,
        records_dropped=earlier.records_dropped + later.records_dropped,
        records_evicted=earlier.records_evicted + later.records_evicted,
        records_processed=earlier.records_processed + later.records_processed,
        records_failed=earlier.records_failed + later.records_failed,
        records_in_buffer=earlier.records_in_buffer + later.records_in_buffer,
        flush_count=flush_count,
        flush_errors=earlier.flush_errors + later.flush_errors,
        last_flush_duration=(
            later.last_flush_duration if later.flush_count else earlier.last_flush_duration
        ),
        avg_flush_duration=total / flush_count if flush_count else 0.0,
        max_flush_duration=max(earlier.max_flush_duration, later.max_flush_duration),
        total_flush_time=total,
        reopened=0,
    )


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
            While the process shuts down, all waits share one budget (see
            ``batchlog.BatchWriter``'s ``exit_timeout``).
        deliver_on_sigterm: Call ``batchlog.deliver_on_sigterm()``, so SIGTERM delivers
            every record before the process ends (for deployments where SIGTERM skips
            Python's exit hooks: uvicorn, containers, ``Pool.terminate()``).

    The records the sink receives are stable: ``record.getMessage()`` gives the text as it
    was when logged, and an exception is already text in ``exc_text`` (``exc_info`` is
    None), rendered on the worker thread exactly as ``logging.Formatter`` renders it
    (source lines read from ``linecache`` then). A record whose arguments could change
    later, or that carried an exception, was copied at emit time; any other is the logged
    record itself, shared with other handlers, so a sink must not modify it.

    Formatted text: give the handler a formatter (``setFormatter``, or dictConfig's
    ``formatter``) and every record the sink receives is a copy with a ``formatted``
    attribute holding the formatter's output (and ``message``, ``asctime`` set by it).
    Formatting runs on the worker thread, never the caller's, inside the caller's
    contextvars (captured at emit when any is set), so a formatter reading a ``ContextVar``
    (structlog's ``merge_contextvars``) sees the caller's values. Without a formatter
    nothing is formatted, which is the cheapest: use ``record.getMessage()``.

    Inside an OpenTelemetry span (``opentelemetry.trace`` imported by the application),
    the record the sink receives is a copy carrying ``trace_id``, ``span_id`` and
    ``trace_flags``, taken at emit; fields the record already has are kept.

    A sink may be async (it returns an awaitable): the writer awaits it on its own
    event loop, on its worker thread; see ``batchlog.BatchWriter``.

    Records the sink itself logs through this handler are dropped (and counted in
    ``metrics.records_dropped``) so a sink cannot feed itself forever.

    Closed while still attached (by someone else's ``dictConfig``, say, as a framework's
    setup does), the handler reopens on the next record, as ``logging.FileHandler`` does:
    a fresh writer, and a fresh sink when it was given as an import string or mapping
    (a sink object is reused, after its ``reopen()`` if it has one). ``metrics`` then adds
    up every writer the handler had and counts the reopenings in ``reopened``. During
    interpreter exit it does not reopen: records logged after its close are dropped and
    counted.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Reopens after a close; ``deliver_on_sigterm``; the caller's contextvars and
       OpenTelemetry span travel with the record; async sinks are awaited.
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
        deliver_on_sigterm: bool = False,
    ) -> None:
        # Before Handler.__init__, which sets self.formatter (mirrored into the delivery).
        self._delivery = _Delivery(self, _no_sink)
        super().__init__(level_number(level))
        deliver_on_sigterm = check_bool("deliver_on_sigterm", bool_from_config(deliver_on_sigterm))
        self._sink_spec = sink
        self._sink = resolve_sink(sink)
        self._flush_level = (
            None if flush_level is None else level_number(flush_level, what="flush_level")
        )
        self.flush_timeout = check_seconds(
            "flush_timeout", number_from_config(flush_timeout, float), allow_none=True
        )
        name = name or unique_name(type(self).__name__)
        self._failure_report = _SinkFailureReport(type(self).__name__, name)
        self._writer_options: dict[str, Any] = {
            "capacity": number_from_config(capacity, int),
            "flush_interval": number_from_config(flush_interval, float),
            "max_queue_size": number_from_config(max_queue_size, int),
            "clear_buffers": clear_buffers,
            "overflow": overflow,
            "block_timeout": number_from_config(block_timeout, float),
        }
        self._sink_lock = new_lock()
        # logging.shutdown() closes it, after other atexit hooks had their say (they log).
        self._writer = self._new_writer(self._sink, name, close_at_exit=False)
        # Offered: a record, or a record with the caller's context (see _Carried).
        self._offer: Callable[[Any], bool] = self._writer.offer
        self._reopen_lock = new_lock()
        _remake_after_fork(self)
        self._retired: list[BatchWriter[logging.LogRecord]] = []  # closed, still delivering
        self._retired_totals: Metrics | None = None  # of the retired writers that finished
        self._reopened = 0
        if deliver_on_sigterm:
            _deliver_on_sigterm()

    def _new_writer(
        self, sink: Sink, name: str, *, close_at_exit: bool
    ) -> BatchWriter[logging.LogRecord]:
        """A writer delivering to ``sink``; the worker holds these, never the handler.

        A handler nobody references is then collected, and with it its writer, whose
        finalizer delivers what is left.
        """
        delivery = _Delivery(self, sink)
        delivery.formatter = self._delivery.formatter
        delivery.sink_lock = self._sink_lock
        self._delivery = delivery
        return BatchWriter(
            flush_fn=delivery,
            on_error=self._failure_report,
            on_close=delivery.close_sink,
            name=name,
            close_at_exit=close_at_exit,
            **self._writer_options,
        )

    # ------------------------------------------------------------------ public surface

    @property
    def writer(self) -> BatchWriter[logging.LogRecord]:
        """The ``batchlog.BatchWriter`` behind this handler."""
        return self._writer

    @property
    def metrics(self) -> Metrics:
        """The writer's ``batchlog.Metrics`` (after a reopening, of all its writers)."""
        with self._reopen_lock:  # no reopening between the reads
            current = self._writer.metrics
            if not self._reopened:
                return current
            totals = self._settle_retired()
            for writer in self._retired:
                totals = _added(totals, writer.metrics)
            return replace(_added(totals, current), reopened=self._reopened)

    def _settle_retired(self) -> Metrics | None:
        """Fold retired writers that finished into the totals; return the totals."""
        still: list[BatchWriter[logging.LogRecord]] = []
        for writer in self._retired:
            metrics = writer.metrics
            if writer.closed and not metrics.records_in_buffer:
                self._retired_totals = _added(self._retired_totals, metrics)
            else:
                still.append(writer)
        self._retired = still
        return self._retired_totals

    @property
    def sink(self) -> Sink:
        """The sink batches go to."""
        return self._sink

    @property
    def formatter(self) -> logging.Formatter | None:
        """The formatter applied on the worker thread (None: records are not formatted)."""
        return self._delivery.formatter

    @formatter.setter
    def formatter(self, formatter: logging.Formatter | None) -> None:
        self._delivery.formatter = formatter
        # A formatter runs on the worker: it gets the caller's contextvars captured at emit.
        self._capture_contextvars = formatter is not None

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self._writer.name!r} ({level}) sink={self._sink!r}>"

    # ------------------------------------------------------------------ caller's thread

    def handle(self, record: logging.LogRecord, *, _filtered: bool = False) -> Any:
        """Filter ``record`` and hand it to the writer by the overflow policy; never raises.

        This is the caller's whole cost, so the common record (a str message and one
        argument of a stable type, in a format known to merge with any such value) costs
        a few checks and the writer's ``offer``: no lock, no copy, no merge. Anything else
        goes through ``_prepare``.

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
            args = record.args
            if record.exc_info:
                record = self._prepare(record)
            elif args:
                if not (
                    type(args) is tuple
                    and len(args) == 1
                    and type(args[0]) in _STABLE_ARG_TYPES
                    and type(record.msg) is str
                    and record.msg in _ONE_ARG_FORMATS
                ):
                    record = self._prepare(record)
            elif type(record.msg) is not str:
                record = self._prepare(record)
            item: logging.LogRecord | _Carried = record
            if self._capture_contextvars or OTEL_TRACE_MODULE in _MODULES:
                item = self._with_context(record)
            offered = True
            # By the overflow policy; a refused record is counted in records_dropped.
            if (
                self._offer(item)
                and self._flush_level is not None
                and record.levelno >= self._flush_level
            ):
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

    def _with_context(self, record: logging.LogRecord) -> logging.LogRecord | _Carried:
        """Return ``record``, or it with what of the caller's context must travel with it.

        Inside an OpenTelemetry span: ``trace_id``, ``span_id``, ``trace_flags``, set on
        a copy on the worker (fields the record already has are kept). With a formatter:
        the caller's contextvars, for the formatter to run in on the worker. The record
        other handlers see is never changed.
        """
        fields = trace_fields()
        context = contextvars.copy_context() if self._capture_contextvars else None
        if context is not None and not len(context):
            context = None  # nothing set: the worker's own (empty) context is the same
        if fields is None and context is None:
            return record
        return (record, fields, context)

    def _prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return what the sink may receive for ``record``: it, or a stable copy.

        A bad format raises here, on the caller's thread, as in the stdlib.
        """
        msg, args = record.msg, record.args
        if record.exc_info or type(msg) is not str or type(args) is not tuple:
            return self._freeze(record)
        for arg in args:
            if type(arg) not in _STABLE_ARG_TYPES:
                return self._freeze(record)
        # Immutable arguments need no copy; the merge is skipped only for a format known
        # to work with any such values, so a bad one is still reported now.
        known = _ARG_COUNTS.get(msg)
        if known != len(args):
            msg % args  # raises for a bad format
            if known is None:
                _learn_format(msg, len(args))
        return record

    def _freeze(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return a copy with the message merged now and the exception captured.

        Nothing the caller still holds (arguments, frames, locals) can then change it or be
        kept alive by it. The exception's text is rendered on the worker thread, unless
        the formatter renders exceptions its own way (it is given the live exception now).
        """
        copy = _copy_record(record)
        if type(record.msg) is dict and not record.args:
            # structlog's ProcessorFormatter carries the event dict as msg: keep it a dict.
            copy.msg = record.msg.copy()
        else:
            copy.msg = record.getMessage()
            copy.args = None
        exc_info = record.exc_info
        if exc_info:
            if not record.exc_text:
                formatter = self.formatter
                if formatter is None or _uses_default_format_exception(formatter):
                    copy.__dict__["exc_text"] = _CapturedException(exc_info)
                else:
                    copy.exc_text = formatter.formatException(exc_info)
            copy.exc_info = None
        return copy

    # ------------------------------------------------------------------ flush and close

    def flush(self) -> None:
        """Hand every record emitted so far to the sink and wait (at most ``flush_timeout``).

        Use ``handler.writer.flush(timeout)`` to learn whether it finished in time.
        """
        if not hasattr(self, "_writer"):
            return  # its construction failed (and said why): logging still knows it
        if _logging_lock_held():
            self._writer.flush(timeout=0)  # start it; waiting could deadlock a logging sink
        else:
            self._writer.flush(self.flush_timeout)

    def close(self) -> None:
        """Deliver every record (waiting at most ``flush_timeout``), close the sink, detach.

        Idempotent. ``logging.shutdown()`` calls it at exit.
        """
        if not hasattr(self, "_writer"):
            super().close()  # its construction failed (and said why): just detach
            return
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
            # The next record reopens the handler, as FileHandler's does. No cycle: the
            # function holds the handler weakly.
            with self._reopen_lock:
                self._offer = functools.partial(_offer_reopening, weakref.ref(self))
            super().close()

    def _reopen_and_offer(self, record: logging.LogRecord) -> bool:
        """A record after ``close``: reopen with a fresh writer (and sink), then offer it."""
        closed = self._writer
        if closed.closed:
            if not threading.main_thread().is_alive() or getattr(_reopening, "now", False):
                # The interpreter is exiting (do not start afresh), or the sink being
                # rebuilt logs through us: dropped, and counted.
                closed.count_drop()
                return False
            _reopening.now = True
            try:  # outside the lock: a sink factory may log, or take its time
                sink = self._fresh_sink()
            finally:
                _reopening.now = False
            with self._reopen_lock:
                reopened = self._writer is closed
                if reopened:
                    self._settle_retired()
                    self._retired.append(closed)
                    self._sink = sink
                    self._writer = self._new_writer(sink, closed.name, close_at_exit=False)
                    self._reopened += 1
            if reopened and not _known_to_logging_again(self):
                self._writer.close_at_exit = True  # logging.shutdown() will not close it
            elif sink is not self._sink:
                discard_awaitable(close_sink(sink))  # another thread reopened first: unused
        with self._reopen_lock:
            writer = self._writer
            if not writer.closed:
                self._offer = writer.offer
        return writer.offer(record)

    def _fresh_sink(self) -> Sink:
        """The sink for a reopened writer: built anew from its spec, or reopened."""
        if isinstance(self._sink_spec, (str, Mapping)):
            return resolve_sink(self._sink_spec)
        sink = self._sink
        with self._sink_lock:
            # The closed writer may not have closed it yet: from now on it will not, and a
            # sink it already closed is reopened.
            self._delivery.owns_sink = False
            reopen = getattr(sink, "reopen", None)
            if callable(reopen):
                reopen()
        return sink

    def set_name(self, name: str) -> None:
        """Set the handler's name (dictConfig does) and name its writer after it."""
        super().set_name(name)
        if name:
            self._writer.name = name
            self._failure_report.name = name

    # logging.Handler.name is a property bound to the base class's set_name: rebind it.
    name = property(logging.Handler.get_name, set_name)
