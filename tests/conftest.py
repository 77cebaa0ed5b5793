"""Shared fixtures: writers that are always closed, sinks to watch, logging restored."""

from __future__ import annotations

import importlib
import itertools
import logging
import logging.config
import sys
import textwrap
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from pg_server import REQUIRED, PostgresServer, PostgresUnavailableError, shared_server

from batchlog import BatchWriter
from batchlog.testing import FakeClock

#: The mutation harness (tests/mutation/) is run by hand, never collected as tests; its own
#: conftest must not shadow this one for ``from conftest import ...``.
collect_ignore = ["mutation"]

#: Real seconds a test waits for another thread before it gives up (generous: busy CI).
WAIT = 10.0
#: Real seconds a blocked sink waits for its gate before giving up, so a bug fails, not hangs.
GATE_BACKSTOP = 30.0

_logger_numbers = itertools.count(1)


class RecordingSink:
    """A sink that keeps a copy of every batch and the thread it ran on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.batches: list[list[Any]] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, batch: list[Any]) -> None:
        self._record(batch)

    def _record(self, batch: list[Any]) -> None:
        with self._cond:
            self.batches.append(list(batch))
            self.threads.append(threading.current_thread())
            self._cond.notify_all()

    @property
    def records(self) -> list[Any]:
        """Every record received, in the order received."""
        with self._cond:
            return [record for batch in self.batches for record in batch]

    def wait_for_batches(self, count: int, timeout: float = WAIT) -> bool:
        """Wait (real time) until at least ``count`` batches arrived; return whether they did."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.batches) >= count, timeout)

    def wait_for_records(self, count: int, timeout: float = WAIT) -> bool:
        """Wait (real time) until at least ``count`` records arrived; return whether they did."""
        with self._cond:
            return self._cond.wait_for(lambda: sum(map(len, self.batches)) >= count, timeout)


class BlockingSink(RecordingSink):
    """A sink whose calls wait for :meth:`release`; ``entered`` is set when a call begins.

    A batch is recorded once the call is released.
    """

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, batch: list[Any]) -> None:
        self.entered.set()
        self.gate.wait(GATE_BACKSTOP)
        self._record(batch)

    def release(self) -> None:
        """Let every present and future call through."""
        self.gate.set()


class LogCapture(logging.Handler):
    """A handler that keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the root logger's handlers and level and ``logging.raiseExceptions`` back."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    level = root.level
    raise_exceptions = logging.raiseExceptions
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.raiseExceptions = raise_exceptions


@pytest.fixture
def _gates() -> list[threading.Event]:
    """Events that must be set before the test's writers are closed."""
    return []


@pytest.fixture
def make_writer(_gates: list[threading.Event]) -> Iterator[Callable[..., BatchWriter[Any]]]:
    """Return ``make_writer(flush_fn, capacity=10, flush_interval=60.0, **kwargs)``.

    Every writer it made is closed at teardown (after every gate is released); a writer
    that cannot close within ``WAIT`` seconds fails the test.
    """
    writers: list[BatchWriter[Any]] = []

    def make(
        flush_fn: Callable[[list[Any]], object],
        capacity: int = 10,
        flush_interval: float = 60.0,
        **kwargs: Any,
    ) -> BatchWriter[Any]:
        writer: BatchWriter[Any] = BatchWriter(capacity, flush_interval, flush_fn, **kwargs)
        writers.append(writer)
        return writer

    yield make
    for gate in _gates:
        gate.set()
    unclosed = [writer.name for writer in writers if not writer.close(timeout=WAIT)]
    if unclosed:
        pytest.fail(f"writers did not close within {WAIT} s: {unclosed}")


@pytest.fixture
def sink() -> RecordingSink:
    """A sink that records every batch."""
    return RecordingSink()


@pytest.fixture
def blocking_sink(_gates: list[threading.Event]) -> BlockingSink:
    """A sink that blocks until released (released at teardown at the latest)."""
    blocking = BlockingSink()
    _gates.append(blocking.gate)
    return blocking


@pytest.fixture
def new_gate(_gates: list[threading.Event]) -> Callable[[], threading.Event]:
    """Return a factory of Events that are set at teardown, before writers close."""

    def make() -> threading.Event:
        gate = threading.Event()
        _gates.append(gate)
        return gate

    return make


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test advances it."""
    return FakeClock()


@pytest.fixture
def make_log_capture() -> Iterator[Callable[[], tuple[logging.Logger, LogCapture]]]:
    """Return a factory of fresh non-propagating loggers, each with a collecting handler."""
    made: list[tuple[logging.Logger, LogCapture]] = []

    def make() -> tuple[logging.Logger, LogCapture]:
        logger = logging.getLogger(f"batchlog-tests.logger-{next(_logger_numbers)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        handler = LogCapture()
        logger.addHandler(handler)
        made.append((logger, handler))
        return logger, handler

    yield make
    for logger, handler in made:
        logger.removeHandler(handler)


@pytest.fixture
def log_capture(
    make_log_capture: Callable[[], tuple[logging.Logger, LogCapture]],
) -> tuple[logging.Logger, LogCapture]:
    """A fresh non-propagating logger and the handler collecting what it logs."""
    return make_log_capture()


def _detach_everywhere(handler: logging.Handler) -> None:
    """Remove ``handler`` from the root logger and from every named logger."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if isinstance(logger, logging.Logger) and handler in logger.handlers:
            logger.removeHandler(handler)


