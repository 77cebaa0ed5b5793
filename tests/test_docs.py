"""The code in the documentation runs, and the site builds with warnings as errors.

Every ```` ```python ```` block of ``docs/*.md`` and ``README.md`` is run **on its own**, as
a reader who copies that one block into a file would run it: in a fresh namespace whose
``__name__`` is ``"__main__"``, in its own temporary working directory (so the files it
writes, such as ``app-logs.sqlite3``, vanish with it). A block may not lean on the names,
imports or files of the blocks before it; each block is one test, named by its page and
line (``sinks.md:123``), so a failure points at the block.

A block whose previous non-blank line is ``<!-- run-as-script -->`` changes the whole
process (it installs a signal handler, or starts a ``multiprocessing`` pool that imports
``__main__`` by path, or configures a library with global state): it is written to a file
and run as ``python snippet.py`` in a child interpreter, in its own temporary directory, and
must exit with status 0 and no failure report on stderr. A block whose previous non-blank
line is ``<!-- not-tested -->`` needs a server or a service that the tests do not have: it
is not run, but it must still compile.

After each block every writer, handler and processor it made is closed, handlers it
attached anywhere are detached, the logging configuration and structlog's are put back, and
the test fails if a thread the block started is still running or if a sink or handler
reported a failure on stderr. A block needing a missing optional integration is skipped.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import WAIT

from batchlog import BatchingHandler, BatchingProcessor, BatchWriter, _lifecycle

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), REPO_ROOT / "README.md"]

#: The marker, on the line before a block, of code that needs a server or a service.
NOT_TESTED = "<!-- not-tested -->"
#: The marker, on the line before a block, of code that changes the whole process.
RUN_AS_SCRIPT = "<!-- run-as-script -->"
#: Optional integrations: a block whose code needs a missing one is skipped, not failed.
OPTIONAL_MODULES = {
    "structlog",
    "prometheus_client",
    "opentelemetry",
    "httpx",
    "tenacity",
    "loguru",
}

_FENCE_START = re.compile(r"^(?P<indent>[ \t]*)```python\s*$")
_FENCE_END = re.compile(r"^[ \t]*```\s*$")
#: A pymdownx.snippets include line: the site shows that file (from the repository root).
_INCLUDE = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', flags=re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One ```` ```python ```` block: its code and the line of the page it starts on."""

    code: str
    line: int  # 1-based line of the first line of code
    tested: bool
    as_script: bool = False


