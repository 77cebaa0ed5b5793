"""``batchlog.otel``: every ``Metrics`` field as an OpenTelemetry observable instrument."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import WAIT

from batchlog import BatchWriter, Metrics
from batchlog.metrics import METRIC_FIELDS
from batchlog.sinks.fallback import FALLBACK_METRIC_FIELDS

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum

from batchlog.otel import BatchlogInstruments, instrument

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The instrument each Metrics field is reported by.
INSTRUMENT_NAMES = {
    "records_added": "batchlog.records_added",
    "records_dropped": "batchlog.records_dropped",
    "records_evicted": "batchlog.records_evicted",
    "records_processed": "batchlog.records_processed",
    "records_failed": "batchlog.records_failed",
    "records_in_buffer": "batchlog.records_in_buffer",
    "flush_count": "batchlog.flushes",
    "flush_errors": "batchlog.flush_errors",
    "last_flush_duration": "batchlog.last_flush_duration",
    "avg_flush_duration": "batchlog.avg_flush_duration",
    "max_flush_duration": "batchlog.max_flush_duration",
    "total_flush_time": "batchlog.flush_time",
    "reopened": "batchlog.reopened",
}

ZERO = Metrics(0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0)

#: Skips a test needing ``BatchWriter.flush_fn`` (a bare writer's sink) until it exists.
needs_public_flush_fn = pytest.mark.skipif(
    not hasattr(BatchWriter, "flush_fn"),
    reason="BatchWriter.flush_fn, which shows a bare writer's sink, is not in this tree yet",
)


class CountingSource:
    """A source that counts how often its metrics were read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reads = 0

    @property
    def metrics(self) -> Metrics:
        self.reads += 1
        return ZERO


@dataclasses.dataclass
class Telemetry:
    """A MeterProvider and the in-memory reader that collects from it."""

    provider: MeterProvider
    reader: InMemoryMetricReader

    def collect(self) -> dict[str, Any]:
        """Every metric of one collection, by name (batchlog's scope only)."""
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {
            metric.name: metric
            for resource_metrics in data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            if scope_metrics.scope.name == "batchlog"
            for metric in scope_metrics.metrics
        }

    def points(self) -> dict[tuple[str, str], float]:
        """Every data point of one collection, by (instrument name, writer attribute)."""
        return {
            (name, point.attributes["writer"]): point.value
            for name, metric in self.collect().items()
            for point in metric.data.data_points
        }


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """A fresh MeterProvider with an in-memory reader, shut down at teardown."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield Telemetry(provider, reader)
    provider.shutdown()


@pytest.fixture
def make_instruments(telemetry: Telemetry) -> Iterator[Any]:
    """Return ``make_instruments(*sources)`` on the test's provider; uninstrumented at teardown."""
    made: list[BatchlogInstruments] = []

    def make(*sources: Any) -> BatchlogInstruments:
        instruments = instrument(*sources, meter_provider=telemetry.provider)
        made.append(instruments)
        return instruments

    yield make
    for instruments in made:
        instruments.uninstrument()


def expected_points(name: str, metrics: Metrics) -> dict[tuple[str, str], float]:
    """The data points a writer called ``name`` with ``metrics`` should give."""
    return {(INSTRUMENT_NAMES[field], name): value for field, value in metrics.as_dict().items()}


def failing_first(batch: list[Any]) -> None:
    """A sink that raises on a batch starting with "bad"."""
    if batch[0] == "bad":
        raise RuntimeError("the sink failed")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in a child interpreter that imports this checkout's batchlog."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_metrics_field_is_reported(make_writer, sink, make_instruments, telemetry):
    """Each field of Metrics is one instrument with a data point for the writer."""
    make_instruments(make_writer(sink, name="orders"))

    names = {name for name, _ in telemetry.points()}

    assert {field.name for field in dataclasses.fields(Metrics)} == set(INSTRUMENT_NAMES)
    assert set(INSTRUMENT_NAMES.values()) == names


def test_values_equal_the_writers_metrics_after_a_flush(make_writer, make_instruments, telemetry):
    """After a flush, every data point equals the writer's own metrics snapshot."""
    writer = make_writer(failing_first, capacity=2, on_error=lambda exc, batch: None)
    make_instruments(writer)
    for record in ["bad", "a", "b", "c", "d"]:
        writer.add(record)
    assert writer.flush(WAIT)

    actual = telemetry.points()

    metrics = writer.metrics
    assert (metrics.records_failed, metrics.records_processed) == (2, 3)
    assert expected_points(writer.name, metrics) == actual


def test_points_carry_the_writer_attribute(make_writer, sink, make_instruments, telemetry):
    """Each writer's data points carry its name as the ``writer`` attribute, and only that."""
    make_instruments(make_writer(sink, name="orders"), make_writer(sink, name="audit"))

    metric = telemetry.collect()["batchlog.records_added"]

    attributes = [dict(point.attributes) for point in metric.data.data_points]
    assert sorted([{"writer": "audit"}, {"writer": "orders"}], key=str) == sorted(
        attributes, key=str
    )


