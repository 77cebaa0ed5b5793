"""An OpenTelemetry metrics bridge for writers' counters: ``pip install 'batchlog[otel]'``.

::

    from batchlog.otel import instrument

    instruments = instrument(handler, writer)  # on the global MeterProvider
    ...
    instruments.uninstrument()

Every field of ``batchlog.Metrics`` (``batchlog.metrics.METRIC_FIELDS``) becomes one
observable instrument named by the field's ``otel_name`` (``batchlog.records_added``),
of the field's ``otel_instrument`` kind, with its ``unit`` and ``description``, each
observation carrying the attribute ``writer`` (the writer's name). A writer whose sink
is a ``batchlog.sinks.FallbackSink`` also reports the sink's counters
(``batchlog.sinks.fallback.FALLBACK_METRIC_FIELDS``). The table of every name:
docs/metrics.md, "Exporting metrics".

OpenTelemetry is imported by this module only, never by ``import batchlog``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable

from . import __version__
from ._export import MetricsSource, Snapshot, SourceSet
from .metrics import METRIC_FIELDS, MetricField
from .sinks.fallback import FALLBACK_METRIC_FIELDS

try:
    from opentelemetry.metrics import (
        CallbackOptions,
        CallbackT,
        Meter,
        MeterProvider,
        Observation,
        get_meter_provider,
    )
except ImportError as exc:  # pragma: no cover - the test extra installs opentelemetry-sdk
    msg = "batchlog.otel needs opentelemetry-api: pip install 'batchlog[otel]'"
    raise ImportError(msg) from exc

__all__ = ["BatchlogInstruments", "instrument"]

_ALL_FIELDS = (*METRIC_FIELDS, *FALLBACK_METRIC_FIELDS)


class _MeterBridge:
    """The instruments batchlog made on one meter, and the source sets they report.

    Instruments cannot be removed from a meter, and a meter hands back the existing
    instrument (with its first callbacks only) when one is made twice: so each meter
    gets one bridge, made once, that every ``BatchlogInstruments`` on it shares.
    """

    __slots__ = ("_groups", "_lock", "_served", "_snapshots")

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._groups: list[SourceSet] = []
        self._snapshots: list[Snapshot] | None = None
        self._served: set[int] = set()
        for index, field in enumerate(_ALL_FIELDS):
            create: Callable[..., object] = {
                "counter": meter.create_observable_counter,
                "up_down_counter": meter.create_observable_up_down_counter,
                "gauge": meter.create_observable_gauge,
            }[field.otel_instrument]
            create(
                field.otel_name,
                callbacks=[self._callback(index, field)],
                unit=field.unit,
                description=field.description,
            )

    def _callback(self, index: int, field: MetricField) -> CallbackT:
        """Return the callback observing ``field`` (instrument number ``index``)."""
        is_fallback = index >= len(METRIC_FIELDS)

        def observe(options: CallbackOptions) -> Iterable[Observation]:  # noqa: ARG001
            observations: list[Observation] = []
            for snapshot in self._snapshots_for(index):
                counters = snapshot.fallback if is_fallback else snapshot.metrics
                if counters is not None:
                    value = getattr(counters, field.name)
                    observations.append(Observation(value, {"writer": snapshot.name}))
            return observations

        return observe

    def _snapshots_for(self, index: int) -> list[Snapshot]:
        """Return this collection's snapshots, reading them if instrument ``index`` had them.

        A collection calls each instrument's callback once, so the first instrument asked
        twice marks the start of the next collection: every instrument of one collection
        sees the same snapshot of each source, whatever order the SDK calls them in.
        """
        with self._lock:
            if self._snapshots is None or index in self._served:
                names: set[str] = set()
                snapshots: list[Snapshot] = []
                for group in self._groups:
                    for snapshot in group.snapshots():
                        if snapshot.name not in names:  # a writer in two groups counts once
                            names.add(snapshot.name)
                            snapshots.append(snapshot)
                self._snapshots = snapshots
                self._served = set()
            self._served.add(index)
            return self._snapshots

    def attach(self, group: SourceSet) -> None:
        """Report ``group``'s sources from the next collection on."""
        with self._lock:
            self._groups.append(group)

    def detach(self, group: SourceSet) -> None:
        """Stop reporting ``group``'s sources."""
        with self._lock:
            self._groups = [other for other in self._groups if other is not group]
            self._snapshots = None


