"""Records logged in multiprocessing children reach the sink exactly once.

Each test runs ``mpmain.py`` (written into ``tmp_path``) as a child interpreter. It imports
``mpapp.py``, which configures a ``BatchingHandler`` on the ``app`` logger at import (in
code, or by ``logging.config.dictConfig`` with plain values) and defines the task the
children run: log ``PER_TASK`` numbered records and return. The parent logs records of its
own before and after the children run. With ``flush_interval=5.0`` and a ``capacity`` that
leaves every process's last batch partial, only shutdown handling delivers the rest.

A child that multiprocessing forks (the fork and forkserver start methods) ends with
``os._exit`` after its finalizers (``multiprocessing.util.Finalize``), never through
``atexit`` or ``logging.shutdown()``; batchlog registers such a finalizer in each child, so
no application code is needed. (A spawned child ends with ``sys.exit``: atexit runs.) A
pool's ``terminate()`` (which ``with Pool() as p`` calls at the end) SIGTERMs its workers;
that needs the one-line opt-in ``batchlog.deliver_on_sigterm()`` (in the pool's
initializer) or ``BatchingHandler(..., deliver_on_sigterm=True)``.

The parent creates the store (one row that is not a record) before any child starts: two
``SQLiteSink`` connections opening a fresh database at once can fail ``PRAGMA
journal_mode=WAL`` with "database is locked" whatever ``busy_timeout`` says, losing that
batch. That is a sink problem of its own, reported apart; here it would only add noise.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import Ended, assert_exactly_once, child_env, finish, report_row, start

#: Records each task logs: 30 * k is a multiple of CAPACITY only from k = 32 tasks in one
#: process on, far more than any process here runs, so each process's last batch is partial.
PER_TASK = 30
CAPACITY = 64
#: Tasks given to a pool or an executor, and processes started one by one.
POOL_TASKS = 20
PROCESSES = 6
#: The parent's own records, before and after the children run.
PARENT_BEFORE = 10_000
PARENT_AFTER = 20_000
PARENT_COUNT = 10
#: Each writer's exit budget in the scenarios (see APP), well inside SCENARIO_TIMEOUT.
EXIT_TIMEOUT = 30.0

APP = f'''\
"""The application: the app logger's BatchingHandler, set up at import, and the task."""
import logging
import logging.config
import os

import batchlog
from batchlog.sinks import SQLiteSink

PER_TASK = {PER_TASK}
CAPACITY = {CAPACITY}
DB = os.environ["BATCHLOG_TEST_DB"]
EXIT_TIMEOUT = {EXIT_TIMEOUT}
OPTIONS = {{"capacity": CAPACITY, "flush_interval": 5.0}}
if os.environ.get("BATCHLOG_TEST_OPT_IN") == "handler":
    OPTIONS["deliver_on_sigterm"] = True

if os.environ["BATCHLOG_TEST_CONFIG"] == "code":
    _handler = batchlog.BatchingHandler(SQLiteSink(DB), **OPTIONS)
    _logger = logging.getLogger("app")
    _logger.setLevel(logging.INFO)
    _logger.propagate = False
    _logger.addHandler(_handler)
else:
    logging.config.dictConfig({{
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {{
            "batched": {{
                "()": "batchlog.BatchingHandler",
                "sink": {{"()": "batchlog.sinks.SQLiteSink", "path": DB}},
                **OPTIONS,
            }},
        }},
        "loggers": {{"app": {{"handlers": ["batched"], "level": "INFO", "propagate": False}}}},
    }})

log = logging.getLogger("app")
# The last batches of a worker SIGTERMed on a loaded 2-core machine get more than the
# default 10 s: exactly-once is what is tested here; the exit bound is tested elsewhere.
for _batching in log.handlers:
    _batching.writer.exit_timeout = EXIT_TIMEOUT


def log_range(first, count):
    for number in range(first, first + count):
        log.info("record %d", number)


def task(index):
    log_range(index * PER_TASK, PER_TASK)
    return os.getpid()
'''

MAIN = f'''\
"""python mpmain.py SCENARIO START_METHOD: run children that log, then end normally."""
import json
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import mpapp
from batchlog.sinks import SQLiteSink

POOL_TASKS = {POOL_TASKS}
PROCESSES = {PROCESSES}
JOIN_TIMEOUT = 40


