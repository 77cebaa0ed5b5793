"""What of the caller's context travels with a record: the OpenTelemetry span, contextvars.

Both are read on the caller's thread at emit (on the worker they are gone):

- When OpenTelemetry's API is imported (``opentelemetry.trace`` in ``sys.modules``;
  batchlog never imports it), the current span's ids, as the SDK's own logging handler
  takes them: ``trace_id`` (32 lowercase hex digits), ``span_id`` (16) and ``trace_flags``
  (an int; 1 is sampled). None outside a valid span.
- ``contextvars.copy_context()``, for a formatter run on the worker inside the caller's
  context (structlog's ``merge_contextvars`` in a ``ProcessorFormatter``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["OTEL_TRACE_MODULE", "add_missing", "trace_fields"]

#: The module whose presence means OpenTelemetry is in use.
OTEL_TRACE_MODULE = "opentelemetry.trace"


# The last span context seen and its fields (None: not a valid span): records of one
# span share them, so most calls skip the formatting, and outside any span the check of
# validity. One tuple, replaced whole, so racing threads see a pair.
_last: tuple[object, dict[str, Any] | None] = (object(), None)


def trace_fields() -> dict[str, Any] | None:
    """The current OpenTelemetry span's ids, or None (no span, no OpenTelemetry, or broken).

    The dict may be shared between calls: read it, never change it. Never raises: a tracer
    that fails must not cost the record.
    """
    global _last  # noqa: PLW0603 -- one cache for the process, replaced whole
    trace = sys.modules.get(OTEL_TRACE_MODULE)
    if trace is None:
        return None
    try:
        span_context = trace.get_current_span().get_span_context()
        last_context, fields = _last
        if span_context is last_context:
            return fields
        if not span_context.is_valid:
            _last = (span_context, None)  # outside any span: the same invalid context
            return None
        fields = {
            "trace_id": f"{span_context.trace_id:032x}",
            "span_id": f"{span_context.span_id:016x}",
            "trace_flags": int(span_context.trace_flags),
        }
    except Exception:  # noqa: BLE001 -- a broken tracer must not cost the record
        return None
    _last = (span_context, fields)
    return fields


def add_missing(target: MutableMapping[str, Any], fields: Mapping[str, Any]) -> None:
    """Add the span's ``fields`` to a record's attributes or an event; what it has is kept."""
    for key, value in fields.items():
        target.setdefault(key, value)