@pytest.fixture
def make_handler(_gates: list[threading.Event]) -> Iterator[Callable[..., Any]]:
    """Return ``make_handler(sink, capacity=100, flush_interval=60.0, **kwargs)``.

    Every handler it made is detached from every logger and closed at teardown (after
    every gate is released); one whose writer cannot close within ``WAIT`` s fails the test.
    """
    from batchlog import BatchingHandler

    handlers: list[BatchingHandler] = []

    def make(
        sink: object, capacity: int = 100, flush_interval: float = 60.0, **kwargs: Any
    ) -> BatchingHandler:
        handler = BatchingHandler(sink, capacity, flush_interval, **kwargs)
        handlers.append(handler)
        return handler

    yield make
    for gate in _gates:
        gate.set()
    for handler in handlers:
        _detach_everywhere(handler)
        handler.close()
    unclosed = [handler.name for handler in handlers if not handler.writer.close(timeout=WAIT)]
    if unclosed:
        pytest.fail(f"handlers did not close within {WAIT} s: {unclosed}")


@pytest.fixture
def make_processor(_gates: list[threading.Event]) -> Iterator[Callable[..., Any]]:
    """Return ``make_processor(sink, capacity=100, flush_interval=60.0, **kwargs)``.

    Every processor it made is closed at teardown (after every gate is released).
    """
    from batchlog import BatchingProcessor

    processors: list[BatchingProcessor] = []

    def make(
        sink: object, capacity: int = 100, flush_interval: float = 60.0, **kwargs: Any
    ) -> BatchingProcessor:
        processor = BatchingProcessor(sink, capacity, flush_interval, **kwargs)
        processors.append(processor)
        return processor

    yield make
    for gate in _gates:
        gate.set()
    unclosed = [repr(processor) for processor in processors if not processor.close(WAIT)]
    if unclosed:
        pytest.fail(f"processors did not close within {WAIT} s: {unclosed}")


@pytest.fixture
def make_logger() -> Iterator[Callable[..., logging.Logger]]:
    """Return ``make_logger(*handlers)``: a fresh non-propagating DEBUG logger using them.

    The handlers are removed from it at teardown.
    """
    made: list[logging.Logger] = []

    def make(*handlers: logging.Handler) -> logging.Logger:
        logger = logging.getLogger(f"batchlog-tests.logger-{next(_logger_numbers)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        for handler in handlers:
            logger.addHandler(handler)
        made.append(logger)
        return logger

    yield make
    for logger in made:
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)


#: The source of the module made by ``sink_module``: sinks that dictConfig can name.
SINK_MODULE_SOURCE = """\
import threading

received = []  # every record any sink here received, in order
_cond = threading.Condition()
gate = threading.Event()  # blocking_sink waits for it; set at teardown at the latest
entered = threading.Event()  # set when blocking_sink is first called
not_callable = 42


def sink(batch):
    with _cond:
        received.extend(batch)
        _cond.notify_all()


def wait_for(count, timeout):
    with _cond:
        return _cond.wait_for(lambda: len(received) >= count, timeout)


def blocking_sink(batch):
    entered.set()
    gate.wait(30.0)
    sink(batch)


class Sinks:
    sink = staticmethod(sink)


class TaggingSink:
    def __init__(self, tag, suffix=""):
        self.tag = tag + suffix
        self.closed = False

    def __call__(self, batch):
        sink([(self.tag, record) for record in batch])

    def close(self):
        self.closed = True


def make_tagging_sink(tag):
    return TaggingSink(tag)


def drop_secrets():
    return lambda record: "secret" not in record.getMessage()
"""


@pytest.fixture
def sink_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _gates: list[threading.Event]
) -> Iterator[types.ModuleType]:
    """A fresh importable module of sinks (``SINK_MODULE_SOURCE``) under a unique name.

    Its ``gate`` is set at teardown, before handlers close; it leaves ``sys.modules`` then.
    """
    name = f"batchlog_test_sinks_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(SINK_MODULE_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    _gates.append(module.gate)
    yield module
    sys.modules.pop(name, None)


