"""Whole-process behaviour of BatchingHandler: dictConfig, interpreter exit, reconfiguration.

Each test runs a small script with ``python -c`` in a child interpreter. The sinks live in
``mysinks.py`` in a temporary folder on ``PYTHONPATH`` (dictConfig names them by import
string); each appends one JSON line per record to ``records.jsonl`` there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_writer_process import without_where

pytestmark = pytest.mark.subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT_TIMEOUT = 30.0

SINKS = """\
import json, logging, os, threading, time

OUT = os.environ["BATCHLOG_TEST_OUT"]


def _append(sink, batch):
    with open(os.path.join(OUT, "records.jsonl"), "a") as f:
        for record in batch:
            line = {
                "sink": sink,
                "message": record.getMessage(),
                "formatted": getattr(record, "formatted", None),
            }
            f.write(json.dumps(line) + "\\n")


def file_sink(batch):
    _append("file", batch)


class FileSink:
    def __init__(self, sink):
        self.sink = sink

    def __call__(self, batch):
        _append(self.sink, batch)


def hung_sink(batch):
    threading.Event().wait()


def slow_logging_sink(batch):
    logging.getLogger("other").warning("old sink got %d records", len(batch))
    # Surely still busy when exit begins: the main thread counts as ended then. And slow
    # after that (a network round trip, say), so only a wait at exit lets it finish.
    threading.main_thread().join(30)
    time.sleep(0.5)  # the sink's own slowness; the test waits on no thread with it
    _append("old", batch)
"""

PRELUDE = """\
import json, logging, logging.config, os, time

def write_json(name, value):
    with open(os.path.join(os.environ["BATCHLOG_TEST_OUT"], name), "w") as f:
        json.dump(value, f)

def configure(sink, **options):
    handler = {"class": "batchlog.BatchingHandler", "sink": sink, **options}
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
        "handlers": {"batching": handler},
        "root": {"level": "DEBUG", "handlers": ["batching"]},
    })
"""


def run_script(body: str, out: Path) -> subprocess.CompletedProcess[str]:
    """Run PRELUDE + ``body`` in a fresh interpreter with ``mysinks`` importable."""
    (out / "mysinks.py").write_text(SINKS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(REPO_ROOT), str(out), env.get("PYTHONPATH")) if path
    )
    env["BATCHLOG_TEST_OUT"] = str(out)
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        env=env,
        cwd=out,
        check=False,
    )


def delivered(out: Path, sink: str | None = None) -> list[dict[str, str | None]]:
    """The records the sinks wrote, in order (only ``sink``'s if given)."""
    path = out / "records.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    records = [json.loads(line) for line in lines]
    return [record for record in records if sink is None or record["sink"] == sink]


def assert_clean_exit(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stderr) == (0, ""), result.stdout


def test_dictconfig_handler_delivers_everything_at_exit(tmp_path: Path) -> None:
    """Configured with plain values only and never flushed or closed, the handler delivers
    every record when the script ends (logging.shutdown)."""
    result = run_script(
        """
        configure(
            {"()": "mysinks.FileSink", "sink": "file"},
            capacity=1000,
            flush_interval=60,
            overflow="BLOCK",
            level="INFO",
            formatter="plain",
        )
        log = logging.getLogger("app")
        for i in range(500):
            log.info("record %d", i)
        log.debug("below the handler's level")
        """,
        tmp_path,
    )
    assert_clean_exit(result)
    assert [(f"record {i}", f"INFO record {i}") for i in range(500)] == [
        (record["message"], record["formatted"]) for record in delivered(tmp_path)
    ]


def test_records_logged_by_a_late_atexit_hook_are_delivered(tmp_path: Path) -> None:
    """A hook registered before the handler existed runs after batchlog's own exit hook; its
    records still arrive, because logging.shutdown closes the handler after it."""
    result = run_script(
        """
        import atexit

        @atexit.register
        def log_at_exit():
            logging.getLogger("app").warning("from atexit")

        configure("mysinks:file_sink", capacity=1000, flush_interval=60)
        logging.getLogger("app").info("before exit")
        """,
        tmp_path,
    )
    assert_clean_exit(result)
    assert [record["message"] for record in delivered(tmp_path)] == ["before exit", "from atexit"]


def test_hung_sink_delays_exit_by_at_most_the_flush_timeout(tmp_path: Path) -> None:
    """With flush_timeout=1 (from dictConfig) a sink that never returns delays exit by about
    one second (the flush; the close that follows waits no more), the exit code stays 0,
    and one line on stderr says how many records were not delivered."""
    result = run_script(
        """
        configure("ext://mysinks.hung_sink", capacity=10, flush_interval=60, flush_timeout=1)
        for i in range(100):
            logging.getLogger("app").info("record %d", i)
        write_json("script-ended.json", time.time())
        """,
        tmp_path,
    )
    exit_took = time.time() - json.loads((tmp_path / "script-ended.json").read_text())
    assert (result.returncode, without_where(result.stderr)) == (
        0,
        "batchlog: writer 'batching': 100 record(s) not delivered: its sink did not finish "
        "in time while the process shut down\n",
    )
    assert exit_took < 1 + 3  # one timeout plus slack for a busy machine


def test_reconfiguring_closes_the_old_handler_without_deadlock(tmp_path: Path) -> None:
    """A second dictConfig closes the old handler while holding logging's lock; its slow
    sink, which logs through logging.getLogger("other"), neither deadlocks nor loses
    records, even though the script ends right after."""
    result = run_script(
        """
        configure("mysinks.slow_logging_sink", capacity=1000, flush_interval=60)
        for i in range(50):
            logging.getLogger("app").info("old %d", i)
        configure({"()": "mysinks.FileSink", "sink": "new"}, capacity=1000, flush_interval=60)
        logging.getLogger("app").info("new 0")
        """,
        tmp_path,
    )
    assert_clean_exit(result)
    assert [f"old {i}" for i in range(50)] == [
        record["message"] for record in delivered(tmp_path, "old")
    ]
    assert "new 0" in [record["message"] for record in delivered(tmp_path, "new")]


def test_handler_closed_by_dictconfig_while_attached_delivers_everything_at_exit(
    tmp_path: Path,
) -> None:
    """A handler attached in code, closed by a later dictConfig (a framework's setup),
    keeps delivering what is logged through it afterwards, and the process's exit delivers
    all of it, though logging.shutdown() no longer knows the handler."""
    result = run_script(
        """
        from batchlog import BatchingHandler
        attached = BatchingHandler({"()": "mysinks.FileSink", "sink": "attached"},
                                   capacity=1000, flush_interval=60)
        app = logging.getLogger("app")
        app.setLevel(logging.INFO)
        app.addHandler(attached)
        app.info("before 0")
        configure({"()": "mysinks.FileSink", "sink": "configured"}, capacity=1000,
                  flush_interval=60)
        for i in range(50):
            app.info("after %d", i)
        write_json("metrics.json", attached.metrics.as_dict())
        """,
        tmp_path,
    )
    assert_clean_exit(result)
    messages = [record["message"] for record in delivered(tmp_path, "attached")]
    # dictConfig closes the handler holding logging's lock, so that close does not wait:
    # the first writer delivers "before 0" in the background, which under load may come
    # after the reopened writer's records. Each is delivered once; each writer in order.
    assert sorted(messages) == sorted(["before 0", *(f"after {i}" for i in range(50))])
    assert [m for m in messages if m != "before 0"] == [f"after {i}" for i in range(50)]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["reopened"], metrics["records_added"]) == (1, 51)
