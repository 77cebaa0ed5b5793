"""Behaviour of ``BatchingHandler``: configuration, overflow, flush and close, record fidelity,
formatting on the worker thread, failures, locks, metrics."""

from __future__ import annotations

import gc
import logging
import sys
import threading
import weakref

import pytest
from conftest import WAIT, LogCapture

from batchlog import BatchingHandler, BatchWriter, OverflowPolicy
from batchlog import handler as handler_module


def messages(records: list[logging.LogRecord]) -> list[str]:
    """The merged message of each record."""
    return [record.getMessage() for record in records]


def fill_blocked_handler(logger: logging.Logger, blocking_sink) -> None:
    """Through a (capacity 1, max_queue_size 1) handler: one record in the blocked sink, one
    waiting behind it, so the queue is full."""
    logger.info("in-flight")
    assert blocking_sink.entered.wait(WAIT)
    logger.info("waiting")


class ThreadNotingFormatter(logging.Formatter):
    """A formatter that notes the thread each ``format`` call runs on."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s:%(message)s")
        self.threads: list[threading.Thread] = []

    def format(self, record: logging.LogRecord) -> str:
        self.threads.append(threading.current_thread())
        return super().format(record)


def raise_boom() -> None:
    """Raise ``ValueError("boom")``."""
    raise ValueError("boom")


class Payload:
    """Something only a frame local refers to."""


def raise_holding_a_local(refs: list[weakref.ref[Payload]]) -> None:
    """Raise while a local is the only reference to a ``Payload``."""
    payload = Payload()
    refs.append(weakref.ref(payload))
    raise ValueError("boom")


# --------------------------------------------------------------------------- configuration


def test_handler_attached_in_code_delivers_without_start(make_handler, make_logger, sink):
    """A handler added with addHandler delivers full batches with no start() call."""
    logger = make_logger(make_handler(sink, capacity=2))
    logger.info("one")
    logger.info("two")
    assert sink.wait_for_batches(1)
    assert messages(sink.records) == ["one", "two"]


def test_dictconfig_with_plain_values_delivers_without_start(dict_config, sink_module):
    """class, sink, capacity and flush_interval as plain values build a delivering handler."""
    logger, _ = dict_config(
        {
            "class": "batchlog.BatchingHandler",
            "sink": f"{sink_module.__name__}:sink",
            "capacity": 2,
            "flush_interval": 60,
        }
    )
    logger.info("one")
    logger.info("two")
    assert sink_module.wait_for(2, WAIT)
    assert messages(sink_module.received) == ["one", "two"]


def test_dictconfig_applies_level_formatter_and_filters(dict_config, sink_module):
    """dictConfig's level, formatter and filters keys shape what the sink receives."""
    logger, handler = dict_config(
        {
            "class": "batchlog.BatchingHandler",
            "sink": f"{sink_module.__name__}.sink",
            "level": "INFO",
            "formatter": "short",
            "filters": ["no-secrets"],
        },
        formatters={"short": {"format": "%(levelname)s|%(message)s"}},
        filters={"no-secrets": {"()": f"{sink_module.__name__}.drop_secrets"}},
    )
    logger.debug("below the level")
    logger.info("kept")
    logger.info("a secret")
    handler.flush()
    assert [record.formatted for record in sink_module.received] == ["INFO|kept"]


def test_dictconfig_overflow_string_selects_the_policy(dict_config, sink_module):
    """overflow: "drop_newest" (a plain string) refuses records when the queue is full."""
    logger, handler = dict_config(
        {
            "class": "batchlog.BatchingHandler",
            "sink": f"{sink_module.__name__}:blocking_sink",
            "capacity": 1,
            "max_queue_size": 1,
            "overflow": "drop_newest",
        }
    )
    logger.info("in-flight")
    assert sink_module.entered.wait(WAIT)
    logger.info("waiting")
    logger.info("refused")
    assert handler.metrics.records_dropped == 1
    sink_module.gate.set()
    handler.flush()
    assert messages(sink_module.received) == ["in-flight", "waiting"]


def test_dictconfig_flush_level_name_triggers_a_flush(dict_config, sink_module):
    """flush_level given as a level name from dictConfig flushes at that level."""
    logger, _ = dict_config(
        {
            "class": "batchlog.BatchingHandler",
            "sink": f"{sink_module.__name__}:sink",
            "flush_interval": 60,
            "flush_level": "error",
        }
    )
    logger.info("context")
    logger.error("failure")
    assert sink_module.wait_for(2, WAIT)
    assert messages(sink_module.received) == ["context", "failure"]