_bridges_lock = threading.Lock()
_bridges: weakref.WeakKeyDictionary[Meter, _MeterBridge] = weakref.WeakKeyDictionary()


def _bridge_for(meter: Meter) -> _MeterBridge:
    """Return the meter's bridge, making it (and the instruments) on first use."""
    with _bridges_lock:
        try:
            bridge = _bridges.get(meter)
        except TypeError:  # a meter that cannot be referenced weakly: it is not shared
            return _MeterBridge(meter)
        if bridge is None:
            bridge = _MeterBridge(meter)
            _bridges[meter] = bridge
        return bridge


class BatchlogInstruments:
    """The sources one ``instrument`` call reports, until ``uninstrument``.

    Made by ``instrument``. Every collection reads each source's ``metrics`` once,
    so the values of one source in one collection are consistent with each other.
    Sources are held weakly: a writer that was closed or garbage-collected is no longer
    reported.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_bridge", "_lock", "_sources")

    def __init__(self, bridge: _MeterBridge) -> None:
        self._lock = threading.Lock()
        self._bridge: _MeterBridge | None = bridge
        self._sources = SourceSet()
        bridge.attach(self._sources)

    def __repr__(self) -> str:
        state = "uninstrumented" if self._bridge is None else "reporting"
        return f"<{type(self).__name__} {state}>"

    def add(self, source: MetricsSource) -> None:
        """Report ``source`` from the next collection on; adding it again does nothing.

        Safe to call from any thread, also during a collection.

        Args:
            source: A BatchWriter, a BatchingHandler or a BatchingProcessor.

        Raises:
            TypeError: ``source`` is not one of those, or cannot be referenced weakly.
            ValueError: Another source of this call, open, has the same name.
            RuntimeError: ``uninstrument`` was called; call ``instrument`` again.
        """
        with self._lock:
            if self._bridge is None:
                msg = "these instruments were uninstrumented; call batchlog.otel.instrument()"
                raise RuntimeError(msg)
            self._sources.add(source)

    def remove(self, source: MetricsSource) -> None:
        """Stop reporting ``source``; does nothing if it is not reported.

        Args:
            source: A source given to ``instrument`` or to ``add``.

        Raises:
            TypeError: ``source`` is not a BatchWriter, BatchingHandler or BatchingProcessor.
        """
        self._sources.remove(source)

    def uninstrument(self) -> None:
        """Stop reporting every source of this call; idempotent.

        The instruments stay on the meter (OpenTelemetry cannot remove them) and report
        the sources of other ``instrument`` calls, if any.
        """
        with self._lock:
            bridge, self._bridge = self._bridge, None
        if bridge is not None:
            bridge.detach(self._sources)
        self._sources.clear()


def instrument(
    *sources: MetricsSource,
    meter_provider: MeterProvider | None = None,
    meter_name: str = "batchlog",
) -> BatchlogInstruments:
    """Report ``sources``' counters through OpenTelemetry observable instruments.

    The instruments are made once per meter; later calls on the same meter provider
    share them, each call reporting its own sources.

    Args:
        *sources: BatchWriters, BatchingHandlers or BatchingProcessors; more can be
            added later with ``BatchlogInstruments.add``.
        meter_provider: Where the instruments go; the global MeterProvider unless given
            (set it first: a proxy provider's meters are not shared between calls).
        meter_name: The instrumentation scope's name.

    Returns:
        The handle to add and remove sources and to ``BatchlogInstruments.uninstrument``.

    Raises:
        TypeError: A source is not one of those.
        ValueError: Two sources have the same name (it is the ``writer`` attribute).

    .. versionadded:: 0.1.0
    """
    provider = get_meter_provider() if meter_provider is None else meter_provider
    meter = provider.get_meter(meter_name, __version__)
    instruments = BatchlogInstruments(_bridge_for(meter))
    try:
        for source in sources:
            instruments.add(source)
    except BaseException:
        instruments.uninstrument()
        raise
    return instruments
