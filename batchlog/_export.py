"""What the metrics exporters share: the sources they watch, read one snapshot at a time.

``batchlog.prometheus`` and ``batchlog.otel`` build on it; it imports neither
prometheus_client nor OpenTelemetry. The fields they export are defined in
``batchlog.metrics.METRIC_FIELDS`` and ``batchlog.sinks.fallback.FALLBACK_METRIC_FIELDS``.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from typing import Any, NamedTuple, Union, cast

from typing_extensions import Protocol

from .metrics import Metrics
from .sinks.fallback import FallbackMetrics, FallbackSink

__all__ = ["MetricsSource", "Snapshot", "SourceSet"]


class NamedMetrics(Protocol):
    """Something with a name and a ``batchlog.Metrics`` snapshot: a BatchWriter."""

    @property
    def name(self) -> str:
        """Labels its series."""

    @property
    def metrics(self) -> Metrics:
        """One consistent snapshot of its counters."""


class WriterOwner(Protocol):
    """Something with a ``writer``: a BatchingHandler or a BatchingProcessor."""

    @property
    def writer(self) -> NamedMetrics:
        """The writer whose counters are exported."""


#: What an exporter accepts: a BatchWriter, a BatchingHandler or a BatchingProcessor.
MetricsSource = Union[NamedMetrics, WriterOwner]


class Snapshot(NamedTuple):
    """One source's counters, read once for one scrape or collection."""

    name: str
    metrics: Metrics
    #: The FallbackSink's counters, if the source's sink is one.
    fallback: FallbackMetrics | None


def _writer_of(source: object) -> NamedMetrics:
    """Return the object whose ``name`` and ``metrics`` are exported for ``source``."""
    target = getattr(source, "writer", source)
    has_metrics = inspect.getattr_static(target, "metrics", None) is not None  # not read yet
    if not (isinstance(getattr(target, "name", None), str) and has_metrics):
        msg = (
            "a metrics source must be a BatchWriter, a BatchingHandler, a BatchingProcessor "
            f"or have a str `name` and a `metrics` snapshot, not {source!r}"
        )
        raise TypeError(msg)
    return cast(NamedMetrics, target)


def _fallback_sink_of(source: object, writer: object) -> FallbackSink | None:
    """Return the source's sink if it is a ``FallbackSink``, else None."""
    sink = getattr(source, "sink", None)  # a BatchingHandler's sink
    if sink is None:
        # A BatchWriter (or a BatchingProcessor's writer) calls its sink directly. A
        # source without flush_fn (a stand-in with only name and metrics) has no fallback.
        sink = getattr(writer, "flush_fn", None)
    return sink if isinstance(sink, FallbackSink) else None


class _Entry(NamedTuple):
    writer: weakref.ReferenceType[Any]
    # Held strongly: a FallbackSink cannot be referenced weakly, and the writer holds it
    # anyway; the entry goes when the writer does.
    fallback: FallbackSink | None


class SourceSet:
    """A thread-safe set of metrics sources, held weakly, read one snapshot at a time.

    A source is keyed by its writer (a handler and its writer are the same source). A
    source whose writer was garbage-collected or closed is forgotten at the next
    ``snapshots``.
    """

    __slots__ = ("_entries", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def add(self, source: MetricsSource) -> None:
        """Watch ``source``; adding it again does nothing.

        Raises:
            TypeError: ``source`` has neither a ``writer`` nor a ``name`` and ``metrics``,
                or cannot be referenced weakly.
            ValueError: Another watched, open writer has the same name (the name labels
                the series, so two writers would report as one).
        """
        writer = _writer_of(source)
        try:
            reference = weakref.ref(writer)
        except TypeError:
            msg = f"a metrics source must support weak references, and {writer!r} does not"
            raise TypeError(msg) from None
        entry = _Entry(reference, _fallback_sink_of(source, writer))
        with self._lock:
            others = [entry.writer() for entry in self._entries]
            if any(other is writer for other in others):
                return
            for other in others:
                if other is not None and not _is_closed(other) and other.name == writer.name:
                    msg = (
                        f"two metrics sources are named {writer.name!r}; the name labels "
                        "their series, so give each writer or handler its own name"
                    )
                    raise ValueError(msg)
            self._entries.append(entry)

    def remove(self, source: MetricsSource) -> None:
        """Stop watching ``source``; does nothing if it is not watched.

        Raises:
            TypeError: ``source`` is not a metrics source (see ``add``).
        """
        writer = _writer_of(source)
        with self._lock:
            self._entries = [entry for entry in self._entries if entry.writer() is not writer]

    def clear(self) -> None:
        """Stop watching every source."""
        with self._lock:
            self._entries = []

    def snapshots(self) -> list[Snapshot]:
        """Read each live source's counters once, in the order the sources were added."""
        with self._lock:
            kept: list[_Entry] = []
            sources: list[tuple[NamedMetrics, FallbackSink | None]] = []
            for entry in self._entries:
                writer = entry.writer()
                if writer is not None and not _is_closed(writer):
                    kept.append(entry)
                    sources.append((writer, entry.fallback))
            self._entries = kept
        return [
            Snapshot(writer.name, writer.metrics, None if fallback is None else fallback.metrics)
            for writer, fallback in sources
        ]


def _is_closed(writer: object) -> bool:
    return getattr(writer, "closed", False) is True