def test_dictconfig_names_the_writer_after_the_handler(dict_config, sink_module):
    """The handler's dictConfig name becomes its writer's name (threads, reports)."""
    _, handler = dict_config({"class": "batchlog.BatchingHandler", "sink": sink_module.sink})
    assert (handler.name, handler.writer.name) == ("batching", "batching")


def test_level_accepts_a_level_name(make_handler, sink):
    """level may be a name, in any case."""
    assert make_handler(sink, level="warning").level == logging.WARNING


def test_invalid_flush_level_raises_value_error(sink):
    """A flush_level that names no level raises ValueError naming flush_level."""
    with pytest.raises(ValueError, match="flush_level"):
        BatchingHandler(sink, flush_level="LOUD")


# --------------------------------------------------------------------------- overflow


def test_block_waits_for_room_instead_of_dropping(make_handler, make_logger, blocking_sink):
    """With "block" a record logged at a full queue waits until the sink frees room."""
    handler = make_handler(blocking_sink, capacity=1, max_queue_size=1, overflow="block")
    logger = make_logger(handler)
    fill_blocked_handler(logger, blocking_sink)
    # Release the sink from elsewhere a little later; this call must wait for it.
    releaser = threading.Timer(0.05, blocking_sink.release)
    releaser.start()
    try:
        logger.info("third")
    finally:
        releaser.join(WAIT)
    handler.flush()
    assert messages(blocking_sink.records) == ["in-flight", "waiting", "third"]
    assert handler.metrics.records_dropped == 0


def test_block_timeout_drops_the_record_after_waiting(make_handler, make_logger, blocking_sink):
    """With "block" and block_timeout, a record that finds no room in time is dropped."""
    handler = make_handler(blocking_sink, capacity=1, max_queue_size=1, block_timeout=0.01)
    logger = make_logger(handler)
    fill_blocked_handler(logger, blocking_sink)
    logger.info("dropped")
    assert handler.metrics.records_dropped == 1
    blocking_sink.release()
    handler.flush()
    assert messages(blocking_sink.records) == ["in-flight", "waiting"]


def test_drop_newest_refuses_the_new_record(make_handler, make_logger, blocking_sink):
    """With "drop_newest" a record arriving at a full queue is dropped at once."""
    handler = make_handler(blocking_sink, capacity=1, max_queue_size=1, overflow="drop_newest")
    logger = make_logger(handler)
    fill_blocked_handler(logger, blocking_sink)
    logger.info("dropped")
    blocking_sink.release()
    handler.flush()
    assert messages(blocking_sink.records) == ["in-flight", "waiting"]
    assert (handler.metrics.records_dropped, handler.metrics.records_evicted) == (1, 0)


def test_drop_oldest_evicts_the_oldest_waiting_record(make_handler, make_logger, blocking_sink):
    """With "drop_oldest" the oldest waiting record makes way for the new one."""
    handler = make_handler(blocking_sink, capacity=1, max_queue_size=1, overflow="drop_oldest")
    logger = make_logger(handler)
    fill_blocked_handler(logger, blocking_sink)
    logger.info("newest")
    blocking_sink.release()
    handler.flush()
    assert messages(blocking_sink.records) == ["in-flight", "newest"]
    assert (handler.metrics.records_dropped, handler.metrics.records_evicted) == (0, 1)


@pytest.mark.parametrize("overflow", ["DROP_NEWEST", " Drop_Newest ", OverflowPolicy.DROP_NEWEST])
def test_overflow_is_case_insensitive(make_handler, make_logger, blocking_sink, overflow):
    """overflow may be a policy or its string value in any case."""
    handler = make_handler(blocking_sink, capacity=1, max_queue_size=1, overflow=overflow)
    logger = make_logger(handler)
    fill_blocked_handler(logger, blocking_sink)
    logger.info("dropped")
    assert handler.metrics.records_dropped == 1


@pytest.mark.parametrize("overflow", ["drop", "", None, 1])
def test_invalid_overflow_raises_value_error_naming_the_valid_values(sink, overflow):
    """An unknown overflow raises ValueError listing block, drop_newest and drop_oldest."""
    with pytest.raises(ValueError, match="overflow") as info:
        BatchingHandler(sink, overflow=overflow)
    assert all(value in str(info.value) for value in ("block", "drop_newest", "drop_oldest"))


