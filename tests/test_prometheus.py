"""``batchlog.prometheus``: every ``Metrics`` field as a Prometheus family, labelled by writer."""

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
from pathlib import Path
from typing import Any

import pytest
from conftest import WAIT

from batchlog import BatchWriter, Metrics
from batchlog.metrics import METRIC_FIELDS, MetricField
from batchlog.sinks.fallback import FALLBACK_METRIC_FIELDS

prometheus_client = pytest.importorskip("prometheus_client")

from batchlog.prometheus import BatchlogCollector, register  # noqa: E402 -- after the check

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The sample name each Metrics field is exposed as.
SAMPLE_NAMES = {
    "records_added": "batchlog_records_added_total",
    "records_dropped": "batchlog_records_dropped_total",
    "records_evicted": "batchlog_records_evicted_total",
    "records_processed": "batchlog_records_processed_total",
    "records_failed": "batchlog_records_failed_total",
    "records_in_buffer": "batchlog_records_in_buffer",
    "flush_count": "batchlog_flushes_total",
    "flush_errors": "batchlog_flush_errors_total",
    "last_flush_duration": "batchlog_last_flush_duration_seconds",
    "avg_flush_duration": "batchlog_avg_flush_duration_seconds",
    "max_flush_duration": "batchlog_max_flush_duration_seconds",
    "total_flush_time": "batchlog_flush_seconds_total",
    "reopened": "batchlog_reopened_total",
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


def samples(collector: BatchlogCollector) -> dict[tuple[str, str], float]:
    """Every sample one scrape of ``collector`` gives, by (sample name, writer label)."""
    return {
        (sample.name, sample.labels["writer"]): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def expected_samples(name: str, metrics: Metrics) -> dict[tuple[str, str], float]:
    """The samples a writer called ``name`` with ``metrics`` should give."""
    return {(SAMPLE_NAMES[field], name): value for field, value in metrics.as_dict().items()}


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


@pytest.fixture
def registry() -> Any:
    """A fresh, empty CollectorRegistry."""
    return prometheus_client.CollectorRegistry()


def test_every_metrics_field_is_exposed(make_writer, sink):
    """Each field of Metrics is one family with one sample for the writer."""
    collector = BatchlogCollector(make_writer(sink, name="orders"))

    names = {sample_name for sample_name, _ in samples(collector)}

    assert {field.name for field in dataclasses.fields(Metrics)} == set(SAMPLE_NAMES)
    assert set(SAMPLE_NAMES.values()) == names


def test_values_equal_the_writers_metrics_after_a_flush(make_writer):
    """After a flush, every sample equals the writer's own metrics snapshot."""
    writer = make_writer(failing_first, capacity=2, on_error=lambda exc, batch: None)
    for record in ["bad", "a", "b", "c", "d"]:
        writer.add(record)
    assert writer.flush(WAIT)

    actual = samples(BatchlogCollector(writer))

    metrics = writer.metrics
    assert (metrics.records_failed, metrics.records_processed) == (2, 3)
    assert expected_samples(writer.name, metrics) == actual


def test_series_are_labelled_with_the_writer_name(make_writer, sink):
    """Each writer's samples carry its name in the ``writer`` label."""
    collector = BatchlogCollector(make_writer(sink, name="orders"), make_writer(sink, name="audit"))

    labels = {label for _, label in samples(collector)}

    assert {"orders", "audit"} == labels


def test_text_exposition_types_counters_and_gauges(make_writer, sink, registry):
    """generate_latest shows counters as counters, gauges as gauges, with the values."""
    writer = make_writer(sink, name="orders")
    register(writer, registry=registry)
    for number in range(3):
        writer.add(number)
    assert writer.flush(WAIT)

    text = prometheus_client.generate_latest(registry).decode()

    assert "# TYPE batchlog_records_processed_total counter" in text
    assert "# TYPE batchlog_flush_seconds_total counter" in text
    assert "# TYPE batchlog_records_in_buffer gauge" in text
    assert "# TYPE batchlog_max_flush_duration_seconds gauge" in text
    assert 'batchlog_records_processed_total{writer="orders"} 3.0' in text.splitlines()


def test_register_adds_the_collector_to_the_registry(make_writer, sink, registry):
    """register() returns a collector whose samples the registry serves."""
    writer = make_writer(sink, name="orders")
    writer.add("one")
    assert writer.flush(WAIT)

    collector = register(writer, registry=registry)

    assert isinstance(collector, BatchlogCollector)
    value = registry.get_sample_value("batchlog_records_added_total", {"writer": "orders"})
    assert value == 1.0


def test_register_twice_on_one_registry_is_refused(make_writer, sink, registry):
    """A second collector with the same metric names is refused by the registry."""
    register(make_writer(sink, name="orders"), registry=registry)

    with pytest.raises(ValueError, match="Duplicated"):
        register(make_writer(sink, name="audit"), registry=registry)


def test_namespace_prefixes_every_name(make_writer, sink):
    """namespace="app" names the families app_records_added_total and so on."""
    collector = BatchlogCollector(make_writer(sink), namespace="app")

    names = {sample_name for sample_name, _ in samples(collector)}

    assert {name.replace("batchlog_", "app_", 1) for name in SAMPLE_NAMES.values()} == names


@pytest.mark.parametrize("namespace", ["1app", "my-app", "a b", None])
def test_invalid_namespace_is_refused(namespace):
    """A namespace that cannot start a metric name raises ValueError."""
    with pytest.raises(ValueError, match="namespace"):
        BatchlogCollector(namespace=namespace)


def family_of(field: MetricField) -> tuple[str, str, str, str]:
    """The (name, type, help text, unit) a scrape should give ``field``'s family."""
    name = "batchlog_" + field.prometheus_name.removesuffix("_total")  # as prometheus_client
    return (name, field.kind, field.description, "seconds" if field.unit == "s" else "")


def test_families_are_exactly_the_defined_fields():
    """describe() gives one family per definition, with its name, type, help and unit."""
    expected = [family_of(field) for field in (*METRIC_FIELDS, *FALLBACK_METRIC_FIELDS)]

    families = BatchlogCollector().describe()

    assert expected == [
        (family.name, family.type, family.documentation, family.unit) for family in families
    ]


def test_a_scrape_gives_the_families_describe_promised(make_handler, tmp_path):
    """A scrape with a FallbackSink yields the families of describe(), in the same order."""
    from batchlog.sinks import FallbackSink

    fallback = FallbackSink(lambda batch: None, tmp_path / "dead.jsonl", fsync=False)
    handler = make_handler(fallback, name="app")
    collector = BatchlogCollector(handler)

    scraped = [(family.name, family.type, family.documentation) for family in collector.collect()]

    described = [
        (family.name, family.type, family.documentation) for family in collector.describe()
    ]
    assert described == scraped


def test_describe_lists_the_families_without_samples():
    """describe() yields every family, empty, so a registry can reserve the names."""
    families = list(BatchlogCollector().describe())

    names = {family.name for family in families}
    assert {name.removesuffix("_total") for name in SAMPLE_NAMES.values()} <= names
    assert all(family.samples == [] for family in families)


def test_one_snapshot_per_source_per_scrape():
    """A scrape reads each source's metrics exactly once."""
    source = CountingSource("counted")
    collector = BatchlogCollector(source)

    samples(collector)

    assert source.reads == 1


def test_handler_source_reports_its_writer(make_handler, make_logger, sink):
    """A BatchingHandler is reported under its writer's name."""
    handler = make_handler(sink, name="app")
    logger = make_logger(handler)
    for number in range(3):
        logger.info("record %d", number)
    assert handler.writer.flush(WAIT)

    actual = samples(BatchlogCollector(handler))

    assert expected_samples("app", handler.metrics) == actual
    assert actual["batchlog_records_processed_total", "app"] == 3


def test_processor_source_reports_its_writer(make_processor, sink):
    """A BatchingProcessor is reported under its writer's name."""
    pytest.importorskip("structlog")
    processor = make_processor(sink, name="events", pass_through=True)
    processor(None, "info", {"event": "one"})
    processor(None, "info", {"event": "two"})
    assert processor.flush(WAIT)

    actual = samples(BatchlogCollector(processor))

    assert actual["batchlog_records_processed_total", "events"] == 2


def test_added_source_is_reported(make_writer, sink):
    """add() reports a source from the next scrape on."""
    collector = BatchlogCollector()

    collector.add(make_writer(sink, name="late"))

    assert {"late"} == {label for _, label in samples(collector)}


def test_removed_source_is_no_longer_reported(make_writer, sink):
    """remove() stops reporting a source; the others stay."""
    kept, removed = make_writer(sink, name="kept"), make_writer(sink, name="removed")
    collector = BatchlogCollector(kept, removed)

    collector.remove(removed)

    assert {"kept"} == {label for _, label in samples(collector)}


def test_removing_a_handler_removes_its_writer(make_handler, sink):
    """A handler and its writer are one source: either removes it."""
    handler = make_handler(sink, name="app")
    collector = BatchlogCollector(handler)

    collector.remove(handler.writer)

    assert samples(collector) == {}


def test_adding_a_source_twice_reports_it_once(make_writer, sink):
    """Adding the same writer again (or its handler) does nothing."""
    writer = make_writer(sink, name="once")
    collector = BatchlogCollector(writer)

    collector.add(writer)

    assert expected_samples("once", writer.metrics) == samples(collector)


def test_two_sources_with_one_name_are_refused(make_writer, sink):
    """A second open writer with a name already reported raises ValueError."""
    collector = BatchlogCollector(make_writer(sink, name="same"))

    with pytest.raises(ValueError, match="'same'"):
        collector.add(make_writer(sink, name="same"))


@pytest.mark.parametrize("source", [object(), 42, "writer"])
def test_a_non_source_is_refused(source):
    """Something with neither a writer nor name and metrics raises TypeError."""
    with pytest.raises(TypeError, match="BatchWriter"):
        BatchlogCollector(source)


def test_concurrent_adds_are_all_reported(make_writer, sink):
    """Sources added from many threads at once are all reported."""
    writers = [make_writer(sink, name=f"thread-{number}") for number in range(8)]
    collector = BatchlogCollector()
    start_together = threading.Barrier(len(writers) + 1)

    def add(writer: BatchWriter[Any]) -> None:
        start_together.wait(WAIT)
        collector.add(writer)

    threads = [threading.Thread(target=add, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    start_together.wait(WAIT)
    scraped_meanwhile = samples(collector)  # scrapes while adds run must not fail
    for thread in threads:
        thread.join(WAIT)

    assert {writer.name for writer in writers} == {label for _, label in samples(collector)}
    assert {label for _, label in scraped_meanwhile} <= {writer.name for writer in writers}


def test_a_closed_writer_is_no_longer_reported(make_writer, sink):
    """A writer that was closed disappears from the next scrape."""
    closed, open_ = make_writer(sink, name="closed"), make_writer(sink, name="open")
    collector = BatchlogCollector(closed, open_)

    assert closed.close(WAIT)

    assert {"open"} == {label for _, label in samples(collector)}


def test_a_garbage_collected_writer_disappears(sink):
    """The collector holds writers weakly: a dropped writer is freed and not reported."""
    writer = BatchWriter(10, 60.0, sink, name="short-lived")
    collector = BatchlogCollector(writer)
    reference = weakref.ref(writer)
    assert writer.close(WAIT)
    for thread in threading.enumerate():  # the worker holds the writer until it returns
        if thread.name == "batchlog-short-lived":
            thread.join(WAIT)

    del writer
    gc.collect()

    assert reference() is None
    assert samples(collector) == {}


@needs_public_flush_fn
def test_fallback_sink_counters_are_exported(make_writer, tmp_path, log_capture):
    """A writer whose sink is a FallbackSink also reports the dead-letter counters."""
    from batchlog.sinks import FallbackSink

    def primary(batch: list[Any]) -> None:
        raise RuntimeError("database is down")

    logger, _ = log_capture
    fallback = FallbackSink(primary, tmp_path / "dead.jsonl", fsync=False, logger=logger)
    writer = make_writer(fallback, name="orders", on_close=fallback.close)
    writer.add({"event": "one"})
    writer.add({"event": "two"})
    assert writer.flush(WAIT)

    actual = samples(BatchlogCollector(writer))

    assert actual["batchlog_fallback_primary_failures_total", "orders"] == 1
    assert actual["batchlog_fallback_dead_lettered_batches_total", "orders"] == 1
    assert actual["batchlog_fallback_dead_lettered_records_total", "orders"] == 2
    assert actual["batchlog_fallback_dead_letter_failures_total", "orders"] == 0


def test_fallback_sink_counters_of_a_handler_are_exported(
    make_handler, make_logger, tmp_path, log_capture
):
    """A handler whose sink is a FallbackSink also reports the dead-letter counters."""
    from batchlog.sinks import FallbackSink

    def primary(batch: list[Any]) -> None:
        raise RuntimeError("database is down")

    reports, _ = log_capture
    fallback = FallbackSink(primary, tmp_path / "dead.jsonl", fsync=False, logger=reports)
    handler = make_handler(fallback, name="app")
    logger = make_logger(handler)
    logger.info("one")
    logger.info("two")
    assert handler.writer.flush(WAIT)

    actual = samples(BatchlogCollector(handler))

    assert actual["batchlog_fallback_primary_failures_total", "app"] == 1
    assert actual["batchlog_fallback_dead_lettered_records_total", "app"] == 2


def test_no_fallback_families_without_a_fallback_sink(make_writer, sink):
    """Writers with ordinary sinks give no fallback families at all."""
    collector = BatchlogCollector(make_writer(sink))

    names = [family.name for family in collector.collect()]

    assert not [name for name in names if "fallback" in name]


@pytest.mark.subprocess
def test_import_batchlog_does_not_import_prometheus_client():
    """``import batchlog`` (and its writer, handler and metrics) leaves prometheus_client alone."""
    script = "import sys, batchlog, batchlog.metrics; print('prometheus_client' in sys.modules)"

    result = run("-c", script)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.subprocess
def test_missing_prometheus_client_says_how_to_install():
    """Without prometheus_client, importing batchlog.prometheus names the extra to install."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        try:
            import batchlog.prometheus
        except ImportError as exc:
            print(exc)
        """
    )

    result = run("-c", script)

    assert "pip install 'batchlog[prometheus]'" in result.stdout


@pytest.mark.subprocess
def test_example_serves_metrics():
    """examples/prometheus_metrics.py --once fetches /metrics from itself and exits 0."""
    result = run(str(REPO_ROOT / "examples" / "prometheus_metrics.py"), "--once")

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert 'batchlog_records_processed_total{writer="app-log"} 250.0' in result.stdout
    assert "Traceback" not in result.stderr


def test_logging_through_a_reported_handler_keeps_working(make_handler, make_logger, sink):
    """Scraping while records are logged neither blocks nor loses records."""
    handler = make_handler(sink, capacity=10, name="busy")
    logger = make_logger(handler)
    collector = BatchlogCollector(handler)
    for number in range(100):
        logger.log(logging.INFO, "record %d", number)
        if number % 10 == 0:
            samples(collector)
    assert handler.writer.flush(WAIT)

    assert samples(collector)["batchlog_records_processed_total", "busy"] == 100
