"""Whole-process behaviour of the lifecycle hooks: SIGTERM, shared shutdown budgets, fork.

Like ``test_writer_process``, each test runs a small script in a child interpreter; its
sinks append one JSON line per record to ``<pid>.jsonl`` in a temporary folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from test_writer_process import (
    PRELUDE,
    REPO_ROOT,
    SCRIPT_TIMEOUT,
    deliveries,
    not_delivered_line,
    records_of,
    without_where,
)

import batchlog

pytestmark = pytest.mark.subprocess

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

#: Sinks and a handler for the scripts, on top of test_writer_process's PRELUDE.
LOGGING_PRELUDE = (
    PRELUDE
    + """
import logging, logging.config, signal, time
import batchlog
from batchlog import BatchingHandler

def hung_sink(batch):
    threading.Event().wait()

def handler_sink(batch):
    file_sink([record.getMessage() for record in batch])

logger = logging.getLogger("app")
logger.setLevel(logging.INFO)
logger.propagate = False

def ready():
    os.write(1, b"ready\\n")  # not print(): a signal handler that prints may interrupt it
"""
)


def start_script(body: str, out: Path) -> subprocess.Popen[str]:
    """Start LOGGING_PRELUDE + ``body`` in a child interpreter, reading its stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    script = LOGGING_PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own group: a hung script is killed with its children
    )


def wait_until_ready(process: subprocess.Popen[str]) -> None:
    """Read the child's "ready" line (a child that ends or hangs first fails the test)."""
    timer = threading.Timer(SCRIPT_TIMEOUT, process.kill)  # a hung child fails, not hangs
    timer.start()
    try:
        line = process.stdout.readline() if process.stdout else ""
    finally:
        timer.cancel()
    assert line == "ready\n", (line, process.communicate(timeout=SCRIPT_TIMEOUT))