def test_rejected_overflow_leaves_no_worker_thread(sink):
    """A handler rejected for its overflow value starts no writer thread."""
    with pytest.raises(ValueError, match="overflow"):
        BatchingHandler(sink, overflow="sideways", name="rejected-handler-overflow")
    names = {thread.name for thread in threading.enumerate()}
    assert "batchlog-rejected-handler-overflow" not in names


# --------------------------------------------------------------------------- flush and close


def test_flush_level_record_triggers_a_flush(make_handler, make_logger, sink):
    """A record at flush_level sends the waiting records with it, without a flush() call."""
    logger = make_logger(make_handler(sink, capacity=100, flush_interval=60, flush_level="ERROR"))
    logger.info("context")
    logger.error("failure")
    assert sink.wait_for_batches(1)
    assert [messages(batch) for batch in sink.batches] == [["context", "failure"]]


def test_flush_is_a_barrier(make_handler, make_logger, sink):
    """When flush() returns, the sink has every record logged before it."""
    handler = make_handler(sink, capacity=100, flush_interval=60)
    logger = make_logger(handler)
    for number in range(5):
        logger.info("record %d", number)
    handler.flush()
    assert messages(sink.records) == [f"record {number}" for number in range(5)]


def test_flush_returns_none_and_writer_flush_returns_whether_done(make_handler, make_logger, sink):
    """handler.flush() returns None like every Handler's; writer.flush(timeout) says True."""
    handler = make_handler(sink)
    make_logger(handler).info("one")
    assert handler.flush() is None
    assert handler.writer.flush(WAIT) is True


def test_close_delivers_everything(make_handler, make_logger, sink):
    """close() hands every record to the sink before it returns."""
    handler = make_handler(sink, capacity=100, flush_interval=60)
    logger = make_logger(handler)
    for number in range(250):
        logger.info("record %d", number)
    handler.close()
    assert messages(sink.records) == [f"record {number}" for number in range(250)]


def test_close_is_idempotent(make_handler, make_logger, sink):
    """A second close() neither raises nor delivers anything twice."""
    handler = make_handler(sink)
    make_logger(handler).info("once")
    handler.close()
    handler.close()
    assert messages(sink.records) == ["once"]


def test_close_closes_the_sink_after_the_last_batch(make_handler, make_logger):
    """A sink with close() is closed once, after it received the last batch."""
    calls: list[str] = []

    class ClosingSink:
        def __call__(self, batch):
            calls.append("batch")

        def close(self):
            calls.append("close")

    handler = make_handler(ClosingSink())
    make_logger(handler).info("last")
    handler.close()
    handler.close()
    assert calls == ["batch", "close"]


def test_logging_shutdown_delivers_everything(make_handler, make_logger, sink):
    """logging.shutdown() (what runs at exit) hands every record to the sink."""
    handler = make_handler(sink, capacity=100, flush_interval=60)
    logger = make_logger(handler)
    for number in range(10):
        logger.info("record %d", number)
    logging.shutdown([weakref.ref(handler)])
    assert messages(sink.records) == [f"record {number}" for number in range(10)]


# --------------------------------------------------------------------------- locks


