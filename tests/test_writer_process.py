"""Whole-process behaviour of BatchWriter: interpreter exit and fork, in a child interpreter.

Each test runs a small script with ``python -c`` and asserts on what its sinks wrote: every
sink call appends one JSON line per record to ``<pid>.jsonl`` in a temporary folder, so the
test sees which process delivered which record, and on which thread.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT_TIMEOUT = 60.0

PRELUDE = """\
import atexit, json, os, sys, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+ warns on fork with threads
from batchlog import BatchWriter

OUT = sys.argv[1]

def file_sink(batch):
    with open(os.path.join(OUT, f"{os.getpid()}.jsonl"), "a") as f:
        for record in batch:
            f.write(json.dumps([record, threading.current_thread().name]) + "\\n")

def write_json(name, value):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(value, f)
"""


def run_script(body: str, out: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run PRELUDE + ``body`` in a fresh interpreter; return the result and seconds taken."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(REPO_ROOT), env.get("PYTHONPATH")) if path
    )
    script = PRELUDE + textwrap.dedent(body)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        env=env,
        check=False,
    )
    return result, time.monotonic() - started


def deliveries(out: Path) -> dict[int, list[tuple[object, str]]]:
    """Map each delivering process id to its (record, sink thread name) pairs, in order."""
    delivered = {}
    for path in sorted(out.glob("*.jsonl")):
        lines = path.read_text().splitlines()
        delivered[int(path.stem)] = [tuple(json.loads(line)) for line in lines]
    return delivered


def records_of(out: Path) -> list[object]:
    """Every delivered record, asserting that only one process delivered any."""
    delivered = deliveries(out)
    assert len(delivered) == 1, f"records delivered by processes {sorted(delivered)}"
    (pairs,) = delivered.values()
    return [record for record, _ in pairs]


def assert_clean_exit(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stderr) == (0, ""), result.stdout


def not_delivered_line(name: str, count: int) -> str:
    """The line on stderr for a writer given up at exit."""
    return (
        f"batchlog: writer {name!r}: {count} record(s) not delivered: its sink did not "
        "finish in time while the process shut down\n"
    )


_WHERE = re.compile(r" \(its thread was [^\n]*\)$", re.MULTILINE)


def without_where(stderr: str) -> str:
    """``stderr`` without the where-its-thread-was part of each give-up line."""
    return _WHERE.sub("", stderr)


def assert_exit_gave_up(
    result: subprocess.CompletedProcess[str], elapsed: float, name: str, count: int
) -> None:
    """Exit code 0, within exit_timeout=1 (well below the 10 s default, whatever the
    machine's load), and one line on stderr for the writer given up."""
    assert (result.returncode, without_where(result.stderr)) == (
        0,
        not_delivered_line(name, count),
    )
    assert elapsed < 8


# ---------------------------------------------------------------------- interpreter exit


def test_unclosed_writer_delivers_its_records_at_exit(tmp_path: Path) -> None:
    """Records of a writer nobody closed reach the sink when the script ends."""
    result, _ = run_script(
        """
        writer = BatchWriter(1000, 60.0, file_sink)
        for i in range(500):
            writer.add(i)
        """,
        tmp_path,
    )
    assert_clean_exit(result)
    assert list(range(500)) == records_of(tmp_path)


def test_records_added_from_another_thread_are_delivered_at_exit(tmp_path: Path) -> None:
    """A non-main thread still adding when the main script ends loses nothing."""
    result, _ = run_script(
        """
        writer = BatchWriter(1000, 60.0, file_sink)
        def produce():
            for i in range(2000):
                writer.add(i)
        threading.Thread(target=produce, name="producer").start()
        # The main thread ends here; exit waits for "producer", then runs the exit hooks.
        """,
        tmp_path,
    )
    assert_clean_exit(result)
    assert list(range(2000)) == records_of(tmp_path)


def test_records_added_in_an_atexit_handler_are_delivered(tmp_path: Path) -> None:
    """A handler registered after the writer runs first at exit; its records still arrive."""
    result, _ = run_script(
        """
        writer = BatchWriter(1000, 60.0, file_sink)
        for i in range(100):
            writer.add(i)
        @atexit.register
        def add_more():
            for i in range(100, 200):
                writer.add(i)
        """,
        tmp_path,
    )
    assert_clean_exit(result)
    assert list(range(200)) == records_of(tmp_path)


FIRST_RECORDS_AT_EXIT = """
writer = BatchWriter(1000, 60.0, file_sink)
@atexit.register
def add_first_records():
    writer.add("first")
    writer.try_add("second")
"""


def test_first_record_added_at_exit_is_delivered(tmp_path: Path) -> None:
    """A writer whose first record comes in an atexit handler still delivers it."""
    result, _ = run_script(FIRST_RECORDS_AT_EXIT, tmp_path)
    assert_clean_exit(result)
    assert records_of(tmp_path) == ["first", "second"]


WRITER_MADE_AT_EXIT = """
@atexit.register
def log_at_exit():
    writer = BatchWriter(1000, 60.0, file_sink)
    writer.add("first")
    writer.try_add("second")
    print("threads:", sorted(t.name for t in threading.enumerate()))
"""


def test_no_thread_is_started_at_exit(tmp_path: Path) -> None:
    """A writer made during exit starts no thread: the exiting thread delivers its records."""
    result, _ = run_script(WRITER_MADE_AT_EXIT, tmp_path)
    assert_clean_exit(result)
    ((_, pairs),) = deliveries(tmp_path).items()
    assert pairs == [("first", "MainThread"), ("second", "MainThread")]
    assert "batchlog-" not in result.stdout


def test_hung_sink_does_not_hang_exit(tmp_path: Path) -> None:
    """With exit_timeout=1 a sink that never returns delays exit by about a second."""
    result, elapsed = run_script(
        """
        def hung_sink(batch):
            threading.Event().wait()
        writer = BatchWriter(10, 60.0, hung_sink, exit_timeout=1)
        for i in range(100):
            writer.add(i)
        """,
        tmp_path,
    )
    assert_exit_gave_up(result, elapsed, "BatchWriter-1", 100)


def test_the_give_up_line_says_where_the_sink_hangs(tmp_path: Path) -> None:
    """The line names the sink's own frame and the wait it is stuck in."""
    result, _ = run_script(
        """
        def hung_sink(batch):
            threading.Event().wait()
        writer = BatchWriter(10, 60.0, hung_sink, exit_timeout=1)
        writer.add(1)
        """,
        tmp_path,
    )
    assert re.fullmatch(
        r"batchlog: writer 'BatchWriter-1': 1 record\(s\) not delivered: its sink did not "
        r"finish in time while the process shut down \(its thread was in hung_sink, "
        r"<string>:\d+, at wait, threading\.py:\d+\)\n",
        result.stderr,
    ), result.stderr


def test_hung_sink_does_not_stop_another_writer_delivering_at_exit(tmp_path: Path) -> None:
    """One writer's hung sink neither hangs exit nor keeps a healthy writer's records back."""
    result, elapsed = run_script(
        """
        def hung_sink(batch):
            threading.Event().wait()
        hung = BatchWriter(10, 60.0, hung_sink, exit_timeout=1, name="hung")
        healthy = BatchWriter(1000, 60.0, file_sink, name="healthy")
        for i in range(100):
            hung.add(i)
            healthy.add(i)
        """,
        tmp_path,
    )
    assert_exit_gave_up(result, elapsed, "hung", 100)
    assert list(range(100)) == records_of(tmp_path)


def test_hung_sink_does_not_hang_exit_when_the_first_record_comes_at_exit(
    tmp_path: Path,
) -> None:
    """A hung sink whose records all arrive in an atexit handler still cannot hang exit."""
    result, elapsed = run_script(
        """
        def hung_sink(batch):
            threading.Event().wait()
        writer = BatchWriter(10, 60.0, hung_sink, exit_timeout=1)
        atexit.register(writer.add, "first")
        """,
        tmp_path,
    )
    assert_exit_gave_up(result, elapsed, "BatchWriter-1", 1)


# ---------------------------------------------------------------------- fork

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

ZERO_METRICS = {
    "records_added": 0,
    "records_dropped": 0,
    "records_evicted": 0,
    "records_processed": 0,
    "records_failed": 0,
    "records_in_buffer": 0,
    "flush_count": 0,
    "flush_errors": 0,
    "last_flush_duration": 0.0,
    "avg_flush_duration": 0.0,
    "max_flush_duration": 0.0,
    "total_flush_time": 0.0,
    "reopened": 0,
}

CHILD = """
def run_child():
    write_json("child-before.json", writer.metrics.as_dict())
    for i in range(50):
        writer.add(["child", i])
    closed = writer.close(timeout=30)
    write_json("child-after.json", {"closed": closed, **writer.metrics.as_dict()})
    write_json("child-pid.json", os.getpid())
"""


def check_fork_outcome(out: Path, parent_records: int) -> None:
    """The parent delivered exactly its records, the child exactly its own."""
    child_pid = json.loads((out / "child-pid.json").read_text())
    delivered = deliveries(out)
    assert child_pid in delivered
    assert len(delivered) == 2, f"records delivered by processes {sorted(delivered)}"
    assert [["child", i] for i in range(50)] == [record for record, _ in delivered.pop(child_pid)]
    ((_, parent_pairs),) = delivered.items()
    assert [["parent", i] for i in range(parent_records)] == [record for record, _ in parent_pairs]
    assert json.loads((out / "child-before.json").read_text()) == ZERO_METRICS
    after = json.loads((out / "child-after.json").read_text())
    assert (
        after["closed"],
        after["records_added"],
        after["records_processed"],
        after["records_in_buffer"],
    ) == (True, 50, 50, 0)


@needs_fork
def test_forked_child_starts_empty_and_parent_keeps_its_records(tmp_path: Path) -> None:
    """Records waiting at fork are delivered once, by the parent; the child starts at zero."""
    result, _ = run_script(
        CHILD
        + """
writer = BatchWriter(1000, 60.0, file_sink)
for i in range(100):
    writer.add(["parent", i])
pid = os.fork()
if pid == 0:
    run_child()
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
for i in range(100, 150):
    writer.add(["parent", i])
assert writer.close(timeout=30)
""",
        tmp_path,
    )
    assert_clean_exit(result)
    check_fork_outcome(tmp_path, parent_records=150)


@needs_fork
def test_fork_during_a_slow_flush(tmp_path: Path) -> None:
    """Forking while the parent's sink holds a batch: each side delivers only its records."""
    result, _ = run_script(
        CHILD
        + """
in_sink = threading.Event()
release = threading.Event()

def slow_sink(batch):
    file_sink(batch)
    if not in_sink.is_set():  # only the parent's first batch waits
        in_sink.set()
        release.wait(30)

writer = BatchWriter(10, 60.0, slow_sink)
for i in range(10):
    writer.add(["parent", i])  # a full batch: the worker takes it into the sink
assert in_sink.wait(30)
for i in range(10, 25):
    writer.add(["parent", i])  # these wait in the queue during the fork
pid = os.fork()
if pid == 0:
    run_child()
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
release.set()
for i in range(25, 40):
    writer.add(["parent", i])
assert writer.close(timeout=30)
""",
        tmp_path,
    )
    assert_clean_exit(result)
    check_fork_outcome(tmp_path, parent_records=40)