def python_blocks(page: Path) -> list[Block]:
    """Return every ```` ```python ```` block of ``page``, dedented, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    previous = ""  # the last non-blank line before the current one
    index = 0
    while index < len(lines):
        match = _FENCE_START.match(lines[index])
        if match is None:
            if lines[index].strip():
                previous = lines[index].strip()
            index += 1
            continue
        indent = len(match.group("indent"))
        start = index + 1
        end = start
        while end < len(lines) and not _FENCE_END.match(lines[end]):
            end += 1
        code = "\n".join(line[indent:] for line in lines[start:end]) + "\n"
        # The code is what the site shows: an included file, not the include line.
        code = _INCLUDE.sub(
            lambda include: (REPO_ROOT / include.group("path")).read_text(encoding="utf-8"), code
        )
        blocks.append(
            Block(
                code, start + 1, tested=previous != NOT_TESTED, as_script=previous == RUN_AS_SCRIPT
            )
        )
        previous = "```"
        index = end + 1
    return blocks


def _page_id(page: Path) -> str:
    return page.name if page.parent == DOCS else page.relative_to(REPO_ROOT).as_posix()


#: Every block of every page, with the page it is on.
BLOCKS = [(page, block) for page in PAGES for block in python_blocks(page)]
TESTED_BLOCKS = [(page, block) for page, block in BLOCKS if block.tested and not block.as_script]
SCRIPT_BLOCKS = [(page, block) for page, block in BLOCKS if block.as_script]
UNTESTED_BLOCKS = [(page, block) for page, block in BLOCKS if not block.tested]


def _block_id(page: Path, block: Block) -> str:
    return f"{_page_id(page)}:{block.line}"


def _compiled(page: Path, block: Block) -> types.CodeType:
    """Compile the block so that tracebacks point at its lines of the page."""
    # Padding puts the code at its own line numbers: tracebacks point into the page.
    source = "\n" * (block.line - 1) + block.code
    return compile(source, str(page), "exec")


# --------------------------------------------------------------------------- clean-up


@dataclass
class _LoggerState:
    level: int
    propagate: bool
    disabled: bool
    handlers: list[logging.Handler]
    filters: list[Any]


def _all_loggers() -> dict[str, logging.Logger]:
    loggers = {
        name: logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    loggers[""] = logging.getLogger()
    return loggers


def _logger_state(logger: logging.Logger) -> _LoggerState:
    return _LoggerState(
        logger.level, logger.propagate, logger.disabled, logger.handlers[:], logger.filters[:]
    )


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Put back every logger, the named handlers and structlog's configuration.

    Handlers made meanwhile (in code or by ``dictConfig``) are flushed and closed the way
    ``logging.shutdown()`` does at exit, which delivers their records.
    """
    loggers = {name: _logger_state(logger) for name, logger in _all_loggers().items()}
    handler_list = logging._handlerList[:]  # type: ignore[attr-defined]
    named_handlers = dict(logging._handlers)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        # dictConfig shuts down and forgets every handler: close the block's, keep the rest.
        new_refs = [ref for ref in logging._handlerList if ref not in handler_list]  # type: ignore[attr-defined]
        logging.shutdown(handlerList=new_refs)
        logging._handlerList[:] = handler_list  # type: ignore[attr-defined]
        for name, logger in _all_loggers().items():
            state = loggers.get(name) or _LoggerState(logging.NOTSET, True, False, [], [])
            logger.setLevel(state.level)
            logger.propagate = state.propagate
            logger.disabled = state.disabled
            logger.handlers[:] = state.handlers
            logger.filters[:] = state.filters
        logging._handlers.clear()  # type: ignore[attr-defined]
        logging._handlers.update(named_handlers)  # type: ignore[attr-defined]
        if "structlog" in sys.modules:
            import structlog

            structlog.reset_defaults()
            structlog.contextvars.clear_contextvars()


def _close_namespace_objects(namespace: dict[str, Any]) -> list[str]:
    """Close the handlers, processors and writers the block left in its namespace."""
    unclosed = []
    for name, value in list(namespace.items()):
        if isinstance(value, BatchingHandler):
            value.close()
            if not value.writer.close(timeout=WAIT):
                unclosed.append(name)
        elif isinstance(value, (BatchingProcessor, BatchWriter)) and not value.close(timeout=WAIT):
            unclosed.append(name)
    return unclosed


def _close_remaining_writers(before: set[int]) -> list[str]:
    """Close every writer made since ``before`` (ids) that nothing above closed."""
    return [
        writer.name
        for writer in _lifecycle.live()
        if id(writer) not in before and not writer.close(timeout=WAIT)  # type: ignore[attr-defined]
    ]


def _threads_left(before: set[threading.Thread]) -> list[str]:
    """Join the threads started since ``before``; return the names of those still alive.

    batchlog's standby thread is not the block's: one per process, started with its first
    writer, it lives as long as the process (it delivers at exit).
    """
    left = []
    for thread in threading.enumerate():
        if thread.name == "batchlog-standby":
            continue
        if thread not in before and thread is not threading.current_thread():
            thread.join(WAIT)
            if thread.is_alive():
                left.append(thread.name)
    return left


# --------------------------------------------------------------------------- the tests


def test_the_docs_have_code_to_run():
    """The collector finds the blocks: most pages have tested code, some have untested."""
    assert len({page for page, _ in TESTED_BLOCKS}) >= 8
    assert len(TESTED_BLOCKS) >= 40
    assert SCRIPT_BLOCKS != []
    assert UNTESTED_BLOCKS != []


