"""uvicorn: the records requests log, and uvicorn's access log, stored exactly once after SIGTERM.

uvicorn shuts down gracefully on SIGTERM, then puts back the SIGTERM handler it found and
raises the signal again, so the process dies by SIGTERM and no exit hook runs (neither
``atexit`` nor ``logging.shutdown``). What a writer still holds then (``flush_interval`` is
5 s) is delivered only with batchlog's opt-in: the handler option ``deliver_on_sigterm``
(given in the ``--log-config`` file) or ``batchlog.deliver_on_sigterm()``. With it every
record must be stored exactly once, and the process must still end as SIGTERM ends it.

The app is a plain ASGI callable: ``GET /log/<first>/<count>`` logs ``"record <n>"`` for
``count`` numbers from ``first`` and answers with the pid of the process that served it;
its lifespan logs ``"lifespan startup <pid>"`` and, during the graceful shutdown SIGTERM
starts, ``"lifespan shutdown <pid>"``: a record logged after the signal is a record too.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import signal
import sqlite3
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import (
    Ended,
    assert_exactly_once,
    bin_path,
    child_env,
    finish,
    free_port,
    group_killed_after,
    report_row,
    start,
    wait_for_port,
)

pytest.importorskip("uvicorn")

#: Requests per scenario, and records each logs: 70 access lines and 210 records, so the
#: writer holds a part batch (default capacity 100) when SIGTERM arrives.
REQUESTS = 70
PER_REQUEST = 3
#: Requests in flight at once, so that both workers of --workers 2 take some.
CLIENTS = 8

# The sink the --log-config file builds (dictConfig cannot read the environment itself).
STORE_MODULE = '''
"""The scenario's sink: the SQLite file the test reads."""
import os

from batchlog.sinks import SQLiteSink


def sink():
    return SQLiteSink(os.environ["BATCHLOG_TEST_DB"])
