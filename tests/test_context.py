"""The caller's context travels with the record: the OpenTelemetry span, contextvars, time."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from batchlog import BatchingHandler, BatchingProcessor, RecordTimeStamper

WAIT = 30.0

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")


class Store:
    """A sink that keeps every record it gets."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def __call__(self, batch: list[Any]) -> None:
        self.records.extend(batch)


class Seen(logging.Handler):
    """A plain handler beside ours: what it sees must stay as logged."""

    def __init__(self) -> None:
        super().__init__()
        self.attributes: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.attributes.append(dict(record.__dict__))


@pytest.fixture
def tracer() -> Any:
    """A tracer of its own provider (the global one is left alone)."""
    return sdk_trace.TracerProvider().get_tracer("batchlog-tests")


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"context.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def span_ids(span: Any) -> dict[str, Any]:
    context = span.get_span_context()
    return {
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
        "trace_flags": int(context.trace_flags),
    }


def test_a_record_logged_in_a_span_carries_its_ids(
    tracer: Any, store: Store, logger: logging.Logger
) -> None:
    """Inside a span: trace_id, span_id, trace_flags as the SDK formats them; outside: none."""
    handler = BatchingHandler(store, capacity=10)
    seen = Seen()
    logger.addHandler(handler)
    logger.addHandler(seen)
    with tracer.start_as_current_span("request") as span:
        logger.info("inside %s", "the span")
        expected = span_ids(span)
    logger.info("outside")
    assert handler.writer.flush(WAIT)
    inside, outside = store.records
    assert expected == {key: getattr(inside, key) for key in expected}
    assert expected["trace_flags"] & 1  # sampled, the SDK's default
    assert not any(hasattr(outside, key) for key in expected)
    assert not any(key in attributes for attributes in seen.attributes for key in expected), (
        "the record other handlers see was changed"
    )


def test_fields_the_record_has_already_are_kept(
    tracer: Any, store: Store, logger: logging.Logger
) -> None:
    """An application's own trace_id (an extra) wins over the span's."""
    handler = BatchingHandler(store, capacity=10)
    logger.addHandler(handler)
    with tracer.start_as_current_span("request"):
        logger.info("mine", extra={"trace_id": "from-the-app"})
    handler.flush()
    (record,) = store.records
    assert record.trace_id == "from-the-app"
    assert len(record.span_id) == 16


def test_a_broken_tracer_costs_no_record(
    monkeypatch: pytest.MonkeyPatch, store: Store, logger: logging.Logger
) -> None:
    """get_current_span raising: the record is delivered, without ids."""

    def broken() -> Any:
        raise RuntimeError("tracer broken")

    monkeypatch.setattr(trace, "get_current_span", broken)
    handler = BatchingHandler(store, capacity=10)
    logger.addHandler(handler)
    logger.info("still here")
    handler.flush()
    assert [record.getMessage() for record in store.records] == ["still here"]
    assert (handler.metrics.records_processed, handler.metrics.records_dropped) == (1, 0)


def test_a_structlog_event_logged_in_a_span_carries_its_ids(tracer: Any, store: Store) -> None:
    """BatchingProcessor: the event copy gets the span's ids; the caller's dict does not."""
    structlog = pytest.importorskip("structlog")
    processor = BatchingProcessor(store, capacity=10)
    event = {"event": "hello"}
    try:
        with tracer.start_as_current_span("job") as span:
            with pytest.raises(structlog.DropEvent):
                processor(None, "info", event)
            expected = span_ids(span)
    finally:
        processor.close()
    (delivered,) = store.records
    assert expected == {key: delivered[key] for key in expected}
    assert event == {"event": "hello"}


