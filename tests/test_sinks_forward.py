"""``HandlerSink``: ordinary logging handlers fed in batches, event dicts converted."""

from __future__ import annotations

import io
import logging
import logging.config
import logging.handlers

import pytest

from batchlog.sinks import HandlerSink
from batchlog.sinks.forward import to_log_record


class FlushCounter(logging.Handler):
    """Keeps what it handles and counts its flushes."""

    def __init__(self, level=logging.NOTSET):
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self.flushes = 0
        self.closed = 0

    def emit(self, record):
        self.records.append(record)

    def flush(self):
        self.flushes += 1

    def close(self):
        self.closed += 1
        super().close()


class Exploding(logging.Handler):
    """A handler that raises out of ``handle`` (stdlib handlers would not)."""

    def handle(self, record):
        raise RuntimeError("exploded")


@pytest.fixture
def make_sink():
    """Return ``make_sink(*handlers, **kwargs)``; every sink made is closed at teardown."""
    sinks: list[HandlerSink] = []

    def make(*handlers, **kwargs):
        sink = HandlerSink(*handlers, **kwargs)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def log_record(message="hello", level=logging.INFO):
    return logging.makeLogRecord(
        {"name": "app", "msg": message, "levelno": level, "levelname": logging.getLevelName(level)}
    )


def test_every_record_reaches_every_handler(make_sink):
    """Each handler receives each record of the batch, in order."""
    first = logging.handlers.MemoryHandler(capacity=1000)
    second = FlushCounter()
    batch = [log_record(str(number)) for number in range(5)]
    make_sink(first, second)(batch)
    assert (batch, batch) == (first.buffer, second.records)


def test_each_handler_is_flushed_once_per_batch(make_sink):
    """A batch of many records flushes each handler exactly once."""
    counter = FlushCounter()
    sink = make_sink(counter)
    sink([log_record() for _ in range(10)])
    sink([log_record() for _ in range(3)])
    assert counter.flushes == 2


def test_handler_level_is_respected(make_sink):
    """A handler gets only records at or above its level, as a logger would give it."""
    counter = FlushCounter(logging.WARNING)
    make_sink(counter)([log_record("info"), log_record("warning", logging.WARNING)])
    assert [record.getMessage() for record in counter.records] == ["warning"]


def test_handler_filters_apply(make_sink):
    """A handler's filters decide, as ``handle()`` does."""
    counter = FlushCounter()
    counter.addFilter(lambda record: record.getMessage() != "secret")
    make_sink(counter)([log_record("secret"), log_record("public")])
    assert [record.getMessage() for record in counter.records] == ["public"]


def test_stream_handler_writes_formatted_lines(make_sink):
    """A StreamHandler behind the sink writes each record with its own formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    make_sink(handler)([log_record("one"), log_record("two", logging.ERROR)])
    assert stream.getvalue() == "INFO app one\nERROR app two\n"


def test_event_dicts_become_log_records(make_sink):
    """An event dict arrives as a LogRecord with its level, logger, message and extras."""
    counter = FlushCounter()
    event = {
        "event": "user logged in",
        "level": "warning",
        "logger": "auth",
        "timestamp": "2026-01-02T03:04:05.250000Z",
        "user": "ada",
        "exception": "Traceback: boom",
    }
    make_sink(counter)([event])
    (record,) = counter.records
    assert (
        record.name,
        record.levelno,
        record.levelname,
        record.getMessage(),
        record.user,
        record.exc_text,
    ) == ("auth", logging.WARNING, "WARNING", "user logged in", "ada", "Traceback: boom")


def test_event_timestamp_becomes_created():
    """The event's timestamp becomes ``created`` and ``msecs``."""
    record = to_log_record({"event": "e", "timestamp": "2026-01-02T03:04:05.250000Z"})
    assert (record.created, record.msecs) == (1767323045.25, 250.0)


def test_converted_event_formats_with_the_stdlib_formatter(make_sink):
    """A converted event goes through an ordinary Formatter, exception text included."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s:%(user)s"))
    make_sink(handler)(
        [{"event": "hi", "level": "error", "logger": "a", "user": "ada", "exception": "TB"}]
    )
    assert stream.getvalue() == "ERROR:a:hi:ada\nTB\n"


def test_event_without_level_or_logger_defaults():
    """An event with no level is INFO and with no logger is the root logger."""
    record = to_log_record({"event": "bare"})
    assert (record.levelno, record.levelname, record.name) == (logging.INFO, "INFO", "root")


def test_extras_never_overwrite_log_record_attributes():
    """An extra named like a LogRecord attribute does not replace it."""
    record = to_log_record({"event": "e", "level": "error", "args": "x", "created_by": "me"})
    assert (record.args, record.levelno, record.created_by) == ((), logging.ERROR, "me")


def test_log_records_are_passed_as_they_are(make_sink):
    """A LogRecord is handed over itself, not a copy."""
    counter = FlushCounter()
    record = log_record()
    make_sink(counter)([record])
    assert counter.records[0] is record


def test_a_failing_handler_does_not_starve_the_others(make_sink):
    """When one handler raises, the others still get the batch; then the call raises."""
    counter = FlushCounter()
    sink = make_sink(Exploding(), counter)
    with pytest.raises(RuntimeError, match="exploded"):
        sink([log_record("a"), log_record("b")])
    assert ([r.getMessage() for r in counter.records], counter.flushes) == (["a", "b"], 1)


def test_handler_by_import_string(make_sink):
    """An import string naming a Handler class builds one with its defaults."""
    (handler,) = make_sink("logging.NullHandler").handlers
    assert type(handler) is logging.NullHandler


def test_not_a_handler_is_rejected():
    """Something that is not a handler (nor names or builds one) raises TypeError."""
    with pytest.raises(TypeError, match=r"must be a logging\.Handler"):
        HandlerSink("logging.getLogger")


def test_dictconfig_with_plain_values(make_logger):
    """dictConfig builds a BatchingHandler whose HandlerSink builds its target handlers."""
    name = "batchlog-tests.forward-dictconfig"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "batched": {
                    "class": "batchlog.BatchingHandler",
                    "sink": {
                        "()": "batchlog.sinks.HandlerSink",
                        "targets": [
                            {"()": "logging.handlers.MemoryHandler", "capacity": 100},
                            "logging.NullHandler",
                        ],
                    },
                }
            },
            "loggers": {name: {"handlers": ["batched"], "level": "INFO", "propagate": False}},
        }
    )
    logger = logging.getLogger(name)
    (handler,) = logger.handlers
    memory, _ = handler.sink.handlers
    try:
        logger.info("configured")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert [record.getMessage() for record in memory.buffer] == ["configured"]


def test_works_behind_a_batching_handler(make_sink, make_handler, make_logger):
    """Records logged through BatchingHandler reach the target handler, in order."""
    counter = FlushCounter()
    handler = make_handler(make_sink(counter), capacity=4)
    logger = make_logger(handler)
    for number in range(10):
        logger.info("record %d", number)
    handler.flush()
    assert [f"record {n}" for n in range(10)] == [r.getMessage() for r in counter.records]


def test_close_closes_the_handlers_once(make_sink):
    """``close()`` closes every handler; a second ``close()`` does nothing."""
    counter = FlushCounter()
    sink = make_sink(counter)
    sink.close()
    sink.close()
    assert counter.closed == 1


def test_batch_after_close_raises(make_sink):
    """A batch after ``close()`` raises ValueError."""
    sink = make_sink(FlushCounter())
    sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink([log_record()])