def test_counts_are_monotonic_sums(make_writer, sink, make_instruments, telemetry):
    """Counters are cumulative monotonic sums."""
    make_instruments(make_writer(sink))

    metric = telemetry.collect()["batchlog.records_processed"]

    assert isinstance(metric.data, Sum)
    assert metric.data.is_monotonic
    assert metric.unit == "{record}"


def test_records_in_buffer_is_a_non_monotonic_sum(make_writer, sink, make_instruments, telemetry):
    """records_in_buffer goes up and down: an up-down counter."""
    make_instruments(make_writer(sink))

    metric = telemetry.collect()["batchlog.records_in_buffer"]

    assert isinstance(metric.data, Sum)
    assert not metric.data.is_monotonic


def test_durations_are_gauges_in_seconds(make_writer, sink, make_instruments, telemetry):
    """The last, mean and longest flush durations are gauges with unit s."""
    make_instruments(make_writer(sink))

    metrics = telemetry.collect()

    for name in ["last_flush_duration", "avg_flush_duration", "max_flush_duration"]:
        metric = metrics[f"batchlog.{name}"]
        assert isinstance(metric.data, Gauge), name
        assert metric.unit == "s"


def instrument_kind(metric: Any) -> str:
    """Which observable instrument made ``metric``: counter, up_down_counter or gauge."""
    if isinstance(metric.data, Gauge):
        return "gauge"
    assert isinstance(metric.data, Sum)
    return "counter" if metric.data.is_monotonic else "up_down_counter"


def test_instruments_are_exactly_the_defined_fields(
    make_handler, tmp_path, make_instruments, telemetry
):
    """One instrument per definition, with its name, kind, unit and description."""
    from batchlog.sinks import FallbackSink

    fallback = FallbackSink(lambda batch: None, tmp_path / "dead.jsonl", fsync=False)
    make_instruments(make_handler(fallback, name="app"))
    definitions = (*METRIC_FIELDS, *FALLBACK_METRIC_FIELDS)

    metrics = telemetry.collect()

    assert {
        field.otel_name: (field.otel_instrument, field.unit, field.description)
        for field in definitions
    } == {
        name: (instrument_kind(metric), metric.unit, metric.description)
        for name, metric in metrics.items()
    }


def test_one_snapshot_per_source_per_collection(make_instruments, telemetry):
    """Each collection reads each source's metrics exactly once, for every instrument."""
    source = CountingSource("counted")
    make_instruments(source)

    telemetry.collect()
    telemetry.collect()

    assert source.reads == 2


def test_handler_source_reports_its_writer(
    make_handler, make_logger, sink, make_instruments, telemetry
):
    """A BatchingHandler is reported under its writer's name."""
    handler = make_handler(sink, name="app")
    make_instruments(handler)
    logger = make_logger(handler)
    for number in range(3):
        logger.info("record %d", number)
    assert handler.writer.flush(WAIT)

    actual = telemetry.points()

    assert expected_points("app", handler.metrics) == actual


def test_processor_source_reports_its_writer(make_processor, sink, make_instruments, telemetry):
    """A BatchingProcessor is reported under its writer's name."""
    pytest.importorskip("structlog")
    processor = make_processor(sink, name="events", pass_through=True)
    make_instruments(processor)
    processor(None, "info", {"event": "one"})
    processor(None, "info", {"event": "two"})
    assert processor.flush(WAIT)

    actual = telemetry.points()

    assert actual["batchlog.records_processed", "events"] == 2


def test_added_source_is_reported(make_writer, sink, make_instruments, telemetry):
    """add() reports a source from the next collection on."""
    instruments = make_instruments()

    instruments.add(make_writer(sink, name="late"))

    assert {"late"} == {writer for _, writer in telemetry.points()}


def test_removed_source_is_no_longer_reported(make_writer, sink, make_instruments, telemetry):
    """remove() stops reporting a source; the others stay."""
    kept, removed = make_writer(sink, name="kept"), make_writer(sink, name="removed")
    instruments = make_instruments(kept, removed)

    instruments.remove(removed)

    assert {"kept"} == {writer for _, writer in telemetry.points()}


def test_uninstrument_stops_reporting(make_writer, sink, make_instruments, telemetry):
    """After uninstrument() no data point is reported for its sources."""
    instruments = make_instruments(make_writer(sink, name="orders"))

    instruments.uninstrument()

    assert telemetry.points() == {}


def test_uninstrument_twice_is_harmless(make_instruments):
    """uninstrument() is idempotent."""
    instruments = make_instruments()
    instruments.uninstrument()

    instruments.uninstrument()

    assert "uninstrumented" in repr(instruments)