def create_store():
    """Create the store (not a record) before several processes open it at once."""
    sink = SQLiteSink(mpapp.DB)
    sink([logging.makeLogRecord({{"msg": "store created"}})])
    sink.close()


def shutdown_begins():
    print("shutdown-begins", time.time(), flush=True)


def pool_close_join(ctx):
    pool = ctx.Pool(2)
    pids = pool.map(mpapp.task, range(POOL_TASKS), chunksize=1)
    shutdown_begins()
    pool.close()
    pool.join()
    return POOL_TASKS, pids


def pool_maxtasksperchild(ctx):
    pool = ctx.Pool(2, maxtasksperchild=3)
    pids = pool.map(mpapp.task, range(POOL_TASKS), chunksize=1)
    shutdown_begins()
    pool.close()
    pool.join()
    return POOL_TASKS, pids


def pool_with_terminate(ctx):
    options = {{}}
    if os.environ.get("BATCHLOG_TEST_OPT_IN") == "initializer":
        import batchlog

        options["initializer"] = batchlog.deliver_on_sigterm
    with ctx.Pool(2, **options) as pool:  # __exit__ calls terminate(): SIGTERM
        pids = pool.map(mpapp.task, range(POOL_TASKS), chunksize=1)
        shutdown_begins()
    return POOL_TASKS, pids


def processes(ctx):
    children = [ctx.Process(target=mpapp.task, args=(i,)) for i in range(PROCESSES)]
    for child in children:
        child.start()
    shutdown_begins()
    for child in children:
        child.join(JOIN_TIMEOUT)
    codes = [child.exitcode for child in children]
    if codes != [0] * PROCESSES:
        sys.exit(f"children ended with {{codes}}")
    return PROCESSES, [child.pid for child in children]


def executor_shutdown(ctx):
    executor = ProcessPoolExecutor(max_workers=2, mp_context=ctx)
    pids = list(executor.map(mpapp.task, range(POOL_TASKS)))
    shutdown_begins()
    executor.shutdown(wait=True)
    return POOL_TASKS, pids


def executor_with(ctx):
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as executor:
        pids = list(executor.map(mpapp.task, range(POOL_TASKS)))
        shutdown_begins()
    return POOL_TASKS, pids


def main():
    scenario, method = sys.argv[1:]
    ctx = multiprocessing.get_context(method)
    create_store()
    mpapp.log_range({PARENT_BEFORE}, {PARENT_COUNT})
    tasks, pids = globals()[scenario](ctx)
    mpapp.log_range({PARENT_AFTER}, {PARENT_COUNT})
    print(json.dumps({{"tasks": tasks, "pids": sorted(set(pids)), "parent": os.getpid()}}))


if __name__ == "__main__":
    main()
