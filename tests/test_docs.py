"""The code in the documentation runs, and the site builds with warnings as errors.

Every ```` ```python ```` block of ``docs/*.md`` and ``README.md`` is run, except a block
whose previous non-blank line is ``<!-- not-tested -->`` (it needs a server or a service
that the tests do not have). Each page is one test: its blocks run **in order, in one
fresh namespace**, so a block may use the names, imports and files of the blocks before it
on the same page, as a reader following the page would; pages never share anything.
Each page runs in its own temporary working directory, so the files its code writes
(``app-logs.sqlite3``, ``events.jsonl``) vanish with it.

Afterwards every writer, handler and processor the page made is closed, handlers the page
attached anywhere are detached, the logging configuration and structlog's are put back,
and the test fails if a thread the page started is still running.
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
#: Optional integrations: a page whose code needs a missing one is skipped, not failed.
OPTIONAL_MODULES = {"structlog", "prometheus_client", "opentelemetry", "httpx", "tenacity"}

_FENCE_START = re.compile(r"^(?P<indent>[ \t]*)```python\s*$")
_FENCE_END = re.compile(r"^[ \t]*```\s*$")


@dataclass(frozen=True)
class Block:
    """One ```` ```python ```` block: its code and the line of the page it starts on."""

    code: str
    line: int  # 1-based line of the first line of code
    tested: bool


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
        blocks.append(Block(code, start + 1, tested=previous != NOT_TESTED))
        previous = "```"
        index = end + 1
    return blocks


def _page_id(page: Path) -> str:
    return page.name if page.parent == DOCS else page.relative_to(REPO_ROOT).as_posix()


TESTED_PAGES = [page for page in PAGES if any(block.tested for block in python_blocks(page))]


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
        # dictConfig shuts down and forgets every handler: close the page's, keep the rest.
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
    """Close the handlers, processors and writers the page left in its namespace."""
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

    batchlog's standby thread is not the page's: one per process, started with its first
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
    assert len(TESTED_PAGES) >= 8
    assert any(not block.tested for page in PAGES for block in python_blocks(page))


def run_page(page: Path) -> list[str]:
    """Run the page's tested blocks in order in one namespace; return what did not close."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        for block in python_blocks(page):
            if not block.tested:
                continue
            # Padding puts the code at its own line numbers: tracebacks point into the page.
            source = "\n" * (block.line - 1) + block.code
            try:
                exec(compile(source, str(page), "exec"), namespace)  # noqa: S102
            except ModuleNotFoundError as exc:
                if (exc.name or "").partition(".")[0] in OPTIONAL_MODULES:
                    pytest.skip(f"needs {exc.name} (line {block.line})")
                raise
    finally:
        unclosed = _close_namespace_objects(namespace)
        namespace.clear()
    return unclosed


#: What batchlog and logging write to stderr when a sink or a handler failed unexpectedly.
#: A page that shows a failure on purpose routes it elsewhere (``on_error``, a logger).
FAILURE_REPORTS = ("the sink raised on a batch", "flush_fn raised on a batch", "Logging error")


@pytest.mark.parametrize("page", TESTED_PAGES, ids=[_page_id(page) for page in TESTED_PAGES])
def test_page_code_runs(page, tmp_path, monkeypatch, capfd):
    """Every tested block of the page runs, in order, in one namespace, leaving no thread.

    No sink of the page fails unless the page says so: a sink raising ``NameError`` on a
    placeholder would otherwise pass unnoticed on the worker thread.
    """
    monkeypatch.chdir(tmp_path)
    threads_before = set(threading.enumerate())
    writers_before = {id(writer) for writer in _lifecycle.live()}
    try:
        with restored_logging():
            unclosed = run_page(page)
    finally:
        unclosed_writers = _close_remaining_writers(writers_before)
        threads_left = _threads_left(threads_before)
    assert unclosed == [], f"did not close within {WAIT} s"
    assert unclosed_writers == [], f"did not close within {WAIT} s"
    assert threads_left == []
    stderr = capfd.readouterr().err
    assert not [report for report in FAILURE_REPORTS if report in stderr], stderr


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
