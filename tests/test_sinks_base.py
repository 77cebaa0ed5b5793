"""SinkBase: every sink closes once, reopens, and survives ``os.fork()``, even mid-batch.

The contract is checked on a small sink of the tests' own, then for each sink kind: JSON
Lines, SQLite, HandlerSink, HTTP (against a local server) and FallbackSink; PostgreSQL's
tests are in ``test_sinks_postgres.py``, next to its server.

Fork is tested in a child interpreter running a small script (``run_fork_script``): a
thread of the script calls the sink with a batch that is held inside the sink (``hold()``,
at a point each test picks) while the main thread forks; the forked child calls the sink
with its own batch and says what happened; the script's main thread waits for the child
(killing it if it hangs), releases the held batch, sends one more, and writes down what
the destination holds.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import WAIT
from test_sinks_http import Server, run

from batchlog.sinks import (
    FallbackSink,
    HandlerSink,
    HTTPSink,
    JsonLinesSink,
    SinkBase,
    SQLiteSink,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT_TIMEOUT = 120.0

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def records(tag: str, count: int = 3) -> list[logging.LogRecord]:
    """``count`` INFO records whose messages are ``tag-0``, ``tag-1``, ..."""
    return [
        logging.makeLogRecord(
            {"msg": f"{tag}-{n}", "levelno": logging.INFO, "levelname": "INFO", "name": "base"}
        )
        for n in range(count)
    ]


def messages(tag: str, count: int = 3) -> list[str]:
    return [f"{tag}-{n}" for n in range(count)]


# ------------------------------------------------------------------ the base, on its own


class ListSink(SinkBase):
    """A sink that keeps its batches in a list; with ``gate`` set, a batch waits for it."""

    def __init__(self) -> None:
        self.stored: list[Any] = []
        self.released_with: list[list[Any]] = []  # what was stored at each release
        self.inside = threading.Event()
        self.gate: threading.Event | None = None
        super().__init__()

    def __call__(self, batch: list[Any]) -> None:
        with self._sink_lock():
            self._check_open()
            self.inside.set()
            if self.gate is not None:
                assert self.gate.wait(WAIT)
            self.stored.extend(batch)

    def _release(self) -> None:
        self.released_with.append(list(self.stored))


class EntryCountingLock:
    """A lock that sets ``second_entry`` when a second caller comes to take it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.entries = 0
        self.second_entry = threading.Event()

    def __enter__(self) -> None:
        with self._count_lock:
            self.entries += 1
            if self.entries == 2:
                self.second_entry.set()
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


