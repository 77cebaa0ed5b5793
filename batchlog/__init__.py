"""batchlog: collect records from many threads and tasks, hand them to a sink in batches.

The public names are re-exported here; see ``BatchWriter`` to start.
"""

from __future__ import annotations

from ._lifecycle import deliver_on_sigterm
from .errors import (
    BatchlogError,
    CapacityTooSmallError,
    FailedRecordsError,
    InvalidFlushIntervalError,
    InvalidQueueSizeError,
    MissingFlushFunctionError,
    QueueFullError,
    WriterClosedError,
)
from .handler import BatchingHandler
from .metrics import Metrics
from .overflow import OverflowPolicy
from .processor import BatchingProcessor, RecordTimeStamper
from .writer import BatchWriter

__version__ = "0.1.0"

__all__ = [
    "BatchWriter",
    "BatchingHandler",
    "BatchingProcessor",
    "BatchlogError",
    "CapacityTooSmallError",
    "FailedRecordsError",
    "InvalidFlushIntervalError",
    "InvalidQueueSizeError",
    "Metrics",
    "MissingFlushFunctionError",
    "OverflowPolicy",
    "QueueFullError",
    "RecordTimeStamper",
    "WriterClosedError",
    "__version__",
    "deliver_on_sigterm",
]
