"""``FallbackSink`` and ``replay``: no batch is lost silently when the primary sink fails.

A dead-letter file is JSON Lines, one failed record per line, in an envelope::

    {"record": {...the encoded record...},
     "error": "OperationalError: database is locked",
     "failed_at": "2026-11-27T05:27:12.123456Z"}

``record`` is the common encoding (``batchlog.sinks.encode_record``), ``error`` the
primary sink's exception (type and message), ``failed_at`` when the batch failed (RFC 3339,
UTC). ``replay`` (or ``python -m batchlog replay FILE --sink SPEC``) feeds the records
to any sink once the primary works again, exactly once: beside the file it keeps

- ``FILE.checkpoint``: how far the file is finished (a byte offset, the offsets of lines
  finished after it, digests that tell the same file from a replaced one, the counts);
  replaced atomically after each batch, so a run resumes where the last one stopped;
- ``FILE.quarantine.jsonl``: lines that are not records and records the sink refused one
  by one, each with a one-line ``reason``, its ``source`` file and byte ``offset``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
import traceback
import types
import weakref
from collections.abc import Awaitable, Coroutine
from typing import Any, BinaryIO, Callable

from .._report import StderrReporter
from .._sinkloop import SinkLoop, awaited, is_awaitable
from .._sinkspec import close_sink as _close_sink
from .._sinkspec import resolve_sink
from .._types import AnyRecord, Sink
from .._validate import check_bool, check_callable, check_int
from ..errors import BatchlogError, FailedRecordsError
from ..metrics import MetricField
from ._base import SinkBase, check_file_path
from ._encode import FIELDS, encode_record, rfc3339
from .jsonl import JsonLinesSink, StrPath

__all__ = [
    "FALLBACK_METRIC_FIELDS",
    "FallbackMetrics",
    "FallbackSink",
    "ReplayCheckpointError",
    "ReplayResult",
    "replay",
]

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
    .. versionchanged:: 0.2.0
       An async primary (one returning an awaitable, such as an ``async def`` sink): a
       call returns a coroutine that awaits it and dead-letters on its failure.
    .. versionchanged:: 0.2.0
       ``close()`` returns a coroutine when the primary's close is async (it returned an
       awaitable, or the primary has only ``aclose()``); it returned None always before.
    .. versionchanged:: 0.2.0
       A primary's ``batchlog.FailedRecordsError`` dead-letters only the records it names.
    """

    __slots__ = (
        "_counts",
        "_primary_closing",
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
        self._primary_closing: Awaitable[object] | None = None  # an async close, for close()
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

    def __call__(self, batch: list[AnyRecord]) -> Coroutine[Any, Any, None] | None:
        """Hand ``batch`` to the primary sink; dead-letter it if the primary raises.

        If the primary returns an awaitable (an ``async def`` primary), nothing is
        delivered yet: this returns a coroutine that awaits it and dead-letters the
        batch (or, for a ``batchlog.FailedRecordsError``, the records it names) if that
        raises, exactly as a sync primary's failure. A ``batchlog.BatchWriter`` awaits
        it on its own event loop.

        Raises:
            Exception: The primary's exception, when the dead-letter write failed too.
            ValueError: The sink is closed.
        """
        self._check_open()
        try:
            result = self.primary(batch)
        except Exception as primary_failure:  # noqa: BLE001 -- any failure: dead-letter it
            self._fail(batch, primary_failure)
            return None
        if not is_awaitable(result):
            return None
        finishing = self._finish_async(result, batch)
        if isinstance(result, types.CoroutineType):
            # If our coroutine is dropped unawaited, close the primary's too: one
            # "never awaited" warning (ours) says it, and it is about the right object.
            weakref.finalize(finishing, result.close)
        return finishing

    async def _finish_async(self, pending: Awaitable[object], batch: list[AnyRecord]) -> None:
        """Await the primary's awaitable; dead-letter as ``__call__`` does if it raises."""
        try:
            await pending
        except Exception as primary_failure:  # noqa: BLE001 -- any failure: dead-letter it
            self._fail(batch, primary_failure)

    def _fail(self, batch: list[AnyRecord], primary_failure: Exception) -> None:
        """Count the primary's failure and dead-letter what it did not deliver."""
        self._count(primary_failures=1)
        if isinstance(primary_failure, FailedRecordsError):  # it says which: only those
            batch = primary_failure.failed_in(batch)
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

    # A close may be async (the writer awaits what a sink's close returns): see Returns.
    def close(self) -> Coroutine[Any, Any, None] | None:  # type: ignore[override]
        """Close the primary sink (if it has ``close()``) and the dead-letter file.

        Idempotent. Both are closed even if the first fails. A batch in flight is not
        waited for here: the primary's own ``close()`` waits for it. A primary without
        ``close()`` but with ``aclose()`` (an async client's spelling) has that called.

        Returns:
            None; or, when the primary's close is async (it returned an awaitable), a
            coroutine that awaits it: a ``batchlog.BatchWriter`` awaits it on its loop,
            other callers must await it. The dead-letter file is closed already.

        Raises:
            Exception: What the primary's ``close()`` raised.
        """
        super().close()
        with self._sink_lock():
            closing, self._primary_closing = self._primary_closing, None
        return None if closing is None else awaited(closing)

    def _release(self) -> None:
        """Close the primary and the dead-letter file (``close()`` holds the lock).

        No deadlock with a batch in flight: the batch takes this lock only to count,
        never while it holds the primary's or the dead-letter file's.
        """
        try:
            result = _close_sink(self.primary)
            if is_awaitable(result):
                self._primary_closing = result  # close() hands it to its caller
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
        self._primary_closing = None  # the parent's to await, on the parent's loop


# ---------------------------------------------------------------------- replay
#
# A replay reads the dead-letter file from a byte offset, one step (at most batch_size
# lines) at a time: the records of a step go to the sink in one call; lines that are not
# records, and records the sink refuses one by one, go to the quarantine file; then the
# checkpoint (a small JSON file beside the dead-letter file, replaced atomically) moves
# past the step. So a step is either finished on disk or not begun: only the batch in
# flight when the process dies can be sent twice.

#: Bytes at the start of the file, and before the checkpoint's offset, whose digests the
#: checkpoint keeps to tell that the file it points into is still the same file.
_FINGERPRINT_BYTES = 4096
#: The format of the checkpoint file.
_CHECKPOINT_VERSION = 1
#: Bytes read at a time when counting the lines left.
_COUNT_CHUNK = 1 << 20


class ReplayCheckpointError(BatchlogError, ValueError):
    """A replay checkpoint does not fit its dead-letter file, is not a checkpoint, or is busy.

    The file was truncated or replaced since the checkpoint was written (a rotation, a
    restore), or the checkpoint file is damaged. Nothing was sent. If the file is a new
    one, delete the checkpoint file (the message names both) to replay it from the start.
    Also raised, before anything is read or sent, when another replay of the same file
    (the same checkpoint) is running: the message names its lock file.

    .. versionadded:: 0.2.0
    """


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    """What a ``replay`` did: its counts, and where the checkpoint and the quarantine are.

    The progress callback of ``replay`` receives one after each batch, with the counts so
    far; ``replay`` returns the last.

    Attributes:
        path: The dead-letter file.
        delivered: Records the sink took in this run (refused ones not included).
        quarantined: Lines moved to the quarantine file in this run: lines that are not
            records, and records the sink refused one by one.
        already_done: Records delivered or quarantined by earlier runs, skipped now.
        left: Lines not finished: after the run stopped on a failure, every line from
            the checkpoint on; a last line still being written (no newline yet) counts
            too. Lines appended after the run began are not counted (the next run takes
            them). 0 when every line seen is finished.
        quarantine_path: The quarantine file (JSON Lines; it exists once a line went to it).
        checkpoint_path: The checkpoint file.
        offset: Bytes of the file finished (the checkpoint's offset).
        size: The size of the file when the run began (the run reads up to there).
        removed: The file and its checkpoint were deleted (``remove=True``, nothing left).

    .. versionadded:: 0.2.0
    """

    path: str
    delivered: int
    quarantined: int
    already_done: int
    left: int
    quarantine_path: str
    checkpoint_path: str
    offset: int
    size: int
    removed: bool = False

    @property
    def finished(self) -> bool:
        """Whether every line seen was delivered or quarantined (``left == 0``)."""
        return self.left == 0


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_at(file: BinaryIO, start: int, end: int) -> bytes:
    """Return bytes ``[start, end)`` of ``file``, leaving its position where it was."""
    position = file.tell()
    try:
        file.seek(start)
        return file.read(end - start)
    finally:
        file.seek(position)


def _fsync_directory(directory: str) -> None:
    """Flush ``directory`` to disk, so a rename in it survives a power loss (POSIX only)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _Checkpoint:
    """Where a replay of one file stands: the offset of its first unfinished line.

    ``done`` holds the offsets of finished lines after ``offset`` (a sink that delivered
    part of a batch and failed on the rest). ``head`` and ``tail`` are digests of the
    file's first bytes and of the bytes just before ``offset``: a file truncated or
    replaced since is refused instead of being replayed from the wrong place.
    """

    __slots__ = ("delivered", "done", "offset", "path", "quarantined", "source")

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self.offset = 0
        self.done: frozenset[int] = frozenset()
        self.delivered = 0
        self.quarantined = 0

    def _refuse(self, why: str) -> ReplayCheckpointError:
        return ReplayCheckpointError(
            f"replay checkpoint {self.path!r} does not fit {self.source!r}: {why}; if "
            f"{self.source!r} is a new file, delete {self.path!r} to replay it from the start"
        )

    def load(self, file: BinaryIO, size: int) -> None:
        """Read the checkpoint, if there is one, and check it against ``file``.

        Raises:
            ReplayCheckpointError: It is not a checkpoint, or ``file`` was truncated or
                replaced since it was written.
            OSError: It cannot be read.
        """
        try:
            with open(self.path, "rb") as stored:
                text = stored.read()
        except FileNotFoundError:
            return
        try:
            state = json.loads(text)
            if not isinstance(state, dict) or state.get("version") != _CHECKPOINT_VERSION:
                raise TypeError  # noqa: TRY301 -- one message for every kind of damage
            offset, done = state["offset"], state["done"]
            delivered, quarantined = state["delivered"], state["quarantined"]
            head, tail = state["head"], state["tail"]
            numbers = [offset, delivered, quarantined, *done]
            if not all(type(number) is int and number >= 0 for number in numbers):
                raise TypeError  # noqa: TRY301
        except (ValueError, TypeError, KeyError):
            msg = (
                f"{self.path!r} is not a replay checkpoint (version {_CHECKPOINT_VERSION}) "
                f"of {self.source!r}: delete it to replay {self.source!r} from the start"
            )
            raise ReplayCheckpointError(msg) from None
        if size < offset:
            why = (
                f"the file has {size} bytes, fewer than the {offset} already replayed "
                "(truncated or replaced since)"
            )
            raise self._refuse(why)
        if (head, tail) != self._fingerprint(file, offset):
            raise self._refuse("its replayed bytes differ (replaced since)")
        self.offset, self.done = offset, frozenset(done)
        self.delivered, self.quarantined = delivered, quarantined

    @staticmethod
    def _fingerprint(file: BinaryIO, offset: int) -> tuple[str, str]:
        head = _read_at(file, 0, min(offset, _FINGERPRINT_BYTES))
        tail = _read_at(file, max(0, offset - _FINGERPRINT_BYTES), offset)
        return _digest(head), _digest(tail)

    def save(self, file: BinaryIO) -> None:
        """Write the checkpoint atomically: a temporary file, fsync, rename, fsync the folder."""
        head, tail = self._fingerprint(file, self.offset)
        state = {
            "version": _CHECKPOINT_VERSION,
            "file": os.path.abspath(self.source),
            "offset": self.offset,
            "done": sorted(self.done),
            "delivered": self.delivered,
            "quarantined": self.quarantined,
            "head": head,
            "tail": tail,
        }
        data = json.dumps(state).encode("utf-8")
        directory, name = os.path.split(os.path.abspath(self.path))
        # A name of its own: a second writer of this checkpoint never shares the file.
        descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise
        _fsync_directory(directory)

    def remove(self) -> None:
        """Delete the checkpoint file (after the dead-letter file: never the other way)."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class _Line:
    """One complete line of a step: where it starts, and its record or why it is none."""

    __slots__ = ("finished", "poison", "record", "start", "text")

    def __init__(self, start: int, text: bytes) -> None:
        self.start = start
        self.text = text
        self.record: dict[str, Any] | None = None
        self.poison: str | None = None  # the one-line reason it is not a record
        self.finished = False


def _parse(text: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Return ``(record, None)`` for a record line, ``(None, reason)`` for any other."""
    try:
        entry = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except ValueError as exc:
        return None, f"not JSON ({exc})"
    if isinstance(entry, dict) and isinstance(entry.get("record"), dict):
        return entry["record"], None
    if isinstance(entry, dict) and _ENCODED_KEYS.issubset(entry):
        return entry, None  # a line of a JsonLinesSink file replays as well
    return None, 'neither a dead-letter entry ({"record": {...}, ...}) nor an encoded record'


def _one_line(text: str) -> str:
    return " ".join(text.split())


#: A line the sink refused, with the one-line reason the quarantine file gives.
_Refused = tuple[_Line, str]


def _retryable(failure: FailedRecordsError) -> bool:
    """Whether the sink marks ``failure`` as passing (``DeliveryError`` for a 503)."""
    return getattr(failure, "retryable", False) is True


def _refusal(failure: FailedRecordsError) -> str:
    """The quarantine reason for a record ``failure`` refused."""
    why = failure if failure.cause is None else failure.cause
    return f"refused by the sink: {_one_line(_describe(why))}"


def _positions(batch: list[dict[str, Any]], failed: list[Any]) -> list[int] | None:
    """Return the positions in ``batch`` of the ``failed`` records, or None if one is not in it.

    By identity first (a sink names the objects it was given), else by equality.
    """
    by_identity = {id(record): index for index, record in enumerate(batch)}
    taken: set[int] = set()
    positions = []
    for record in failed:
        index = by_identity.get(id(record))
        if index is None or index in taken:
            index = next(
                (i for i, other in enumerate(batch) if i not in taken and other == record), None
            )
        if index is None:
            return None
        taken.add(index)
        positions.append(index)
    return positions


_REPLAY_ON_A_RUNNING_LOOP = (
    "replay() cannot await the sink's awaitable (a batch, or its async close) in a thread "
    "that already runs an event loop; call it from a plain thread, as in "
    "'await asyncio.to_thread(replay, path, sink)'"
)


class _Replay:
    """One run of ``replay``: the file, its checkpoint, the quarantine and the counts."""

    __slots__ = (
        "already_done",
        "batch_size",
        "checkpoint",
        "delivered",
        "left",
        "loop",
        "path",
        "progress",
        "quarantine",
        "quarantine_path",
        "quarantined",
        "sink",
        "size",
    )

    def __init__(
        self,
        path: str,
        sink: Sink,
        *,
        batch_size: int,
        checkpoint_path: str,
        quarantine_path: str,
        progress: Callable[[ReplayResult], object] | None,
    ) -> None:
        self.path = path
        self.sink = sink
        self.batch_size = batch_size
        self.checkpoint = _Checkpoint(checkpoint_path, path)
        self.quarantine_path = quarantine_path
        self.quarantine: JsonLinesSink | None = None  # opened at its first line
        self.progress = progress
        self.loop = SinkLoop(running_loop_message=_REPLAY_ON_A_RUNNING_LOOP)  # kept for the run
        self.delivered = 0
        self.quarantined = 0
        self.already_done = 0
        self.left = 0
        self.size = 0

    def result(self, *, removed: bool = False) -> ReplayResult:
        return ReplayResult(
            path=self.path,
            delivered=self.delivered,
            quarantined=self.quarantined,
            already_done=self.already_done,
            left=self.left,
            quarantine_path=self.quarantine_path,
            checkpoint_path=self.checkpoint.path,
            offset=self.checkpoint.offset,
            size=self.size,
            removed=removed,
        )

    def _report_progress(self) -> None:
        if self.progress is not None:
            self.progress(self.result())

    def run(self, file: BinaryIO) -> None:
        """Replay from the checkpoint to the size seen now; raise on a batch that failed."""
        self.size = os.fstat(file.fileno()).st_size
        checkpoint = self.checkpoint
        checkpoint.load(file, self.size)
        self.already_done = checkpoint.delivered + checkpoint.quarantined
        self.left = self._count_lines(file, checkpoint.offset) - sum(
            1 for start in checkpoint.done if start < self.size
        )
        self._report_progress()
        file.seek(checkpoint.offset)
        position = checkpoint.offset
        while True:
            lines, position = self._read_step(file, position)
            if not lines:
                return
            self._finish_step(file, lines, position)
            self._report_progress()

    def _count_lines(self, file: BinaryIO, offset: int) -> int:
        """Lines in ``[offset, size)``, a last one without a newline included."""
        file.seek(offset)
        remaining = self.size - offset
        count = 0
        last = b"\n"
        while remaining > 0:
            chunk = file.read(min(_COUNT_CHUNK, remaining))
            if not chunk:
                break
            count += chunk.count(b"\n")
            last = chunk[-1:]
            remaining -= len(chunk)
        return count + (last != b"\n")

    def _read_step(self, file: BinaryIO, position: int) -> tuple[list[_Line], int]:
        """Read up to ``batch_size`` complete lines from ``position``; return them and the end.

        A last line without its newline is not read: a writer may still be appending it.
        """
        lines: list[_Line] = []
        done = self.checkpoint.done
        while len(lines) < self.batch_size and position < self.size:
            text = file.readline(self.size - position)
            if not text.endswith(b"\n"):
                file.seek(position)  # not yet a line: left for the next run
                break
            line = _Line(position, text)
            position += len(text)
            if line.start in done or not text.strip():
                line.finished = True  # delivered by an earlier run, or blank
            else:
                line.record, line.poison = _parse(text)
            lines.append(line)
        return lines, position

    def _send(self, batch: list[dict[str, Any]]) -> None:
        """Hand ``batch`` to the sink; await what it returns if that is awaitable.

        Raises:
            RuntimeError: The sink returned an awaitable, and this thread runs an event
                loop already (it cannot run a second one).
        """
        result = self.sink(batch)
        if is_awaitable(result):
            self.loop.run(result)

    def _finish_step(self, file: BinaryIO, lines: list[_Line], end: int) -> None:
        """Send the records of ``lines``, quarantine what must be, then move the checkpoint.

        Raises:
            Exception: The sink failed on the batch (or, saying so, on part of it); the
                checkpoint is past every line finished before it.
        """
        pending = [line for line in lines if line.record is not None and not line.finished]
        batch = [line.record for line in pending if line.record is not None]
        refused: list[tuple[_Line, str]] = []
        failure: BaseException | None = None
        if batch:
            try:
                self._send(batch)
            except FailedRecordsError as partial:
                failed = partial.failed_in(batch)
                positions = None if failed is batch else _positions(batch, failed)
                if positions is None or len(positions) == len(batch):
                    if _retryable(partial):
                        raise  # a passing failure of the whole batch: the next run retries
                    refused, failure = self._send_alone(pending, partial)
                else:
                    failing = {index: pending[index] for index in positions}
                    if _retryable(partial):
                        failure = partial  # a passing failure (HTTP 503): the next run retries
                    else:
                        refused = [(line, _refusal(partial)) for line in failing.values()]
                    for index, line in enumerate(pending):
                        line.finished = index not in failing
            else:
                for line in pending:
                    line.finished = True
        delivered = sum(1 for line in pending if line.finished)
        poison = [(line, line.poison) for line in lines if line.poison is not None]
        self._quarantine([*poison, *refused])  # before the checkpoint: never lost
        for line, _ in (*poison, *refused):
            line.finished = True
        self._move_checkpoint(file, lines, end, delivered, len(poison) + len(refused))
        if failure is not None:
            self._report_progress()  # the delivered part is on disk: say so before stopping
            raise failure

    def _send_alone(
        self, pending: list[_Line], whole: FailedRecordsError
    ) -> tuple[list[_Refused], BaseException | None]:
        """Send each record of a batch the sink refused whole on its own; return the refused.

        A record refused alone is quarantined only if the sink is shown to work in this
        run (a record of this batch, or of an earlier batch, was delivered): a sink that
        refuses everything (an HTTP 401, a missing table) must not quarantine the file.
        Marks the lines delivered alone finished. Returns the refused lines with their
        reasons, and the failure that stopped the sending (a retryable refusal, any other
        exception), if one did.

        Raises:
            FailedRecordsError: ``whole``, when every record was refused alone and nothing
                was delivered in this run (nothing is quarantined then).
        """
        refused: list[_Refused] = []
        failure: BaseException | None = None
        if len(pending) == 1:
            refused.append((pending[0], _refusal(whole)))  # it was refused alone already
        else:
            for line in pending:
                record = line.record
                if record is None:  # pragma: no cover -- pending lines hold records
                    continue
                try:
                    self._send([record])
                except FailedRecordsError as refusal:
                    named = bool(refusal.failed_in([record]))  # [] names none: delivered
                    if _retryable(refusal):
                        line.finished = not named
                        failure = refusal  # a passing failure: the next run goes on
                        break
                    if named:
                        refused.append((line, _refusal(refusal)))
                    else:
                        line.finished = True
                except BaseException as exc:  # noqa: BLE001 -- raised once the step is on disk
                    failure = exc
                    break
                else:
                    line.finished = True
        if self.delivered or any(line.finished for line in pending):
            return refused, failure  # the sink works: what it refused alone is bad
        if failure is not None:
            return [], failure
        raise whole

    def _quarantine(self, entries: list[tuple[_Line, str | None]]) -> None:
        if not entries:
            return
        quarantine = self.quarantine
        if quarantine is None:
            quarantine = self.quarantine = JsonLinesSink(self.quarantine_path, fsync=True)
        now = rfc3339(time.time())
        quarantine.write_json(
            {
                **(
                    {"record": line.record}
                    if line.record is not None
                    else {"line": line.text.decode("utf-8", "replace").rstrip("\r\n")}
                ),
                "reason": reason,
                "source": self.path,
                "offset": line.start,
                "quarantined_at": now,
            }
            for line, reason in entries
        )

    def _move_checkpoint(
        self, file: BinaryIO, lines: list[_Line], end: int, delivered: int, quarantined: int
    ) -> None:
        checkpoint = self.checkpoint
        unfinished = [line.start for line in lines if not line.finished]
        offset = unfinished[0] if unfinished else end
        finished_after = {line.start for line in lines if line.finished and line.start > offset}
        previous = checkpoint.offset, checkpoint.done, checkpoint.delivered
        checkpoint.offset = offset
        checkpoint.done = frozenset(finished_after | {s for s in checkpoint.done if s >= end})
        checkpoint.delivered += delivered
        checkpoint.quarantined += quarantined
        try:
            checkpoint.save(file)
        except BaseException:
            # Not on disk: what this step did stays in doubt, and is not counted as done.
            checkpoint.offset, checkpoint.done, checkpoint.delivered = previous
            checkpoint.quarantined -= quarantined
            raise
        self.delivered += delivered
        self.quarantined += quarantined
        self.left -= sum(1 for line in lines if line.finished and line.start not in previous[1])

    def close(self, *, close_sink: bool) -> None:
        """Close the sink if asked (awaited on the run's loop), the loop, the quarantine.

        Raises:
            Exception: What the sink's close raised (everything is closed all the same).
        """
        try:
            if close_sink:
                closing = _close_sink(self.sink)
                if is_awaitable(closing):
                    self.loop.run(closing)
        finally:
            try:
                self.loop.close()
            finally:
                if self.quarantine is not None:
                    self.quarantine.close()


def replay(
    path: StrPath,
    sink: Sink,
    *,
    batch_size: int = 500,
    remove: bool = False,
    checkpoint_path: StrPath | None = None,
    quarantine_path: StrPath | None = None,
    progress: Callable[[ReplayResult], object] | None = None,
    close_sink: bool = False,
) -> ReplayResult:
    """Feed the records of a dead-letter file to ``sink`` in batches, in order, exactly once.

    Resumable: after each batch, a checkpoint file (``checkpoint_path``) records how far
    the file is finished, written atomically (a temporary file, fsync, rename). A replay
    that is interrupted (``KeyboardInterrupt``, a crash) or stops on a failing sink never
    sends again what was delivered: the next run starts at the checkpoint. Only the batch
    in flight at a crash or interrupt is in doubt: the sink may have stored it before the
    checkpoint moved, and then the next run sends it again. Run twice, the second run
    sends nothing; records appended to the file since are sent by the next run.

    Lines that are not records (not UTF-8, not JSON, not a dead-letter envelope nor an
    encoded record) and records the sink refuses one by one (it raises
    ``batchlog.FailedRecordsError`` naming some of the batch) go to the quarantine file,
    each with a one-line ``reason``; the rest of the batch counts as delivered and the
    replay goes on. A quarantined record keeps its ``{"record": ...}`` form, so the
    quarantine file replays too. A last line without its newline is left alone: a
    writer may still be appending it (it counts in ``left``).

    A ``FailedRecordsError`` naming every record of the batch (or None), not marked
    ``retryable``, may be one bad record or a sink that refuses everything: the batch
    is sent again one record at a time. A record refused alone is quarantined if the
    sink is shown to work in this run (a record of this batch, or of an earlier batch
    of this run, was delivered); if every record is refused alone and nothing was
    delivered in this run, the replay stops as below and nothing is quarantined (a
    sink failing whole, as on an HTTP 401, must not quarantine the file). A record
    alone in its batch is not sent again: its refusal was a refusal alone.

    The sink failing on the whole batch otherwise (any other exception, a
    ``FailedRecordsError`` the sink marks ``retryable``, as
    ``batchlog.sinks.DeliveryError`` does for a 503 or a lost connection) stops the
    replay: the checkpoint stays after the last record delivered, the exception is
    raised, and the next run resumes there. A sink that returns an awaitable (an
    ``async def`` sink) is awaited on one event loop made for this replay (as a
    writer awaits one), kept for the whole run and closed at its end, after the
    sink's close when ``close_sink`` is True. The records are
    already encoded, and every sink in ``batchlog.sinks`` takes them as they are.
    Lines of a ``batchlog.sinks.JsonLinesSink`` file (bare encoded records) replay too.

    Runs over one checkpoint never overlap: a run holds an exclusive ``flock`` on
    ``checkpoint_path + ".lock"`` (an empty file left in place) from start to end, and a
    second run raises ``ReplayCheckpointError`` at once, sending nothing. Where
    ``fcntl`` is missing (Windows) there is no lock: do not start a run while another
    one of the same file may be running.

    Args:
        path: The dead-letter file.
        sink: Any sink: a callable taking a list of records (it may be async). Closed
            at the end only with ``close_sink``.
        batch_size: Most lines per batch (records sent, plus lines quarantined).
        remove: Once every line is finished and nothing was appended meanwhile, delete
            the file, then its checkpoint (the quarantine file stays). Replay a file no
            running ``FallbackSink`` is still appending to (rotate it first), or records
            appended between the last read and the removal go with it.
        checkpoint_path: The checkpoint file; default ``path + ".checkpoint"``.
        quarantine_path: The quarantine file (JSON Lines, appended, fsynced); default
            ``path + ".quarantine.jsonl"``.
        progress: Called with a ``ReplayResult`` (the counts so far) once at the start
            and after each batch, once the checkpoint is on disk. What it raises stops
            the replay (nothing in doubt then) and is raised.
        close_sink: Close the sink at the end, however the run ends (its ``close()``, or
            ``aclose()`` if it has no ``close()``), before the file is removed; an async
            close is awaited on the run's event loop, the one its batches were awaited
            on, before that loop is closed. What the close raises is raised (after a
            failed run, with the run's failure as its ``__context__``).

    Returns:
        A ``ReplayResult``: records delivered and quarantined in this run, records
        finished by earlier runs, lines left, and the paths.

    Raises:
        ValueError: ``batch_size`` is below 1, or the checkpoint or quarantine path is
            ``path`` itself.
        TypeError: ``sink`` or ``progress`` is not callable, or ``remove`` not a bool.
        ReplayCheckpointError: The checkpoint does not fit the file (truncated or
            replaced since) or is damaged, or another replay of the file (the same
            checkpoint) is running. Nothing was sent. Also a ``ValueError``.
        OSError: The file cannot be read, or the checkpoint or quarantine written.
        RuntimeError: The sink (or its close) returned an awaitable, and this thread
            runs an event loop already.
        Exception: What ``sink`` raised on a whole batch. The checkpoint is after
            every record delivered before it; the file is left in place.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Exactly once and resumable (``checkpoint_path``); poison lines and refused
       records are quarantined (``quarantine_path``) instead of stopping it; async
       sinks; ``progress``; returns a ``ReplayResult`` (it returned the count delivered).
    .. versionchanged:: 0.2.0
       A batch refused whole is sent again one record at a time; runs of one file never
       overlap (a lock file); ``close_sink``.
    """
    check_int("batch_size", batch_size, low=1)
    check_callable("sink", sink, what="a sink (a callable taking a list of records)")
    check_callable("progress", progress, optional=True, what="a callable taking a ReplayResult")
    check_bool("remove", remove)
    check_bool("close_sink", close_sink)
    file_path = os.fspath(path)
    checkpoint_file = (
        f"{file_path}.checkpoint" if checkpoint_path is None else os.fspath(checkpoint_path)
    )
    quarantine_file = (
        f"{file_path}.quarantine.jsonl" if quarantine_path is None else os.fspath(quarantine_path)
    )
    lock_file = f"{checkpoint_file}.lock"
    for what, name in (
        ("checkpoint_path", checkpoint_file),
        ("quarantine_path", quarantine_file),
        ("checkpoint_path + '.lock'", lock_file),
    ):
        if os.path.abspath(name) == os.path.abspath(file_path):
            msg = f"{what} {name!r} is the dead-letter file itself; give another path"
            raise ValueError(msg)
        check_file_path(name, what=what)  # now, not after the first batch was sent
    run = _Replay(
        file_path,
        sink,
        batch_size=batch_size,
        checkpoint_path=checkpoint_file,
        quarantine_path=quarantine_file,
        progress=progress,
    )
    lock = _RunLock(lock_file, file_path)
    lock.acquire()  # before anything is read: a second run refuses at once
    try:
        try:
            with open(file_path, "rb") as file:
                run.run(file)
        finally:
            run.close(close_sink=close_sink)  # before removing: a sink may finish on close
        if remove and run.left == 0 and os.path.getsize(file_path) == run.checkpoint.offset:
            os.remove(file_path)  # first: a checkpoint left without its file replays nothing
            run.checkpoint.remove()
            lock.remove()  # still held: a run that opens it now finds no file to replay
            return run.result(removed=True)
        return run.result()
    finally:
        lock.release()


class _RunLock:
    """An exclusive ``flock`` on a file beside the checkpoint, held for a whole run.

    Two runs over one checkpoint would both send every record; the second one refuses
    at once instead. The file stays (empty) after the run: removing it when unlocked
    would let two runs lock two different files. Where ``fcntl`` is missing (Windows)
    there is no lock, and runs must not overlap (the docs say so).
    """

    __slots__ = ("_descriptor", "path", "source")

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            ReplayCheckpointError: Another run holds it.
            OSError: The lock file cannot be opened.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover -- Windows: runs must not overlap
            return
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(self.path, flags, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            msg = (
                f"another replay of {self.source!r} is running (it holds the lock file "
                f"{self.path!r}); let it finish, then run again if lines are left"
            )
            raise ReplayCheckpointError(msg) from None
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor

    def remove(self) -> None:
        """Delete the lock file while holding it (once the file and checkpoint are gone)."""
        if self._descriptor is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def release(self) -> None:
        """Let the lock go (closing the descriptor releases the flock)."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)