def test_emit_takes_no_handler_lock(make_handler, make_logger, sink):
    """Logging goes through while another thread holds the handler's lock."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    holding, done = threading.Event(), threading.Event()
    outcome: list[bool] = []

    def hold_lock():
        with handler.lock:
            holding.set()
            outcome.append(done.wait(WAIT))

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert holding.wait(WAIT)
    logger.info("while locked")
    done.set()
    holder.join(WAIT)
    assert outcome == [True]


def test_shutdown_lets_a_sink_log_through_the_same_handler(make_handler, make_logger):
    """logging.shutdown() holds the handler lock while flushing; a sink that logs through
    that handler meanwhile neither deadlocks nor feeds itself."""
    received: list[str] = []

    def logging_sink(batch):
        received.extend(messages(batch))
        logger.warning("sink saw %d records", len(batch))

    handler = make_handler(logging_sink, flush_timeout=WAIT)
    logger = make_logger(handler)
    logger.info("one")
    logger.info("two")
    logging.shutdown([weakref.ref(handler)])
    assert received == ["one", "two"]
    assert handler.metrics.records_dropped == 1


def test_close_under_the_logging_module_lock_does_not_wait_for_the_sink(make_handler, make_logger):
    """close() by a thread holding logging's module lock (as dictConfig does) returns without
    waiting for a sink that needs that lock; the sink then delivers."""
    delivered = threading.Event()

    def sink_needing_the_module_lock(batch):
        logging.getLogger("batchlog-tests.other")  # takes the module lock
        delivered.set()

    handler = make_handler(sink_needing_the_module_lock, flush_timeout=3 * WAIT)
    make_logger(handler).info("record")
    closed = threading.Event()

    def close_holding_the_module_lock():
        with logging._lock:  # type: ignore[attr-defined]
            handler.close()
            closed.set()

    closer = threading.Thread(target=close_holding_the_module_lock)
    closer.start()
    returned_promptly = closed.wait(WAIT)
    closer.join(3 * WAIT)
    assert returned_promptly
    assert delivered.wait(WAIT)


# --------------------------------------------------------------------------- record fidelity


def test_message_is_frozen_when_an_argument_changes_later(make_handler, make_logger, sink):
    """Mutating a logged argument after the call does not change the delivered message."""
    handler = make_handler(sink)
    items = ["a"]
    make_logger(handler).info("items %s", items)
    items.append("b")
    handler.flush()
    assert messages(sink.records) == ["items ['a']"]


def test_mapping_argument_is_frozen(make_handler, make_logger, sink):
    """A mapping of arguments mutated after the call does not change the delivered message."""
    handler = make_handler(sink)
    user = {"name": "ada"}
    make_logger(handler).info("user %(name)s", user)
    user["name"] = "mallory"
    handler.flush()
    assert messages(sink.records) == ["user ada"]


def test_non_string_message_is_frozen(make_handler, make_logger, sink):
    """A message object whose text changes after the call is delivered as it was logged."""

    class Counter:
        value = 1

        def __str__(self) -> str:
            return f"count={self.value}"

    handler = make_handler(sink)
    counter = Counter()
    make_logger(handler).info(counter)
    counter.value = 2
    handler.flush()
    assert messages(sink.records) == ["count=1"]


def test_stable_argument_record_reaches_the_sink_as_logged(make_handler, make_logger, sink):
    """A str message with stable arguments is not copied, and merges as it did when logged."""
    capture = LogCapture()
    handler = make_handler(sink)
    logger = make_logger(handler, capture)
    for number in range(3):
        logger.info("user %s logged in", number)
    handler.flush()
    assert messages(sink.records) == [f"user {number} logged in" for number in range(3)]
    assert [id(record) for record in sink.records] == [id(record) for record in capture.records]


def test_mutable_argument_is_copied_even_in_a_known_format(make_handler, make_logger, sink):
    """A format learned with a stable argument still copies a record whose argument can change."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    logger.info("cart: %s", "empty")  # the format is now known to merge with any stable arg
    cart = ["apple"]
    logger.info("cart: %s", cart)
    cart.append("pear")
    handler.flush()
    assert messages(sink.records) == ["cart: empty", "cart: ['apple']"]


def test_known_format_with_the_wrong_argument_count_goes_to_handle_error(
    make_handler, make_logger, sink, capsys
):
    """A format known for one argument, logged with two, is reported at once, not delivered."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    logger.info("only %s", "one")
    logger.info("only %s", "one", "two")  # noqa: PLE1205 -- the bad call under test
    handler.flush()
    assert messages(sink.records) == ["only one"]
    assert "not all arguments converted" in capsys.readouterr().err
    assert handler.metrics.records_dropped == 1


@pytest.mark.parametrize(
    ("msg", "count"),
    [
        ("no conversion", 0),
        ("%s", 1),
        ("%s %r %a", 3),
        ("%-10s|%.3r|%5.2a", 3),
        ("100%% of %s", 1),
        ("%d items", -1),
        ("%s and %f", -1),
        ("%(user)s", -1),
        ("%*s", -1),
    ],
)
def test_only_conversions_that_cannot_fail_skip_the_merge(msg, count):
    """%s, %r and %a (and %%) merge with any stable value; other conversions are tried."""
    assert count == handler_module._stable_argument_count(msg)


def test_formats_learned_are_bounded(make_handler, make_logger, sink, monkeypatch):
    """Once the table of known formats is full, new formats are merged each time, correctly."""
    monkeypatch.setattr(handler_module, "_MAX_LEARNED_FORMATS", len(handler_module._ARG_COUNTS))
    handler = make_handler(sink)
    logger = make_logger(handler)
    logger.info("not learned %s", 1)
    logger.info("not learned %s", 2)
    handler.flush()
    assert "not learned %s" not in handler_module._ARG_COUNTS
    assert messages(sink.records) == ["not learned 1", "not learned 2"]


def test_bad_format_is_reported_on_the_callers_thread_naming_the_call_site(
    make_handler, make_logger, sink, capsys
):
    """handleError gets the bad record when it is logged, with its pathname and line."""
    reported: list[tuple[str, int, threading.Thread]] = []

    class NotingHandler(BatchingHandler):
        def handleError(self, record):  # noqa: N802 -- logging's name
            reported.append((record.pathname, record.lineno, threading.current_thread()))
            super().handleError(record)

    handler = NotingHandler(sink, 100, 60.0)
    logger = make_logger(handler)
    try:
        logger.info("first %s", 1)
        line = sys._getframe().f_lineno + 1
        logger.info("%d items", "many")
        logger.info("last %s", 2)
        handler.flush()
    finally:
        handler.close()
    assert [(__file__, line, threading.current_thread())] == reported
    assert messages(sink.records) == ["first 1", "last 2"]
    err = capsys.readouterr().err
    assert f'File "{__file__}", line {line}' in err


def test_exception_is_rendered_to_text(make_handler, make_logger, sink):
    """A logged exception reaches the sink as exc_text, with exc_info None."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    try:
        raise_boom()
    except ValueError:
        logger.exception("failed")
    handler.flush()
    (record,) = sink.records
    assert record.exc_info is None
    assert "Traceback (most recent call last)" in record.exc_text
    assert "ValueError: boom" in record.exc_text


