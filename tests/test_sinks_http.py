"""HTTPSink against a real HTTP server on 127.0.0.1: batching, gzip, retries, secrets."""

from __future__ import annotations

import email.utils
import gc
import gzip
import json
import logging
import logging.config
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from batchlog import BatchlogError, BatchWriter, FailedRecordsError
from batchlog.sinks import (
    BulkEncoder,
    FallbackSink,
    HTTPSink,
    JSONEncoder,
    LokiEncoder,
    NDJSONEncoder,
    OTLPEncoder,
    replay,
)
from batchlog.sinks.http import DeliveryError, retry_after_seconds

TOKEN = "s3cr3t-t0ken-value"  # noqa: S105 -- a fake token the tests look for
PASSWORD = "hunter2-pass"  # noqa: S105 -- a fake password the tests look for


@dataclass
class Request:
    """One request the server received; ``body`` is decompressed."""

    path: str
    headers: dict[str, str]
    raw_body: bytes
    body: bytes


@dataclass
class Reply:
    """What the server answers: status, headers, body; ``echo`` appends the request's auth."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    echo_auth: bool = False
    delay: float = 0.0


class Server:
    """A threaded HTTP server that records requests and answers from a queue of replies."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls else "http"
        self.requests: list[Request] = []
        self.replies: list[Reply] = []
        self.release = threading.Event()  # ends every reply delay (set at teardown)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as httpx's pool expects
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                is_gzip = self.headers.get("Content-Encoding") == "gzip"
                body = gzip.decompress(raw) if is_gzip else raw
                with server._lock:
                    server.requests.append(Request(self.path, dict(self.headers), raw, body))
                    reply = server.replies.pop(0) if server.replies else Reply()
                if reply.delay:
                    server.release.wait(reply.delay)
                content = reply.body
                if reply.echo_auth:
                    content += f" you sent {self.headers.get('Authorization')}".encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep stderr for the sink's reports

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        # A client that timed out and hung up is expected here, not an error to print.
        self.httpd.handle_error = lambda request, client_address: None
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, path: str = "/ingest") -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def answer(self, *replies: int | Reply) -> None:
        """Queue replies (a status or a Reply); after them every request gets 200."""
        self.replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def lines(self, index: int = 0) -> list[dict[str, Any]]:
        """The NDJSON lines of request ``index``, parsed."""
        return [json.loads(line) for line in self.requests[index].body.splitlines()]


def run(running: Server) -> Iterator[Server]:
    running.thread.start()
    yield running
    running.release.set()
    running.httpd.shutdown()
    running.httpd.server_close()
    running.thread.join(10)


@pytest.fixture
def server() -> Iterator[Server]:
    """A running server on a free port of 127.0.0.1, shut down at teardown."""
    yield from run(Server())


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (its key beside it as key.pem)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return tmp_path / "cert.pem"


@pytest.fixture
def tls_server(certificate: Path) -> Iterator[Server]:
    """A running HTTPS server whose certificate no default trust store accepts."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, certificate.with_name("key.pem"))
    yield from run(Server(context))


@pytest.fixture
def make_sink(sleeps: list[float]) -> Iterator[Callable[..., HTTPSink]]:
    """Return ``make_sink(url, **kwargs)``; every sink is closed at teardown."""
    made: list[HTTPSink] = []

    def make(url: str, **kwargs: Any) -> HTTPSink:
        kwargs.setdefault("sleep", sleeps.append)
        sink = HTTPSink(url, **kwargs)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def events(count: int, size: int = 10) -> list[dict[str, Any]]:
    return [{"event": f"event {n} " + "x" * size, "level": "info", "n": n} for n in range(count)]


def closed_port_url() -> str:
    """A URL on a port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/ingest"


# --------------------------------------------------------------------------- one batch


def test_one_post_per_batch(server: Server, make_sink: Callable[..., HTTPSink]) -> None:
    """A batch is one POST carrying every record, in order, as NDJSON by default."""
    sink = make_sink(server.url())
    sink(events(3))
    sink(events(2))
    assert [len(server.lines(0)), len(server.lines(1))] == [3, 2]
    assert [line["message"] for line in server.lines(0)] == [e["event"] for e in events(3)]
    request = server.requests[0]
    assert request.path == "/ingest"
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert request.headers["User-Agent"].startswith("batchlog/")


def test_empty_batch_sends_nothing(server: Server, make_sink: Callable[..., HTTPSink]) -> None:
    """An empty batch makes no request."""
    make_sink(server.url())([])
    assert server.requests == []


