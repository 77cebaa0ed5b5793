"""Celery (prefork pool, Redis broker): records tasks log stored exactly once after warm shutdown.

The worker's children are forked by billiard and end with ``os._exit`` (after sending
``worker_process_shutdown``), whether the pool recycles them (``--max-tasks-per-child``,
``--max-memory-per-child``) or the worker shuts down warm (SIGTERM to the main process).
No exit hook runs in a child, so what its writer holds then (``flush_interval`` is 5 s) is
delivered only if batchlog takes care of billiard's children itself: the application here
has no code for it, and every record must be stored exactly once.

Logging is configured as Celery's documentation tells a user to take it over: a
``setup_logging`` receiver that runs ``dictConfig`` (Celery then configures nothing, in the
main process or its children, which inherit the handler through the fork).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
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
    pause_on,
    report_row,
    start,
    wait_for_port,
)

pytest.importorskip("celery")

#: Most seconds the client waits for every task's result.
RESULTS_TIMEOUT = 30.0
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# The worker's app: -A tasksmod. Broker and result backend: the test's redis-server.
TASKS_MODULE = '''
"""The scenario's Celery app: one task logging "record <n>" for a range of numbers."""
import logging
import logging.config
import os

from celery import Celery
from celery.signals import setup_logging

app = Celery("tasksmod", broker=os.environ["TEST_REDIS_URL"], backend=os.environ["TEST_REDIS_URL"])
app.conf.broker_connection_retry_on_startup = True

log = logging.getLogger("tasksmod")


@setup_logging.connect
def configure_logging(loglevel=None, **kwargs):
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s [%(process)d] %(name)s: %(message)s"}},
        "handlers": {
            "store": {
                "class": "batchlog.BatchingHandler",
                "sink": {"()": "batchlog.sinks.SQLiteSink", "path": os.environ["BATCHLOG_TEST_DB"]},
                "flush_interval": 5.0,
            },
            # Celery's own lines: a file, so no pipe fills while the test waits.
            "file": {
                "class": "logging.FileHandler",
                "filename": os.environ["TEST_WORKER_LOG"],
                "formatter": "plain",
            },
        },
        "root": {"handlers": ["file"], "level": loglevel or logging.INFO},
        "loggers": {"tasksmod": {"handlers": ["store"], "level": "INFO", "propagate": False}},
    })


@app.task
def log_records(first, count):
    for number in range(first, first + count):
        log.info("record %d", number)
    return os.getpid()
'''

# The test's client, in a process of its own: send the tasks, wait for every result.
CLIENT = '''
"""Send the tasks, wait (bounded) for every result, print the pids that ran them as JSON."""
import json
import os
import sys

from celery import Celery
from celery.result import ResultSet

tasks, per_task, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
client = Celery("client", broker=os.environ["TEST_REDIS_URL"], backend=os.environ["TEST_REDIS_URL"])
client.conf.broker_connection_retry_on_startup = True
results = ResultSet(
    [client.send_task("tasksmod.log_records", (i * per_task, per_task)) for i in range(tasks)]
)
pids = results.get(timeout=timeout)
print(json.dumps(pids))
client.close()
'''


@dataclasses.dataclass
class Scenario:
    """One worker deployment: its extra options and how the 600 records are split."""

    name: str
    options: list[str]
    tasks: int
    per_task: int
    #: Fewest distinct child pids that must have run tasks (proof the pool recycled).
    min_children: int


SCENARIOS = [
    # 24 records a task: a child's count is a whole number of batches (100) only if it ran
    # all 25 tasks, so each child that ran some holds a part batch at the end.
    Scenario("celery prefork warm shutdown", [], 25, 24, 1),
    # 150 tasks, at most 37 a child: at least 5 children, each recycled one holding 48 records.
    Scenario("celery prefork --max-tasks-per-child=37", ["--max-tasks-per-child=37"], 150, 4, 5),
    # 1 KiB: every child is over it after its first task, so each task gets a fresh child
    # (at least half of them, in case one takes a second task before it notices).
    Scenario("celery prefork --max-memory-per-child=1", ["--max-memory-per-child=1"], 20, 30, 10),
]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own on a free port, killed at teardown."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"redis-server is not installed ({REDIS_SERVER}): the broker Celery needs")
    port = free_port()
    command = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
    server = start(command, child_env(tmp_path), tmp_path)
    with group_killed_after(server):
        wait_for_port(port, server, timeout=10.0)
        yield f"redis://127.0.0.1:{port}/0"


def _with_worker_log(ended: Ended, log: Path) -> Ended:
    """``ended`` with the end of the worker's own log added to its stderr."""
    tail = (
        log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:] if log.exists() else []
    )
    return dataclasses.replace(ended, stderr=ended.stderr + "\nworker.log:\n" + "\n".join(tail))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_records_stored_exactly_once_after_warm_shutdown(tmp_path, db, redis_url, scenario):
    """Tasks log 600 records; after a warm shutdown each is stored exactly once."""
    (tmp_path / "tasksmod.py").write_text(TASKS_MODULE, encoding="utf-8")
    (tmp_path / "client.py").write_text(CLIENT, encoding="utf-8")
    worker_log = tmp_path / "worker.log"
    env = child_env(tmp_path, TEST_REDIS_URL=redis_url, TEST_WORKER_LOG=str(worker_log))
    command = [bin_path("celery"), "-A", "tasksmod", "worker", "--pool", "prefork"]
    command += ["--concurrency", "2", "-l", "info", *scenario.options]
    sent = range(scenario.tasks * scenario.per_task)
    started = time.monotonic()
    worker = start(command, env, tmp_path)
    with group_killed_after(worker):
        client_args = [sys.executable, "client.py", str(scenario.tasks), str(scenario.per_task)]
        client = start([*client_args, str(RESULTS_TIMEOUT)], env, tmp_path)
        with group_killed_after(client):
            waited = time.monotonic()
            deadline = waited + RESULTS_TIMEOUT + 10.0
            while client.poll() is None and worker.poll() is None and time.monotonic() < deadline:
                pause_on(client)  # and look at the worker between: one that died ends it too
            if client.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(client.pid, signal.SIGKILL)
            sent_off = finish(client, waited)
        if sent_off.returncode != 0 or worker.poll() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            ended = _with_worker_log(finish(worker, started), worker_log)
            msg = (
                f"the tasks did not all complete (client ended with {sent_off.returncode}):\n"
                f"{sent_off.stderr[-3000:]}\nworker stdout:\n{ended.stdout}\n"
                f"worker stderr:\n{ended.stderr}"
            )
            raise AssertionError(msg)
        children = set(json.loads(sent_off.stdout))
        signalled = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)  # warm shutdown
        ended = _with_worker_log(finish(worker, started), worker_log)
    shutdown = ended.seconds - (signalled - started)
    report_row(scenario.name, len(sent), db, shutdown)
    assert len(children) >= scenario.min_children, f"tasks ran in only {len(children)} children"
    assert_exactly_once(db, sent, ended)
    assert ended.returncode == 0, ended.stderr
