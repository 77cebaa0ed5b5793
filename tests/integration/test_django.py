"""Records logged in a Django view reach the sink exactly once.

The project is one file, ``djproject.py`` (written into ``tmp_path``): settings whose
``LOGGING`` gives the ``app`` logger a ``BatchingHandler`` with an ``SQLiteSink``, one URL
(``/log/<n>``) and its view, which logs ``"record n"``. ``manage.py`` next to it runs it.
With ``flush_interval=5.0`` and a partial last batch, only shutdown handling delivers the
rest: at a normal exit, and when ``runserver`` is stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import (
    Ended,
    assert_exactly_once,
    child_env,
    finish,
    free_port,
    report_row,
    start,
    wait_for_port,
)

pytest.importorskip("django")

CAPACITY = 64
#: Requests per scenario; not a multiple of CAPACITY, so the last batch is partial.
REQUESTS = 200

PROJECT = f'''\
"""A single-file Django project: settings, one URL and its view, which logs a record."""
import logging
import os

from django.http import HttpResponse
from django.urls import path

DEBUG = False
SECRET_KEY = "batchlog-integration-tests-only"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = __name__
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {{}}
USE_TZ = True

_HANDLER_FACTORY = os.environ.get("BATCHLOG_TEST_HANDLER_KEY", "()")
LOGGING = {{
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {{
        "batched": {{
            _HANDLER_FACTORY: "batchlog.BatchingHandler",
            "sink": {{"()": "batchlog.sinks.SQLiteSink", "path": os.environ["BATCHLOG_TEST_DB"]}},
            "capacity": {CAPACITY},
            "flush_interval": 5.0,
        }},
    }},
    "loggers": {{
        "app": {{"handlers": ["batched"], "level": "INFO", "propagate": False}},
        "django.server": {{"level": "WARNING"}},  # no request lines filling the pipe
    }},
}}

log = logging.getLogger("app")


def record(request, n):
    log.info("record %d", n)
    return HttpResponse("logged")


urlpatterns = [path("log/<int:n>", record)]
'''

#: The same project without batchlog in LOGGING (the handler is attached in code).
EARLY_SETTINGS = '''\
"""djproject, with LOGGING that leaves the app logger alone."""
from djproject import *  # noqa: F403

LOGGING = {"version": 1, "disable_existing_loggers": False}
'''

MANAGE = '''\
"""Django's command-line utility for this project."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
'''

TEST_CLIENT = f'''\
"""Set Django up, request /log/n through the test client, then end normally."""
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject")
django.setup()
from django.test import Client

client = Client()
for n in range({REQUESTS}):
    response = client.get(f"/log/{{n}}")
    assert response.status_code == 200, response
print("shutdown-begins", time.time(), flush=True)
'''

EARLY_HANDLER = f'''\
"""A handler attached in code before django.setup(), whose dictConfig closes it."""
import logging
import os
import time

import django

import batchlog
from batchlog.sinks import SQLiteSink

handler = batchlog.BatchingHandler(
    SQLiteSink(os.environ["BATCHLOG_TEST_DB"]), capacity={CAPACITY}, flush_interval=5.0
)
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(handler)
HALF = {REQUESTS // 2}
for n in range(HALF):
    log.info("record %d", n)

os.environ["DJANGO_SETTINGS_MODULE"] = "djearly"
django.setup()  # dictConfig closes every existing handler, this one too, and keeps it attached
assert log.handlers == [handler], log.handlers
from django.test import Client

client = Client()
for n in range(HALF, {REQUESTS}):
    response = client.get(f"/log/{{n}}")
    assert response.status_code == 200, response
print("shutdown-begins", time.time(), flush=True)
'''


def write_project(tmp_path: Path) -> None:
    """Write the project, its early-handler variant and manage.py into ``tmp_path``."""
    (tmp_path / "djproject.py").write_text(textwrap.dedent(PROJECT))
    (tmp_path / "djearly.py").write_text(textwrap.dedent(EARLY_SETTINGS))
    (tmp_path / "manage.py").write_text(textwrap.dedent(MANAGE))


def shutdown_seconds(ended: Ended, ended_at: float) -> float:
    """Seconds from the child's "shutdown-begins" line to its end (else its whole run)."""
    for line in ended.stdout.splitlines():
        if line.startswith("shutdown-begins "):
            return ended_at - float(line.split()[1])
    return ended.seconds


def run_script(tmp_path: Path, source: str, **env: str) -> tuple[Ended, float]:
    """Write ``source`` as a script in ``tmp_path``, run it to its end; return shutdown time."""
    write_project(tmp_path)
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(source))
    started = time.monotonic()
    process = start([sys.executable, str(script)], child_env(tmp_path, **env), tmp_path)
    ended = finish(process, started)
    return ended, shutdown_seconds(ended, time.time())


@contextlib.contextmanager
def killed_at_end(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Yield ``process``; if it is still running afterwards, kill its group and reap it."""
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def check(deployment: str, db: Path, ended: Ended, seconds: float) -> None:
    """Report the row, then require a clean exit and every record exactly once."""
    report_row(deployment, REQUESTS, db, seconds)
    assert ended.returncode == 0, f"exit {ended.returncode}\n{ended.stdout}\n{ended.stderr}"
    assert_exactly_once(db, range(REQUESTS), ended)


@pytest.mark.parametrize("key", ["()", "class"])
def test_test_client_then_normal_exit(tmp_path: Path, db: Path, key: str) -> None:
    """Django's test client in a script that ends normally: every view's record, once."""
    ended, seconds = run_script(tmp_path, TEST_CLIENT, BATCHLOG_TEST_HANDLER_KEY=key)
    deployment = f'Django {REQUESTS} test-client requests, normal exit (LOGGING "{key}")'
    check(deployment, db, ended, seconds)


def test_runserver_stopped_with_ctrl_c(tmp_path: Path, db: Path) -> None:
    """`manage.py runserver --noreload` stopped with SIGINT: every request's record, once."""
    httpx = pytest.importorskip("httpx")
    write_project(tmp_path)
    port = free_port()
    args = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    started = time.monotonic()
    with killed_at_end(start(args, child_env(tmp_path), tmp_path)) as process:
        wait_for_port(port, process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            for n in range(REQUESTS):
                response = client.get(f"/log/{n}")
                assert response.status_code == 200, response.text
        interrupted = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal signals the group
        ended = finish(process, started)
    seconds = ended.seconds - (interrupted - started)
    check("Django runserver --noreload, SIGINT (Ctrl-C)", db, ended, seconds)


def test_handler_attached_before_setup_survives_dictconfig(tmp_path: Path, db: Path) -> None:
    """A handler that django.setup()'s dictConfig closed while attached keeps delivering."""
    ended, seconds = run_script(tmp_path, EARLY_HANDLER)
    deployment = "Django: handler attached in code before django.setup(), closed by dictConfig"
    check(deployment, db, ended, seconds)