def test_body_is_gzipped_by_default(server: Server, make_sink: Callable[..., HTTPSink]) -> None:
    """Bodies are gzip-compressed and say so in Content-Encoding."""
    make_sink(server.url())(events(5))
    request = server.requests[0]
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.raw_body[:2] == b"\x1f\x8b"
    assert len(server.lines()) == 5


def test_gzip_can_be_turned_off(server: Server, make_sink: Callable[..., HTTPSink]) -> None:
    """With gzip=False the body goes as is, without Content-Encoding."""
    make_sink(server.url(), gzip=False)(events(1))
    request = server.requests[0]
    assert "Content-Encoding" not in request.headers
    assert request.raw_body == request.body


def test_custom_encoder_callable(server: Server, make_sink: Callable[..., HTTPSink]) -> None:
    """A callable encoder gets the encoded records and chooses the body and content type."""

    def encoder(records: list[dict[str, Any]]) -> tuple[bytes, str]:
        return "|".join(r["message"] for r in records).encode(), "text/plain"

    make_sink(server.url(), encoder=encoder)([{"event": "a"}, {"event": "b"}])
    assert server.requests[0].body == b"a|b"
    assert server.requests[0].headers["Content-Type"] == "text/plain"


# --------------------------------------------------------------------------- retries


def test_retries_5xx_with_exponential_backoff_and_jitter(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """503, 503, 200: three requests, waits of initial * 2**n plus at most the jitter."""
    server.answer(503, 502, 500)
    sink = make_sink(server.url(), backoff_initial=0.5, backoff_jitter=0.25)
    sink(events(2))
    assert len(server.requests) == 4
    assert all(r.body == server.requests[0].body for r in server.requests)
    assert len(sleeps) == 3
    for attempt, waited in enumerate(sleeps):
        assert 0.5 * 2**attempt <= waited <= 0.5 * 2**attempt + 0.25


def test_backoff_never_exceeds_backoff_max(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """Exponential growth stops at backoff_max."""
    server.answer(*[503] * 5)
    sink = make_sink(server.url(), max_attempts=6, backoff_initial=1, backoff_max=3)
    sink(events(1))
    assert len(sleeps) == 5
    assert max(sleeps) <= 3
    assert sleeps[-1] == 3


def test_429_honours_retry_after_seconds_exactly(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """429 with Retry-After: 1 waits exactly one second, then retries."""
    server.answer(Reply(429, {"Retry-After": "1"}), Reply(503, {"Retry-After": "7"}))
    make_sink(server.url())(events(1))
    assert sleeps == [1.0, 7.0]
    assert len(server.requests) == 3


def test_retry_after_as_http_date(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """Retry-After as an HTTP-date waits until that moment."""
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    server.answer(Reply(503, {"Retry-After": when}))
    make_sink(server.url())(events(1))
    (waited,) = sleeps
    assert 3.0 <= waited <= 5.0


def test_retry_after_seconds_parses_both_forms() -> None:
    """Delay seconds, an HTTP-date (past: 0), and garbage (None)."""
    now = 1_445_412_400.0  # Wed, 21 Oct 2015 07:26:40 GMT
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 80.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-5", now) is None
    assert retry_after_seconds(None, now) is None


def test_retry_after_longer_than_max_retry_after_fails_at_once(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """A Retry-After beyond max_retry_after is not waited for: the batch fails now."""
    server.answer(Reply(429, {"Retry-After": "3600"}))
    with pytest.raises(DeliveryError, match="max_retry_after") as caught:
        make_sink(server.url(), max_retry_after=60)(events(1))
    assert sleeps == []
    assert caught.value.status == 429
    assert caught.value.retry_after == 3600


def test_connection_refused_is_retried_then_raises(
    make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """A closed port is retried max_attempts times, then DeliveryError without status."""
    sink = make_sink(closed_port_url(), max_attempts=3, backoff_initial=0.1, backoff_jitter=0)
    with pytest.raises(DeliveryError, match="ConnectError") as caught:
        sink(events(1))
    assert isinstance(caught.value, BatchlogError)
    assert caught.value.status is None
    assert caught.value.attempts == 3
    assert caught.value.retryable
    assert sleeps == [0.1, 0.2]


def test_retries_exhausted_raise_status_and_truncated_body(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """After max_attempts 5xx answers, DeliveryError carries the status and a short body."""
    server.answer(*[Reply(500, body=b"E" * 5000)] * 3)
    with pytest.raises(DeliveryError) as caught:
        make_sink(server.url(), max_attempts=3)(events(1))
    error = caught.value
    assert error.status == 500
    assert error.attempts == 3
    assert error.body is not None
    assert error.body.startswith("EEE")
    assert len(error.body) <= 503
    assert "HTTP 500" in str(error)
    assert "3 attempts" in str(error)
    assert len(server.requests) == 3


def test_max_retry_time_stops_retrying(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """Once max_retry_time has passed no new attempt starts (0: the first is the last)."""
    server.answer(503, 503)
    with pytest.raises(DeliveryError):
        make_sink(server.url(), max_attempts=10, max_retry_time=0)(events(1))
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 413])
def test_other_4xx_fail_at_once(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float], status: int
) -> None:
    """400, 401, 404, 413 are not retried: one request, then DeliveryError with the status."""
    server.answer(Reply(status, body=b'{"error":"bad"}'))
    with pytest.raises(DeliveryError) as caught:
        make_sink(server.url())(events(1))
    assert caught.value.status == status
    assert caught.value.body == '{"error":"bad"}'
    assert not caught.value.retryable
    assert len(server.requests) == 1
    assert sleeps == []


def test_redirect_is_not_followed(server: Server, make_sink: Callable[..., HTTPSink]) -> None:
    """A 3xx fails the batch: logs are not re-posted to wherever a redirect points."""
    server.answer(Reply(307, {"Location": server.url("/elsewhere")}))
    with pytest.raises(DeliveryError, match="redirects are not followed"):
        make_sink(server.url())(events(1))
    assert [r.path for r in server.requests] == ["/ingest"]


def test_read_timeout_is_retried(server: Server, make_sink: Callable[..., HTTPSink]) -> None:
    """A server slower than read_timeout counts as a retryable failure."""
    server.answer(Reply(delay=5), Reply(delay=5))
    sink = make_sink(server.url(), read_timeout=0.1, max_attempts=2)
    with pytest.raises(DeliveryError, match="ReadTimeout") as caught:
        sink(events(1))
    assert caught.value.attempts == 2


def test_bulk_errors_in_a_200_answer_fail_the_batch(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """_bulk answers 200 with errors: true when it refused documents; that is a failure."""
    answer = {"errors": True, "items": [{"create": {"status": 400, "error": {"type": "bad"}}}]}
    server.answer(Reply(200, body=json.dumps(answer).encode()))
    with pytest.raises(DeliveryError, match="refused 1 of 1"):
        make_sink(server.url("/_bulk"), encoder="elasticsearch")(events(1))
    assert len(server.requests) == 1


def test_bulk_item_refusals_fail_only_those_records(
    server: Server, make_sink: Callable[..., HTTPSink], tmp_path: Path
) -> None:
    """_bulk took 19 of 20 documents and refused one: only that record failed, only it is
    dead-lettered, and a replay sends it alone (the issue saw 19 of 20 duplicated)."""
    items = [{"create": {"status": 201}} for _ in range(20)]
    items[7] = {"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}
    server.answer(Reply(200, body=json.dumps({"errors": True, "items": items}).encode()))
    batch = events(20)
    sink = make_sink(server.url("/_bulk"), encoder="elasticsearch")
    with pytest.raises(DeliveryError) as caught:
        sink(batch)
    assert (caught.value.records, caught.value.records_sent) == ([batch[7]], 19)

    server.answer(Reply(200, body=json.dumps({"errors": True, "items": items}).encode()))
    dead = tmp_path / "dead.jsonl"
    FallbackSink(sink, dead)(batch)
    lines = [json.loads(line)["record"]["message"] for line in dead.read_text().splitlines()]
    assert lines == [batch[7]["event"]]
    requests_before = len(server.requests)
    replay(dead, sink)
    (replayed,) = server.requests[requests_before:]
    documents = [json.loads(line) for line in replayed.body.splitlines()[1::2]]
    assert [batch[7]["event"]] == [document["message"] for document in documents]


def test_bulk_answer_that_does_not_match_its_body_fails_the_whole_body(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """Items that point past the body cannot be trusted: every record of it failed."""
    items = [{"create": {"status": 400, "error": {"type": "bad"}}} for _ in range(5)]
    server.answer(Reply(200, body=json.dumps({"errors": True, "items": items}).encode()))
    batch = events(2)
    with pytest.raises(DeliveryError) as caught:
        make_sink(server.url("/_bulk"), encoder="elasticsearch")(batch)
    assert (caught.value.records, caught.value.records_sent) == (batch, 0)


# --------------------------------------------------------------------------- splitting


def test_batch_over_max_body_bytes_is_split(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """Bodies stay within max_body_bytes (before gzip); every record goes, in order."""
    sink = make_sink(server.url(), max_body_bytes=2000)
    sink(events(20, size=200))
    assert len(server.requests) > 1
    assert all(len(r.body) <= 2000 for r in server.requests)
    sent = [line["extra"]["n"] for i in range(len(server.requests)) for line in server.lines(i)]
    assert sent == list(range(20))


@pytest.mark.parametrize("encoder", ["json", "loki", "elasticsearch", "otlp"])
def test_split_bodies_fit_with_every_encoder(
    server: Server, make_sink: Callable[..., HTTPSink], encoder: str
) -> None:
    """Splitting keeps each body within the limit whatever the encoder's framing."""
    make_sink(server.url(), encoder=encoder, max_body_bytes=3000)(events(30, size=150))
    assert len(server.requests) > 1
    assert all(len(r.body) <= 3000 for r in server.requests)
    assert sum(r.body.count(b"event ") for r in server.requests) == 30


def test_single_record_over_the_limit_is_sent_alone(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """A record larger than max_body_bytes by itself still goes, in its own request."""
    batch = [*events(1), {"event": "huge " + "y" * 5000}, *events(1)]
    make_sink(server.url(), max_body_bytes=1000)(batch)
    assert [len(server.lines(i)) for i in range(3)] == [1, 1, 1]
    assert server.lines(1)[0]["message"].startswith("huge ")


def test_each_sub_batch_is_retried_on_its_own(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """A failing part is retried alone; parts already delivered are not sent again."""
    server.answer(200, 503, 200)
    make_sink(server.url(), max_body_bytes=700)(events(4, size=200))
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 5
    assert bodies[1] == bodies[2]
    assert len(set(bodies)) == 4
    assert len(sleeps) == 1


def test_failed_part_reports_what_was_not_delivered(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """The error says how many records went out and holds the undelivered ones."""
    server.answer(200, 400)
    batch = events(4, size=200)
    with pytest.raises(DeliveryError) as caught:
        make_sink(server.url(), max_body_bytes=700)(batch)
    sent = len(server.lines(0))
    assert caught.value.records_sent == sent
    assert caught.value.undelivered == batch[sent:]
    assert len(server.requests) == 2  # nothing after the failed part
    assert f"the first {sent} records" in str(caught.value)


def test_a_split_batch_fails_only_its_undelivered_part(
    server: Server, make_sink: Callable[..., HTTPSink], tmp_path: Path
) -> None:
    """DeliveryError is a FailedRecordsError naming the undelivered records: the writer
    counts only those failed, and a FallbackSink dead-letters only those, so a replay
    sends none of the delivered ones again."""
    server.answer(200, 400, 200)
    batch = events(4, size=200)
    fallback = FallbackSink(make_sink(server.url(), max_body_bytes=700), tmp_path / "dead.jsonl")
    fallback(batch)
    sent = len(server.lines(0))
    assert 0 < sent < len(batch)
    dead = [
        json.loads(line)["record"] for line in (tmp_path / "dead.jsonl").read_text().splitlines()
    ]
    assert [record["message"] for record in dead] == [e["event"] for e in batch[sent:]]
    replay(tmp_path / "dead.jsonl", make_sink(server.url()))
    delivered = server.lines(0) + server.lines(2)
    assert sorted(line["message"] for line in delivered) == sorted(e["event"] for e in batch)

    server.answer(200, 400)
    errors: list[list[object]] = []
    writer = BatchWriter(
        4, 60.0, make_sink(server.url(), max_body_bytes=700), on_error=lambda e, b: errors.append(b)
    )
    for record in events(4, size=200):
        writer.add(record)
    writer.close(timeout=30)
    failed = writer.metrics.records_failed
    assert 0 < failed < 4
    assert (writer.metrics.records_processed, len(errors[0])) == (4 - failed, failed)
    assert isinstance(DeliveryError("x"), FailedRecordsError)


# --------------------------------------------------------------------------- secrets


def secret_sink(make_sink: Callable[..., HTTPSink], server: Server) -> HTTPSink:
    url = server.url(f"/ingest?api_key={TOKEN}-q").replace("://", f"://bob:{PASSWORD}@")
    return make_sink(url, headers={"Authorization": f"Bearer {TOKEN}", "X-Api-Key": TOKEN})


def test_secrets_never_in_repr(server: Server, make_sink: Callable[..., HTTPSink]) -> None:
    """repr shows header names and the URL, never a header value, password or query value."""
    sink = secret_sink(make_sink, server)
    text = repr(sink) + sink.url
    assert TOKEN not in text
    assert PASSWORD not in text
    assert "Authorization" in text
    assert "bob:***@" in text


def test_url_userinfo_becomes_basic_auth(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """user:password in the URL is sent as Basic auth; query parameters are kept."""
    make_sink(server.url("/ingest?a=1").replace("://", f"://bob:{PASSWORD}@"))(events(1))
    request = server.requests[0]
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.path == "/ingest?a=1"


@pytest.mark.parametrize("status", [401, 503])
def test_secrets_never_in_the_error(
    server: Server, make_sink: Callable[..., HTTPSink], status: int
) -> None:
    """A server echoing the token back: the error's text and body show *** instead."""
    server.answer(*[Reply(status, body=b"denied", echo_auth=True)] * 5)
    sink = secret_sink(make_sink, server)
    with pytest.raises(DeliveryError) as caught:
        sink(events(1))
    text = str(caught.value) + repr(caught.value) + str(caught.value.body)
    assert TOKEN not in text
    assert PASSWORD not in text
    assert "you sent ***" in text
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_secrets_never_in_stderr_reports(
    server: Server,
    make_sink: Callable[..., HTTPSink],
    make_handler: Callable[..., Any],
    make_logger: Callable[..., logging.Logger],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The handler's stderr report of a failed batch names the failure, not the token."""
    server.answer(Reply(403, body=b"nope", echo_auth=True))
    handler = make_handler(secret_sink(make_sink, server))
    make_logger(handler).warning("hello")
    assert handler.writer.flush(10)
    err = capsys.readouterr().err
    assert "DeliveryError" in err
    assert "HTTP 403" in err
    assert TOKEN not in err
    assert PASSWORD not in err
    assert handler.metrics.records_failed == 1


# --------------------------------------------------------------------------- client


def test_client_is_made_lazily_with_the_configured_timeouts(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """No client until the first batch; then one with per-phase timeouts, no redirects."""
    import httpx

    sink = make_sink(
        server.url(), connect_timeout=1, read_timeout=2, write_timeout=3, pool_timeout=4
    )
    assert sink._client is None
    sink(events(1))
    sink(events(1))
    client = sink._client
    assert client is not None
    assert client.timeout == httpx.Timeout(connect=1, read=2, write=3, pool=4)
    assert not client.follow_redirects
    assert len(server.requests) == 2


def test_tls_is_verified_by_default(
    tls_server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """An untrusted certificate fails at once (no retry can fix it); nothing is sent."""
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        make_sink(tls_server.url())(events(1))
    assert caught.value.attempts == 1
    assert sleeps == []
    assert tls_server.requests == []


def test_tls_with_a_ca_bundle_path(
    tls_server: Server, make_sink: Callable[..., HTTPSink], certificate: Path
) -> None:
    """verify may name a CA bundle file that trusts the server's certificate."""
    make_sink(tls_server.url(), verify=str(certificate))(events(1))
    assert len(tls_server.lines()) == 1


def test_close_is_idempotent_and_later_calls_fail(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """close() twice is fine; a later batch sends nothing and raises DeliveryError, a ValueError."""
    sink = make_sink(server.url())
    sink(events(1))
    sink.close()
    sink.close()
    assert sink._client is None
    with pytest.raises(DeliveryError, match="closed") as raised:
        sink(events(1))
    assert isinstance(raised.value, ValueError)
    assert (raised.value.attempts, raised.value.undelivered) == (0, [])
    assert f"{sink!r} is closed" in str(raised.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://example.com/"}, "http"),
        ({"url": "not a url"}, "http"),
        ({"url": "http://h/", "encoder": "syslog"}, "encoder"),
        ({"url": "http://h/", "max_body_bytes": 0}, "max_body_bytes"),
        ({"url": "http://h/", "max_attempts": 0}, "max_attempts"),
        ({"url": "http://h/", "read_timeout": -1}, "read_timeout"),
        ({"url": "http://h/", "connect_timeout": 0}, "connect_timeout"),
        (
            {"url": "http://h/", "encoder": {"()": "batchlog.sinks.BulkEncoder", "action": "x"}},
            "create",
        ),
        ({"url": "http://h/", "encoder": "batchlog.sinks.NoSuchEncoder"}, "encoder"),
        ({"url": "http://h/", "encoder": {"labels": ["level"]}}, "'\\(\\)'"),
    ],
)
def test_bad_settings_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    """Invalid settings fail at construction, naming the setting."""
    with pytest.raises(ValueError, match=message):
        HTTPSink(**kwargs)


def test_missing_extra_raises_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without httpx the sink cannot be made, and the error says what to install."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r"pip install 'batchlog\[http\]'"):
        HTTPSink("http://127.0.0.1/")


def test_import_batchlog_sinks_imports_no_http_library() -> None:
    """Importing batchlog, batchlog.sinks, even HTTPSink's module imports no HTTP library."""
    script = textwrap.dedent(
        """
        import sys
        import batchlog, batchlog.sinks
        from batchlog.sinks import HTTPSink, encode_record  # the module, not the libraries
        print(sorted(m for m in ("httpx", "tenacity", "httpcore") if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- end to end


def test_log_records_through_batching_handler(
    server: Server,
    make_sink: Callable[..., HTTPSink],
    make_handler: Callable[..., Any],
    make_logger: Callable[..., logging.Logger],
) -> None:
    """stdlib logging → BatchingHandler → one POST with the encoded records."""
    handler = make_handler(make_sink(server.url()), capacity=10)
    logger = make_logger(handler)
    logger.info("user %s logged in", "ann", extra={"request_id": "r1"})
    try:
        1 / 0  # noqa: B018 -- a real exception to log
    except ZeroDivisionError:
        logger.exception("failed")
    assert handler.writer.flush(10)
    lines = server.lines()
    assert [line["message"] for line in lines] == ["user ann logged in", "failed"]
    assert [line["level"] for line in lines] == ["INFO", "ERROR"]
    assert lines[0]["logger"] == logger.name
    assert lines[0]["extra"] == {"request_id": "r1"}
    assert "ZeroDivisionError" in lines[1]["exception"]
    assert handler.metrics.records_processed == 2


def test_event_dicts_through_batching_processor(
    server: Server, make_sink: Callable[..., HTTPSink], make_processor: Callable[..., Any]
) -> None:
    """structlog events → BatchingProcessor → Loki push with the events as lines."""
    structlog = pytest.importorskip("structlog")
    processor = make_processor(make_sink(server.url("/loki/api/v1/push"), encoder="loki"))
    for level, event in [("info", "started"), ("error", "crashed"), ("info", "again")]:
        with pytest.raises(structlog.DropEvent):
            processor(None, level, {"event": event, "level": level, "logger": "svc"})
    assert processor.writer.flush(10)
    (request,) = server.requests
    assert request.path == "/loki/api/v1/push"
    streams = json.loads(request.body)["streams"]
    by_level = {
        s["stream"]["level"]: [json.loads(v[1])["message"] for v in s["values"]] for s in streams
    }
    assert by_level == {"INFO": ["started", "again"], "ERROR": ["crashed"]}


def test_otlp_end_to_end_parses_with_the_official_schema(
    server: Server,
    make_sink: Callable[..., HTTPSink],
    make_handler: Callable[..., Any],
    make_logger: Callable[..., logging.Logger],
) -> None:
    """A LogRecord posted as OTLP JSON is a valid ExportLogsServiceRequest."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )

    sink = make_sink(server.url("/v1/logs"), encoder=OTLPEncoder(service_name="checkout"))
    handler = make_handler(sink)
    make_logger(handler).warning("low stock: %d", 3)
    assert handler.writer.flush(10)
    request = json_format.Parse(server.requests[0].body, ExportLogsServiceRequest())
    (log_record,) = request.resource_logs[0].scope_logs[0].log_records
    assert log_record.body.string_value == "low stock: 3"
    assert log_record.severity_number == 13
    assert abs(log_record.time_unix_nano / 1e9 - time.time()) < 60
    assert request.resource_logs[0].resource.attributes[0].value.string_value == "checkout"


def log_once_and_close(name: str, level: int) -> logging.Handler:
    """Log "configured" through the one handler dictConfig gave logger ``name``; close it."""
    logger = logging.getLogger(name)
    (handler,) = logger.handlers
    try:
        logger.propagate = False
        logger.log(level, "configured")
        assert handler.writer.flush(10)  # type: ignore[attr-defined]
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()
    return handler


def test_dictconfig_with_plain_values(server: Server) -> None:
    """dictConfig builds the handler and the sink from strings and dicts alone."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "http": {
                    "class": "batchlog.BatchingHandler",
                    "sink": {
                        "()": "batchlog.sinks.HTTPSink",
                        "url": server.url("/loki/api/v1/push"),
                        "encoder": "loki",
                        "headers": {"Authorization": f"Bearer {TOKEN}"},
                    },
                    "capacity": 10,
                    "flush_interval": 60,
                }
            },
            "loggers": {"batchlog-tests.dictconfig": {"handlers": ["http"], "level": "INFO"}},
        }
    )
    handler = log_once_and_close("batchlog-tests.dictconfig", logging.INFO)
    request = server.requests[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "configured" in request.body.decode()
    assert TOKEN not in repr(handler)


def test_no_retry_starts_after_max_retry_time(
    server: Server, make_sink: Callable[..., HTTPSink], sleeps: list[float]
) -> None:
    """A Retry-After reaching past max_retry_time ends the retries instead of waiting."""
    server.answer(Reply(503, {"Retry-After": "2"}))
    with pytest.raises(DeliveryError):
        make_sink(server.url(), max_attempts=5, max_retry_time=1.0)(events(1))
    assert sleeps == []
    assert len(server.requests) == 1


# --------------------------------------------------------------------------- encoders


def test_encoder_instance_configures_the_body(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """An encoder instance carries its own settings: Loki labels, here."""
    encoder = LokiEncoder(labels=["n"], static_labels={"job": "api"})
    sink = make_sink(server.url("/loki/api/v1/push"), encoder=encoder)
    sink(events(2))
    streams = json.loads(server.requests[0].body)["streams"]
    assert [s["stream"] for s in streams] == [{"job": "api", "n": "0"}, {"job": "api", "n": "1"}]
    assert sink.encoder is encoder
    assert "encoder=LokiEncoder(labels=('n',)" in repr(sink)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ndjson", NDJSONEncoder),
        ("json", JSONEncoder),
        ("Loki", LokiEncoder),
        ("elasticsearch", BulkEncoder),
        ("opensearch", BulkEncoder),
        ("otlp", OTLPEncoder),
    ],
)
def test_shorthand_names_make_the_default_encoders(name: str, kind: type) -> None:
    """Each shorthand (any case) is its class with the default settings."""
    assert type(HTTPSink("http://h/", encoder=name).encoder) is kind


@pytest.mark.parametrize(
    "spec",
    [
        LokiEncoder,
        "batchlog.sinks.LokiEncoder",
        "batchlog.sinks.encoders:LokiEncoder",
        {"()": lambda: LokiEncoder},
    ],
    ids=["class", "dotted", "colon", "factory-returning-a-class"],
)
def test_encoder_given_as_a_class_is_refused_with_the_build_hint(spec: object) -> None:
    """A class is not an encoder (calling it with records would build one): say '()'."""
    with pytest.raises(TypeError, match=r"not the class .*LokiEncoder.*'\(\)'") as raised:
        HTTPSink("http://h/", encoder=spec)  # type: ignore[arg-type]
    assert "LokiEncoder(...)" in str(raised.value)


def test_encoder_that_is_not_callable_is_refused() -> None:
    """Something that cannot be called with records fails at construction."""
    with pytest.raises(TypeError, match="encoder must be"):
        HTTPSink("http://h/", encoder=42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "removed",
    [
        {"loki_labels": ["level"]},
        {"loki_static_labels": {"job": "api"}},
        {"index": "logs"},
        {"bulk_action": "index"},
        {"service_name": "api"},
        {"resource_attributes": {"env": "prod"}},
    ],
)
def test_encoder_options_are_no_longer_sink_options(removed: dict[str, Any]) -> None:
    """The per-encoder options moved to the encoder classes: the sink refuses them."""
    with pytest.raises(TypeError, match=next(iter(removed))):
        HTTPSink("http://h/", **removed)


def test_dictconfig_builds_a_nested_encoder(server: Server) -> None:
    """dictConfig: the sink's "encoder" may be a "()" mapping of plain values."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "http": {
                    "class": "batchlog.BatchingHandler",
                    "sink": {
                        "()": "batchlog.sinks.HTTPSink",
                        "url": server.url("/loki/api/v1/push"),
                        "encoder": {
                            "()": "batchlog.sinks.LokiEncoder",
                            "labels": ["level"],
                            "static_labels": {"job": "api"},
                        },
                    },
                    "capacity": 10,
                    "flush_interval": 60,
                }
            },
            "loggers": {"batchlog-tests.nested": {"handlers": ["http"], "level": "INFO"}},
        }
    )
    log_once_and_close("batchlog-tests.nested", logging.WARNING)
    (stream,) = json.loads(server.requests[0].body)["streams"]
    assert stream["stream"] == {"job": "api", "level": "WARNING"}
    assert json.loads(stream["values"][0][1])["message"] == "configured"


def test_dictconfig_encoder_given_as_a_class_fails_the_configuration() -> None:
    """dictConfig with "encoder": "batchlog.sinks.LokiEncoder" fails at once, not per batch."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "http": {
                "class": "batchlog.BatchingHandler",
                "sink": {
                    "()": "batchlog.sinks.HTTPSink",
                    "url": "http://127.0.0.1:9/",
                    "encoder": "batchlog.sinks.LokiEncoder",
                },
            }
        },
    }
    with pytest.raises(ValueError, match="http") as raised:
        logging.config.dictConfig(config)
    causes = []
    cause: BaseException | None = raised.value
    while cause is not None:
        causes.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    assert any("'()': 'batchlog.sinks.LokiEncoder'" in text for text in causes), causes


# --------------------------------------------------------------------------- httpx's logging


@pytest.fixture
def httpx_records() -> Iterator[list[logging.LogRecord]]:
    """Every record httpx and httpcore log (DEBUG and up), as the handlers see them."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(keep)
        logger.setLevel(logging.DEBUG)
    yield seen
    for logger, level in zip(loggers, levels):
        logger.removeHandler(keep)
        logger.setLevel(level)


def test_httpx_and_httpcore_records_are_redacted(
    server: Server,
    make_sink: Callable[..., HTTPSink],
    httpx_records: list[logging.LogRecord],
) -> None:
    """httpx's "HTTP Request: POST ...?api_key=..." and httpcore's DEBUG lines show ***."""
    server.answer(Reply(503, headers={"X-Echo": f"Bearer {TOKEN}"}), Reply(200))
    sink = secret_sink(make_sink, server)
    sink(events(1))
    assert len(server.requests) == 2
    texts = [record.getMessage() for record in httpx_records]
    requests = [text for text in texts if text.startswith("HTTP Request: POST")]
    assert len(requests) == 2
    assert all("api_key=***" in text for text in requests), requests
    assert any(record.name.startswith("httpcore.") for record in httpx_records)
    echoed = [text for text in texts if "X-Echo" in text]
    assert echoed  # httpcore's receive_response_headers line holds the echoed header
    assert all("(b'X-Echo', b'***')" in text for text in echoed), echoed
    for text in texts:
        assert TOKEN not in text
        assert PASSWORD not in text


def test_log_filter_is_there_while_the_sink_has_a_client(
    server: Server, make_sink: Callable[..., HTTPSink]
) -> None:
    """The filter goes on httpx's loggers with the client and comes off at close()."""
    sink = secret_sink(make_sink, server)

    def filtered() -> list[str]:
        return [
            name
            for name in ("httpx", "httpcore.http11", "httpcore.connection")
            if any(f is sink._log_filter for f in logging.getLogger(name).filters)
        ]

    assert filtered() == []
    sink(events(1))
    assert filtered() == ["httpx", "httpcore.http11", "httpcore.connection"]
    sink.close()
    assert filtered() == []
    sink.reopen()
    sink(events(1))
    assert len(filtered()) == 3


@pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")  # its socket, collected too
def test_sink_dropped_without_close_is_collected_and_its_filter_removed(
    server: Server, sleeps: list[float]
) -> None:
    """The loggers' filter keeps no sink alive: dropped unclosed, it and its client go."""
    names = ("httpx", "httpcore.http11", "httpcore.connection")
    url = server.url(f"/ingest?api_key={TOKEN}-q")
    sink: HTTPSink | None = HTTPSink(url, sleep=sleeps.append)
    assert sink is not None
    sink(events(1))  # makes the client and puts the filter on the loggers
    log_filter = sink._log_filter
    assert all(log_filter in logging.getLogger(name).filters for name in names)
    sink_ref, client_ref = weakref.ref(sink), weakref.ref(sink._client)
    assert client_ref() is not None

    sink = None  # never closed
    gc.collect()

    assert sink_ref() is None
    assert client_ref() is None
    assert [name for name in names if log_filter in logging.getLogger(name).filters] == []


def test_log_filter_redacts_by_the_secrets_alone(server: Server, sleeps: list[float]) -> None:
    """The filter holds the secrets, not the sink: it still redacts once the sink is gone."""
    sink: HTTPSink | None = HTTPSink(server.url(f"/ingest?api_key={TOKEN}-q"), sleep=sleeps.append)
    assert sink is not None
    log_filter = sink._log_filter
    sink = None
    gc.collect()
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "POST ?api_key=%s", (f"{TOKEN}-q",), None
    )

    assert log_filter.filter(record)
    assert record.getMessage() == "POST ?api_key=***"


def test_percent_encoded_query_secret_is_redacted_as_httpx_writes_it(
    server: Server,
    make_sink: Callable[..., HTTPSink],
    httpx_records: list[logging.LogRecord],
) -> None:
    """A query value with characters httpx %-encodes is redacted in its logged form too."""
    secret = "tok en/+=&x"  # noqa: S105 -- a fake token
    from urllib.parse import quote

    url = server.url("/ingest?key=" + quote(secret, safe=""))
    server.answer(Reply(401, body=b"denied"))
    sink = make_sink(url)
    with pytest.raises(DeliveryError) as raised:
        sink(events(1))
    texts = [record.getMessage() for record in httpx_records]
    texts += [str(raised.value), repr(sink)]
    assert any("key=***" in text for text in texts)
    for text in texts:
        assert quote(secret, safe="") not in text
        assert secret not in text
