"""The counters a writer keeps, handed out as one consistent snapshot, and what each means.

``Metrics`` is the snapshot; ``METRIC_FIELDS`` defines every one of its fields once: its
kind, unit, meaning and exported names. The Prometheus and OpenTelemetry exporters, the
docs and the demo all read those definitions.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["METRIC_FIELDS", "METRIC_FIELDS_BY_NAME", "MetricField", "Metrics"]


@dataclasses.dataclass(frozen=True)
class Metrics:
    """A snapshot of a writer's counters, all read at one instant.

    Every snapshot satisfies ``records_added == records_processed + records_failed +
    records_evicted + records_in_buffer``. What each field means, its kind and its unit:
    ``METRIC_FIELDS`` (one ``MetricField`` per field, in this order).

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
        "reopened",
        "total_flush_time",
    )

    # The meaning of each field is defined once, in METRIC_FIELDS below.
    records_added: int
    records_dropped: int
    records_evicted: int
    records_processed: int
    records_failed: int
    records_in_buffer: int
    flush_count: int
    flush_errors: int
    last_flush_duration: float
    avg_flush_duration: float
    max_flush_duration: float
    total_flush_time: float
    reopened: int

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict, in declaration order."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class MetricField:
    """The definition of one counter of a snapshot: what it means and how it is exported.

    ``batchlog.prometheus`` and ``batchlog.otel`` export exactly these definitions.

    Attributes:
        name: The snapshot attribute it is read from (``"records_added"``).
        kind: ``"counter"`` (only grows while the writer lives) or ``"gauge"`` (rises
            and falls, or is a latest, mean or largest value).
        unit: The unit in UCUM notation, as OpenTelemetry wants it: ``"{record}"``,
            ``"{flush}"``, ``"{batch}"`` or ``"s"`` (seconds).
        description: What it counts, in one plain-text sentence (the Prometheus help
            text and the OpenTelemetry description).
        prometheus_name: The Prometheus metric name without the namespace prefix;
            counters end in ``_total``.
        otel_name: The OpenTelemetry instrument name.
        otel_instrument: The OpenTelemetry observable instrument: ``"counter"``,
            ``"up_down_counter"`` (a gauge that may be summed across writers) or
            ``"gauge"`` (a duration, which may not).

    .. versionadded:: 0.2.0
    """

    __slots__ = (
        "description",
        "kind",
        "name",
        "otel_instrument",
        "otel_name",
        "prometheus_name",
        "unit",
    )

    name: str
    kind: Literal["counter", "gauge"]
    unit: str
    description: str
    prometheus_name: str
    otel_name: str
    otel_instrument: Literal["counter", "up_down_counter", "gauge"]


#: The definition of every field of ``Metrics``, in declaration order.
#:
#: .. versionadded:: 0.2.0
METRIC_FIELDS: tuple[MetricField, ...] = (
    MetricField(
        name="records_added",
        kind="counter",
        unit="{record}",
        description="Records accepted.",
        prometheus_name="records_added_total",
        otel_name="batchlog.records_added",
        otel_instrument="counter",
    ),
    MetricField(
        name="records_dropped",
        kind="counter",
        unit="{record}",
        description=(
            "Records refused: full queue, expired timeout, writer closed, "
            "or logged from inside the sink."
        ),
        prometheus_name="records_dropped_total",
        otel_name="batchlog.records_dropped",
        otel_instrument="counter",
    ),
    MetricField(
        name="records_evicted",
        kind="counter",
        unit="{record}",
        description=(
            "Records accepted, then discarded by try_add(..., evict_oldest=True) "
            '(the "drop_oldest" policy).'
        ),
        prometheus_name="records_evicted_total",
        otel_name="batchlog.records_evicted",
        otel_instrument="counter",
    ),
    MetricField(
        name="records_processed",
        kind="counter",
        unit="{record}",
        description="Records in batches for which flush_fn returned normally.",
        prometheus_name="records_processed_total",
        otel_name="batchlog.records_processed",
        otel_instrument="counter",
    ),
    MetricField(
        name="records_failed",
        kind="counter",
        unit="{record}",
        description="Records in batches for which flush_fn raised.",
        prometheus_name="records_failed_total",
        otel_name="batchlog.records_failed",
        otel_instrument="counter",
    ),
    MetricField(
        name="records_in_buffer",
        kind="gauge",
        unit="{record}",
        description="Records accepted and not yet finished by flush_fn (waiting or in flight).",
        prometheus_name="records_in_buffer",
        otel_name="batchlog.records_in_buffer",
        otel_instrument="up_down_counter",
    ),
    MetricField(
        name="flush_count",
        kind="counter",
        unit="{flush}",
        description="flush_fn calls finished, normally or not.",
        prometheus_name="flushes_total",
        otel_name="batchlog.flushes",
        otel_instrument="counter",
    ),
    MetricField(
        name="flush_errors",
        kind="counter",
        unit="{flush}",
        description="flush_fn calls that raised.",
        prometheus_name="flush_errors_total",
        otel_name="batchlog.flush_errors",
        otel_instrument="counter",
    ),
    MetricField(
        name="last_flush_duration",
        kind="gauge",
        unit="s",
        description="Seconds the latest flush_fn call took.",
        prometheus_name="last_flush_duration_seconds",
        otel_name="batchlog.last_flush_duration",
        otel_instrument="gauge",
    ),
    MetricField(
        name="avg_flush_duration",
        kind="gauge",
        unit="s",
        description=(
            "Mean seconds per flush_fn call (total_flush_time / flush_count; 0.0 before the first)."
        ),
        prometheus_name="avg_flush_duration_seconds",
        otel_name="batchlog.avg_flush_duration",
        otel_instrument="gauge",
    ),
    MetricField(
        name="max_flush_duration",
        kind="gauge",
        unit="s",
        description="Longest flush_fn call, in seconds.",
        prometheus_name="max_flush_duration_seconds",
        otel_name="batchlog.max_flush_duration",
        otel_instrument="gauge",
    ),
    MetricField(
        name="total_flush_time",
        kind="counter",
        unit="s",
        description="Seconds spent in flush_fn altogether.",
        prometheus_name="flush_seconds_total",
        otel_name="batchlog.flush_time",
        otel_instrument="counter",
    ),
    MetricField(
        name="reopened",
        kind="counter",
        unit="{reopen}",
        description=(
            "Times a BatchingHandler closed by someone else (dictConfig, say) while still "
            "attached reopened with a fresh writer for records logged later; the counts "
            "above then add up every writer it had. Always 0 for a BatchWriter."
        ),
        prometheus_name="reopened_total",
        otel_name="batchlog.reopened",
        otel_instrument="counter",
    ),
)

#: ``METRIC_FIELDS`` by field name, read-only: ``METRIC_FIELDS_BY_NAME["records_added"]``.
#:
#: .. versionadded:: 0.2.0
METRIC_FIELDS_BY_NAME: Mapping[str, MetricField] = types.MappingProxyType(
    {field.name: field for field in METRIC_FIELDS}
)