def test_the_formatter_runs_in_the_callers_contextvars(
    store: Store, logger: logging.Logger
) -> None:
    """Each record is formatted, on the worker, in the context of the thread that logged it."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

    class RequestIdFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{request_id.get()} {record.getMessage()}"

    handler = BatchingHandler(store, capacity=1000, flush_interval=60.0)
    handler.setFormatter(RequestIdFormatter())
    logger.addHandler(handler)
    barrier = threading.Barrier(4)

    def serve(worker: int) -> None:
        request_id.set(f"req-{worker}")
        barrier.wait(WAIT)  # the threads log at the same time
        for number in range(255):
            logger.info("worker %d record %d", worker, number)

    threads = [threading.Thread(target=serve, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    logger.info("no request")
    assert handler.writer.flush(WAIT)
    formatted = [record.formatted for record in store.records]
    assert len(formatted) == 1021
    for text in formatted[:-1]:
        worker = text.split()[2]
        assert text.startswith(f"req-{worker} worker {worker} record ")
    assert formatted[-1] == "- no request"
    assert not any(hasattr(record, "_batchlog_context") for record in store.records)


def test_structlog_processor_formatter_merges_the_callers_contextvars(
    store: Store, logger: logging.Logger
) -> None:
    """ProcessorFormatter + merge_contextvars on a BatchingHandler sees bind_contextvars."""
    structlog = pytest.importorskip("structlog")
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )
    handler = BatchingHandler(store, capacity=100, flush_interval=60.0)
    handler.setFormatter(formatter)
    logger.addHandler(handler)

    def serve(request: str) -> None:
        structlog.contextvars.bind_contextvars(request_id=request)
        logger.info("handled")

    threads = [threading.Thread(target=serve, args=(f"r{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert handler.writer.flush(WAIT)
    ids = sorted(record.formatted for record in store.records)
    assert [f'{{"event": "handled", "request_id": "r{i}"}}' for i in range(3)] == ids


def test_a_context_captured_for_a_formatter_since_removed_never_reaches_the_sink(
    store: Store, logger: logging.Logger
) -> None:
    """The formatter removed before delivery: the record reaches the sink without it."""
    marker: contextvars.ContextVar[int] = contextvars.ContextVar("marker")
    marker.set(1)
    handler = BatchingHandler(store, capacity=100, flush_interval=60.0)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.info("captured")
    handler.setFormatter(None)
    handler.flush()
    (record,) = store.records
    assert not hasattr(record, "_batchlog_context")
    assert not hasattr(record, "formatted")


def test_record_time_stamper_stamps_when_the_record_was_logged() -> None:
    """ProcessorFormatter's ``_record``: its ``created``, in TimeStamper's forms."""
    record = logging.makeLogRecord({"created": 1_700_000_000.123456})
    event = RecordTimeStamper()(None, "info", {"_record": record})
    assert event["timestamp"] == "2023-11-14T22:13:20.123456Z"
    unix = RecordTimeStamper(None, key="ts")(None, "info", {"_record": record})
    assert unix["ts"] == 1_700_000_000.123456
    year = RecordTimeStamper("%Y-%m-%d")(None, "info", {"_record": record})
    assert year["timestamp"] == "2023-11-14"


def test_record_time_stamper_matches_time_stamper_without_a_record() -> None:
    """No ``_record`` (an event from structlog itself): now, in the same form."""
    structlog = pytest.importorskip("structlog")
    ours = RecordTimeStamper()(None, "info", {})["timestamp"]
    theirs = structlog.processors.TimeStamper(fmt="iso")(None, "info", {})["timestamp"]
    assert (len(theirs), theirs[-1]) == (len(ours), ours[-1])
    assert ours[:16] == theirs[:16] or ours <= theirs  # the same minute, or a moment before


def test_record_time_stamper_refuses_bad_arguments() -> None:
    """Wrong types and a local UNIX stamp are refused, naming the argument."""
    with pytest.raises(TypeError, match="fmt"):
        RecordTimeStamper(fmt=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="UTC"):
        RecordTimeStamper(fmt=None, utc=False)
    with pytest.raises(TypeError, match="key"):
        RecordTimeStamper(key=None)  # type: ignore[arg-type]


def test_record_time_stamper_in_a_handler_stamps_emit_time(
    store: Store, logger: logging.Logger
) -> None:
    """Through a BatchingHandler's ProcessorFormatter: the emit time, not the render time."""
    structlog = pytest.importorskip("structlog")
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[RecordTimeStamper(None)],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = BatchingHandler(store, capacity=100, flush_interval=60.0)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.info("stamped")
    handler.flush()
    (record,) = store.records
    assert record.created == json.loads(record.formatted)["timestamp"]


def test_otlp_bodies_carry_the_span_as_the_sdk_encodes_it(store: Store) -> None:
    """End to end: logged through BatchingHandler and the SDK's handler, in spans and out;
    the OTLP body's traceId, spanId and flags equal the SDK's encoding, record by record."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.common._log_encoder")
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
    from test_otlp_encoding import InMemoryLogRecordExporter, log_records, parse_otlp_json

    from batchlog.sinks import OTLPEncoder, encode_record

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in SDK 1.45
        sdk_handler = LoggingHandler(logger_provider=provider)
    ours = BatchingHandler(store, capacity=100, flush_interval=60.0)
    logger = logging.getLogger("context.otlp-end-to-end")
    logger.propagate = False
    logger.addHandler(ours)
    logger.addHandler(sdk_handler)
    sampled = sdk_trace.TracerProvider(sampler=ALWAYS_ON).get_tracer("tests")
    unsampled = sdk_trace.TracerProvider(sampler=ALWAYS_OFF).get_tracer("tests")
    try:
        with sampled.start_as_current_span("request"):
            logger.warning("in a span")
            with sampled.start_as_current_span("query"):
                logger.warning("in a child span")
        with unsampled.start_as_current_span("quiet"):
            logger.warning("in an unsampled span")
        logger.warning("outside any span")
        assert ours.writer.flush(WAIT)
    finally:
        logger.removeHandler(ours)
        logger.removeHandler(sdk_handler)
        ours.close()
    body, _ = OTLPEncoder()([encode_record(record) for record in store.records])
    mine = log_records(parse_otlp_json(body))
    theirs = log_records(encode_logs(exporter.get_finished_logs()))
    provider.shutdown()
    assert 4 == len(mine) == len(theirs)
    for ours_record, sdk_record in zip(mine, theirs):
        assert sdk_record.body.string_value == ours_record.body.string_value
        assert (sdk_record.trace_id, sdk_record.span_id, sdk_record.flags) == (
            ours_record.trace_id,
            ours_record.span_id,
            ours_record.flags,
        )
    assert len(theirs[0].trace_id) == 16
    assert (theirs[3].trace_id, theirs[3].span_id, theirs[3].flags) == (b"", b"", 0)
