"""gunicorn: every record a request logs reaches the sink exactly once, however it stops.

Each scenario starts real gunicorn (2 workers) on 127.0.0.1 with a WSGI app whose view
logs ``"record N"`` (N from the query string) through a ``BatchingHandler`` on an
``SQLiteSink``. The flush interval (5 s) is longer than the traffic lasts, so what is
still queued when a worker stops reaches the store only through batchlog's shutdown
handling. The matrix:

* worker class: sync, gthread (4 threads), gevent, eventlet (skipped when this gunicorn
  has no eventlet worker, as 27 has not, or eventlet does not import or boot);
* where the handler is made: at import of the app module in each worker; with
  ``--preload`` (in the master, before fork); by gunicorn's ``logconfig_dict`` (in the
  master, before fork); and ``logconfig_dict`` with ``--preload``;
* how it stops: SIGTERM (graceful), SIGQUIT (quick), SIGHUP mid-traffic (reload, then
  SIGTERM), and ``--max-requests 50`` worker recycling (then SIGTERM).

The store must hold every served number exactly once, and the master must exit within
gunicorn's graceful timeout after the signal (a hang is killed, and fails). The app and
the settings are written into ``tmp_path``; the clients are a few threads of urllib.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import threading
import time
import urllib.request
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from .conftest import (
    Ended,
    assert_exactly_once,
    bin_path,
    child_env,
    finish,
    free_port,
    pause_on,
    report_row,
    start,
    wait_for_port,
)

pytest.importorskip("gunicorn")

#: gunicorn's --workers.
WORKER_COUNT = 2
#: Requests per scenario (each logs one record).
REQUESTS = 240
#: Client threads sending them.
CLIENTS = 4
#: gunicorn's --graceful-timeout: a worker that has not ended by then is SIGKILLed.
GRACEFUL_TIMEOUT = 20
#: Seconds after the stopping signal before the whole process group is killed.
STOP_TIMEOUT = GRACEFUL_TIMEOUT + 8.0
#: Seconds one HTTP request may take (the first waits for a worker to boot).
REQUEST_TIMEOUT = 10.0
#: Seconds all the traffic of one scenario may take.
TRAFFIC_TIMEOUT = 25.0
#: Seconds to wait for workers to boot, or for one a reload or a recycling started to serve.
NEW_WORKER_TIMEOUT = 10.0

WORKERS = ["sync", "gthread", "gevent", "eventlet"]
SETUPS = ["import", "preload", "logconfig", "logconfig-preload"]

APP = '''
"""The WSGI app: logs "record N" for ?n=N and answers with the worker's pid."""

import logging
import os
from urllib.parse import parse_qs

logger = logging.getLogger("app")