'''

START_METHODS = [
    pytest.param(
        method,
        marks=pytest.mark.skipif(
            method not in multiprocessing.get_all_start_methods(),
            reason=f"no {method} start method on this platform",
        ),
    )
    for method in ("fork", "forkserver", "spawn")
]
CONFIGS = ["code", "dictconfig"]


def expected_numbers(tasks: int) -> set[int]:
    """Every number a scenario with ``tasks`` tasks logs, the parent's included."""
    parent = range(PARENT_BEFORE, PARENT_BEFORE + PARENT_COUNT)
    after = range(PARENT_AFTER, PARENT_AFTER + PARENT_COUNT)
    return set(range(tasks * PER_TASK)) | set(parent) | set(after)


def run_scenario(
    tmp_path: Path, scenario: str, method: str, config: str, opt_in: str = ""
) -> tuple[Ended, dict[str, object], float]:
    """Run ``mpmain.py scenario method``; return how it ended, its summary, shutdown seconds."""
    (tmp_path / "mpapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "mpmain.py").write_text(textwrap.dedent(MAIN))
    env = child_env(tmp_path, BATCHLOG_TEST_CONFIG=config, BATCHLOG_TEST_OPT_IN=opt_in)
    started = time.monotonic()
    process = start([sys.executable, "mpmain.py", scenario, method], env, tmp_path)
    ended = finish(process, started)
    ended_at = time.time()
    summary: dict[str, object] = {}
    shutdown = ended.seconds
    for line in ended.stdout.splitlines():
        if line.startswith("shutdown-begins "):
            shutdown = ended_at - float(line.split()[1])
        elif line.startswith("{"):
            summary = json.loads(line)
    return ended, summary, shutdown


def check(
    deployment: str,
    db: Path,
    ended: Ended,
    summary: dict[str, object],
    *,
    tasks: int,
    seconds: float,
) -> None:
    """Report the row, then require a clean exit, children that ran, and exactly-once."""
    sent = expected_numbers(tasks)
    report_row(deployment, len(sent), db, seconds)
    assert ended.returncode == 0, f"exit {ended.returncode}\n{ended.stdout}\n{ended.stderr}"
    assert summary.get("tasks") == tasks, ended.stdout
    pids = summary["pids"]
    assert isinstance(pids, list)
    assert summary["parent"] not in pids, "the tasks ran in the parent, not in children"
    assert_exactly_once(db, sent, ended)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("method", START_METHODS)
def test_pool_close_join(tmp_path: Path, db: Path, method: str, config: str) -> None:
    """Pool(2) ended by close() and join(): every child's and the parent's records, once."""
    ended, summary, seconds = run_scenario(tmp_path, "pool_close_join", method, config)
    deployment = f"multiprocessing Pool(2) close()+join() [{method}, {config}]"
    check(deployment, db, ended, summary, tasks=POOL_TASKS, seconds=seconds)


@pytest.mark.parametrize("method", START_METHODS)
def test_pool_maxtasksperchild(tmp_path: Path, db: Path, method: str) -> None:
    """Pool(2, maxtasksperchild=3): workers retired mid-run deliver their records, once."""
    ended, summary, seconds = run_scenario(tmp_path, "pool_maxtasksperchild", method, "code")
    deployment = f"multiprocessing Pool(2, maxtasksperchild=3) close()+join() [{method}, code]"
    check(deployment, db, ended, summary, tasks=POOL_TASKS, seconds=seconds)
    pids = summary["pids"]
    assert isinstance(pids, list)
    assert len(pids) >= -(-POOL_TASKS // 3), f"workers were not replaced: {pids}"


@pytest.mark.parametrize(
    ("opt_in", "config"),
    [("initializer", "code"), ("handler", "dictconfig"), ("handler", "code")],
)
@pytest.mark.parametrize("method", START_METHODS)
def test_pool_with_terminate_opt_in(
    tmp_path: Path, db: Path, method: str, opt_in: str, config: str
) -> None:
    """`with Pool() as p` (terminate(), SIGTERM) with the deliver_on_sigterm opt-in: once."""
    ended, summary, seconds = run_scenario(tmp_path, "pool_with_terminate", method, config, opt_in)
    how = (
        "initializer=batchlog.deliver_on_sigterm"
        if opt_in == "initializer"
        else "BatchingHandler(deliver_on_sigterm=True)"
    )
    deployment = f"multiprocessing `with Pool(2)` terminate() + {how} [{method}, {config}]"
    check(deployment, db, ended, summary, tasks=POOL_TASKS, seconds=seconds)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("method", START_METHODS)
def test_process_targets(tmp_path: Path, db: Path, method: str, config: str) -> None:
    """Process targets that log and return: every child's and the parent's records, once."""
    ended, summary, seconds = run_scenario(tmp_path, "processes", method, config)
    deployment = f"multiprocessing.Process x{PROCESSES} start()+join() [{method}, {config}]"
    check(deployment, db, ended, summary, tasks=PROCESSES, seconds=seconds)


@pytest.mark.parametrize(
    ("scenario", "config"), [("executor_shutdown", "code"), ("executor_with", "dictconfig")]
)
@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_executor(
    tmp_path: Path, db: Path, method: str, scenario: str, config: str
) -> None:
    """ProcessPoolExecutor shut down with wait=True (or by `with`): every record, once."""
    ended, summary, seconds = run_scenario(tmp_path, scenario, method, config)
    how = "shutdown(wait=True)" if scenario == "executor_shutdown" else "as context manager"
    deployment = f"concurrent.futures.ProcessPoolExecutor(2) {how} [{method}, {config}]"
    check(deployment, db, ended, summary, tasks=POOL_TASKS, seconds=seconds)
