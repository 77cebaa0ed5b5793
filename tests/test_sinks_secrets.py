"""No secret of an HTTPSink appears in anything its process writes.

A child process logs httpx and httpcore at DEBUG to a file and to stderr, and sends with a
token in the URL's query, a password in its userinfo and tokens in headers to a local
server that fails some requests (so retries, errors, reports and dead letters happen).
Then everything the process wrote is searched for each secret: stdout, stderr, the log
file and the dead-letter files.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")
pytest.importorskip("tenacity")

PASSWORD = "pw-hunter2-secret"  # noqa: S105 -- fake secrets the test looks for
QUERY_TOKEN = "qt-s3cr3t-query"  # noqa: S105
HEADER_TOKEN = "ht-s3cr3t-bearer"  # noqa: S105
API_KEY = "ak-s3cr3t-apikey"
BASIC = base64.b64encode(f"bob:{PASSWORD}".encode()).decode("ascii")
SECRETS = {
    "password": PASSWORD,
    "query token": QUERY_TOKEN,
    "bearer token": HEADER_TOKEN,
    "api key": API_KEY,
    "basic credentials": BASIC,
}

# The child: A is a FallbackSink whose failures are logged (with tracebacks) to the log
# file and stderr; B is a plain writer whose failure the writer reports on stderr; C is a
# FallbackSink without a logger (its report goes to stderr) whose server is down.
CHILD = textwrap.dedent(
    """
    import json
    import logging
    import sys

    from batchlog import BatchingHandler, BatchWriter
    from batchlog.sinks import FallbackSink, HTTPSink

    base, closed_base, log_path, dead_a, dead_c = sys.argv[1:6]
    password, query_token, header_token, api_key = sys.argv[6:10]

    formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in (logging.FileHandler(log_path), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    logging.getLogger("httpcore").setLevel(logging.DEBUG)

    def url(base, path):
        return base.replace("://", f"://bob:{password}@") + f"{path}?token={query_token}&x=1"

    def no_sleep(seconds):
        pass

    headers = {"Authorization": f"Bearer {header_token}", "X-Api-Key": api_key}
    options = {"max_attempts": 2, "backoff_initial": 0, "backoff_jitter": 0, "sleep": no_sleep}
    sink_a = HTTPSink(url(base, "/a"), headers=headers, **options)
    print("repr:", repr(sink_a), "url:", sink_a.url)
    fallback_a = FallbackSink(sink_a, dead_a, logger="app.fallback")
    handler_a = BatchingHandler(fallback_a, capacity=2, flush_interval=60)
    app = logging.getLogger("app.orders")
    app.propagate = False
    app.addHandler(handler_a)
    app.warning("first")
    app.warning("second")  # a full batch: 503, then 401 -> dead-lettered
    handler_a.flush()
    app.warning("third")
    app.warning("fourth")  # delivered
    handler_a.flush()

    sink_b = HTTPSink(url(base, "/b"), **options)  # Basic auth from the URL
    writer_b = BatchWriter(10, 60, sink_b, name="writer-b")
    writer_b.add({"event": "lost", "level": "error"})
    writer_b.flush(30)  # 503 twice: the writer reports the DeliveryError on stderr

    sink_c = HTTPSink(url(closed_base, "/c"), headers=headers, **options)
    fallback_c = FallbackSink(sink_c, dead_c)
    fallback_c([{"event": "unreachable", "level": "error"}])  # ConnectError, dead-lettered

    print(json.dumps({
        "a": handler_a.metrics.as_dict(),
        "b": writer_b.metrics.as_dict(),
        "dead_a": fallback_a.dead_lettered_records,
        "dead_c": fallback_c.dead_lettered_records,
    }))
    handler_a.close()
    writer_b.close(30)
    fallback_c.close()
    logging.shutdown()
    """
)


class EchoServer:
    """Answers from a list of statuses (then 200), echoing the credentials it was sent."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server._lock:
                    server.received.append({"path": self.path, "headers": dict(self.headers)})
                    status = server.statuses.pop(0) if server.statuses else 200
                echo = (
                    f"you sent {self.headers.get('Authorization')} "
                    f"{self.headers.get('X-Api-Key')} to {self.path}"
                )
                content = echo.encode() if status >= 400 else b"{}"
                self.send_response(status)
                self.send_header("X-Echo", echo)  # httpcore logs response headers at DEBUG
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    # A: 503 then 401 (dead-lettered), then 200; B: 503 twice (failed).
    server = EchoServer([503, 401, 200, 503, 503])
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    server.thread.join(10)


def closed_base() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.subprocess
def test_no_secret_in_anything_the_process_wrote(echo_server: EchoServer, tmp_path: Path) -> None:
    """stdout, stderr, the DEBUG log file and the dead-letter files hold no secret."""
    log_path, dead_a, dead_c = (
        tmp_path / "app.log",
        tmp_path / "dead-a.jsonl",
        tmp_path / "dead-c.jsonl",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            echo_server.base,
            closed_base(),
            str(log_path),
            str(dead_a),
            str(dead_c),
            PASSWORD,
            QUERY_TOKEN,
            HEADER_TOKEN,
            API_KEY,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "log file": log_path.read_text(encoding="utf-8"),
        "dead letters of A": dead_a.read_text(encoding="utf-8"),
        "dead letters of C": dead_c.read_text(encoding="utf-8"),
    }
    leaks = [
        f"{what} in {where}"
        for where, text in written.items()
        for what, secret in SECRETS.items()
        if secret in text
    ]
    assert leaks == []

    # The secrets really were sent, and every path that writes really ran.
    sent = echo_server.received
    assert [request["path"].split("?")[0] for request in sent] == ["/a", "/a", "/a", "/b", "/b"]
    assert all(f"token={QUERY_TOKEN}" in request["path"] for request in sent)
    assert sent[0]["headers"]["Authorization"] == f"Bearer {HEADER_TOKEN}"
    assert sent[0]["headers"]["X-Api-Key"] == API_KEY
    assert sent[3]["headers"]["Authorization"] == f"Basic {BASIC}"
    log = written["log file"]
    assert "HTTP Request: POST http://127.0.0.1" in log
    assert "token=***&x=***" in log
    assert "httpcore.http11 DEBUG receive_response_headers.complete" in log
    assert "X-Echo" in log
    assert "httpcore.connection DEBUG connect_tcp.failed" in log
    assert "app.fallback ERROR" in log
    assert "HTTP 401" in log
    assert "Traceback" in log
    assert "DeliveryError" in written["stderr"]
    assert "writer-b" in written["stderr"]
    assert "ConnectError" in written["stderr"]
    assert "repr: HTTPSink('http://bob:***@127.0.0.1" in written["stdout"]
    counts = json.loads(written["stdout"].splitlines()[-1])
    assert (counts["a"]["records_processed"], counts["b"]["records_failed"]) == (4, 1)
    assert (counts["dead_a"], counts["dead_c"]) == (2, 1)
    dead = [json.loads(line) for line in written["dead letters of A"].splitlines()]
    assert [entry["record"]["message"] for entry in dead] == ["first", "second"]
    assert all("HTTP 401" in entry["error"] for entry in dead)
    assert all("you sent ***" in entry["error"] for entry in dead)