def test_add_after_uninstrument_is_refused(make_writer, sink, make_instruments):
    """add() on uninstrumented instruments raises RuntimeError."""
    instruments = make_instruments()
    instruments.uninstrument()

    with pytest.raises(RuntimeError, match=r"instrument\(\)"):
        instruments.add(make_writer(sink))


def test_two_instrument_calls_on_one_provider_both_report(
    make_writer, sink, make_instruments, telemetry
):
    """A second instrument() on the same provider shares the instruments and reports too."""
    make_instruments(make_writer(sink, name="first"))
    make_instruments(make_writer(sink, name="second"))

    writers = {writer for _, writer in telemetry.points()}

    assert {"first", "second"} == writers


def test_instrument_after_uninstrument_reports_again(
    make_writer, sink, make_instruments, telemetry
):
    """instrument() after an uninstrument() on the same provider reports its sources."""
    make_instruments(make_writer(sink, name="first")).uninstrument()

    make_instruments(make_writer(sink, name="second"))

    assert {"second"} == {writer for _, writer in telemetry.points()}


def test_two_sources_with_one_name_are_refused(make_writer, sink, make_instruments):
    """A second open writer with a name already reported raises ValueError."""
    with pytest.raises(ValueError, match="'same'"):
        make_instruments(make_writer(sink, name="same"), make_writer(sink, name="same"))


def test_a_closed_writer_is_no_longer_reported(make_writer, sink, make_instruments, telemetry):
    """A writer that was closed disappears from the next collection."""
    closed, open_ = make_writer(sink, name="closed"), make_writer(sink, name="open")
    make_instruments(closed, open_)

    assert closed.close(WAIT)

    assert {"open"} == {writer for _, writer in telemetry.points()}


def test_a_garbage_collected_writer_disappears(sink, make_instruments, telemetry):
    """The instruments hold writers weakly: a dropped writer is freed and not reported."""
    writer = BatchWriter(10, 60.0, sink, name="short-lived")
    make_instruments(writer)
    reference = weakref.ref(writer)
    assert writer.close(WAIT)
    for thread in threading.enumerate():  # the worker holds the writer until it returns
        if thread.name == "batchlog-short-lived":
            thread.join(WAIT)

    del writer
    gc.collect()

    assert reference() is None
    assert telemetry.points() == {}


@needs_public_flush_fn
def test_fallback_sink_counters_are_reported(
    make_writer, tmp_path, log_capture, make_instruments, telemetry
):
    """A writer whose sink is a FallbackSink also reports the dead-letter counters."""
    from batchlog.sinks import FallbackSink

    def primary(batch: list[Any]) -> None:
        raise RuntimeError("database is down")

    logger, _ = log_capture
    fallback = FallbackSink(primary, tmp_path / "dead.jsonl", fsync=False, logger=logger)
    writer = make_writer(fallback, name="orders", on_close=fallback.close)
    make_instruments(writer)
    writer.add({"event": "one"})
    writer.add({"event": "two"})
    assert writer.flush(WAIT)

    actual = telemetry.points()

    assert actual["batchlog.fallback.primary_failures", "orders"] == 1
    assert actual["batchlog.fallback.dead_lettered_records", "orders"] == 2


def test_fallback_sink_counters_of_a_handler_are_reported(
    make_handler, tmp_path, log_capture, make_instruments, telemetry
):
    """A handler whose sink is a FallbackSink also reports the dead-letter counters."""
    from batchlog.sinks import FallbackSink

    def primary(batch: list[Any]) -> None:
        raise RuntimeError("database is down")

    reports, _ = log_capture
    fallback = FallbackSink(primary, tmp_path / "dead.jsonl", fsync=False, logger=reports)
    handler = make_handler(fallback, name="app")
    make_instruments(handler)
    handler.handle(logging.makeLogRecord({"msg": "one"}))
    handler.handle(logging.makeLogRecord({"msg": "two"}))
    assert handler.writer.flush(WAIT)

    actual = telemetry.points()

    assert actual["batchlog.fallback.primary_failures", "app"] == 1
    assert actual["batchlog.fallback.dead_lettered_records", "app"] == 2


@pytest.mark.subprocess
def test_import_batchlog_does_not_import_opentelemetry():
    """``import batchlog`` leaves OpenTelemetry alone."""
    script = "import sys, batchlog; print(any(m.startswith('opentelemetry') for m in sys.modules))"

    result = run("-c", script)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.subprocess
def test_missing_opentelemetry_says_how_to_install():
    """Without opentelemetry-api, importing batchlog.otel names the extra to install."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        try:
            import batchlog.otel
        except ImportError as exc:
            print(exc)
        """
    )

    result = run("-c", script)

    assert "pip install 'batchlog[otel]'" in result.stdout
