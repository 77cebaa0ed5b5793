"""Shared support for the framework tests: free ports, child processes, the sink's store.

Every scenario runs a real framework in a child process on 127.0.0.1. The application
logs records carrying a unique number (``"record %d"``) through a ``BatchingHandler`` (or
``BatchingProcessor``) whose sink is ``batchlog.sinks.SQLiteSink`` on a file in the test's
``tmp_path``; the test then counts, from that database alone, which numbers arrived and
how often (exactly once is the only pass).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The most any one scenario's process may take to start, run and end.
SCENARIO_TIMEOUT = 55.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is an integration test (marked, so `-m "not integration"` skips them)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pause_on(process: subprocess.Popen[bytes], seconds: float = 0.05) -> None:
    """Between two polls of what another process does (nothing to wait on): wait on that
    process, at most ``seconds``, which also notices at once that it ended."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(seconds)


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until something accepts on ``port`` (failing early if ``process`` ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"the server ended with {process.returncode} before listening on {port}"
            raise AssertionError(msg)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        pause_on(process)
    msg = f"nothing listened on port {port} within {timeout} s"
    raise AssertionError(msg)


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a child: the repository and ``tmp_path`` importable."""
    env = dict(os.environ)
    paths = [str(tmp_path), str(REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["BATCHLOG_TEST_DB"] = str(tmp_path / "store.sqlite3")
    env.update(extra)
    return env


def bin_path(name: str) -> str:
    """The console script ``name`` installed next to this interpreter."""
    return str(Path(sys.executable).with_name(name))


@dataclass
class Ended:
    """How a child process ended."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def finish(
    process: subprocess.Popen[bytes], started: float, timeout: float = SCENARIO_TIMEOUT
) -> Ended:
    """Wait for ``process`` to end (killing its group after ``timeout``) and collect output."""
    try:
        out, err = process.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        msg = f"the process did not end in time\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}"
        raise AssertionError(msg) from None
    return Ended(process.returncode, out.decode(), err.decode(), time.monotonic() - started)


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new process group (so a test can signal or kill all of it)."""
    return subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@contextlib.contextmanager
def group_killed_after(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Kill whatever is left of ``process``'s group when the block ends (a failed test)."""
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            process.communicate()


def stored_numbers(db: Path, table: str = "logs") -> Counter[int]:
    """How many times each record number ("record N" messages) is in the sink's store."""
    if not db.exists():
        return Counter()
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(f"SELECT message FROM {table}").fetchall()  # noqa: S608 -- fixed name
    numbers: Counter[int] = Counter()
    for (message,) in rows:
        if message.startswith("record "):
            numbers[int(message.split()[1])] += 1
    return numbers


def assert_exactly_once(db: Path, sent: set[int] | range, ended: Ended | None = None) -> None:
    """Every number in ``sent`` is stored exactly once, and nothing else."""
    numbers = stored_numbers(db)
    missing = sorted(set(sent) - set(numbers))
    duplicated = sorted(n for n, count in numbers.items() if count > 1)
    unexpected = sorted(set(numbers) - set(sent))
    if missing or duplicated or unexpected:
        where = "" if ended is None else f"\nstdout:\n{ended.stdout}\nstderr:\n{ended.stderr}"
        msg = (
            f"{len(sent)} sent, {len(numbers)} distinct stored: {len(missing)} missing "
            f"(first {missing[:10]}), {len(duplicated)} duplicated (first {duplicated[:10]}), "
            f"{len(unexpected)} never sent{where}"
        )
        raise AssertionError(msg)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The SQLite file the scenario's sink writes (``BATCHLOG_TEST_DB`` in the child)."""
    return tmp_path / "store.sqlite3"


def report_row(deployment: str, sent: int, db: Path, seconds: float) -> None:
    """Append one deployment's figures to ``$BATCHLOG_INTEGRATION_REPORT`` (if set).

    One JSON line: deployment, sent, delivered (distinct numbers stored), duplicates and
    the shutdown time in seconds; the closing notes' tables are made from these.
    """
    path = os.environ.get("BATCHLOG_INTEGRATION_REPORT")
    if not path:
        return
    import json

    numbers = stored_numbers(db)
    row = {
        "deployment": deployment,
        "sent": sent,
        "delivered": len(numbers),
        "duplicates": sum(count - 1 for count in numbers.values()),
        "shutdown_seconds": round(seconds, 2),
        "python": sys.version.split()[0],
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
