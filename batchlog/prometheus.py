"""A Prometheus collector for writers' counters: ``pip install 'batchlog[prometheus]'``.

::

    import prometheus_client
    from batchlog.prometheus import register

    register(handler, writer)  # on prometheus_client's default registry
    prometheus_client.start_http_server(8000, addr="127.0.0.1")

Every field of ``batchlog.Metrics`` (``batchlog.metrics.METRIC_FIELDS``) is one metric
family named ``<namespace>_<prometheus_name>`` (``batchlog_records_added_total``), a
counter or a gauge as the field's ``kind`` says, with the field's ``description`` as help
text, each series labelled ``writer`` with the writer's name (a handler's or processor's
writer). A writer whose sink is a ``batchlog.sinks.FallbackSink`` also reports the
sink's counters (``batchlog.sinks.fallback.FALLBACK_METRIC_FIELDS``). The table of every
name: docs/metrics.md, "Exporting metrics".

prometheus_client is imported by this module only, never by ``import batchlog``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from ._export import MetricsSource, SourceSet
from .metrics import METRIC_FIELDS, MetricField
from .sinks.fallback import FALLBACK_METRIC_FIELDS

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - the test extra installs prometheus_client
    msg = "batchlog.prometheus needs prometheus_client: pip install 'batchlog[prometheus]'"
    raise ImportError(msg) from exc

__all__ = ["BatchlogCollector", "register"]

_NAMESPACE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABELS = ("writer",)


class BatchlogCollector(Collector):
    """A custom collector reporting each source's ``batchlog.Metrics`` per scrape.

    Each scrape reads every source's ``metrics`` once, so the values of one source in
    one scrape are consistent with each other. Sources are held weakly: a writer that
    was closed or garbage-collected is no longer reported. Register it with a registry
    (or use ``register``)::

        collector = BatchlogCollector(handler, writer)
        prometheus_client.REGISTRY.register(collector)

    Args:
        *sources: BatchWriters, BatchingHandlers or BatchingProcessors (anything with a
            ``writer``, or with a str ``name`` and a ``metrics`` snapshot).
        namespace: Prefix of every metric name (``"batchlog"`` gives
            ``batchlog_records_added_total``); ``""`` for none.

    Raises:
        TypeError: A source is not one of those.
        ValueError: ``namespace`` is not a valid metric name prefix, or two sources have
            the same name (it labels their series: give each writer its own ``name``).

    .. versionadded:: 0.1.0
    """

    def __init__(self, *sources: MetricsSource, namespace: str = "batchlog") -> None:
        if not isinstance(namespace, str) or (namespace and not _NAMESPACE.fullmatch(namespace)):
            msg = (
                "namespace must be '' or letters, digits and underscores not starting with "
                f"a digit, not {namespace!r}"
            )
            raise ValueError(msg)
        self._prefix = f"{namespace}_" if namespace else ""
        self._sources = SourceSet()
        for source in sources:
            self._sources.add(source)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} namespace={self._prefix.rstrip('_')!r}>"

    def add(self, source: MetricsSource) -> None:
        """Report ``source`` from the next scrape on; adding it again does nothing.

        Safe to call from any thread, also during a scrape.

        Args:
            source: A BatchWriter, a BatchingHandler or a BatchingProcessor.

        Raises:
            TypeError: ``source`` is not one of those, or cannot be referenced weakly.
            ValueError: Another reported, open writer has the same name.
        """
        self._sources.add(source)

    def remove(self, source: MetricsSource) -> None:
        """Stop reporting ``source``; does nothing if it is not reported.

        Args:
            source: A source given to the constructor or to ``add``.

        Raises:
            TypeError: ``source`` is not a BatchWriter, BatchingHandler or BatchingProcessor.
        """
        self._sources.remove(source)

    def describe(self) -> Iterator[Metric]:
        """Yield every metric family this collector can report, without samples.

        The registry calls it once, at registration, to reserve the names.
        """
        for field in (*METRIC_FIELDS, *FALLBACK_METRIC_FIELDS):
            yield self._family(field)

    def collect(self) -> Iterator[Metric]:
        """Yield one metric family per field, with one sample per live source.

        The FallbackSink families are yielded only when a source's sink is one.
        """
        snapshots = self._sources.snapshots()
        writers = [(snapshot.name, snapshot.metrics) for snapshot in snapshots]
        fallbacks = [
            (snapshot.name, snapshot.fallback)
            for snapshot in snapshots
            if snapshot.fallback is not None
        ]
        for field in METRIC_FIELDS:
            yield self._filled(field, writers)
        if fallbacks:
            for field in FALLBACK_METRIC_FIELDS:
                yield self._filled(field, fallbacks)

    def _filled(self, field: MetricField, counters: Sequence[tuple[str, object]]) -> Metric:
        """Return ``field``'s family with one sample per ``(writer name, counters)``."""
        family = self._family(field)
        for name, snapshot in counters:
            family.add_metric([name], getattr(snapshot, field.name))
        return family

    def _family(self, field: MetricField) -> CounterMetricFamily | GaugeMetricFamily:
        name = self._prefix + field.prometheus_name
        unit = "seconds" if field.unit == "s" else ""
        if field.kind == "counter":
            return CounterMetricFamily(name, field.description, labels=_LABELS, unit=unit)
        return GaugeMetricFamily(name, field.description, labels=_LABELS, unit=unit)


def register(
    *sources: MetricsSource,
    registry: CollectorRegistry = REGISTRY,
    namespace: str = "batchlog",
) -> BatchlogCollector:
    """Make a ``BatchlogCollector`` for ``sources`` and register it with ``registry``.

    Args:
        *sources: BatchWriters, BatchingHandlers or BatchingProcessors; more can be
            added later with ``BatchlogCollector.add``.
        registry: Where to register it; prometheus_client's default registry unless given.
        namespace: Prefix of every metric name.

    Returns:
        The registered collector (``registry.unregister(collector)`` removes it).

    Raises:
        TypeError: A source is not one of those.
        ValueError: Two sources have the same name, ``namespace`` is invalid, or
            ``registry`` already has a collector reporting these metric names (use
            another ``namespace``, or ``BatchlogCollector.add`` on the first one).

    .. versionadded:: 0.1.0
    """
    collector = BatchlogCollector(*sources, namespace=namespace)
    registry.register(collector)
    return collector
