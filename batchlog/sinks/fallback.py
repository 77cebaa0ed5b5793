"""``FallbackSink`` and ``replay``: no batch is lost silently when the primary sink fails.

A dead-letter file is JSON Lines, one failed record per line, in an envelope::

    {"record": {...the encoded record...},
     "error": "OperationalError: database is locked",
     "failed_at": "2026-11-27T05:27:12.123456Z"}

``record`` is the common encoding (``batchlog.sinks.encode_record``), ``error`` the
primary sink's exception (type and message), ``failed_at`` when the batch failed (RFC 3339,
UTC). ``replay`` (or ``python -m batchlog replay FILE --sink SPEC``) feeds the records
to any sink once the primary works again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
from collections.abc import Iterator
from typing import Any

from .._report import StderrReporter
from .._sinkspec import resolve_sink
from .._types import AnyRecord, Sink
from .._validate import check_int
from ..errors import FailedRecordsError
from ..metrics import MetricField
from ._base import SinkBase, check_file_path
from ._encode import FIELDS, encode_record, rfc3339
from .jsonl import JsonLinesSink, StrPath

__all__ = ["FALLBACK_METRIC_FIELDS", "FallbackMetrics", "FallbackSink", "replay"]

_ENCODED_KEYS = frozenset(FIELDS)


@dataclasses.dataclass(frozen=True)
class FallbackMetrics:
    """A snapshot of a ``FallbackSink``'s counters, all read at one instant.

    What each field means, its kind and its unit: ``FALLBACK_METRIC_FIELDS`` (one
    ``batchlog.metrics.MetricField`` per field, in this order).

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "dead_letter_failures",
        "dead_lettered_batches",
        "dead_lettered_records",
        "primary_failures",
    )

    # The meaning of each field is defined once, in FALLBACK_METRIC_FIELDS below.
    primary_failures: int
    dead_lettered_batches: int
    dead_lettered_records: int
    dead_letter_failures: int

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict, in declaration order."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


#: The definition of every field of ``FallbackMetrics``, in declaration order.
#:
#: .. versionadded:: 0.2.0
FALLBACK_METRIC_FIELDS: tuple[MetricField, ...] = (
    MetricField(
        name="primary_failures",
        kind="counter",
        unit="{batch}",
        description="Batches on which the primary sink raised.",
        prometheus_name="fallback_primary_failures_total",
        otel_name="batchlog.fallback.primary_failures",
        otel_instrument="counter",
    ),
    MetricField(
        name="dead_lettered_batches",
        kind="counter",
        unit="{batch}",
        description="Batches written to the dead-letter file.",
        prometheus_name="fallback_dead_lettered_batches_total",
        otel_name="batchlog.fallback.dead_lettered_batches",
        otel_instrument="counter",
    ),
    MetricField(
        name="dead_lettered_records",
        kind="counter",
        unit="{record}",
        description="Records written to the dead-letter file.",
        prometheus_name="fallback_dead_lettered_records_total",
        otel_name="batchlog.fallback.dead_lettered_records",
        otel_instrument="counter",
    ),
    MetricField(
        name="dead_letter_failures",
        kind="counter",
        unit="{batch}",
        description=(
            "Batches the dead-letter file could not take either "
            "(the call raised, so the writer counted them in records_failed)."
        ),
        prometheus_name="fallback_dead_letter_failures_total",
        otel_name="batchlog.fallback.dead_letter_failures",
        otel_instrument="counter",
    ),
)