def test_traceback_frames_are_not_kept_alive_until_the_flush(make_handler, make_logger, sink):
    """A waiting record holds no traceback: a frame's locals are freed before the flush."""
    handler = make_handler(sink, capacity=100, flush_interval=60)
    logger = make_logger(handler)
    refs: list[weakref.ref[Payload]] = []
    try:
        raise_holding_a_local(refs)
    except ValueError:
        logger.exception("failed")
    gc.collect()
    assert refs[0]() is None
    handler.flush()
    assert "ValueError: boom" in sink.records[0].exc_text


def raise_chained() -> None:
    """Raise ``KeyError`` from a ``ValueError``, during the handling of a ``ZeroDivisionError``."""
    try:
        1 / 0  # noqa: B018 -- raises
    except ZeroDivisionError:
        try:
            raise_boom()
        except ValueError as exc:
            raise KeyError("missing") from exc


def test_chained_exception_text_is_the_formatters(make_handler, make_logger, sink):
    """exc_text is exactly Formatter().formatException(exc_info) for a chained exception."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    try:
        raise_chained()
    except KeyError:
        expected = logging.Formatter().formatException(sys.exc_info())
        logger.exception("failed")
    handler.flush()
    assert expected == sink.records[0].exc_text
    assert "The above exception was the direct cause" in expected


def test_exc_info_true_text_is_the_formatters(make_handler, make_logger, sink):
    """logger.error(..., exc_info=True) gives the same text as the stdlib formatter."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    try:
        try:
            raise_boom()
        except ValueError:
            {}["key"]
    except KeyError:
        expected = logging.Formatter().formatException(sys.exc_info())
        logger.error("failed", exc_info=True)
    handler.flush()
    assert expected == sink.records[0].exc_text
    assert "During handling of the above exception" in expected


def test_exception_outside_an_except_block_is_the_formatters(make_handler, make_logger, sink):
    """logger.exception with no exception being handled gives the stdlib's "NoneType: None"."""
    handler = make_handler(sink)
    make_logger(handler).exception("nothing raised")
    handler.flush()
    assert logging.Formatter().formatException((None, None, None)) == sink.records[0].exc_text


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are 3.11+")
def test_exception_group_text_is_the_formatters(make_handler, make_logger, sink):
    """An exception group renders with its members, as the stdlib formatter does."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    try:
        try:
            raise_boom()
        except ValueError as exc:
            raise ExceptionGroup("many", [exc, KeyError("k")]) from None  # noqa: F821 -- 3.11+
    except Exception:
        expected = logging.Formatter().formatException(sys.exc_info())
        logger.exception("failed")
    handler.flush()
    assert expected == sink.records[0].exc_text


def test_traceback_limit_is_the_one_in_force_when_logged(
    make_handler, make_logger, sink, monkeypatch
):
    """sys.tracebacklimit applies as when the exception was logged, not when rendered."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    monkeypatch.setattr(sys, "tracebacklimit", 1, raising=False)
    try:
        raise_chained()
    except KeyError:
        expected = logging.Formatter().formatException(sys.exc_info())
        logger.exception("failed")
    monkeypatch.setattr(sys, "tracebacklimit", 1000)
    handler.flush()
    assert expected == sink.records[0].exc_text