def test_close_releases_once_however_many_threads_close():
    """Eight threads closing at once: the sink's resources are released exactly once."""
    sink = ListSink()
    barrier = threading.Barrier(8)

    def close() -> None:
        barrier.wait(WAIT)
        sink.close()

    threads = [threading.Thread(target=close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert (sink.closed, len(sink.released_with)) == (True, 1)


def test_close_waits_for_the_batch_in_flight():
    """A close from another thread releases only after the batch in flight is stored."""
    sink = ListSink()
    sink.gate = threading.Event()
    lock = EntryCountingLock()
    sink._lock = lock
    batch = threading.Thread(target=sink, args=(["in flight"],))
    batch.start()
    assert sink.inside.wait(WAIT)
    closer = threading.Thread(target=sink.close)
    closer.start()
    assert lock.second_entry.wait(WAIT)  # the closer has come for the lock the batch holds
    sink.gate.set()
    batch.join(WAIT)
    closer.join(WAIT)
    assert sink.released_with == [["in flight"]]


def test_batch_after_close_raises_value_error_naming_the_sink():
    """A batch after close raises ValueError("<repr> is closed") and stores nothing."""
    sink = ListSink()
    sink.close()
    with pytest.raises(ValueError, match="is closed") as raised:
        sink(["late"])
    assert (str(raised.value), sink.stored) == (f"{sink!r} is closed", [])


def test_reopen_makes_a_closed_sink_take_batches_again():
    """After reopen() batches are stored again, and a later close releases again."""
    sink = ListSink()
    sink(["a"])
    sink.close()
    sink.reopen()
    assert not sink.closed
    sink(["b"])
    sink.close()
    assert sink.released_with == [["a"], ["a", "b"]]


def test_reopen_of_an_open_sink_changes_nothing():
    """reopen() on an open sink releases nothing and batches go on."""
    sink = ListSink()
    sink(["a"])
    sink.reopen()
    sink(["b"])
    assert (sink.stored, sink.released_with, sink.closed) == (["a", "b"], [], False)


def test_lock_is_made_on_first_use_from_the_threading_module_then(monkeypatch):
    """The lock comes from threading.Lock as it is at the first batch (gevent patches late)."""
    sink = ListSink()
    made: list[Any] = []
    real_lock = threading.Lock

    def patched_lock() -> Any:
        made.append(real_lock())
        return made[-1]

    monkeypatch.setattr(threading, "Lock", patched_lock)  # as a later monkey-patch would
    sink(["a"])
    first = sink._lock
    sink(["b"])
    assert any(lock is first for lock in made)
    assert sink._lock is first


def test_sinks_are_tracked_weakly():
    """The fork hook's registry keeps no sink alive."""
    sink = ListSink()
    sink(["a"])
    collected = weakref.ref(sink)
    del sink
    gc.collect()
    assert collected() is None


def test_fork_hook_is_installed_by_the_first_sink_not_by_import(tmp_path):
    """Importing batchlog.sinks registers no fork hook; the first sink registers one, once."""
    script = """
import json, os, sys
calls = []
real_register = os.register_at_fork
def register(**hooks):
    calls.extend(h.__module__ for h in hooks.values() if h.__module__.startswith("batchlog"))
    real_register(**hooks)
os.register_at_fork = register
import batchlog.sinks._base
from batchlog.sinks import JsonLinesSink, SQLiteSink
at_import = list(calls)
JsonLinesSink(os.path.join(sys.argv[1], "a.jsonl"))
SQLiteSink(":memory:")
print(json.dumps([at_import, calls]))
"""
    result = run_script(script, tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    # One registration: before, after_in_parent and after_in_child, all of the base.
    assert json.loads(result.stdout) == [[], ["batchlog.sinks._base"] * 3]


# ------------------------------------------------------------------ fork, in a child interpreter

FORK_PRELUDE = """\
import json, logging, os, signal, sys, threading, traceback, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+ warns on fork with threads

OUT = sys.argv[1]
ARGS = sys.argv[2:]
WAIT = 30.0
PARENT = os.getpid()


class Hold:
    \"\"\"Called inside a sink: holds the parent's first call there until released.\"\"\"

    def __init__(self):
        self.inside = threading.Event()
        self.release = threading.Event()

    def __call__(self, *args):
        if os.getpid() == PARENT and not self.inside.is_set():
            self.inside.set()
            if not self.release.wait(WAIT):
                raise RuntimeError("the held batch was never released")


hold = Hold()


def records(tag, count=3):
    return [
        logging.makeLogRecord(
            {"msg": f"{tag}-{n}", "levelno": logging.INFO, "levelname": "INFO", "name": "fork"}
        )
        for n in range(count)
    ]


def write_json(name, value):
    with open(os.path.join(OUT, name), "w") as out:
        json.dump(value, out)


def described(exc):
    return f"{type(exc).__name__}: {exc}"


def reap(pid, timeout):
    \"\"\"The child's exit code; a child still running after ``timeout`` is killed: "hung".\"\"\"
    done = threading.Event()
    status = []

    def wait():
        status.append(os.waitpid(pid, 0)[1])
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    if done.wait(timeout):
        return os.waitstatus_to_exitcode(status[0])
    os.kill(pid, signal.SIGKILL)
    done.wait(timeout)
    return "hung"


def fork_mid_batch(sink, stored, child_report=None, parent_report=None):
    \"\"\"Fork while the parent's batch is held in ``sink``; write down what each side did.\"\"\"
    failures = []

    def parent_batch():
        try:
            sink(records("parent"))
        except BaseException:
            failures.append(traceback.format_exc())

    thread = threading.Thread(target=parent_batch)
    thread.start()
    if not hold.inside.wait(WAIT):
        raise RuntimeError("the parent's batch never reached hold()")
    pid = os.fork()
    if pid == 0:
        try:
            sink(records("child"))
            outcome = "stored"
        except Exception as exc:
            outcome = described(exc)
        try:
            report = child_report() if child_report else None
            sink.close()
        except Exception:
            traceback.print_exc()
            sys.exit(1)
        write_json("child.json", {"outcome": outcome, "report": report})
        sys.exit(0)  # a normal exit: what the child inherited is finalized as usual
    child_exit = reap(pid, WAIT)
    hold.release.set()
    thread.join(WAIT)
    sink(records("parent-after"))  # the parent's sink still works after the child
    report = parent_report() if parent_report else None
    sink.close()
    write_json(
        "outcome.json",
        {
            "child_exit": child_exit,
            "parent_done": not thread.is_alive(),
            "parent_failures": failures,
            "stored": stored(),
            "report": report,
        },
    )
"""


def run_script(script: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter with ``out`` (and ``args``) as its arguments."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(REPO_ROOT), env.get("PYTHONPATH")) if path
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(out), *args],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        env=env,
        check=False,
    )


def run_fork_script(body: str, out: Path, *args: str) -> dict[str, Any]:
    """Run ``FORK_PRELUDE`` + ``body``; return its outcome, with the child's as ``child``."""
    result = run_script(FORK_PRELUDE + textwrap.dedent(body), out, *args)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    outcome: dict[str, Any] = json.loads((out / "outcome.json").read_text())
    child = out / "child.json"
    outcome["child"] = json.loads(child.read_text()) if child.exists() else None
    return outcome


def assert_each_batch_stored_once(outcome: dict[str, Any], *, child_stored: bool = True) -> None:
    """The child ended by itself; the parent's batches, and the child's, are stored once."""
    assert outcome["child_exit"] == 0
    assert (outcome["parent_done"], outcome["parent_failures"]) == (True, [])
    expected = messages("parent") + messages("parent-after")
    if child_stored:
        assert outcome["child"]["outcome"] == "stored"
        expected += messages("child")
    assert sorted(expected) == sorted(outcome["stored"])


@needs_fork
@pytest.mark.subprocess
def test_fork_gives_the_child_a_new_lock_and_says_whether_the_parent_was_busy(tmp_path):
    """In the child each sink's lock is dropped; _forget_inherited hears who was mid-batch."""
    outcome = run_fork_script(
        """
from batchlog.sinks import SinkBase

class Sink(SinkBase):
    def __init__(self, name):
        self.name, self.stored, self.told = name, [], []
        super().__init__()

    def __call__(self, batch):
        with self._sink_lock():
            self._check_open()
            if self.name == "busy":
                hold()
            self.stored.extend(record.getMessage() for record in batch)

    def _forget_inherited(self, *, busy):
        self.told.append(busy)

busy, idle = Sink("busy"), Sink("idle")
idle(records("idle"))

def child_report():
    idle(records("idle-child"))
    return {"told": [busy.told, idle.told], "stored": [busy.stored, idle.stored]}

fork_mid_batch(busy, lambda: busy.stored, child_report)
""",
        tmp_path,
    )
    assert (outcome["child_exit"], outcome["child"]["outcome"]) == (0, "stored")
    assert outcome["stored"] == messages("parent") + messages("parent-after")
    assert outcome["child"]["report"] == {
        "told": [[True], [False]],
        "stored": [messages("child"), messages("idle") + messages("idle-child")],
    }


@needs_fork
@pytest.mark.subprocess
def test_a_sink_that_fails_to_forget_is_reported_and_the_others_are_reset(tmp_path):
    """One sink's failing _forget_inherited is reported on stderr; the next sink still resets."""
    result = run_script(
        """
import json, os, sys, warnings
from batchlog.sinks import SinkBase

class Broken(SinkBase):
    def __call__(self, batch):
        pass

    def _forget_inherited(self, *, busy):
        raise RuntimeError("cannot forget")

class Fine(SinkBase):
    def __init__(self):
        self.told = []
        super().__init__()

    def __call__(self, batch):
        pass

    def _forget_inherited(self, *, busy):
        self.told.append(busy)

broken, fine = Broken(), Fine()
pid = os.fork()
if pid == 0:
    print(json.dumps(fine.told))
    sys.exit(0)
os.waitpid(pid, 0)
""",
        tmp_path,
    )
    assert (result.returncode, result.stdout) == (0, "[false]\n")
    assert "could not let go of what it inherited over fork: RuntimeError: cannot forget" in (
        result.stderr
    )


@needs_fork
@pytest.mark.subprocess
@pytest.mark.skipif(importlib.util.find_spec("gevent") is None, reason="needs gevent")
def test_a_child_patched_by_gevent_after_the_fork_gets_gevent_locks(tmp_path):
    """As in gunicorn's gevent worker: patched after the fork, the sink's new lock is gevent's."""
    result = run_script(
        """
import json, os, sys, warnings
from batchlog.sinks import JsonLinesSink

sink = JsonLinesSink(os.path.join(sys.argv[1], "logs.jsonl"))
sink([{"event": "parent"}])
parent_lock = type(sink._lock).__module__
pid = os.fork()
if pid == 0:
    warnings.simplefilter("ignore")  # gevent may warn about modules imported before it
    from gevent import monkey
    monkey.patch_all()
    import threading
    sink([{"event": "child"}])
    print(json.dumps([parent_lock, sink._lock.__class__ is threading.Lock().__class__]))
    sys.stdout.flush()
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
""",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    parent_lock, child_lock_is_gevents = json.loads(result.stdout)
    assert (parent_lock, child_lock_is_gevents) == ("_thread", True)


JSONL_HELD = """
from batchlog.sinks import JsonLinesSink

class HeldSink(JsonLinesSink):
    def _current_descriptor(self):
        descriptor = super()._current_descriptor()
        hold()  # the file is open, the sink's lock held
        return descriptor

path = os.path.join(OUT, "logs.jsonl")

def stored():
    with open(path) as lines:
        return [json.loads(line)["message"] for line in lines]
"""


@needs_fork
@pytest.mark.subprocess
def test_fork_mid_batch_json_lines(tmp_path):
    """JSON Lines: the child appends its batch; the parent's held batch is written once."""
    outcome = run_fork_script(JSONL_HELD + "fork_mid_batch(HeldSink(path), stored)", tmp_path)
    assert_each_batch_stored_once(outcome)


SQLITE_STORED = """
import sqlite3
from batchlog.sinks import SQLiteSink

path = os.path.join(OUT, "logs.sqlite3")

def stored():
    with sqlite3.connect(path) as reader:
        assert reader.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [message for (message,) in reader.execute("SELECT message FROM logs ORDER BY id")]
"""


@needs_fork
@pytest.mark.subprocess
# A child ends as multiprocessing ends it (no finalizers), or with a normal exit.
@pytest.mark.parametrize("child_exit", ["os._exit(0)", "sys.exit(0)"])
def test_fork_between_batches_sqlite_child_writes_even_after_the_parent_closes(
    tmp_path, child_exit
):
    """SQLite, forked idle: the child's writes land, also after the parent's last close."""
    result = run_script(
        FORK_PRELUDE
        + SQLITE_STORED
        + """
sink = SQLiteSink(path, busy_timeout=WAIT)
sink(records("parent"))
ready, ready_writer = os.pipe()
go, go_writer = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(ready)
    os.close(go_writer)  # else a parent that died would leave the child waiting on go
    try:
        sink(records("child"))
        os.write(ready_writer, b"!")
        os.read(go, 1)  # meanwhile the parent closed its connection, the last but the child's
        sink(records("child-late"))
        sink.close()
        outcome = "stored"
    except Exception as exc:
        outcome = described(exc)
    write_json("child.json", outcome)
    CHILD_EXIT
os.close(ready_writer)
os.read(ready, 1)  # EOF if the child ended early
sink.close()  # SQLite checkpoints and deletes the WAL if no other process holds a lock
os.write(go_writer, b"!")
write_json("outcome.json", {"child_exit": reap(pid, WAIT), "stored": stored()})
""".replace("CHILD_EXIT", child_exit),
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    outcome = json.loads((tmp_path / "outcome.json").read_text())
    assert json.loads((tmp_path / "child.json").read_text()) == "stored"
    assert outcome == {
        "child_exit": 0,
        "stored": messages("parent") + messages("child") + messages("child-late"),
    }


@needs_fork
@pytest.mark.subprocess
@pytest.mark.parametrize(
    "hold_point",
    [
        pytest.param(
            """
class HeldSink(SQLiteSink):
    def _current_connection(self):
        connection = super()._current_connection()
        hold()  # the connection is open, the sink's lock held, no transaction yet
        return connection
""",
            id="before-its-transaction",
        ),
        pytest.param(
            """
class HeldSink(SQLiteSink):
    def _current_connection(self):
        connection = super()._current_connection()
        if not hasattr(self, "held"):  # inside the insert: the parent writes its transaction
            connection.create_function("hold", 0, hold)
            connection.execute(
                "CREATE TEMP TRIGGER held AFTER INSERT ON logs BEGIN SELECT hold(); END"
            )
            self.held = True
        return connection
""",
            id="inside-its-transaction",
        ),
    ],
)
def test_fork_mid_batch_sqlite_child_refuses_and_never_hangs(tmp_path, hold_point):
    """SQLite, forked mid-batch: the child's sinks of that file refuse to write; no hang."""
    outcome = run_fork_script(
        SQLITE_STORED
        + hold_point
        + """
sink = HeldSink(path, busy_timeout=1.0)
other = SQLiteSink(os.path.join(OUT, ".", "logs.sqlite3"), table="other")  # idle at the fork
other(records("other"))
elsewhere = SQLiteSink(os.path.join(OUT, "elsewhere.sqlite3"))
elsewhere(records("elsewhere"))

def child_report():
    import gc
    gc.collect()  # what the child inherited is not finalized (that would hang or roll back)
    outcomes = []
    for neighbour in (other, elsewhere):
        try:
            neighbour(records("child"))
            outcomes.append("stored")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        neighbour.close()
    return outcomes

fork_mid_batch(sink, stored, child_report)
""",
        tmp_path,
    )
    assert_each_batch_stored_once(outcome, child_stored=False)
    child_outcome = outcome["child"]["outcome"]
    assert child_outcome.startswith("OperationalError: ")
    assert "it was forked while the parent's sink was writing a batch" in child_outcome
    # Another sink of the same file refuses too (the state is the file's); another file works.
    assert outcome["child"]["report"] == ["OperationalError", "stored"]


@needs_fork
@pytest.mark.subprocess
def test_fork_waits_for_an_sqlite_batch_in_flight_and_the_child_writes(tmp_path):
    """A fork while the parent's SQLite batch is in flight waits for it (briefly): the
    child then inherits the sink idle and stores its own batch; each batch is stored once."""
    outcome = run_fork_script(
        SQLITE_STORED
        + """
class HeldSink(SQLiteSink):
    def _current_connection(self):
        connection = super()._current_connection()
        hold()  # the connection is open, the sink's lock held, no transaction yet
        return connection


class ReleasingLock:
    \"\"\"The sink's lock, seen by the fork's wait: the held batch is let go right then.\"\"\"

    def __init__(self, lock):
        self.lock = lock

    def acquire(self, blocking=True, timeout=-1):
        if threading.current_thread() is threading.main_thread():
            hold.release.set()  # the fork is waiting: the parent's batch may finish now
        return self.lock.acquire(blocking, timeout)

    def release(self):
        self.lock.release()

    def locked(self):
        return self.lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc_info):
        self.lock.release()


import batchlog.sinks._base
batchlog.sinks._base.FORK_WAIT = WAIT
sink = HeldSink(path, busy_timeout=WAIT)
sink._lock = ReleasingLock(sink._sink_lock())
fork_mid_batch(sink, stored)
""",
        tmp_path,
    )
    assert_each_batch_stored_once(outcome)


@needs_fork
@pytest.mark.subprocess
def test_fork_mid_batch_handler_sink(tmp_path):
    """HandlerSink: the child's records reach the file once, the parent's held ones once."""
    outcome = run_fork_script(
        """
from batchlog.sinks import HandlerSink

class Holding(logging.Handler):
    def emit(self, record):
        hold()  # after the file handler took the parent's first record

path = os.path.join(OUT, "logs.txt")
to_file = logging.FileHandler(path, delay=True)
to_file.setFormatter(logging.Formatter("%(message)s"))

def stored():
    with open(path) as lines:
        return lines.read().splitlines()

fork_mid_batch(HandlerSink(to_file, Holding()), stored)
""",
        tmp_path,
    )
    assert_each_batch_stored_once(outcome)


@needs_fork
@pytest.mark.subprocess
def test_fork_mid_request_http(tmp_path):
    """HTTP, forked while the parent's POST awaits its answer: each batch arrives once."""
    outcome = run_fork_script(
        """
import gzip
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from batchlog.sinks import HTTPSink

received = []
received_lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sink's pool keeps the connection

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = [json.loads(line)["message"] for line in body.splitlines()]
        hold()  # the parent's first request waits for its answer: the batch is in flight
        with received_lock:
            received.extend(lines)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
sink = HTTPSink(
    f"http://127.0.0.1:{server.server_address[1]}/ingest", max_attempts=1, read_timeout=2 * WAIT
)

def stored():
    with received_lock:
        return list(received)

fork_mid_batch(sink, stored)
server.shutdown()
""",
        tmp_path,
    )
    assert_each_batch_stored_once(outcome)


@needs_fork
@pytest.mark.subprocess
def test_fork_mid_batch_fallback_sink(tmp_path):
    """FallbackSink: each batch dead-lettered once; the child's counters are its own."""
    outcome = run_fork_script(
        JSONL_HELD.replace("logs.jsonl", "dead-letter.jsonl").replace(
            'json.loads(line)["message"]', 'json.loads(line)["record"]["message"]'
        )
        + """
from batchlog.sinks import FallbackSink

def primary(batch):
    raise RuntimeError("the primary is down")

logging.getLogger("fork.fallback").addHandler(logging.NullHandler())
sink = FallbackSink(primary, path, logger="fork.fallback")
sink.dead_letter = HeldSink(path)  # the parent's batch waits inside the dead-letter write

fork_mid_batch(sink, stored, lambda: sink.metrics.as_dict())
""",
        tmp_path,
    )
    assert_each_batch_stored_once(outcome)
    assert outcome["child"]["report"] == {
        "primary_failures": 1,
        "dead_lettered_batches": 1,
        "dead_lettered_records": 3,
        "dead_letter_failures": 0,
    }


# ------------------------------------------------------------------ the contract, per sink kind


@dataclass
class Destination:
    """A sink kind and where it writes: ``make()`` builds a sink there, ``stored()`` reads it."""

    make: Callable[[], Any]
    stored: Callable[[], list[str]]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _failing_primary(batch: list[Any]) -> None:
    raise RuntimeError("the primary is down")


@pytest.fixture
def http_server() -> Iterator[Server]:
    """A local HTTP server that records every request."""
    yield from run(Server())


@pytest.fixture(params=["jsonl", "sqlite", "handler", "http", "fallback"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Destination]:
    """Each sink kind in turn; every sink made is closed at teardown."""
    made: list[Any] = []
    kind = request.param
    if kind == "jsonl":
        path = tmp_path / "logs.jsonl"

        def make() -> Any:
            return JsonLinesSink(path)

        def stored() -> list[str]:
            return [json.loads(line)["message"] for line in _lines(path)]

    elif kind == "sqlite":
        path = tmp_path / "logs.sqlite3"

        def make() -> Any:
            return SQLiteSink(path)

        def stored() -> list[str]:
            if not path.exists():
                return []
            with contextlib.closing(sqlite3.connect(path)) as reader:
                rows = reader.execute("SELECT message FROM logs ORDER BY id").fetchall()
            return [message for (message,) in rows]

    elif kind == "handler":
        path = tmp_path / "logs.txt"

        def make() -> Any:
            to_file = logging.FileHandler(path, delay=True)
            to_file.setFormatter(logging.Formatter("%(message)s"))
            return HandlerSink(to_file)

        def stored() -> list[str]:
            return _lines(path)

    elif kind == "http":
        server: Server = request.getfixturevalue("http_server")

        def make() -> Any:
            return HTTPSink(server.url(), max_attempts=1)

        def stored() -> list[str]:
            return [
                json.loads(line)["message"]
                for received in server.requests
                for line in received.body.splitlines()
            ]

    else:
        path = tmp_path / "dead-letter.jsonl"
        logger = logging.getLogger("tests.sinks_base.fallback")

        def make() -> Any:
            return FallbackSink(_failing_primary, path, fsync=False, logger=logger)

        def stored() -> list[str]:
            return [json.loads(line)["record"]["message"] for line in _lines(path)]

    def make_and_keep() -> Any:
        made.append(make())
        return made[-1]

    yield Destination(make_and_keep, stored)
    for sink in made:
        sink.close()


def test_every_sink_is_a_sink_base(destination):
    """Each sink kind subclasses SinkBase."""
    assert isinstance(destination.make(), SinkBase)


def test_close_is_idempotent(destination):
    """close() twice is fine; what was written stays."""
    sink = destination.make()
    sink(records("a"))
    sink.close()
    sink.close()
    assert sink.closed
    assert destination.stored() == messages("a")


def test_close_before_any_batch(destination):
    """A sink closed before its first batch opened nothing and closes cleanly."""
    sink = destination.make()
    sink.close()
    assert (sink.closed, destination.stored()) == (True, [])


def test_batch_after_close_raises_value_error(destination):
    """A batch after close raises ValueError("<repr> is closed") and writes nothing."""
    sink = destination.make()
    sink(records("a"))
    sink.close()
    with pytest.raises(ValueError, match="is closed") as raised:
        sink(records("b"))
    assert f"{sink!r} is closed" in str(raised.value)
    assert destination.stored() == messages("a")


def test_reopen_writes_to_the_same_destination(destination):
    """After close() and reopen() the next batch opens the same destination again."""
    sink = destination.make()
    sink(records("a"))
    sink.close()
    sink.reopen()
    sink(records("b"))
    assert not sink.closed
    assert destination.stored() == messages("a") + messages("b")


def test_batches_look_up_no_process_id(destination, monkeypatch):
    """No os.getpid() per batch (nor per record): fork is handled by a hook."""
    sink = destination.make()
    sink(records("warm"))  # opens what the sink needs
    batches = [records(f"batch{n}", 20) for n in range(3)]
    calls: list[int] = []
    real_getpid = os.getpid

    def counting_getpid() -> int:
        calls.append(1)
        return real_getpid()

    monkeypatch.setattr(logging, "logProcesses", False)  # FallbackSink's reports log records
    monkeypatch.setattr(os, "getpid", counting_getpid)
    for batch in batches:
        sink(batch)
    monkeypatch.undo()
    assert calls == []
    assert len(destination.stored()) == 63


# ------------------------------------------------------------------ FallbackSink's parts


class HeldPrimary(ListSink):
    """A primary that holds its batch at ``gate``, then raises; closing it sets ``closing``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.closing = threading.Event()

    def __call__(self, batch: list[Any]) -> None:
        super().__call__(batch)
        raise RuntimeError("the primary is down")

    def close(self) -> None:
        self.closing.set()
        super().close()


def test_fallback_reopen_reopens_its_primary_and_dead_letter_file(tmp_path):
    """FallbackSink.reopen() reopens a closable primary, which stores the next batch."""
    primary = SQLiteSink(tmp_path / "logs.sqlite3")
    sink = FallbackSink(primary, tmp_path / "dead-letter.jsonl")
    sink(records("a"))
    sink.close()
    assert (primary.closed, sink.dead_letter.closed) == (True, True)
    sink.reopen()
    sink(records("b"))
    sink.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "logs.sqlite3")) as reader:
        rows = reader.execute("SELECT message FROM logs ORDER BY id").fetchall()
    assert [message for (message,) in rows] == messages("a") + messages("b")
    assert sink.dead_lettered_batches == 0


def test_fallback_close_during_a_primary_batch_neither_deadlocks_nor_blocks_metrics(tmp_path):
    """Closing while the primary works: metrics answer at once, and both threads finish."""
    primary = HeldPrimary()
    logger = logging.getLogger("tests.sinks_base.fallback")
    sink = FallbackSink(primary, tmp_path / "dead-letter.jsonl", fsync=False, logger=logger)
    failures: list[BaseException] = []

    def batch() -> None:
        try:
            sink(records("a"))
        except BaseException as exc:  # noqa: BLE001 -- kept for the assertion below
            failures.append(exc)

    worker = threading.Thread(target=batch)
    worker.start()
    assert primary.inside.wait(WAIT)
    closer = threading.Thread(target=sink.close)
    closer.start()
    assert primary.closing.wait(WAIT)  # close() holds the fallback's lock, waits for the primary
    snapshot: list[Any] = []
    reader = threading.Thread(target=lambda: snapshot.append(sink.metrics))
    reader.start()
    reader.join(WAIT)
    assert snapshot, "metrics waited for close()"
    primary.gate.set()
    worker.join(WAIT)
    closer.join(WAIT)
    assert (worker.is_alive(), closer.is_alive()) == (False, False)
    assert [type(exc) for exc in failures] == [RuntimeError]  # the dead-letter file was closed
    assert (sink.primary_failures, sink.metrics.dead_letter_failures) == (1, 1)
