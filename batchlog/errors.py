"""The exceptions batchlog raises.

Every error is a ``BatchlogError``; the ones caused by a bad argument are also the
built-in exception a Python user would expect, so ``except ValueError`` keeps working::

    BatchlogError
    ├── CapacityTooSmallError      (also ValueError)   capacity < 1 or not an int
    ├── InvalidFlushIntervalError  (also ValueError)   flush_interval < 0.001 s
    ├── InvalidQueueSizeError      (also ValueError)   max_queue_size < capacity
    ├── MissingFlushFunctionError  (also TypeError)    flush_fn None or not callable
    ├── WriterClosedError          (also RuntimeError) add after close()
    ├── QueueFullError             (also TimeoutError) add(timeout=...) expired
    └── FailedRecordsError                             a sink says which records failed

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BatchlogError",
    "CapacityTooSmallError",
    "FailedRecordsError",
    "InvalidFlushIntervalError",
    "InvalidQueueSizeError",
    "MissingFlushFunctionError",
    "QueueFullError",
    "WriterClosedError",
]


class BatchlogError(Exception):
    """The base of every exception batchlog raises."""


class CapacityTooSmallError(BatchlogError, ValueError):
    """``capacity`` is not an int of at least 1."""


class InvalidFlushIntervalError(BatchlogError, ValueError):
    """``flush_interval`` is not a number of seconds of at least 0.001."""


class InvalidQueueSizeError(BatchlogError, ValueError):
    """``max_queue_size`` is not an int of at least ``capacity``."""


class MissingFlushFunctionError(BatchlogError, TypeError):
    """``flush_fn`` is missing or not callable."""


class WriterClosedError(BatchlogError, RuntimeError):
    """A record was added after the writer was closed; it was counted as dropped."""


class QueueFullError(BatchlogError, TimeoutError):
    """The queue stayed full for the whole timeout (or the add could not wait).

    The record was counted as dropped.
    """


class FailedRecordsError(BatchlogError):
    """Raised by a sink that delivered part of a batch: these records were not delivered.

    The writer counts ``records`` as failed and the rest of the batch as processed, and
    ``on_error`` receives only ``records``; ``batchlog.sinks.FallbackSink`` dead-letters
    only them. Any other exception from a sink fails the whole batch::

        def sink(batch):
            failed = [record for record in batch if not store(record)]
            if failed:
                raise FailedRecordsError(failed, cause=StoreError("refused"))

    Attributes:
        records: The records of the batch that were not delivered, or None for all of
            them. More records than the batch holds count as the whole batch.
        cause: Why, if known (also the ``__cause__`` when raised ``from`` it).

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        records: list[Any] | None,
        cause: BaseException | None = None,
        message: str | None = None,
    ) -> None:
        if records is not None and not isinstance(records, list):
            msg = f"records must be a list (or None for the whole batch), not {records!r}"
            raise TypeError(msg)
        if message is None:
            count = "every record" if records is None else f"{len(records)} record(s)"
            message = f"{count} of the batch not delivered" + (
                f": {cause!r}" if cause is not None else ""
            )
        super().__init__(message)
        self.records = records
        self.cause = cause

    def failed_in(self, batch: list[Any]) -> list[Any]:
        """Return the records of ``batch`` that count as failed.

        ``records``; or all of ``batch`` when ``records`` is None or holds more than it.
        The writer counts by this, and ``FallbackSink`` dead-letters by it.
        """
        records = self.records
        if records is None or len(records) > len(batch):
            return batch
        return records