def test_formatted_exception_text_is_the_formatters(make_handler, make_logger, sink):
    """With a formatter, ``formatted`` is what it gives for the live record."""
    formatter = logging.Formatter("%(levelname)s %(message)s")
    handler = make_handler(sink)
    handler.setFormatter(formatter)
    capture = LogCapture()
    logger = make_logger(handler, capture)
    try:
        raise_chained()
    except KeyError:
        logger.exception("failed")
        expected = logging.Formatter("%(levelname)s %(message)s").format(capture.records[0])
    handler.flush()
    assert expected == sink.records[0].formatted


def test_custom_format_exception_runs_with_the_live_exception(make_handler, make_logger, sink):
    """A formatter with its own formatException gets the real exc_info, on the caller."""

    class ShortFormatter(logging.Formatter):
        def formatException(self, ei):  # noqa: N802 -- logging's name
            return f"{ei[0].__name__} at line {ei[2].tb_lineno}"

    handler = make_handler(sink)
    handler.setFormatter(ShortFormatter("%(message)s"))
    logger = make_logger(handler)
    try:
        raise_boom()
    except ValueError:
        line = sys.exc_info()[2].tb_lineno
        logger.exception("failed")
    handler.flush()
    assert f"failed\nValueError at line {line}" == sink.records[0].formatted


def test_no_frame_outlives_logger_exception(make_handler, make_logger, sink):
    """Right after the except block, with no garbage collection, the raising frame's locals
    are gone: the waiting record holds no frame, traceback or exception."""
    handler = make_handler(sink, capacity=100, flush_interval=60)
    logger = make_logger(handler)
    refs: list[weakref.ref[Payload]] = []
    gc.disable()
    try:
        try:
            raise_holding_a_local(refs)
        except ValueError:
            logger.exception("failed")
        assert refs[0]() is None
        assert handler.metrics.records_in_buffer == 1  # not flushed yet
    finally:
        gc.enable()
    handler.flush()
    assert "ValueError: boom" in sink.records[0].exc_text


def test_stack_info_reaches_the_sink_as_text(make_handler, make_logger, sink):
    """stack_info=True reaches the sink as text naming the logging call's function."""
    handler = make_handler(sink)
    make_logger(handler).info("here", stack_info=True)
    handler.flush()
    (record,) = sink.records
    assert isinstance(record.stack_info, str)
    assert "test_stack_info_reaches_the_sink_as_text" in record.stack_info


def test_extra_fields_reach_the_sink(make_handler, make_logger, sink):
    """Fields given with extra= are attributes of the delivered record."""
    handler = make_handler(sink)
    make_logger(handler).info("login", extra={"user_id": 42, "tags": ["a"]})
    handler.flush()
    (record,) = sink.records
    assert (record.user_id, record.tags) == (42, ["a"])


@pytest.mark.parametrize("kind", ["stable", "mutable-args", "exception"])
def test_other_handlers_see_the_record_untouched(make_handler, make_logger, sink, kind):
    """Another handler on the logger gets the record as logged, whatever this one did."""
    handler = make_handler(sink)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    capture = LogCapture()
    logger = make_logger(handler, capture)
    items = ["a"]
    if kind == "stable":
        logger.info("number %d", 7)
        expected = ("number %d", (7,), False)
    elif kind == "mutable-args":
        logger.info("items %s", items)
        expected = ("items %s", (items,), False)
    else:
        try:
            raise_boom()
        except ValueError:
            logger.exception("failed %s", items)
        expected = ("failed %s", (items,), True)
    handler.flush()
    (record,) = capture.records
    assert expected == (record.msg, record.args, record.exc_info is not None)
    assert kind == "stable" or record.args[0] is items
    assert not {"formatted", "message", "asctime"} & set(vars(record))


# --------------------------------------------------------------------------- formatting


def test_formatter_runs_on_the_worker_thread(make_handler, make_logger, sink):
    """The handler's formatter is called on the writer's worker thread, not the caller's."""
    handler = make_handler(sink)
    formatter = ThreadNotingFormatter()
    handler.setFormatter(formatter)
    make_logger(handler).info("one")
    handler.flush()
    assert formatter.threads == sink.threads
    assert threading.current_thread() not in formatter.threads
    assert formatter.threads[0].name.startswith("batchlog-")


