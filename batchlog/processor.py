"""``BatchingProcessor``: the last processor of a structlog chain, batching event dicts.

structlog is imported when a processor is made, never by ``import batchlog``.
"""

from __future__ import annotations

import datetime
import functools
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, Callable

from ._context import OTEL_TRACE_MODULE, add_missing, trace_fields
from ._lifecycle import deliver_on_sigterm as _deliver_on_sigterm
from ._sinkspec import close_sink, resolve_sink
from ._validate import check_bool, check_seconds, level_number
from .handler import DEFAULT_FLUSH_TIMEOUT
from .metrics import Metrics
from .overflow import OverflowPolicyLike
from .writer import BatchWriter, unique_name

__all__ = ["BatchingProcessor", "RecordTimeStamper"]

EventDict = MutableMapping[str, Any]
_MODULES = sys.modules  # read at every event: is OpenTelemetry in use?


class _Default:
    """The type of "no timeout given": ``flush_timeout`` applies (None means no limit)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "flush_timeout"


_FLUSH_TIMEOUT = _Default()
#: structlog's method names (and logging's level names) and their level numbers.
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "err": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _event_level(method_name: str, event_dict: EventDict) -> int:
    """The level of an event: of the method called, else of its ``level`` key (0: none)."""
    level = _METHOD_LEVELS.get(method_name)
    if level is None:
        named = event_dict.get("level")
        level = _METHOD_LEVELS.get(named.lower(), 0) if isinstance(named, str) else 0
    return level


class BatchingProcessor:
    """A structlog processor that hands a shallow copy of each event dict to a sink in batches.

    Put it last in the chain: it raises ``structlog.DropEvent`` after taking the event, so
    nothing is rendered or printed. An ``exc_info`` in the event is rendered to an
    ``exception`` string on the caller's thread (as ``format_exc_info`` does), so no
    traceback outlives the call. With ``pass_through=True`` it returns the event dict
    unchanged instead, so a renderer can follow.

    Args:
        sink: A callable taking ``list[dict]``, or an import string, or a mapping
            ``{"()": factory, **kwargs}`` (as for ``batchlog.BatchingHandler``).
            If it has ``close()``, it is called after the last batch.
        capacity: Most events per batch.
        flush_interval: The longest an event waits, in seconds.
        overflow: ``"block"``, ``"drop_newest"`` or ``"drop_oldest"``.
        block_timeout: With ``"block"``, most seconds to wait before dropping the event.
        max_queue_size: Most events held; see ``batchlog.BatchWriter``.
        clear_buffers: See ``batchlog.BatchWriter``.
        pass_through: Return the event dict instead of dropping it.
        flush_level: An event at or above this level triggers a flush at once (the
            worker is woken; the call does not wait): a level name of structlog's
            methods or of ``logging`` (``"error"``, ``"WARNING"``) or a number. Read from
            the method called (``log.error``), else from the event's ``level`` key.
        name: The writer's name (thread name, reports).
        flush_timeout: Most seconds ``flush`` and ``close`` wait when called without a
            ``timeout``; None: no limit.
        deliver_on_sigterm: Call ``batchlog.deliver_on_sigterm()``, so SIGTERM delivers
            every event before the process ends.

    With structlog's async methods (``await log.ainfo(...)``) the chain, and so a blocking
    wait for room, runs in a worker thread, never on the event loop.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``deliver_on_sigterm``; ``flush_level``; ``flush(timeout=None)`` and
       ``close(timeout=None)`` wait without limit, as ``BatchWriter``'s do (omit
       ``timeout`` for ``flush_timeout``).
    """

    __slots__ = (
        "_drop_event",
        "_flush_level",
        "_format_exc_info",
        "_offer",
        "_sink",
        "flush_timeout",
        "pass_through",
        "writer",
    )

    def __init__(
        self,
        sink: object,
        capacity: int = 100,
        flush_interval: float = 5.0,
        *,
        overflow: OverflowPolicyLike = "block",
        block_timeout: float | None = None,
        max_queue_size: int | None = None,
        clear_buffers: bool = False,
        pass_through: bool = False,
        flush_level: int | str | None = None,
        name: str | None = None,
        flush_timeout: float | None = DEFAULT_FLUSH_TIMEOUT,
        deliver_on_sigterm: bool = False,
    ) -> None:
        check_bool("deliver_on_sigterm", deliver_on_sigterm)
        self._flush_level = (
            None if flush_level is None else level_number(flush_level, what="flush_level")
        )
        try:
            import structlog
        except ImportError as exc:  # pragma: no cover - the test extra installs structlog
            msg = "BatchingProcessor needs structlog: pip install 'batchlog[structlog]'"
            raise ImportError(msg) from exc
        self._drop_event = structlog.DropEvent
        self._format_exc_info = structlog.processors.format_exc_info
        self._sink = resolve_sink(sink)
        self.flush_timeout = check_seconds("flush_timeout", flush_timeout, allow_none=True)
        self.pass_through = bool(pass_through)
        #: The ``batchlog.BatchWriter`` behind this processor.
        self.writer: BatchWriter[dict[str, Any]] = BatchWriter(
            capacity,
            flush_interval,
            self._sink,
            max_queue_size=max_queue_size,
            clear_buffers=clear_buffers,
            # Not a bound method: the worker thread must not keep this processor alive.
            on_close=functools.partial(close_sink, self._sink),
            name=name or unique_name(type(self).__name__),
            overflow=overflow,
            block_timeout=block_timeout,
        )
        self._offer: Callable[[dict[str, Any]], bool] = self.writer.offer
        if deliver_on_sigterm:
            _deliver_on_sigterm()

    def __call__(
        self,
        logger: object,  # noqa: ARG002 -- structlog's processor signature
        method_name: str,
        event_dict: EventDict,
    ) -> EventDict:
        """Take a shallow copy of ``event_dict``; raise ``DropEvent`` unless passing through."""
        # By the overflow policy; a refused event (full, closed, or logged by the sink
        # itself) is counted in records_dropped.
        if (
            self._offer(self._copy(event_dict))
            and self._flush_level is not None
            and _event_level(method_name, event_dict) >= self._flush_level
        ):
            self.writer.flush(timeout=0)  # wake the worker; do not wait for the sink
        if self.pass_through:
            return event_dict
        raise self._drop_event

    def _copy(self, event_dict: EventDict) -> dict[str, Any]:
        """Return a shallow copy, with ``exc_info`` rendered to ``exception`` text now.

        A traceback left for the worker would keep the caller's frames alive until the
        flush, and ``exc_info=True`` would mean nothing on another thread. Inside an
        OpenTelemetry span, the copy gets ``trace_id``, ``span_id`` and ``trace_flags``.
        """
        event = dict(event_dict)
        if "exc_info" in event:
            event = self._format_exc_info(None, "", event)
        if OTEL_TRACE_MODULE in _MODULES:
            fields = trace_fields()
            if fields is not None:
                add_missing(event, fields)
        return event

    @property
    def metrics(self) -> Metrics:
        """The writer's ``batchlog.Metrics``."""
        return self.writer.metrics

    def flush(self, timeout: float | _Default | None = _FLUSH_TIMEOUT) -> bool:
        """Deliver every event taken so far; see ``BatchWriter.flush``.

        ``timeout``: most seconds to wait, None for no limit (as ``BatchWriter.flush``);
        omitted, ``flush_timeout``.
        """
        return self.writer.flush(self._timeout(timeout))

    def close(self, timeout: float | _Default | None = _FLUSH_TIMEOUT) -> bool:
        """Deliver everything, close the sink, stop; see ``BatchWriter.close``.

        ``timeout``: as for ``flush``.
        """
        return self.writer.close(self._timeout(timeout))

    def _timeout(self, timeout: float | _Default | None) -> float | None:
        return self.flush_timeout if isinstance(timeout, _Default) else timeout

    def __repr__(self) -> str:
        return f"<BatchingProcessor {self.writer.name!r} sink={self._sink!r}>"