def run_block(page: Path, block: Block) -> list[str]:
    """Run one block in a fresh ``__main__`` namespace; return the names that did not close."""
    code = _compiled(page, block)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        try:
            exec(code, namespace)  # noqa: S102
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] in OPTIONAL_MODULES:
                pytest.skip(f"needs {exc.name}")
            raise
    finally:
        unclosed = _close_namespace_objects(namespace)
        namespace.clear()
    return unclosed


#: What batchlog and logging write to stderr when a sink or a handler failed unexpectedly.
#: A block that shows a failure on purpose routes it elsewhere (``on_error``, a logger).
FAILURE_REPORTS = ("the sink raised on a batch", "flush_fn raised on a batch", "Logging error")


@pytest.mark.parametrize(
    ("page", "block"), TESTED_BLOCKS, ids=[_block_id(*item) for item in TESTED_BLOCKS]
)
def test_block_runs_on_its_own(page, block, tmp_path, monkeypatch, capfd):
    """The block runs alone, as copied into a file, and leaves no thread or open writer.

    No sink of the block fails unless the block says so: a sink raising ``NameError`` on a
    placeholder would otherwise pass unnoticed on the worker thread.
    """
    monkeypatch.chdir(tmp_path)
    threads_before = set(threading.enumerate())
    writers_before = {id(writer) for writer in _lifecycle.live()}
    try:
        with restored_logging():
            unclosed = run_block(page, block)
    finally:
        unclosed_writers = _close_remaining_writers(writers_before)
        threads_left = _threads_left(threads_before)
    assert unclosed == [], f"did not close within {WAIT} s"
    assert unclosed_writers == [], f"did not close within {WAIT} s"
    assert threads_left == []
    stderr = capfd.readouterr().err
    assert not [report for report in FAILURE_REPORTS if report in stderr], stderr


_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '(?P<name>[\w.]+)'")


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("page", "block"), SCRIPT_BLOCKS, ids=[_block_id(*item) for item in SCRIPT_BLOCKS]
)
def test_script_block_runs_in_a_child(page, block, tmp_path):
    """A block that changes the whole process runs as a script and exits cleanly."""
    _compiled(page, block)
    (tmp_path / "snippet.py").write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "snippet.py"],
        cwd=tmp_path,
        timeout=120,  # a hang fails the test instead of eating CI time; never a speed check
        capture_output=True,
        text=True,
        check=False,
    )
    missing = _MISSING_MODULE.search(result.stderr)
    needed = "" if missing is None else missing.group("name")
    if result.returncode != 0 and needed.partition(".")[0] in OPTIONAL_MODULES:
        pytest.skip(f"needs {needed}")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert not [report for report in FAILURE_REPORTS if report in result.stderr], result.stderr


@pytest.mark.parametrize(
    ("page", "block"), UNTESTED_BLOCKS, ids=[_block_id(*item) for item in UNTESTED_BLOCKS]
)
def test_untested_block_compiles(page, block):
    """A block marked not-tested (it needs a server) is at least valid Python."""
    _compiled(page, block)


def _all_names(module_path: Path) -> list[str]:
    """Return the ``__all__`` of a module's source, without importing it."""
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return [ast.literal_eval(item) for item in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError(f"{module_path} has no __all__")


@pytest.mark.parametrize(
    ("module", "path"),
    [
        ("batchlog", "batchlog/__init__.py"),
        ("batchlog.sinks", "batchlog/sinks/__init__.py"),
        ("batchlog.testing", "batchlog/testing.py"),
        ("batchlog.prometheus", "batchlog/prometheus.py"),
        ("batchlog.otel", "batchlog/otel.py"),
    ],
)
def test_api_reference_lists_every_public_name(module, path):
    """docs/api.md documents each name of the module's ``__all__`` (or the whole module)."""
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: ([\w.]+)", api, flags=re.MULTILINE))
    missing = [
        name
        for name in _all_names(REPO_ROOT / path)
        if name != "__version__"
        and f"{module}.{name}" not in documented
        and f"`{module}.{name}`" not in api
    ]
    assert missing == []


@pytest.mark.subprocess
def test_mkdocs_builds_strictly(tmp_path):
    """``mkdocs build --strict`` succeeds: no broken link, reference or snippet."""
    for needed in ("mkdocs", "mkdocstrings", "material"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