def test_sink_gets_formatted_text_when_a_formatter_is_set(make_handler, make_logger, sink):
    """With a formatter, each delivered record carries its output in ``formatted``."""
    handler = make_handler(sink)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger = make_logger(handler)
    logger.warning("careful %s", "now")
    handler.flush()
    assert [record.formatted for record in sink.records] == [f"{logger.name} WARNING careful now"]


def test_formatted_text_includes_the_exception(make_handler, make_logger, sink):
    """The formatted text of a record with an exception carries its traceback."""
    handler = make_handler(sink)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = make_logger(handler)
    try:
        raise_boom()
    except ValueError:
        logger.exception("failed")
    handler.flush()
    (record,) = sink.records
    assert record.formatted.startswith("failed\nTraceback (most recent call last)")
    assert record.formatted.endswith("ValueError: boom")


def test_failing_formatter_reports_and_still_delivers_the_batch(
    make_handler, make_logger, sink, capsys
):
    """A formatter that raises on one record goes to handleError; the batch still arrives."""

    class PickyFormatter(logging.Formatter):
        def format(self, record):
            if record.getMessage() == "bad":
                raise RuntimeError("cannot format")
            return super().format(record)

    handler = make_handler(sink)
    handler.setFormatter(PickyFormatter("%(message)s"))
    logger = make_logger(handler)
    for text in ("good", "bad", "also good"):
        logger.info(text)
    handler.flush()
    formatted = [record.formatted for record in sink.records]
    assert (formatted[0], formatted[2]) == ("good", "also good")
    assert "RuntimeError: cannot format" in capsys.readouterr().err
    assert handler.metrics.records_processed == 3


# --------------------------------------------------------------------------- failures


def test_failure_at_emit_goes_to_handle_error(make_handler, make_logger, sink, capsys):
    """A message that cannot be merged with its arguments is reported, never raised."""
    handler = make_handler(sink)
    make_logger(handler).info("%d items", ["not", "a", "number"])
    assert "--- Logging error ---" in capsys.readouterr().err


def test_failure_at_emit_is_silent_without_raise_exceptions(
    make_handler, make_logger, sink, capsys
):
    """With logging.raiseExceptions False an emit failure prints nothing."""
    logging.raiseExceptions = False
    handler = make_handler(sink)
    make_logger(handler).info("%d items", ["not", "a", "number"])
    handler.flush()
    assert capsys.readouterr().err == ""


def test_unmergeable_message_goes_to_handle_error(make_handler, make_logger, sink, capsys):
    """A format string that does not fit its (immutable) arguments is reported by handleError,
    as the stdlib does, instead of reaching the sink."""
    handler = make_handler(sink)
    make_logger(handler).info("%d items", "many")
    handler.flush()
    assert "--- Logging error ---" in capsys.readouterr().err


def test_unmergeable_message_does_not_fail_the_rest_of_its_batch(make_handler, make_logger):
    """One record whose message cannot be merged does not fail the others in its batch."""
    received: list[str] = []

    def message_sink(batch):
        received.extend(record.getMessage() for record in batch)

    handler = make_handler(message_sink)
    logger = make_logger(handler)
    logging.raiseExceptions = False  # whatever is reported, keep it off the output
    logger.info("first")
    logger.info("%d items", "many")
    logger.info("last")
    handler.flush()
    assert received == ["first", "last"]
    assert handler.metrics.records_failed == 0


def test_sink_failure_is_counted_in_records_failed(make_handler, make_logger, capsys):
    """A batch whose sink raised counts as failed, not processed, and logging goes on."""

    def failing_sink(batch):
        raise RuntimeError("sink down")

    handler = make_handler(failing_sink)
    logger = make_logger(handler)
    logger.info("one")
    logger.info("two")
    handler.flush()
    logger.info("three")
    handler.flush()
    metrics = handler.metrics
    assert (metrics.records_failed, metrics.records_processed, metrics.flush_errors) == (3, 0, 2)


def test_sink_failure_is_reported_on_stderr(make_handler, make_logger, capsys):
    """With logging.raiseExceptions True a sink failure is reported on stderr."""

    def failing_sink(batch):
        raise RuntimeError("sink down")

    handler = make_handler(failing_sink)
    make_logger(handler).info("one")
    handler.flush()
    err = capsys.readouterr().err
    assert "RuntimeError: sink down" in err
    assert "records_failed" in err