@pytest.fixture
def dict_config(
    _gates: list[threading.Event],
) -> Iterator[Callable[..., tuple[logging.Logger, logging.Handler]]]:
    """Return ``dict_config(handler_config, formatters=None, filters=None)``.

    It runs ``logging.config.dictConfig`` with the handler as ``"batching"`` on a fresh
    non-propagating logger (existing loggers stay enabled) and returns the logger and the
    handler. Handlers it configured are closed and detached at teardown.
    """
    configured: list[logging.Logger] = []

    def configure(
        handler_config: dict[str, Any],
        formatters: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> tuple[logging.Logger, logging.Handler]:
        name = f"batchlog-tests.dictconfig-{next(_logger_numbers)}"
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": formatters or {},
                "filters": filters or {},
                "handlers": {"batching": handler_config},
                "loggers": {name: {"handlers": ["batching"], "level": "DEBUG", "propagate": False}},
            }
        )
        logger = logging.getLogger(name)
        configured.append(logger)
        (handler,) = logger.handlers
        return logger, handler

    yield configure
    for gate in _gates:
        gate.set()
    for logger in configured:
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()


class OwnerProxy:
    """Stands between an intake and its worker (``intake._owner``): counts and hooks ``wake``.

    The worker has ``__slots__``, so its ``wake`` cannot be patched; the intake reaches the
    worker only through ``_owner``, so a proxy there sees every wake-up an add asks for.
    """

    def __init__(
        self, owner: Any, on_wake: Callable[[], object] | None = None, *, forward: bool = True
    ) -> None:
        self._owner = owner
        self._on_wake = on_wake
        self._lock = threading.Lock()
        self.wakes = 0
        self.forward = forward  # False: swallow the wake-ups (the worker is not told)

    def wake(self) -> None:
        with self._lock:
            self.wakes += 1
        if self._on_wake is not None:
            self._on_wake()
        if self.forward:
            self._owner.wake()

    def on_sink_thread(self) -> bool:
        return self._owner.on_sink_thread()

    def can_run(self) -> bool:
        return self._owner.can_run()

    def drain_here(self) -> None:
        self._owner.drain_here()

    def drain_elsewhere(self) -> bool:
        return self._owner.drain_elsewhere()

    def wait_budget(self) -> float | None:
        return self._owner.wait_budget()


# ------------------------------------------------------------------ PostgreSQL
# For the tests of PostgresSink (tests/test_sinks_postgres*.py): one server per test process.

_postgres_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The PostgreSQL server of this test process (``pg_server.shared_server``).

    It skips the test, saying why, if the server cannot start; with
    ``BATCHLOG_REQUIRE_POSTGRES=1`` it fails it instead.
    """
    try:
        return shared_server()  # stopped at exit: every PostgreSQL test module uses it
    except PostgresUnavailableError as exc:
        if REQUIRED:
            pytest.fail(f"BATCHLOG_REQUIRE_POSTGRES=1 but PostgreSQL did not start: {exc}")
        pytest.skip(f"PostgreSQL could not be started: {exc}")


@pytest.fixture
def conninfo(postgres_server: PostgresServer) -> str:
    """A connection string for the test database."""
    return postgres_server.conninfo()


@pytest.fixture
def admin(conninfo: str) -> Iterator[Any]:
    """A separate autocommit connection for looking at what a sink did."""
    import psycopg  # the PostgreSQL modules skip (or fail) first if it is missing

    with psycopg.connect(conninfo, autocommit=True) as connection:
        yield connection


@pytest.fixture
def table() -> str:
    """A table name no other test uses."""
    return f"logs_{next(_postgres_numbers)}"


@pytest.fixture
def sleeps() -> list[float]:
    """The waits a sink asked for; pass ``sleep=sleeps.append`` so no test really waits."""
    return []


@pytest.fixture
def make_postgres_sink(
    conninfo: str, table: str, sleeps: list[float]
) -> Iterator[Callable[..., Any]]:
    """Return ``make_postgres_sink(**kwargs)``: a ``PostgresSink`` on ``table``, closed at teardown.

    Each sink gets its own ``application_name``, so a test can find its backend, and
    ``backoff_jitter=0``, so its sleeps can be predicted; ``conninfo=`` overrides the server's.
    """
    from batchlog.sinks import PostgresSink

    made: list[PostgresSink] = []

    def make(**kwargs: Any) -> PostgresSink:
        kwargs.setdefault("table", table)
        kwargs.setdefault("sleep", sleeps.append)
        kwargs.setdefault("backoff_jitter", 0.0)
        kwargs.setdefault("application_name", f"batchlog-test-{next(_postgres_numbers)}")
        made.append(PostgresSink(kwargs.pop("conninfo", conninfo), **kwargs))
        return made[-1]

    yield make
    for sink in made:
        sink.close()
