"""The exceptions batchlog raises.

Every error is a ``BatchlogError``; the ones caused by a bad argument are also the
built-in exception a Python user would expect, so ``except ValueError`` keeps working::

    BatchlogError
    ├── CapacityTooSmallError      (also ValueError)   capacity < 1 or not an int
    ├── InvalidFlushIntervalError  (also ValueError)   flush_interval < 0.001 s
    ├── InvalidQueueSizeError      (also ValueError)   max_queue_size < capacity
    ├── MissingFlushFunctionError  (also TypeError)    flush_fn None or not callable
    ├── WriterClosedError          (also RuntimeError) add after close()
    └── QueueFullError             (also TimeoutError) add(timeout=...) expired

.. versionadded:: 0.1.0
"""

from __future__ import annotations

__all__ = [
    "BatchlogError",
    "CapacityTooSmallError",
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