class RecordTimeStamper:
    """A structlog processor that stamps when the record was logged, not when it is rendered.

    Use it instead of ``structlog.processors.TimeStamper`` in a ``ProcessorFormatter``
    (its ``foreign_pre_chain`` or ``processors``) on a ``BatchingHandler``: that chain runs
    on the writer's worker thread, up to ``flush_interval`` after the call, so
    ``TimeStamper`` would stamp the time of rendering. This one reads ``created`` of the
    ``logging.LogRecord`` that ``ProcessorFormatter`` puts in the event as ``_record``; an
    event without one is stamped with the current time, as ``TimeStamper`` would. The
    output has ``TimeStamper``'s forms.

    Args:
        fmt: ``"iso"`` (ISO 8601), None (a float of UNIX seconds), or a ``strftime`` format.
        utc: Stamp in UTC (ISO 8601 ends in ``Z`` then), else in local time.
        key: The event key to set.

    Raises:
        ValueError: ``fmt`` is None and ``utc`` is False (UNIX timestamps are UTC).
        TypeError: An argument has the wrong type.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("fmt", "key", "utc")

    def __init__(
        self, fmt: str | None = "iso", *, utc: bool = True, key: str = "timestamp"
    ) -> None:
        if fmt is not None and not isinstance(fmt, str):
            msg = f"fmt must be 'iso', None or a strftime format string, not {fmt!r}"
            raise TypeError(msg)
        if not isinstance(key, str):
            msg = f"key must be a str, not {key!r}"
            raise TypeError(msg)
        self.utc = check_bool("utc", utc)
        if fmt is None and not self.utc:
            msg = "UNIX timestamps are always UTC: fmt=None needs utc=True"
            raise ValueError(msg)
        self.fmt = fmt
        self.key = key

    def __repr__(self) -> str:
        return f"RecordTimeStamper(fmt={self.fmt!r}, utc={self.utc!r}, key={self.key!r})"

    def __call__(
        self,
        logger: object,  # noqa: ARG002 -- structlog's processor signature
        method_name: str,  # noqa: ARG002
        event_dict: EventDict,
    ) -> EventDict:
        """Set ``event_dict[key]`` from the record's ``created``; return the event."""
        created = getattr(event_dict.get("_record"), "created", None)
        if not isinstance(created, (int, float)) or isinstance(created, bool):
            created = time.time()
        fmt = self.fmt
        if fmt is None:
            event_dict[self.key] = float(created)
            return event_dict
        stamp = datetime.datetime.fromtimestamp(created, tz=datetime.timezone.utc)
        if not self.utc:
            stamp = stamp.astimezone().replace(tzinfo=None)  # TimeStamper's local: naive
        if fmt.upper() == "ISO":
            event_dict[self.key] = stamp.isoformat().replace("+00:00", "Z")
        elif self.utc:
            event_dict[self.key] = stamp.strftime(fmt)
        else:
            event_dict[self.key] = stamp.astimezone().strftime(fmt)
        return event_dict