def test_sink_failure_is_silent_without_raise_exceptions(make_handler, make_logger, capsys):
    """With logging.raiseExceptions False a sink failure prints nothing."""
    logging.raiseExceptions = False

    def failing_sink(batch):
        raise RuntimeError("sink down")

    handler = make_handler(failing_sink)
    make_logger(handler).info("one")
    handler.flush()
    assert capsys.readouterr().err == ""
    assert handler.metrics.records_failed == 1


def test_sink_logging_through_the_handler_is_dropped_and_counted(make_handler, make_logger):
    """Records a sink logs through a logger reaching its own handler are dropped and
    counted, so the sink neither deadlocks nor feeds itself."""
    received: list[str] = []

    def logging_sink(batch):
        received.extend(messages(batch))
        logger.getChild("sink").warning("wrote %d records", len(batch))

    handler = make_handler(logging_sink, capacity=2)
    logger = make_logger(handler)
    for number in range(4):
        logger.info("record %d", number)
    handler.flush()
    assert received == [f"record {number}" for number in range(4)]
    assert handler.metrics.flush_count == handler.metrics.records_dropped == 2


# --------------------------------------------------------------------------- metrics, writer


def test_metrics_is_the_writers_snapshot(make_handler, make_logger, sink):
    """handler.metrics reports what the writer counted."""
    handler = make_handler(sink)
    logger = make_logger(handler)
    for number in range(3):
        logger.info("record %d", number)
    handler.flush()
    metrics = handler.metrics
    assert metrics.as_dict() == handler.writer.metrics.as_dict()
    assert (metrics.records_added, metrics.records_processed, metrics.records_in_buffer) == (
        3,
        3,
        0,
    )


def test_writer_is_a_batch_writer_with_the_handlers_settings(make_handler, sink):
    """handler.writer is the BatchWriter built from the handler's arguments."""
    writer = make_handler(sink, capacity=7, flush_interval=2.5, max_queue_size=70).writer
    assert isinstance(writer, BatchWriter)
    assert (writer.capacity, writer.flush_interval, writer.max_queue_size) == (7, 2.5, 70)


def test_formatter_assigned_directly_is_applied(make_handler, make_logger, sink):
    """``handler.formatter = ...`` (not setFormatter) formats what the sink receives."""
    handler = make_handler(sink)
    handler.formatter = logging.Formatter("<%(message)s>")
    make_logger(handler).info("hello %s", "you")
    handler.flush()
    assert [record.formatted for record in sink.records] == ["<hello you>"]


# --------------------------------------------------------------------------- collection


def _log_through_a_dropped_handler(sink, formatter=None) -> threading.Thread:
    """Make a handler, log one record through it, drop it; return its writer's thread."""
    handler = BatchingHandler(sink, 100, 60.0, name=f"dropped-{id(sink)}")
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"batchlog-tests.dropped-{id(sink)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("last words")
    logger.removeHandler(handler)
    (thread,) = [t for t in threading.enumerate() if t.name == f"batchlog-{handler.writer.name}"]
    return thread


def test_unreferenced_handler_is_collected_and_its_thread_ends(sink):
    """A handler nobody references is collected: its records are delivered, its thread ends."""
    thread = _log_through_a_dropped_handler(sink)
    gc.collect()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert messages(sink.records) == ["last words"]


def test_unreferenced_handler_still_formats_its_last_records(sink):
    """Records a collected handler left behind are formatted with its formatter."""
    thread = _log_through_a_dropped_handler(sink, logging.Formatter("%(levelname)s %(message)s"))
    gc.collect()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert [record.formatted for record in sink.records] == ["WARNING last words"]


def test_a_handler_whose_construction_failed_is_flushed_and_closed_quietly():
    """logging keeps a handler from the moment Handler.__init__ ran: one whose own
    construction then failed (a bad argument, already reported) flushes and closes at
    logging.shutdown() without a second, bogus error."""
    from batchlog import BatchingHandler

    with pytest.raises(TypeError, match="deliver_on_sigterm") as failure:
        BatchingHandler(lambda batch: None, deliver_on_sigterm="maybe")
    (broken,) = [  # what logging still holds
        entry.frame.f_locals["self"]
        for entry in failure.traceback
        if isinstance(entry.frame.f_locals.get("self"), BatchingHandler)
    ]
    logging.shutdown([weakref.ref(broken)])  # neither raises nor reports