def _describe(exc: BaseException) -> str:
    """Return ``"Type: message"`` for ``exc``, even if its ``__str__`` is broken."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


class FallbackSink(SinkBase):
    """Calls ``primary``; if it raises, writes the batch to a dead-letter JSON Lines file.

    The dead-letter file holds one envelope per record (see this module's docstring),
    appended by a ``batchlog.sinks.JsonLinesSink`` in one write per batch and, by
    default, fsynced. A dead-lettered batch counts as processed for the writer (it is
    safe on disk); replay it with ``replay``. If the dead-letter write fails too, the
    call re-raises the primary's exception, so the writer counts the batch as failed: a
    batch is never lost without a count.

    Each primary failure is reported once per batch: to ``logger`` if given, otherwise to
    ``sys.stderr`` (rate-limited, saying how many reports were suppressed).

    ``close()`` closes the primary (if it has ``close()``) and the dead-letter file;
    ``reopen()`` reopens both (the primary if it has ``reopen()``). In a child made by
    ``os.fork()`` the counters start at zero, as a writer's do, and the primary and the
    dead-letter file, being sinks, look after themselves (see ``batchlog.sinks.SinkBase``).

    Build it from configuration with plain values::

        {"()": "batchlog.sinks.FallbackSink",
         "primary": {"()": "batchlog.sinks.SQLiteSink", "path": "app.sqlite3"},
         "dead_letter_path": "app-dead-letter.jsonl"}

    Args:
        primary: The sink to call: a callable, an import string, or a mapping
            ``{"()": factory, **kwargs}`` (as ``batchlog.BatchingHandler`` takes).
        dead_letter_path: The JSON Lines file that takes batches the primary failed on.
        fsync: fsync the dead-letter file after each batch written to it.
        logger: Where primary failures are reported: a Logger or a logger name. Do not
            route it back into the failing sink (a handler drops what its own sink logs).

    Raises:
        ValueError: ``primary`` is an import string that does not import.
        TypeError: ``primary`` is not callable, or ``logger`` is not a Logger or a name.

    A call raises ``ValueError`` after ``close``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A ``batchlog.sinks.SinkBase``: ``reopen()``, fork safety.
    """

    __slots__ = (
        "_counts",
        "_reporter",
        "dead_letter",
        "logger",
        "primary",
    )

    def __init__(
        self,
        primary: object,
        dead_letter_path: StrPath,
        *,
        fsync: bool = True,
        logger: logging.Logger | str | None = None,
    ) -> None:
        self.primary: Sink = resolve_sink(primary, what="primary")
        if isinstance(dead_letter_path, (str, os.PathLike)):
            # Now, not during the very outage the dead letters are for.
            check_file_path(os.fspath(dead_letter_path), what="dead_letter_path")
        self.dead_letter = JsonLinesSink(dead_letter_path, fsync=fsync)
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        if logger is not None and not isinstance(logger, logging.Logger):
            msg = f"logger must be a logging.Logger, a logger name or None, not {logger!r}"
            raise TypeError(msg)
        self.logger: logging.Logger | None = logger
        self._reporter: StderrReporter | None = None  # made on first use (again after fork)
        # primary_failures, dead_lettered_batches, dead_lettered_records, dead_letter_failures:
        # replaced whole, so a snapshot is one read and never waits for a batch or a close.
        self._counts: tuple[int, int, int, int] = (0, 0, 0, 0)
        super().__init__()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(primary={self.primary!r}, "
            f"dead_letter_path={self.dead_letter.path!r})"
        )

    # ------------------------------------------------------------------ counters

    @property
    def metrics(self) -> FallbackMetrics:
        """The counters as one consistent ``FallbackMetrics`` snapshot."""
        return FallbackMetrics(*self._counts)

    @property
    def primary_failures(self) -> int:
        """Batches on which the primary sink raised."""
        return self.metrics.primary_failures

    @property
    def dead_lettered_batches(self) -> int:
        """Batches written to the dead-letter file."""
        return self.metrics.dead_lettered_batches

    @property
    def dead_lettered_records(self) -> int:
        """Records written to the dead-letter file."""
        return self.metrics.dead_lettered_records

    def _count(
        self,
        *,
        primary_failures: int = 0,
        dead_lettered_batches: int = 0,
        dead_lettered_records: int = 0,
        dead_letter_failures: int = 0,
    ) -> None:
        """Add to the counters, replacing them in one assignment."""
        with self._sink_lock():  # never held while the primary works: see _release()
            failures, batches, records, lost = self._counts
            self._counts = (
                failures + primary_failures,
                batches + dead_lettered_batches,
                records + dead_lettered_records,
                lost + dead_letter_failures,
            )

    # ------------------------------------------------------------------ batches

    def __call__(self, batch: list[AnyRecord]) -> None:
        """Hand ``batch`` to the primary sink; dead-letter it if the primary raises.

        Raises:
            Exception: The primary's exception, when the dead-letter write failed too.
            ValueError: The sink is closed.
        """
        self._check_open()
        try:
            self.primary(batch)
        except FailedRecordsError as partial:  # the primary says which: only those
            self._count(primary_failures=1)
            self._dead_letter(partial.failed_in(batch), partial)
        except Exception as primary_failure:  # noqa: BLE001 -- any failure: dead-letter it
            self._count(primary_failures=1)
            self._dead_letter(batch, primary_failure)

    def _dead_letter(self, batch: list[AnyRecord], primary_failure: Exception) -> None:
        envelope = {"error": _describe(primary_failure), "failed_at": rfc3339(time.time())}
        size = len(batch)
        dead_letter_failure: Exception | None = None
        try:
            self.dead_letter.write_json(
                {"record": encode_record(record), **envelope} for record in batch
            )
        except Exception as exc:  # noqa: BLE001 -- reported, then the primary's error is raised
            dead_letter_failure = exc
        if dead_letter_failure is not None:
            self._count(dead_letter_failures=1)
            self._report(
                f"{self!r}: the primary sink raised on a batch of {size} records, and "
                f"writing them to the dead-letter file failed too "
                f"({_describe(dead_letter_failure)}); the batch counts as failed",
                primary_failure,
            )
            raise primary_failure  # outside the except: its own cause and context stay
        self._count(dead_lettered_batches=1, dead_lettered_records=size)
        self._report(
            f"{self!r}: the primary sink raised on a batch of {size} records; they were "
            f"written to the dead-letter file {self.dead_letter.path!r}",
            primary_failure,
        )

    def _report(self, message: str, failure: Exception) -> None:
        logger = self.logger
        if logger is not None:
            try:
                logger.error("%s", message, exc_info=failure)
            except Exception as logger_failure:  # noqa: BLE001 -- fall back to stderr
                self._stderr().report(f"{self!r}: its logger failed", logger_failure)
            else:
                return
        self._stderr().report(message, failure)

    def _stderr(self) -> StderrReporter:
        """The stderr reporter, made on first use: its lock from the threading then in force."""
        reporter = self._reporter
        if reporter is None:
            reporter = self._reporter = StderrReporter()  # two racing: one report uncounted
        return reporter

    def close(self) -> None:
        """Close the primary sink (if it has ``close()``) and the dead-letter file.

        Idempotent. Both are closed even if the first fails. A batch in flight is not
        waited for here: the primary's own ``close()`` waits for it.

        Raises:
            Exception: What the primary's ``close()`` raised.
        """
        super().close()

    def _release(self) -> None:
        """Close the primary and the dead-letter file (``close()`` holds the lock).

        No deadlock with a batch in flight: the batch takes this lock only to count,
        never while it holds the primary's or the dead-letter file's.
        """
        close_primary = getattr(self.primary, "close", None)
        try:
            if callable(close_primary):
                close_primary()
        finally:
            self.dead_letter.close()

    def reopen(self) -> None:
        """Reopen the primary (if it has ``reopen()``), the dead-letter file, then the sink."""
        reopen_primary = getattr(self.primary, "reopen", None)
        if callable(reopen_primary):
            reopen_primary()
        self.dead_letter.reopen()
        super().reopen()

    def _forget_inherited(self, *, busy: bool) -> None:  # noqa: ARG002 -- counters and reporter are reset either way
        """In a forked child: zeroed counters; a new reporter (its lock may be held)."""
        self._counts = (0, 0, 0, 0)
        self._reporter = None


def _records(path: str) -> Iterator[dict[str, Any]]:
    """Yield the record of each non-blank line of a dead-letter or JSON Lines file."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                msg = f"{path}, line {number}: not JSON ({exc})"
                raise ValueError(msg) from None
            if isinstance(entry, dict) and isinstance(entry.get("record"), dict):
                yield entry["record"]
            elif isinstance(entry, dict) and _ENCODED_KEYS.issubset(entry):
                yield entry  # a line of a JsonLinesSink file replays as well
            else:
                msg = (
                    f"{path}, line {number}: neither a dead-letter entry "
                    '({"record": {...}, ...}) nor an encoded record'
                )
                raise ValueError(msg)


def replay(
    path: StrPath,
    sink: Sink,
    *,
    batch_size: int = 500,
    remove: bool = False,
) -> int:
    """Feed the records stored in a dead-letter file to ``sink``, in batches, in order.

    Every line is checked before the first batch is sent, so a damaged file (say, a last
    line cut short by a crash) sends nothing. The records are already encoded, and
    every sink in ``batchlog.sinks`` takes them as they are. Lines written by a
    ``batchlog.sinks.JsonLinesSink`` (bare encoded records) replay too.

    Args:
        path: The dead-letter file.
        sink: Any sink: a callable taking a list of records. It is not closed.
        batch_size: Most records per call of ``sink``.
        remove: Delete the file once every batch was delivered. Replay a file no running
            ``FallbackSink`` is still appending to (rotate it first), or records
            appended during the replay go with it.

    Returns:
        The number of records delivered.

    Raises:
        ValueError: A line is not JSON, or holds neither an envelope nor a record; or
            ``batch_size`` is below 1. Nothing was sent.
        OSError: The file cannot be read (or removed).
        Exception: What ``sink`` raised. Batches before it were delivered (and would
            be again by another replay); the file is left in place.

    .. versionadded:: 0.1.0
    """
    check_int("batch_size", batch_size, low=1)
    file_path = os.fspath(path)
    for _ in _records(file_path):
        pass  # validate every line before anything is sent
    delivered = 0
    batch: list[dict[str, Any]] = []
    for record in _records(file_path):
        batch.append(record)
        if len(batch) >= batch_size:
            sink(batch)
            delivered += len(batch)
            batch = []
    if batch:
        sink(batch)
        delivered += len(batch)
    if remove:
        os.remove(file_path)
    return delivered
