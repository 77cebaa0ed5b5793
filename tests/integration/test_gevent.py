"""gevent and eventlet, patched after a fork (as gunicorn's workers are) or before import.

Each script logs numbered records from many greenlets through a ``BatchingHandler`` into the
SQLite store, waits on ``handler.flush()`` from a greenlet, and ends normally; a hang is a
failure (the process is killed after the scenario's timeout).
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import assert_exactly_once, child_env, finish, report_row, start

GREENLETS = 10
PER_GREENLET = 20

HANDLER = """
import logging, os
from batchlog import BatchingHandler
from batchlog.sinks import SQLiteSink

handler = BatchingHandler(SQLiteSink(os.environ["BATCHLOG_TEST_DB"]), capacity=64,
                          flush_interval=5.0)
logger = logging.getLogger("app")
logger.setLevel(logging.INFO)
logger.addHandler(handler)
"""

LOG_FROM_GREENLETS = f"""
def work(n):
    for i in range({PER_GREENLET}):
        logger.info("record %d", n * {PER_GREENLET} + i)
        sleep(0)  # let the other greenlets (and batchlog's worker) run

jobs = [spawn(work, n) for n in range({GREENLETS})]
joinall(jobs)
flusher = spawn(handler.writer.flush, 30)  # a greenlet waiting for the worker greenlet
joinall([flusher])
assert flusher.value is True, flusher.value
"""

PATCHES = {
    "gevent": (
        "from gevent import monkey; monkey.patch_all()\n",
        "from gevent import spawn, joinall, sleep\n",
    ),
    "eventlet": (
        "import eventlet; eventlet.monkey_patch()\n",
        "from eventlet import spawn, sleep\n"
        "def joinall(jobs):\n"
        "    for job in jobs:\n"
        "        job.value = job.wait()\n",
    ),
}


def _script(library: str, *, before_fork: bool) -> str:
    patch, imports = PATCHES[library]
    if not before_fork:
        return patch + HANDLER + imports + LOG_FROM_GREENLETS
    # The handler is made and used in the parent (gunicorn --preload), the child patches
    # after the fork, logs, closes the handler and ends with os._exit (as gunicorn's do not,
    # but it shows the child's close alone delivered).
    child = patch + imports + LOG_FROM_GREENLETS + "handler.close()\nos._exit(0)\n"
    return (
        "import warnings\n"
        "warnings.simplefilter('ignore', DeprecationWarning)  # fork with threads, 3.12+\n"
        + HANDLER
        + "logger.info('record %d', -1)\n"
        + "assert handler.writer.flush(30)\n"
        + "pid = os.fork()\n"
        + "if pid == 0:\n"
        + textwrap.indent(child, "    ")
        + "_, status = os.waitpid(pid, 0)\n"
        + "assert os.waitstatus_to_exitcode(status) == 0, status\n"
    )


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
@pytest.mark.parametrize("before_fork", [True, False], ids=["patched-after-fork", "patched-first"])
def test_greenlets_deliver_everything_without_hanging(
    tmp_path: Path, db: Path, library, before_fork
):
    """Records from many greenlets are all delivered once, and flush and exit never hang."""
    pytest.importorskip(library)
    if library == "eventlet" and sys.version_info >= (3, 13):
        pytest.skip("eventlet's monkey patching does not support Python 3.13 threading")
    (tmp_path / "scenario.py").write_text(_script(library, before_fork=before_fork))
    started = time.monotonic()
    process = start([sys.executable, "scenario.py"], child_env(tmp_path), tmp_path)
    ended = finish(process, started)
    assert ended.returncode == 0, ended.stderr
    sent = range(-1, GREENLETS * PER_GREENLET) if before_fork else range(GREENLETS * PER_GREENLET)
    where = "patched after fork" if before_fork else "patched before import"
    report_row(f"{library}, {where}", len(sent), db, ended.seconds)
    assert_exactly_once(db, sent, ended)