def terminate(process: subprocess.Popen[str]) -> tuple[int, str, float]:
    """Send SIGTERM; return the exit status, stderr and seconds until it ended."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = communicate_or_kill(process)
    return process.returncode, stderr, time.monotonic() - started


def sigterm_ends_it(process: subprocess.Popen[str]) -> None:
    """Once the child is ready, SIGTERM it: it dies by SIGTERM, saying nothing on stderr."""
    wait_until_ready(process)
    status, stderr, _ = terminate(process)
    assert (status, stderr) == (-signal.SIGTERM, "")


def communicate_or_kill(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Wait for the child's end; one that hangs is killed (not left behind) and fails."""
    try:
        return process.communicate(timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its forked children hold the pipes too
        process.communicate()
        raise


def run_logging_script(body: str, out: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run LOGGING_PRELUDE + ``body`` to its end; return the result and seconds taken."""
    process = start_script(body, out)
    started = time.monotonic()
    stdout, stderr = communicate_or_kill(process)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return result, time.monotonic() - started


# ---------------------------------------------------------------------- SIGTERM


def test_sigterm_delivers_everything_then_ends_the_process_as_sigterm_would(tmp_path):
    """With deliver_on_sigterm(), SIGTERM to a process with Python's default handling
    delivers every accepted record, then the process dies by SIGTERM (status -15)."""
    process = start_script(
        """
        writer = BatchWriter(1000, 60.0, file_sink)
        batchlog.deliver_on_sigterm()
        for i in range(150):
            writer.add(i)
        ready()
        threading.Event().wait()
        """,
        tmp_path,
    )
    sigterm_ends_it(process)
    assert list(range(150)) == records_of(tmp_path)


def test_sigterm_landing_inside_logging_waits_for_it_to_leave(tmp_path):
    """A SIGTERM that lands while the main thread is inside logging's code, holding a
    lock the sink needs, is handled on the standby thread: the main thread goes on, lets
    the lock go, the records are delivered, and the process still dies by SIGTERM.
    (Delivering right where it landed would wait for that lock until the budget ran out.)"""
    process = start_script(
        """
        shared = threading.Lock()  # held by the code the signal interrupts; the sink needs it

        def locking_sink(batch):
            with shared:
                handler_sink(batch)

        class Holding(logging.Handler):
            def emit(self, record):
                with shared:
                    ready()
                    threading.Event().wait(2)  # the SIGTERM lands here, inside Logger.handle

        handler = BatchingHandler(locking_sink, capacity=1000, flush_interval=60.0)
        handler.writer.exit_timeout = 30
        logger.addHandler(handler)
        batchlog.deliver_on_sigterm()
        for i in range(150):
            logger.info("%d", i)
        logger.addHandler(Holding())
        logger.info("last")
        threading.Event().wait()
        """,
        tmp_path,
    )
    sigterm_ends_it(process)
    assert [*map(str, range(150)), "last"] == records_of(tmp_path)


def test_sigterm_chains_the_handler_installed_before(tmp_path):
    """A Python SIGTERM handler installed before is called, and decides: here it exits
    normally, and the exit delivers everything."""
    process = start_script(
        """
        def previous(signum, frame):
            os.write(1, b"previous handler called\\n")
            sys.exit(3)

        signal.signal(signal.SIGTERM, previous)
        handler = BatchingHandler(handler_sink, capacity=1000, flush_interval=60.0)
        logger.addHandler(handler)
        batchlog.deliver_on_sigterm()
        for i in range(150):
            logger.info("%d", i)
        ready()
        threading.Event().wait()
        """,
        tmp_path,
    )
    wait_until_ready(process)
    status, stderr, _ = terminate(process)
    assert (status, stderr) == (3, "")
    assert [str(i) for i in range(150)] == records_of(tmp_path)


def test_a_framework_restoring_and_reraising_sigterm_reaches_it(tmp_path):
    """As uvicorn does: a framework installs its own SIGTERM handler over batchlog's, shuts
    down gracefully, restores the one before and re-raises: batchlog's handler delivers
    and the process dies by SIGTERM. The option comes from dictConfig as a plain string."""
    process = start_script(
        """
        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"batched": {
                "()": "batchlog.BatchingHandler",
                "sink": "__main__:handler_sink",
                "capacity": "1000",
                "flush_interval": "60",
                "deliver_on_sigterm": "true",
            }},
            "loggers": {"app": {"handlers": ["batched"], "level": "INFO", "propagate": False}},
        })
        stop = threading.Event()
        original = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        for i in range(150):
            logger.info("%d", i)
        ready()
        while not stop.wait(0.05):  # the framework's serving loop
            pass
        logger.info("graceful shutdown done")
        signal.signal(signal.SIGTERM, original)
        signal.raise_signal(signal.SIGTERM)
        print("not reached", flush=True)
        """,
        tmp_path,
    )
    sigterm_ends_it(process)
    assert [*map(str, range(150)), "graceful shutdown done"] == records_of(tmp_path)


def test_deliver_on_sigterm_outside_the_main_thread_raises_value_error():
    """Only the main thread can install signal handlers: elsewhere it says so."""
    errors: list[BaseException] = []

    def call() -> None:
        try:
            batchlog.deliver_on_sigterm()
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call, name="not-main")
    thread.start()
    thread.join()
    (error,) = errors
    assert "must be called from the main thread" in str(error)
    assert "'not-main'" in str(error)


def test_deliver_on_sigterm_option_must_be_a_bool():
    """A value that is not a bool (or a config file's "true"/"false") is refused by name."""
    with pytest.raises(TypeError, match="deliver_on_sigterm must be True or False"):
        batchlog.BatchingHandler(lambda batch: None, deliver_on_sigterm="maybe")


# ---------------------------------------------------------------------- shutdown budget


def test_explicit_logging_shutdown_then_exit_shares_one_budget(tmp_path):
    """logging.shutdown() called by the program, then exit: with a hung sink the process
    waits for it once, within exit_timeout, not once per flush, close and shutdown; one
    line on stderr names the writer and its undelivered records."""
    result, elapsed = run_logging_script(
        """
        handler = BatchingHandler(hung_sink, capacity=10, flush_interval=60.0, name="hung")
        handler.writer.exit_timeout = 1
        logger.addHandler(handler)
        for i in range(100):
            logger.info("%d", i)
        logging.shutdown()
        """,
        tmp_path,
    )
    assert (result.returncode, without_where(result.stderr)) == (0, not_delivered_line("hung", 100))
    assert elapsed < 8  # flush + close + exit's own shutdown would be 4 budgets or more


def test_two_hung_handlers_share_the_budget(tmp_path):
    """Two handlers whose sinks hang delay exit by one exit_timeout in all, not one each."""
    result, elapsed = run_logging_script(
        """
        for name in ("first", "second"):
            handler = BatchingHandler(hung_sink, capacity=10, flush_interval=60.0, name=name)
            handler.writer.exit_timeout = 3
            logger.addHandler(handler)
        for i in range(100):
            logger.info("%d", i)
        """,
        tmp_path,
    )
    assert result.returncode == 0
    assert sorted(without_where(result.stderr).splitlines(keepends=True)) == [
        not_delivered_line("first", 100),
        not_delivered_line("second", 100),
    ]
    assert elapsed < 3 * 2  # one shared budget (3 s) plus start-up, not 3 s per handler


@needs_fork
def test_forked_child_whose_first_records_come_at_exit_ends_within_its_budget(tmp_path):
    """A forked child whose records all arrive in an exit hook, with a hung sink, still
    ends within exit_timeout, saying what it could not deliver."""
    result, elapsed = run_logging_script(
        """
        writer = BatchWriter(10, 60.0, hung_sink, exit_timeout=1, name="child-writer")
        pid = os.fork()
        if pid == 0:
            atexit.register(writer.add, "at exit")
            sys.exit(0)
        started = time.monotonic()
        _, status = os.waitpid(pid, 0)
        write_json("child.json", [os.waitstatus_to_exitcode(status), time.monotonic() - started])
        writer.close(timeout=0)
        """,
        tmp_path,
    )
    import json

    code, child_seconds = json.loads((tmp_path / "child.json").read_text())
    assert code == 0
    assert child_seconds < 8
    assert not_delivered_line("child-writer", 1) in without_where(result.stderr)
    assert elapsed < SCRIPT_TIMEOUT


# ---------------------------------------------------------------------- multiprocessing


@needs_fork
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_children_deliver_before_os_exit(tmp_path, method):
    """A multiprocessing child ends with os._exit() after its target: its records are
    delivered anyway, with no application code, under every start method."""
    script = tmp_path / "mp_script.py"
    script.write_text(
        PRELUDE
        + textwrap.dedent(
            f"""
            import multiprocessing

            writer = BatchWriter(1000, 60.0, file_sink)

            def work(n):
                for i in range(10):
                    writer.add([n, i])

            if __name__ == "__main__":
                context = multiprocessing.get_context({method!r})
                children = [context.Process(target=work, args=(n,)) for n in range(3)]
                for child in children:
                    child.start()
                for child in children:
                    child.join(30)
                assert [child.exitcode for child in children] == [0, 0, 0]
            """
        )
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        env=env,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    delivered = sorted(
        tuple(record) for pairs in deliveries(tmp_path).values() for record, _ in pairs
    )
    assert delivered == [(n, i) for n in range(3) for i in range(10)]


def test_a_framework_installed_before_that_restores_and_reraises_still_delivers(tmp_path):
    """As uvicorn --workers does with an app that turns the handler on at import: the
    framework's handler was there first (batchlog chains to it), and after its graceful
    shutdown it restores Python's default and re-raises. The re-raised SIGTERM waits for
    the exit to deliver everything, records logged during the graceful shutdown too, and
    then ends the process by SIGTERM."""
    process = start_script(
        """
        stop = threading.Event()
        original = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        handler = BatchingHandler(handler_sink, capacity=1000, flush_interval=60.0)
        logger.addHandler(handler)
        batchlog.deliver_on_sigterm()  # the app, imported while the framework runs
        for i in range(150):
            logger.info("%d", i)
        ready()
        while not stop.wait(0.05):  # the framework's serving loop
            pass
        logger.info("graceful shutdown done")
        signal.signal(signal.SIGTERM, original)
        signal.raise_signal(signal.SIGTERM)
        logger.info("after the re-raise")
        """,
        tmp_path,
    )
    sigterm_ends_it(process)
    assert [*map(str, range(150)), "graceful shutdown done", "after the re-raise"] == (
        records_of(tmp_path)
    )


def test_a_full_queue_at_exit_with_a_hung_sink_does_not_hang_the_adder(tmp_path):
    """An exit hook adding more records than the queue holds, to a writer whose sink hangs
    and whose worker never started: the waiting adds give up within the shutdown budget
    (counted as dropped), and exit ends within exit_timeout, saying so."""
    result, elapsed = run_logging_script(
        """
        writer = BatchWriter(10, 60.0, hung_sink, max_queue_size=10, exit_timeout=1,
                             name="full")

        @atexit.register
        def fill():
            for i in range(30):
                try:
                    writer.add(i)
                except Exception as exc:
                    write_json("refused.json", type(exc).__name__)
                    break
        """,
        tmp_path,
    )
    import json

    assert result.returncode == 0
    assert "batchlog: writer 'full':" in result.stderr
    assert json.loads((tmp_path / "refused.json").read_text()) == "QueueFullError"
    assert elapsed < 8


def test_a_hung_handler_first_in_logging_shutdown_leaves_the_others_their_budget(tmp_path):
    """logging.shutdown() flushes handlers one after another; a hung one first must not
    leave the next with no budget and nothing delivered: the shutdown asks every writer
    to deliver at once, when it starts."""
    result, _ = run_logging_script(
        """
        healthy = BatchingHandler(handler_sink, capacity=1000, flush_interval=60.0)
        hung = BatchingHandler(hung_sink, capacity=1000, flush_interval=60.0, name="hung")
        for handler in (healthy, hung):  # the hung one, made last, is flushed first
            handler.writer.exit_timeout = 1
            logger.addHandler(handler)
        logger.info("to both")
        """,
        tmp_path,
    )
    assert (result.returncode, without_where(result.stderr)) == (0, not_delivered_line("hung", 1))
    assert records_of(tmp_path) == ["to both"]


def test_a_handler_chaining_back_to_batchlog_does_not_loop(tmp_path):
    """deliver_on_sigterm() again after a framework that chains to what it found (us):
    our handler calls the framework's, which calls ours: that one takes the default path
    (deliver, end by SIGTERM) instead of chaining forever."""
    process = start_script(
        """
        writer = BatchWriter(1000, 60.0, file_sink)
        batchlog.deliver_on_sigterm()
        found = signal.getsignal(signal.SIGTERM)

        def framework(signum, frame):
            found(signum, frame)

        signal.signal(signal.SIGTERM, framework)
        batchlog.deliver_on_sigterm()
        for i in range(10):
            writer.add(i)
        ready()
        threading.Event().wait()
        """,
        tmp_path,
    )
    sigterm_ends_it(process)
    assert list(range(10)) == records_of(tmp_path)


@pytest.mark.parametrize("second", [False, True], ids=["one", "a second while delivering"])
def test_a_handler_chaining_back_while_batchlog_holds_a_lock_still_ends_by_sigterm(
    tmp_path, second
):
    """As above, but the SIGTERM lands while the main thread waits in batchlog's code (a
    flush: the sink signals it): the default path hands the delivery to the standby, whose
    signal must then reach the main thread, although chaining blocked SIGTERM there.

    A second SIGTERM may come while the standby delivers (injected: the standby starts
    once the main thread handled it). The process is ending already: the framework's
    handler is not called again, nor SIGTERM blocked again (the standby's signal would
    then never arrive)."""
    process = start_script(
        f"""
        from batchlog import _lifecycle

        main = threading.get_ident()
        second_handled = threading.Event()
        real_deliver_all = _lifecycle.deliver_all

        def deliver_after_the_second(*args, **kwargs):
            if threading.get_ident() != main:
                second_handled.wait(60)
            return real_deliver_all(*args, **kwargs)

        _lifecycle.deliver_all = deliver_after_the_second

        def signalling_sink(batch):
            signal.pthread_kill(main, signal.SIGTERM)  # the main thread waits in flush()
            file_sink(batch)

        writer = BatchWriter(1000, 60.0, signalling_sink)
        batchlog.deliver_on_sigterm()
        found = signal.getsignal(signal.SIGTERM)
        calls = []

        def framework(signum, frame):
            calls.append(signum)
            write_json("framework.json", calls)
            found(signum, frame)

        signal.signal(signal.SIGTERM, framework)
        batchlog.deliver_on_sigterm()
        for i in range(10):
            writer.add(i)
        writer.flush(timeout=60)
        if {second}:
            signal.raise_signal(signal.SIGTERM)  # its handler runs before this returns
        second_handled.set()
        threading.Event().wait()  # only the standby's signal ends it
        """,
        tmp_path,
    )
    _, stderr = communicate_or_kill(process)
    assert (process.returncode, stderr) == (-signal.SIGTERM, "")
    assert json.loads((tmp_path / "framework.json").read_text()) == [signal.SIGTERM]
    assert list(range(10)) == records_of(tmp_path)


@needs_fork
def test_a_child_forked_inside_the_handler_handles_its_own_sigterm(tmp_path):
    """A framework's handler that forks (a process started during its shutdown): the
    child's stack holds the parent's run of batchlog's handler, which is not the child's
    own. A SIGTERM in the child is handled there (its framework's handler runs), not
    taken for one landing inside a run."""
    result, _ = run_logging_script(
        """
        parent = os.getpid()

        def framework(signum, frame):
            if os.getpid() != parent:
                os._exit(7)  # the child's SIGTERM reached its framework's handler
            child = os.fork()
            if child == 0:
                signal.raise_signal(signal.SIGTERM)
                os._exit(5)  # the child's SIGTERM was swallowed
            _, status = os.waitpid(child, 0)
            write_json("child.json", os.waitstatus_to_exitcode(status))

        writer = BatchWriter(1000, 60.0, file_sink)
        signal.signal(signal.SIGTERM, framework)
        batchlog.deliver_on_sigterm()
        writer.add("parent")
        signal.raise_signal(signal.SIGTERM)
        """,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads((tmp_path / "child.json").read_text()) == 7
    assert records_of(tmp_path) == ["parent"]


def test_sigterm_during_a_flush_wait_still_ends_by_sigterm(tmp_path):
    """A SIGTERM landing while the main thread waits in batchlog's own code (a flush) is
    delivered on the standby thread; should the main thread end normally first, the exit
    still ends the process by SIGTERM."""
    process = start_script(
        """
        from batchlog import _lifecycle

        main = threading.get_ident()
        held = []

        def until(condition):
            pause = threading.Event()
            for _ in range(6000):  # a minute at most
                if condition():
                    return
                pause.wait(0.01)
            os._exit(3)

        def main_waits_in_flush():
            frame = sys._current_frames().get(main)
            while frame is not None:
                where = (frame.f_code.co_name, frame.f_globals["__name__"])
                if where == ("flush", "batchlog.writer"):
                    return True
                frame = frame.f_back
            return False

        def holding_sink(batch):
            if not held:  # the first batch is held until the SIGTERM was handled
                held.append(batch)
                until(main_waits_in_flush)
                ready()  # the SIGTERM is sent now: it lands in the flush
                until(lambda: _lifecycle._SIGTERM.terminating)
            file_sink(batch)

        writer = BatchWriter(10, 60.0, holding_sink, exit_timeout=10)
        batchlog.deliver_on_sigterm()
        for i in range(30):
            writer.add(i)
        writer.flush(timeout=60)  # the SIGTERM lands in here
        """,
        tmp_path,
    )
    sigterm_ends_it(process)
    assert list(range(30)) == records_of(tmp_path)


#: For the scripts below: block the main thread in a multiprocessing semaphore (what a
#: Pool worker waits for its next task in), and have ``lose_the_interrupt`` wait, on a
#: helper thread, until the main thread sleeps in that semaphore's futex, then take a
#: SIGTERM on the helper: Python's C handler marks it, but the main thread's wait is not
#: interrupted. That is the state a SIGTERM arriving between the semaphore's try and its
#: wait leaves (CPython checks signals only when the wait is interrupted).
LOST_INTERRUPT = """
import multiprocessing

# A fork context unlinks the semaphore at once: no resource tracker to warn at the end.
semaphore = multiprocessing.get_context("fork").Semaphore(0)
main_tid = threading.get_native_id()

def main_futex_wait():
    # The address the main thread sleeps on in a futex, or None if it does not.
    with open(f"/proc/self/task/{main_tid}/syscall") as status:
        fields = status.read().split()
    return int(fields[1], 16) if fields[0] == str(FUTEX) else None

def main_sleeps_in_the_semaphore():
    return main_futex_wait() == semaphore._semlock.handle

def main_sleeps_in_a_futex():
    return main_futex_wait() is not None

def lose_the_interrupt():
    pause = threading.Event()
    for _ in range(6000):  # a minute at most
        if main_sleeps_in_the_semaphore():
            break
        pause.wait(0.01)
    else:
        os._exit(3)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

def block_the_main_thread():
    threading.Thread(target=lose_the_interrupt, daemon=True).start()
    semaphore.acquire()
    os._exit(4)  # not reached: only a signal handler gets the main thread out
"""

#: The futex syscall's number, where the scripts can see the main thread sleep in it.
FUTEX_SYSCALLS = {"x86_64": 202, "aarch64": 98}

needs_futex_view = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine not in FUTEX_SYSCALLS,
    reason="needs Linux's /proc/<pid>/task/<tid>/syscall on x86_64 or aarch64",
)


def start_lost_interrupt_script(
    body: str, out: Path, *, prelude: str = ""
) -> subprocess.Popen[str]:
    """Start LOST_INTERRUPT, then ``prelude`` and ``body`` (each dedented)."""
    futex = FUTEX_SYSCALLS.get(os.uname().machine, 0)
    script = LOST_INTERRUPT + textwrap.dedent(prelude) + textwrap.dedent(body)
    return start_script(f"FUTEX = {futex}\n" + script, out)


#: A prelude: batchlog chained to a framework's handler that ends the process its own way
#: (SystemExit), with 150 records to deliver at exit.
CHAINED_TO_AN_EXITING_FRAMEWORK = """
    def framework(signum, frame):
        write_json("framework.json", signum)
        raise SystemExit(0)

    writer = BatchWriter(1000, 60.0, file_sink)
    signal.signal(signal.SIGTERM, framework)
    batchlog.deliver_on_sigterm()
    for i in range(150):
        writer.add(i)
"""


def ended_by_the_framework(process: subprocess.Popen[str], out: Path) -> None:
    """The framework's handler ran, the process ended as it chose, everything delivered."""
    _, stderr = communicate_or_kill(process)
    assert (process.returncode, stderr) == (0, "")
    assert json.loads((out / "framework.json").read_text()) == signal.SIGTERM
    assert list(range(150)) == records_of(out)


@needs_futex_view
def test_a_sigterm_that_did_not_interrupt_the_main_threads_wait_still_delivers(tmp_path):
    """The SIGTERM reached Python's C handler, but the main thread sleeps on in a
    semaphore (a Pool worker's lost interrupt, behind ``Pool.terminate()`` hanging): the
    watch signals the main thread again, its handler delivers, and SIGTERM ends it."""
    process = start_lost_interrupt_script(
        """
        writer = BatchWriter(1000, 60.0, file_sink)
        batchlog.deliver_on_sigterm()
        for i in range(150):
            writer.add(i)
        block_the_main_thread()
        """,
        tmp_path,
    )
    _, stderr = communicate_or_kill(process)
    assert (process.returncode, stderr) == (-signal.SIGTERM, "")
    assert list(range(150)) == records_of(tmp_path)


@needs_futex_view
def test_a_lost_interrupt_after_the_standby_delivered_still_ends_the_process(tmp_path):
    """The SIGTERM landed in batchlog's code, so the standby delivered and signalled the
    main thread, which meanwhile sleeps in a semaphore and misses it: signalled again,
    it ends by SIGTERM."""
    process = start_lost_interrupt_script(
        """
        from batchlog import _lifecycle

        writer = BatchWriter(1000, 60.0, file_sink)
        batchlog.deliver_on_sigterm()
        for i in range(150):
            writer.add(i)
        handler = signal.getsignal(signal.SIGTERM)
        real_kill = signal.pthread_kill
        first = []

        def standby_signal_lost(thread_id, signum):
            if first:
                return real_kill(thread_id, signum)
            first.append(signum)  # the standby's signal: the main thread misses it
            threading.Thread(target=lose_the_interrupt, daemon=True).start()

        signal.pthread_kill = standby_signal_lost
        handler.terminating = True  # as if the handler had passed the work to the standby
        assert _lifecycle.run_on_standby(handler._deliver_then_signal)
        semaphore.acquire()
        os._exit(4)
        """,
        tmp_path,
    )
    _, stderr = communicate_or_kill(process)
    assert (process.returncode, stderr) == (-signal.SIGTERM, "")
    assert list(range(150)) == records_of(tmp_path)


@needs_futex_view
def test_a_lost_interrupt_still_reaches_a_framework_chained_to(tmp_path):
    """A framework's handler chained to runs only through batchlog's: when the SIGTERM
    did not interrupt the main thread's wait, the watch signals it again all the same.
    The framework then ends the process its way (here SystemExit), and the exit
    delivers."""
    process = start_lost_interrupt_script(
        """
        block_the_main_thread()
        """,
        tmp_path,
        prelude=CHAINED_TO_AN_EXITING_FRAMEWORK,
    )
    ended_by_the_framework(process, tmp_path)


@needs_futex_view
def test_the_watchs_signal_crossing_the_handlers_start_is_taken_by_that_start(tmp_path):
    """The watch decides to signal the main thread again, and just then the main thread
    wakes and starts the handler (injected: the watch's signal goes out only once the
    start waits for it). That signal must not call the framework's handler a second time,
    nor wait, blocked, to end the process by SIGTERM at its exit: the framework decided
    to go on, and the process ends normally."""
    process = start_lost_interrupt_script(
        """
        calls = []

        def framework(signum, frame):
            calls.append(signum)

        writer = BatchWriter(1000, 60.0, file_sink)
        signal.signal(signal.SIGTERM, framework)
        batchlog.deliver_on_sigterm()
        handler = signal.getsignal(signal.SIGTERM)
        for i in range(150):
            writer.add(i)
        real_kill = signal.pthread_kill

        def send_as_the_handler_starts(thread_id, signum):
            if threading.current_thread().name != "batchlog-sigterm-watch":
                return real_kill(thread_id, signum)
            semaphore.release()  # the main thread wakes: its handler starts, and waits
            pause = threading.Event()
            for _ in range(6000):  # a minute at most
                if handler.started and main_sleeps_in_a_futex():
                    break
                pause.wait(0.01)
            else:
                os._exit(3)
            return real_kill(thread_id, signum)

        signal.pthread_kill = send_as_the_handler_starts
        threading.Thread(target=lose_the_interrupt, daemon=True).start()
        semaphore.acquire()
        for _ in range(3):  # time for a signal that would run the handler again
            sum(range(1000))
        write_json("calls.json", [calls, sorted(signal.sigpending())])
        """,
        tmp_path,
    )
    _, stderr = communicate_or_kill(process)
    assert (process.returncode, stderr) == (0, "")
    assert json.loads((tmp_path / "calls.json").read_text()) == [[signal.SIGTERM], []]
    assert list(range(150)) == records_of(tmp_path)


@needs_futex_view
def test_the_watchs_signal_arriving_as_the_handler_blocks_sigterm_is_taken_back(tmp_path):
    """The watch's signal, sent just before the handler started, may reach the main thread
    only once the chained handler blocked SIGTERM there (injected: the watch's signal
    wakes the main thread at once but arrives right after the block). Left pending, it
    would end by SIGTERM a process whose framework decided to end normally; it is taken
    back."""
    process = start_lost_interrupt_script(
        """
        real_kill, real_sigmask = signal.pthread_kill, signal.pthread_sigmask
        late = []

        def send_late(thread_id, signum):
            if threading.current_thread().name != "batchlog-sigterm-watch":
                return real_kill(thread_id, signum)
            late.append((thread_id, signum))
            semaphore.release()  # the main thread wakes as if the signal had arrived

        def block_then_arrive(how, mask):
            previous = real_sigmask(how, mask)
            if how == signal.SIG_BLOCK and late:
                real_kill(*late.pop())
            return previous

        signal.pthread_kill, signal.pthread_sigmask = send_late, block_then_arrive
        threading.Thread(target=lose_the_interrupt, daemon=True).start()
        semaphore.acquire()
        os._exit(4)  # not reached: the framework's handler ends the process
        """,
        tmp_path,
        prelude=CHAINED_TO_AN_EXITING_FRAMEWORK,
    )
    ended_by_the_framework(process, tmp_path)


def wakeup_fds_script(replace_in_parent: bool) -> str:
    """A script: deliver_on_sigterm, fork; both report their wakeup fd's pipe and watch."""
    replace = "signal.signal(signal.SIGTERM, lambda *a: None)" if replace_in_parent else ""
    return f"""
        def wakeup_pipe():
            fd = signal.set_wakeup_fd(-1)
            if fd < 0:
                return None
            signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
            return os.fstat(fd).st_ino  # the pipe, whatever number its fd has

        def watching():
            return any(t.name == "batchlog-sigterm-watch" for t in threading.enumerate())

        batchlog.deliver_on_sigterm()
        parent = wakeup_pipe()
        {replace}
        pid = os.fork()
        if pid == 0:
            write_json("child.json", [wakeup_pipe(), watching()])
            os._exit(0)
        os.waitpid(pid, 0)
        write_json("parent.json", [parent, wakeup_pipe(), watching()])
        """


@needs_fork
@pytest.mark.parametrize("replace_in_parent", [False, True], ids=["ours", "replaced"])
def test_a_forked_child_never_writes_to_its_parents_watch(tmp_path, replace_in_parent):
    """The child inherits the wakeup fd, which is the parent's pipe: a child's SIGTERM
    read there would signal the parent. The child leaves it at the fork, and watches a
    pipe of its own only while batchlog's handler is its handler."""
    result, _ = run_logging_script(wakeup_fds_script(replace_in_parent), tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    parent, parent_after, parent_watching = json.loads((tmp_path / "parent.json").read_text())
    child, child_watching = json.loads((tmp_path / "child.json").read_text())
    assert parent is not None
    assert (parent_after, parent_watching) == (parent, True)
    assert child != parent
    if replace_in_parent:
        assert (child, child_watching) == (None, False)
    else:
        assert child is not None
        assert child_watching is True


@needs_fork
@needs_futex_view
def test_a_sigterm_a_forked_child_took_before_its_hooks_is_sent_to_it_again(tmp_path):
    """A SIGTERM that reaches a child as it starts, before CPython's after-fork code, is
    marked and then forgotten there, its byte written to the parent's socket: the parent
    must not take it for its own (it would end itself), and sends it to the child again,
    whose handler then delivers. The first after-fork hook stands for that moment."""
    result, _ = run_logging_script(
        """
        def lose_a_sigterm_in_the_child():
            # Python's C handler marks it and writes its byte to the inherited wakeup fd;
            # the no-op then takes the mark, as CPython's after-fork reset would.
            previous = signal.signal(signal.SIGTERM, lambda *args: None)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)

        os.register_at_fork(after_in_child=lose_a_sigterm_in_the_child)  # before batchlog's
        writer = BatchWriter(1000, 60.0, file_sink)
        batchlog.deliver_on_sigterm()
        writer.add("parent")
        pid = os.fork()
        if pid == 0:
            for i in range(20):
                writer.add(i)
            threading.Event().wait()  # only the SIGTERM sent again ends it
            os._exit(4)
        _, status = os.waitpid(pid, 0)
        write_json("child.json", os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1)
        """,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads((tmp_path / "child.json").read_text()) == signal.SIGTERM
    delivered = sorted(
        ([record for record, _ in pairs] for pairs in deliveries(tmp_path).values()), key=len
    )
    assert delivered == [["parent"], list(range(20))]


def test_watch_false_leaves_the_wakeup_fd_alone(tmp_path):
    """deliver_on_sigterm(watch=False): the handler, but no wakeup fd and no thread."""
    result, _ = run_logging_script(
        """
        batchlog.deliver_on_sigterm(watch=False)
        fd = signal.set_wakeup_fd(-1)
        watching = any(t.name == "batchlog-sigterm-watch" for t in threading.enumerate())
        write_json("state.json", [fd, watching, signal.getsignal(signal.SIGTERM) is not None])
        """,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads((tmp_path / "state.json").read_text()) == [-1, False, True]


def test_deliver_on_sigterm_watch_must_be_a_bool():
    with pytest.raises(TypeError, match="watch must be True or False, not 'yes'"):
        batchlog.deliver_on_sigterm(watch="yes")  # type: ignore[arg-type]


@pytest.mark.skipif(sys.platform != "linux", reason="the watch is Linux-only")
def test_a_forkserver_worker_with_a_preloaded_handler_still_watches(tmp_path):
    """The fork server imports the app (which turns the handler on) and then takes the
    wakeup fd for itself; its children clear it. The initializer's call must still
    start the worker's watch, though the handler is in place already."""
    (tmp_path / "preloaded_app.py").write_text(
        textwrap.dedent(
            """
            import signal, threading
            import batchlog

            batchlog.deliver_on_sigterm()

            def state(_):
                fd = signal.set_wakeup_fd(-1)
                signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
                names = [t.name for t in threading.enumerate()]
                return [fd >= 0, "batchlog-sigterm-watch" in names]
            """
        ),
        encoding="utf-8",
    )
    result, _ = run_logging_script(
        f"""
        import multiprocessing
        sys.path.insert(0, {str(tmp_path)!r})
        os.environ["PYTHONPATH"] = os.pathsep.join([{str(tmp_path)!r}, *sys.path])
        import preloaded_app

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["preloaded_app"])
        with context.Pool(1, initializer=batchlog.deliver_on_sigterm) as pool:
            write_json("worker.json", pool.map(preloaded_app.state, [0]))
        """,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads((tmp_path / "worker.json").read_text()) == [[True, True]]


def test_the_watch_signals_the_real_main_thread_after_gevent_patches(tmp_path):
    """Patched after the handler, ``threading.main_thread().ident`` names the main
    greenlet, not a thread: signalling it would be undefined. The watch and the standby
    signal the main thread by the id taken on it before the patching."""
    pytest.importorskip("gevent")
    if not sys.platform.startswith("linux"):
        pytest.skip("the watch is Linux-only")
    result, _ = run_logging_script(
        """
        import gevent.monkey
        from batchlog import _lifecycle

        batchlog.deliver_on_sigterm()
        real = threading.get_ident()
        gevent.monkey.patch_all()
        write_json("ids.json", [
            _lifecycle._WATCH.main_ident() == real,
            threading.main_thread().ident == real,
        ])
        """,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads((tmp_path / "ids.json").read_text()) == [True, False]


def test_deliver_on_sigterm_can_be_called_under_eventlet(tmp_path):
    """eventlet's patched threading gives the main thread another object: the check that
    it is Python's main thread is signal.signal's own, so the call works there."""
    pytest.importorskip("eventlet")
    result, _ = run_logging_script(
        """
        import warnings
        warnings.simplefilter("ignore")  # eventlet's own deprecation warning
        import eventlet
        eventlet.monkey_patch()
        batchlog.deliver_on_sigterm()
        write_json("installed.json", type(signal.getsignal(signal.SIGTERM)).__name__)
        """,
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads((tmp_path / "installed.json").read_text()) == "_SigtermHandler"
