"""The counters a writer keeps, handed out as one consistent snapshot."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Metrics"]


@dataclasses.dataclass(frozen=True)
class Metrics:
    """A snapshot of a writer's counters, all read at one instant.

    Every snapshot satisfies ``records_added == records_processed + records_failed +
    records_evicted + records_in_buffer``.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "avg_flush_duration",
        "flush_count",
        "flush_errors",
        "last_flush_duration",
        "max_flush_duration",
        "records_added",
        "records_dropped",
        "records_evicted",
        "records_failed",
        "records_in_buffer",
        "records_processed",
        "total_flush_time",
    )

    #: Records accepted.
    records_added: int
    #: Records refused: full queue, expired timeout, writer closed.
    records_dropped: int
    #: Records accepted, then discarded to make room (``evict_oldest`` / ``drop_oldest``).
    records_evicted: int
    #: Records in batches for which the sink returned normally.
    records_processed: int
    #: Records in batches for which the sink raised.
    records_failed: int
    #: Records accepted and not yet finished by the sink (waiting or in flight).
    records_in_buffer: int
    #: Sink calls finished, normally or not.
    flush_count: int
    #: Sink calls that raised.
    flush_errors: int
    #: Seconds the last sink call took.
    last_flush_duration: float
    #: Mean seconds per sink call.
    avg_flush_duration: float
    #: Longest sink call, in seconds.
    max_flush_duration: float
    #: Seconds spent in the sink in all.
    total_flush_time: float

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict, in declaration order."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