if os.environ.get("APP_MAKES_HANDLER") == "1":
    import batchlog
    from batchlog.sinks import SQLiteSink

    handler = batchlog.BatchingHandler(
        SQLiteSink(os.environ["BATCHLOG_TEST_DB"]), flush_interval=5.0
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def application(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "n" in query:
        logger.info("record %d", int(query["n"][0]))
    body = str(os.getpid()).encode()
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]
'''

# A worker that a signal reaches before it installed its own handlers never sees it (the
# master's handler, inherited through fork, queues the signal in the worker's copy of the
# master) and is SIGKILLed at the graceful timeout, with or without batchlog. So the test
# stops gunicorn only once every worker has marked itself booted, after init_signals.
SETTINGS = '''
"""gunicorn settings: each worker marks itself booted."""

import os
from pathlib import Path


def post_worker_init(worker):
    """Its signal handlers are installed and the app is loaded: note the pid."""
    (Path(os.environ["GUNICORN_BOOTED_DIR"]) / str(os.getpid())).touch()
'''

# gunicorn merges logconfig_dict over its defaults one key deep, so the defaults' loggers
# and handlers are kept by name and the app's are added. A logconfig_dict also turns on the
# access log; it is silenced, since the output is piped and read only when gunicorn ends
# (a full pipe would block the workers).
LOGCONFIG = """
# And the app logger's BatchingHandler, built by dictConfig.
import os

from gunicorn.glogging import CONFIG_DEFAULTS

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        **CONFIG_DEFAULTS["handlers"],
        "batch": {
            "()": "batchlog.BatchingHandler",
            "sink": {"()": "batchlog.sinks.SQLiteSink", "path": os.environ["BATCHLOG_TEST_DB"]},
            "capacity": 100,
            "flush_interval": 5.0,
        },
    },
    "loggers": {
        **CONFIG_DEFAULTS["loggers"],
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        "app": {"level": "INFO", "handlers": ["batch"], "propagate": False},
    },
}
"""


def require_worker(worker: str) -> None:
    """Skip unless gunicorn has worker class ``worker`` and its library imports."""
    import gunicorn
    from gunicorn.workers import SUPPORTED_WORKERS

    if worker not in SUPPORTED_WORKERS:  # gunicorn 27 has no eventlet worker any more
        pytest.skip(
            f"gunicorn {gunicorn.__version__} has no {worker!r} worker class "
            f"(it has {sorted(SUPPORTED_WORKERS)})"
        )
    if worker in ("gevent", "eventlet"):
        with warnings.catch_warnings():
            # eventlet warns that it is deprecated on import (an EventletDeprecationWarning,
            # not a DeprecationWarning), and warnings are errors in this suite.
            warnings.simplefilter("ignore")
            pytest.importorskip(worker)


def has_setting(name: str) -> bool:
    """Whether this gunicorn has the setting ``name``."""
    from gunicorn.config import KNOWN_SETTINGS

    return any(setting.name == name for setting in KNOWN_SETTINGS)


def worker_pids(master: int) -> set[int]:
    """The pids of ``master``'s children now (its workers), read from /proc."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        if int(text.rpartition(")")[2].split()[1]) == master:
            pids.add(int(stat.parent.name))
    return pids


def get(port: int, query: str = "") -> int:
    """GET ``/?query`` and return the worker pid it answers with."""
    url = f"http://127.0.0.1:{port}/?{query}"
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
        return int(response.read())


@dataclass
class Traffic:
    """The numbers sent, which worker served each, and what went wrong."""

    port: int
    served: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    next_number: int = 0
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + TRAFFIC_TIMEOUT
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def numbers(self, count: int) -> list[int]:
        """``count`` numbers never sent before."""
        first, self.next_number = self.next_number, self.next_number + count
        return list(range(first, self.next_number))

    def one(self, number: int) -> int | None:
        """Send ``number``; return the pid that served it (None if it failed)."""
        if self._stop.is_set():
            return None
        if time.monotonic() > self.deadline:
            self.fail(f"record {number}: not sent, the traffic took over {TRAFFIC_TIMEOUT} s")
            return None
        try:
            pid = get(self.port, f"n={number}")
        except (OSError, ValueError) as exc:  # URLError, reset, timeout, a bad body
            self.fail(f"record {number}: {exc!r}")
            return None
        with self._lock:
            self.served[number] = pid
        return pid

    def send(self, count: int) -> None:
        """Send ``count`` new numbers from ``CLIENTS`` threads; stop at the first failure."""
        numbers = self.numbers(count)

        def run(chunk: list[int]) -> None:
            for number in chunk:
                if self.one(number) is None:
                    return

        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(run, [numbers[i::CLIENTS] for i in range(CLIENTS)]))

    def until_new_worker(self, old: set[int], what: str) -> None:
        """Send one number at a time until a worker not in ``old`` serves one."""
        deadline = time.monotonic() + NEW_WORKER_TIMEOUT
        while not self.failed:  # each poll is a request logging a number of its own
            pid = self.one(self.numbers(1)[0])
            if pid is not None and pid not in old:
                return
            if time.monotonic() > deadline:
                self.fail(f"no new worker served within {NEW_WORKER_TIMEOUT} s of {what}")
            self._stop.wait(0.05)  # between polls; a failure noted meanwhile ends them at once

    def fail(self, message: str) -> None:
        """Note what went wrong; no further request is sent."""
        with self._lock:
            self.errors.append(message)
        self._stop.set()

    @property
    def failed(self) -> bool:
        """Whether a request failed (no further request is sent)."""
        return self._stop.is_set()


@dataclass
class Server:
    """One gunicorn master and its workers, in a process group of their own."""

    process: subprocess.Popen[bytes]
    port: int
    name: str
    db: Path
    booted: Path  # the directory where each booted worker leaves a file named by its pid
    stopped_at: float = 0.0

    def wait_booted(self) -> tuple[set[int], str | None]:
        """Wait until ``WORKER_COUNT`` workers run and each has booted; return their pids.

        A worker that exited but was not reaped yet also counts (it had booted). After
        ``NEW_WORKER_TIMEOUT`` seconds, the pids and what is wrong.
        """
        deadline = time.monotonic() + NEW_WORKER_TIMEOUT
        while True:
            pids = worker_pids(self.process.pid)
            booted = {int(path.name) for path in self.booted.iterdir()}
            if len(pids) >= WORKER_COUNT and pids <= booted:
                return pids, None
            if self.process.poll() is not None:
                return pids, f"gunicorn ended with {self.process.returncode}"
            if time.monotonic() > deadline:
                waiting = sorted(pids - booted)
                return pids, f"workers {waiting} of {sorted(pids)} not booted in time"
            pause_on(self.process)  # polling its children: wait on gunicorn between

    def booted_workers(self, traffic: Traffic) -> set[int]:
        """The workers' pids once all have booted (a failure is noted in ``traffic``)."""
        pids, problem = self.wait_booted()
        if problem is not None:
            traffic.fail(f"{problem} (waited {NEW_WORKER_TIMEOUT} s)")
        return pids

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the master."""
        os.kill(self.process.pid, signum)

    def stop(self, signum: int, traffic: Traffic) -> None:
        """Once every worker has booted, send ``signum`` and note when (shutdown's start)."""
        self.booted_workers(traffic)
        self.stopped_at = time.monotonic()
        self.signal(signum)

    def conclude(self, traffic: Traffic, how: str) -> None:
        """Wait for the master to exit, report the figures and check exactly-once."""
        problems: list[str] = []
        ended: Ended | None = None
        try:
            ended = finish(self.process, self.stopped_at, timeout=STOP_TIMEOUT)
            seconds = ended.seconds
        except AssertionError as exc:  # finish killed the group: a hang
            seconds = time.monotonic() - self.stopped_at
            problems.append(f"gunicorn did not exit within {STOP_TIMEOUT} s of {how}: {exc}")
        sent = set(traffic.served)
        report_row(self.name, len(sent), self.db, seconds)
        if traffic.errors:
            problems.append(f"{len(traffic.errors)} failures: {traffic.errors[:5]}")
        try:
            assert_exactly_once(self.db, sent)
        except AssertionError as exc:
            problems.append(f"not exactly once: {exc}")
        if ended is not None:
            if ended.seconds >= GRACEFUL_TIMEOUT:
                problems.append(
                    f"shutdown took {ended.seconds:.1f} s after {how}, not within the "
                    f"graceful timeout ({GRACEFUL_TIMEOUT} s): a worker was killed"
                )
            if ended.returncode != 0:
                problems.append(f"gunicorn exited with {ended.returncode}")
        if problems:
            served = dict(Counter(traffic.served.values()))
            problems.append(f"records served per worker pid: {served}")
            if ended is not None:
                problems.append(f"stdout:\n{ended.stdout}\nstderr:\n{ended.stderr}")
            pytest.fail(f"{self.name}:\n" + "\n".join(problems), pytrace=False)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process``'s whole group (gunicorn and its workers), if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def gunicorn_args(port: int, worker: str, setup: str, extra: tuple[str, ...]) -> list[str]:
    """The command line for ``worker`` and ``setup`` (2 workers on 127.0.0.1:``port``)."""
    args = [
        bin_path("gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKER_COUNT),
        "--worker-class",
        worker,
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT),
        "--config",
        "gunicorn.conf.py",
        *extra,
    ]
    if worker == "gthread":
        args += ["--threads", "4"]
    if has_setting("control_socket_disable"):
        # gunicorn 25.1+ listens on ~/.gunicorn/gunicorn.ctl by default, one path for every
        # gunicorn the user runs: the scenarios must not share it.
        args.append("--no-control-socket")
    if setup.endswith("preload"):
        args.append("--preload")
    return [*args, "gunicorn_app:application"]


@pytest.fixture
def gunicorn(tmp_path: Path, db: Path) -> Iterator[Callable[..., Server]]:
    """Start gunicorn for a worker class and setup; whatever a test leaves running is killed."""
    servers: list[Server] = []

    def serve(worker: str, setup: str, name: str, *extra: str) -> Server:
        require_worker(worker)
        (tmp_path / "gunicorn_app.py").write_text(textwrap.dedent(APP))
        booted = tmp_path / "booted"
        booted.mkdir()
        env = child_env(tmp_path, GUNICORN_BOOTED_DIR=str(booted))
        settings = textwrap.dedent(SETTINGS)
        if setup.startswith("logconfig"):
            settings += textwrap.dedent(LOGCONFIG)
        else:
            env["APP_MAKES_HANDLER"] = "1"
        (tmp_path / "gunicorn.conf.py").write_text(settings)
        port = free_port()
        process = start(gunicorn_args(port, worker, setup, extra), env, tmp_path)
        server = Server(process, port, f"gunicorn {worker} {setup} {name}", db, booted)
        servers.append(server)
        problem: str | None
        try:
            wait_for_port(port, process)
        except AssertionError as exc:
            problem = str(exc)
        else:
            _, problem = server.wait_booted()
        if problem is not None:
            kill_group(process)
            ended = finish(process, time.monotonic())
            if worker == "eventlet":  # best effort: eventlet is deprecated and may not boot
                pytest.skip(f"eventlet workers do not boot here: {ended.stderr[-800:]}")
            pytest.fail(
                f"{server.name} did not start: {problem}\n"
                f"stdout:\n{ended.stdout}\nstderr:\n{ended.stderr}",
                pytrace=False,
            )
        return server

    yield serve
    for server in servers:
        if server.process.returncode is None:  # the test ended before gunicorn did
            kill_group(server.process)
            server.process.communicate(timeout=10)


matrix = pytest.mark.parametrize(
    ("worker", "setup"), [(worker, setup) for worker in WORKERS for setup in SETUPS]
)
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads the worker pids in /proc"
)


@needs_proc
@matrix
def test_sigterm_delivers_every_record_once(gunicorn, worker, setup):
    """SIGTERM (graceful stop) after the traffic: every record stored exactly once."""
    server = gunicorn(worker, setup, "SIGTERM")
    traffic = Traffic(server.port)
    traffic.send(REQUESTS)
    server.stop(signal.SIGTERM, traffic)
    server.conclude(traffic, "SIGTERM")


@needs_proc
@matrix
def test_sigquit_delivers_every_record_once(gunicorn, worker, setup):
    """SIGQUIT (quick stop) after the traffic: every served record stored exactly once."""
    server = gunicorn(worker, setup, "SIGQUIT")
    traffic = Traffic(server.port)
    traffic.send(REQUESTS)
    server.stop(signal.SIGQUIT, traffic)
    server.conclude(traffic, "SIGQUIT")


@needs_proc
@matrix
def test_sighup_reload_delivers_every_record_once(gunicorn, worker, setup):
    """SIGHUP between two halves of the traffic, then SIGTERM: every record exactly once."""
    server = gunicorn(worker, setup, "SIGHUP")
    traffic = Traffic(server.port)
    traffic.send(REQUESTS // 2)
    old = server.booted_workers(traffic)
    server.signal(signal.SIGHUP)
    traffic.until_new_worker(old, "SIGHUP")
    traffic.send(REQUESTS // 2)
    server.stop(signal.SIGTERM, traffic)
    server.conclude(traffic, "SIGTERM after SIGHUP")


@needs_proc
@matrix
def test_max_requests_recycling_delivers_every_record_once(gunicorn, worker, setup):
    """Workers recycled every 50 requests mid-traffic, then SIGTERM: every record exactly once."""
    server = gunicorn(worker, setup, "max-requests", "--max-requests", "50")
    traffic = Traffic(server.port)
    first = server.booted_workers(traffic)
    traffic.send(REQUESTS // 2)  # more than 2 x 50: at least one worker reached its limit
    traffic.until_new_worker(first, "a worker's 50th request")
    traffic.send(REQUESTS // 2)
    server.stop(signal.SIGTERM, traffic)
    server.conclude(traffic, "SIGTERM")