'''

# What every app module ends with: the ASGI callable, calling the module's log_record.
ASGI_APP = """

async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            log_text(f"lifespan startup {os.getpid()}")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            log_text(f"lifespan shutdown {os.getpid()}")  # after SIGTERM, as apps do
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    _, first, count = scope["path"].rsplit("/", 2)  # /log/<first>/<count>
    for number in range(int(first), int(first) + int(count)):
        log_record(number)
    body = str(os.getpid()).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""

# stdlib logging: the --log-config file puts the BatchingHandler on the "app" logger.
STDLIB_APP = (
    """
import logging
import os

_log = logging.getLogger("app")


def log_record(number):
    _log.info("record %d", number)


def log_text(text):
    _log.info(text)
"""
    + ASGI_APP
)

# structlog, the opt-in switched on by the function when uvicorn imports the app: the single
# server imports it before it takes SIGTERM over, each worker of --workers 2 after (inside
# uvicorn's capture_signals, whose handler is then the one batchlog finds).
STRUCTLOG_APP = (
    """
import os

import structlog

import batchlog
from batchlog.sinks import SQLiteSink

batchlog.deliver_on_sigterm()
structlog.configure(
    processors=[
        structlog.processors.add_log_level,
        batchlog.BatchingProcessor(SQLiteSink(os.environ["BATCHLOG_TEST_DB"]), flush_interval=5.0),
    ],
)
_log = structlog.get_logger("app")


def log_record(number):
    _log.info(f"record {number}")


def log_text(text):
    _log.info(text)
"""
    + ASGI_APP
)

#: uvicorn's --log-config: the BatchingHandler (with the opt-in, a plain value) on
#: "uvicorn.access" and on the app's logger; uvicorn.error to stderr for diagnostics.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s [%(process)d] %(name)s: %(message)s"}},
    "handlers": {
        "store": {
            "class": "batchlog.BatchingHandler",
            "sink": {"()": "teststore:sink"},
            "flush_interval": 5.0,
            "deliver_on_sigterm": True,
        },
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "uvicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["store"], "level": "INFO", "propagate": False},
        "app": {"handlers": ["store"], "level": "INFO", "propagate": False},
    },
}

# uvicorn's access line: '127.0.0.1:50000 - "GET /log/0/3 HTTP/1.1" 200'.
ACCESS_LINE = re.compile(r'"GET (/log/\d+/\d+) HTTP/1\.1" 200$')


def _paths() -> list[str]:
    return [f"/log/{i * PER_REQUEST}/{PER_REQUEST}" for i in range(REQUESTS)]


def _get(port: int, path: str) -> int:
    """GET ``path`` on a connection of its own; return the pid that served it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        msg = f"GET {path}: {response.status} {body!r}"
        raise AssertionError(msg)
    return int(body)


def _serve_then_sigterm(tmp_path: Path, app_source: str, args: list[str]) -> tuple[Ended, float]:
    """Run uvicorn on ``app_source``, send every request, SIGTERM it; (how it ended, shutdown s)."""
    (tmp_path / "app.py").write_text(app_source, encoding="utf-8")
    (tmp_path / "teststore.py").write_text(STORE_MODULE, encoding="utf-8")
    port = free_port()
    command = [bin_path("uvicorn"), "app:app", "--host", "127.0.0.1", "--port", str(port), *args]
    started = time.monotonic()
    process = start(command, child_env(tmp_path), tmp_path)
    with group_killed_after(process):
        try:
            wait_for_port(port, process, timeout=20.0)
            with ThreadPoolExecutor(CLIENTS) as pool:
                pids = Counter(pool.map(functools.partial(_get, port), _paths()))
        except (AssertionError, OSError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            ended = finish(process, started)
            msg = f"{exc!r}\nstdout:\n{ended.stdout}\nstderr:\n{ended.stderr}"
            raise AssertionError(msg) from exc
        signalled = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        ended = finish(process, started)
    ended.stdout += f"\n(requests served per pid: {dict(pids)})"
    return ended, ended.seconds - (signalled - started)


def _access_paths(db: Path) -> Counter[str]:
    """How many times each request path is in the store's uvicorn.access lines."""
    if not db.exists():
        return Counter()
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(
            "SELECT message FROM logs WHERE logger = 'uvicorn.access'"
        ).fetchall()
    paths: Counter[str] = Counter()
    for (message,) in rows:
        match = ACCESS_LINE.search(message)
        paths[match.group(1) if match else message] += 1
    return paths


def _assert_one_access_line_per_request(db: Path, ended: Ended) -> None:
    paths = _access_paths(db)
    expected = Counter(_paths())
    if paths != expected:
        missing = sorted(set(expected) - set(paths))
        extra = sorted((set(paths) - set(expected)) | {p for p, n in paths.items() if n > 1})
        msg = (
            f"{REQUESTS} requests, {sum(paths.values())} access lines stored: "
            f"{len(missing)} requests without one (first {missing[:5]}), "
            f"{len(extra)} paths stored more than once or never requested (first {extra[:5]})"
            f"\nstdout:\n{ended.stdout}\nstderr:\n{ended.stderr}"
        )
        raise AssertionError(msg)


def _assert_lifespan_lines(db: Path, workers: int, ended: Ended) -> None:
    """Each server process's "lifespan startup" and "lifespan shutdown" line stored once."""
    rows = []
    if db.exists():
        with contextlib.closing(sqlite3.connect(db)) as connection:
            rows = connection.execute(
                "SELECT message FROM logs WHERE message LIKE 'lifespan %'"
            ).fetchall()
    lines = Counter(message for (message,) in rows)
    started = {line.split()[-1] for line in lines if line.startswith("lifespan startup ")}
    stopped = {line.split()[-1] for line in lines if line.startswith("lifespan shutdown ")}
    if len(started) != workers or stopped != started or any(n > 1 for n in lines.values()):
        msg = (
            f"{workers} server process(es); lifespan lines stored: {dict(lines)}"
            f"\nstdout:\n{ended.stdout}\nstderr:\n{ended.stderr}"
        )
        raise AssertionError(msg)


@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_dictconfig_handler_option_delivers_records_and_access_log(tmp_path, db, workers):
    """The handler option in --log-config: each record and access line stored once after SIGTERM."""
    log_config = tmp_path / "log_config.json"
    log_config.write_text(json.dumps(LOG_CONFIG, indent=2), encoding="utf-8")
    args = ["--log-config", str(log_config)]
    if workers > 1:
        args += ["--workers", str(workers)]
    ended, shutdown = _serve_then_sigterm(tmp_path, STDLIB_APP, args)
    deployment = f"uvicorn {'single' if workers == 1 else f'--workers {workers}'} SIGTERM"
    report_row(
        f"{deployment} (dictConfig deliver_on_sigterm)", REQUESTS * PER_REQUEST, db, shutdown
    )
    assert_exactly_once(db, range(REQUESTS * PER_REQUEST), ended)
    _assert_one_access_line_per_request(db, ended)
    _assert_lifespan_lines(db, workers, ended)
    # A single server dies by the signal it re-raises; the supervisor of --workers handles
    # SIGTERM itself (it terminates its workers, then returns): the opt-in changes neither.
    expected = -signal.SIGTERM if workers == 1 else 0
    assert ended.returncode == expected, ended.stderr


@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_structlog_deliver_on_sigterm_function(tmp_path, db, workers):
    """structlog, batchlog.deliver_on_sigterm() at import: each record stored once after SIGTERM."""
    args = ["--no-access-log"]
    if workers > 1:
        args += ["--workers", str(workers)]
    ended, shutdown = _serve_then_sigterm(tmp_path, STRUCTLOG_APP, args)
    deployment = f"uvicorn {'single' if workers == 1 else f'--workers {workers}'} SIGTERM"
    report_row(
        f"{deployment} (structlog deliver_on_sigterm())", REQUESTS * PER_REQUEST, db, shutdown
    )
    assert_exactly_once(db, range(REQUESTS * PER_REQUEST), ended)
    _assert_lifespan_lines(db, workers, ended)
    expected = -signal.SIGTERM if workers == 1 else 0
    assert ended.returncode == expected, ended.stderr
