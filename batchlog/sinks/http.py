"""``HTTPSink``: one POST per batch, gzip, retries with backoff (``pip install 'batchlog[http]'``).

httpx and tenacity are imported when a sink is made, never by ``import batchlog.sinks``.
The exceptions it raises::

    BatchlogError
    └── DeliveryError   a batch (or part of it) was not delivered: the last HTTP status or
                        connection error, a truncated response body with secrets redacted
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import logging
import ssl
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from gzip import compress as gzip_compress
from typing import TYPE_CHECKING, Any, Callable, Union
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from .._sinkspec import build_from_spec, import_string
from .._validate import check_bool, check_int, check_seconds
from ..errors import FailedRecordsError
from ._base import REDACTED, SinkBase, redact
from ._encode import encode_record
from ._retry import make_retrying
from .encoders import ENCODER_NAMES, Encoder, encoder_named

if TYPE_CHECKING:
    import httpx

    from .._types import AnyRecord

__all__ = ["DeliveryError", "HTTPSink", "retry_after_seconds"]

#: What ``verify`` takes: verify (True) or not (False), a CA bundle path, or a context.
VerifyLike = Union[bool, str, ssl.SSLContext]

_BODY_SHOWN = 500  # characters of a response body kept in an error message
_BODY_SCANNED = 65_536  # bytes of a response body decoded and redacted before truncation
_SHORTEST_SECRET = 4  # shorter values ("1", "no") would redact ordinary words
_INSTALL_HINT = "HTTPSink needs httpx and tenacity: pip install 'batchlog[http]'"


class DeliveryError(FailedRecordsError):
    """A batch, or part of it, could not be delivered; retries (if allowed) are spent.

    Raised by ``HTTPSink``, so the writer counts the batch as failed and a
    ``batchlog.sinks.FallbackSink`` takes over. Nothing secret is in it: header
    values, a URL's password and query values are replaced by ``***``.

    Attributes:
        url: The target, secrets redacted.
        reason: What went wrong (``"HTTP 503 Service Unavailable"``, ``"ConnectError: ..."``).
        status: The last HTTP status, or None when no response came (connection error).
        body: The start of the last response body, secrets redacted, or None.
        attempts: Requests made for the failed part (0: none, the sink was closed).
        retryable: Whether the last failure was one that is retried (429, 5xx, network).
        retry_after: Seconds the server asked to wait (``Retry-After``), or None.
        records_sent: Records of the batch delivered before the failed request (a batch
            larger than ``max_body_bytes`` goes out in several requests, in order).
        undelivered: The records of the batch not delivered: the failed request's and
            every later one's (a later request is not attempted after a failure). Also
            ``records``: a ``batchlog.FailedRecordsError``, so the writer counts only
            these as failed and a ``FallbackSink`` dead-letters only these.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        reason: str,
        *,
        url: str = "",
        status: int | None = None,
        body: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(None, message=reason)  # every record, until the sink says which
        self.reason = reason
        self.url = url
        self.status = status
        self.body = body
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 1
        self.records_sent = 0
        self.refused_in_body: list[int] | None = None  # set by the sink: see refused_items

    @property
    def undelivered(self) -> list[Any]:
        """``records`` once the sink knows them (``[]`` until then, as when none was sent)."""
        return [] if self.records is None else self.records

    def __str__(self) -> str:
        if self.attempts == 0:
            text = f"POST {self.url} not sent: {self.reason}"
        else:
            attempts = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
            text = f"POST {self.url} failed ({attempts}): {self.reason}"
        if self.body:
            text += f"; response body: {self.body!r}"
        if self.records_sent:
            text += (
                f"; the first {self.records_sent} records of the batch were delivered, "
                f"{len(self.undelivered)} were not"
            )
        return text


class _ClosedError(DeliveryError, ValueError):
    """A batch after ``close()``: a ``DeliveryError``, and a ``ValueError`` as for any sink."""


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Return the seconds a ``Retry-After`` header asks to wait, or None if it says nothing.

    Args:
        value: The header: delay seconds (``"120"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``).
        now: The current time, seconds since the epoch (``time.time()``).

    A date in the past gives 0; a value that is neither gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):  # 3.9 raises TypeError, later ValueError
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)  # HTTP-dates are in GMT
    return max(0.0, moment.timestamp() - now)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retryable


def _retry_after(exc: BaseException) -> float | None:
    """The wait the server asked for (``Retry-After``), if it did."""
    return exc.retry_after if isinstance(exc, DeliveryError) else None


def _import_http_libraries() -> None:
    try:
        import httpx  # noqa: F401 -- imported now so a missing extra fails at construction
        import tenacity  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc


class HTTPSink(SinkBase):
    """Sends each batch in one POST request (several if it exceeds ``max_body_bytes``).

    The body is gzip-compressed (``Content-Encoding: gzip``) unless ``gzip=False``. The
    records are first encoded by ``batchlog.sinks.encode_record``, then put in the
    body by ``encoder``, an encoder of ``batchlog.sinks.encoders``:
    ``NDJSONEncoder()`` (the default), ``JSONEncoder()`` (one array),
    ``LokiEncoder(labels=...)`` (Grafana Loki, ``url`` ending in ``/loki/api/v1/push``),
    ``BulkEncoder(index=...)`` (Elasticsearch/OpenSearch ``_bulk``, ``url`` ending in
    ``/_bulk``), ``OTLPEncoder(service_name=...)`` (OpenTelemetry OTLP/HTTP JSON, ``url``
    ending in ``/v1/logs``), or any callable keeping the ``batchlog.sinks.Encoder``
    protocol. The names ``"ndjson"``, ``"json"``, ``"loki"``, ``"elasticsearch"`` (or
    ``"opensearch"``) and ``"otlp"`` are shorthands for those classes with their defaults;
    a mapping ``{"()": "batchlog.sinks.LokiEncoder", "labels": [...]}`` builds one (as
    dictConfig passes it).

    Retries. A connection error (not a failed certificate check), a timeout, 429 or a 5xx
    status is retried with exponential backoff and jitter (``backoff_initial * 2 **
    (attempt - 1)`` plus up to ``backoff_jitter`` seconds, at most ``backoff_max``), or
    after exactly the seconds a ``Retry-After`` header asks for (delay seconds or
    HTTP-date). A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the
    call fails at once. Another status (400, 401, 404, 413, a redirect, which is never
    followed) fails at once. Retrying stops after ``max_attempts`` requests or once
    ``max_retry_time`` seconds have passed; then the call raises ``DeliveryError``
    and the writer counts the batch as failed. Retries may deliver a record twice (a
    timeout after the server stored it): delivery is at least once.

    Size. A batch whose body, before gzip, exceeds ``max_body_bytes`` is split into
    several requests of consecutive records, sent in order, each retried on its own. The
    first that fails ends the call (the server is likely refusing the rest too); the
    ``DeliveryError`` says how many records went out before and holds the rest in
    ``undelivered``. A single record larger than ``max_body_bytes`` is sent alone anyway:
    the limit is ours, the server's may be larger, and a record is better delivered than
    dropped; if the server refuses it (413), that request fails like any other 4xx.

    Secrets. ``repr(sink)``, every ``DeliveryError`` and so every report shows
    ``***`` in place of header values, a URL's password and its query values (and any of
    them echoed in a response body). User and password in the URL are sent as Basic auth
    and left out of the URL httpx logs. While the sink has a client, a filter on the
    loggers of httpx and httpcore replaces the same secrets by ``***`` in their records
    (httpx's ``HTTP Request: POST ...?token=...`` line, httpcore's DEBUG lines), at any
    level, before any handler sees them; ``close()`` removes it, and so does the garbage
    collector for a sink dropped without ``close()`` (the filter keeps no sink alive). A
    secret shorter than four characters is not redacted (it would redact ordinary words).
    Prefer a header to a token in the query string.

    Why these libraries. httpx: timeouts per phase (connect, read, write, pool), a
    keep-alive pool of HTTP/1.1 connections reused across batches, TLS verification on by
    default, a plain synchronous API for the writer's worker thread, and type hints.
    tenacity: stop, wait and retry policies that compose (attempts or elapsed time;
    exponential backoff with jitter, overridden by ``Retry-After``; which errors retry),
    and an injectable ``sleep``.

    httpx logs each request at INFO on the ``httpx`` logger. A
    ``batchlog.BatchingHandler`` that sees those records on its own worker thread
    drops them (counted in ``records_dropped``); set that logger to WARNING to avoid it.

    Lifecycle. The client (its pool of connections) is made on the first batch, so on the
    writer's worker thread. ``close()`` waits for a batch in flight, then closes the
    client; after ``reopen()`` the next batch makes a new one. In a child made by
    ``os.fork()`` the sink drops the parent's client without closing it, so nothing is
    sent on the connections the parent still uses, and makes its own on its first batch
    (see ``batchlog.sinks.SinkBase``).

    Args:
        url: Where to POST, ``http://`` or ``https://``. ``user:password@`` becomes Basic auth
            (unless ``headers`` has an Authorization header).
        encoder: An encoder (``batchlog.sinks.LokiEncoder(labels=["level"])``, any
            callable keeping the ``Encoder`` protocol), a shorthand name (``"ndjson"``,
            ``"json"``, ``"loki"``, ``"elasticsearch"``, ``"opensearch"``, ``"otlp"``),
            or a ``{"()": factory, **kwargs}`` mapping that builds one.
        headers: Sent with every request (``{"Authorization": "Bearer ..."}``).
        gzip: Compress bodies with gzip.
        gzip_level: 1 (fastest) to 9 (smallest).
        connect_timeout: Seconds to establish a connection.
        read_timeout: Seconds to wait for each chunk of the response.
        write_timeout: Seconds to send each chunk of the body.
        pool_timeout: Seconds to wait for a free connection from the pool.
        verify: Verify the server's TLS certificate (True), not (False: only for tests),
            or against a CA bundle file (a path) or an ``ssl.SSLContext``.
        max_attempts: Most requests per body, the first included (1: no retries).
        max_retry_time: Seconds after which no further attempt starts; None: no limit.
        backoff_initial: Seconds before the first retry (without jitter).
        backoff_max: Most seconds between two attempts (without ``Retry-After``).
        backoff_jitter: Most random seconds added to each backoff.
        max_retry_after: Most seconds a ``Retry-After`` may ask for and still be retried.
        max_body_bytes: Most bytes of a body before gzip; larger batches are split.
        sleep: Called with the seconds to wait between attempts (tests pass a fake).

    Raises:
        ImportError: httpx or tenacity is missing (``pip install 'batchlog[http]'``).
        ValueError: ``url`` is not an http(s) URL, ``encoder`` names no encoder, or a
            number is out of range.
        TypeError: ``gzip`` is not a bool, or ``encoder`` is a class (build it:
            ``LokiEncoder(...)``, or ``{"()": "batchlog.sinks.LokiEncoder", ...}``) or
            not callable.
        OSError: ``verify`` names a CA bundle that cannot be read.

    A call raises ``DeliveryError`` when a body could not be delivered; after ``close``,
    one that is also a ``ValueError``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A ``batchlog.sinks.SinkBase``: ``reopen()``, fork safety; ``close()`` waits for a
       batch in flight. httpx's and httpcore's log records are redacted.
    .. versionchanged:: 0.2.0
       ``encoder`` takes an encoder instance of the public classes of
       ``batchlog.sinks.encoders`` (or a ``"()"`` mapping that builds one; a class is
       refused); the per-encoder arguments ``loki_labels``, ``loki_static_labels``,
       ``index``, ``bulk_action``, ``service_name`` and ``resource_attributes`` are
       removed: give them to ``LokiEncoder``, ``BulkEncoder`` or ``OTLPEncoder``.
    .. versionchanged:: 0.2.0
       The ``encoder`` attribute is the encoder object (a shorthand name resolved to
       its instance); it was the encoder's name.
    """

    __slots__ = (
        "_auth",
        "_check_response",
        "_client",
        "_display_url",
        "_filter_finalizer",
        "_headers",
        "_log_filter",
        "_refused_items",
        "_retrying",
        "_secrets",
        "_timeouts",
        "_url",
        "_verify",
        "encoder",
        "gzip",
        "gzip_level",
        "max_body_bytes",
        "max_retry_after",
    )

    def __init__(
        self,
        url: str,
        *,
        encoder: str | Encoder | Mapping[str, Any] = "ndjson",
        headers: Mapping[str, str] | None = None,
        gzip: bool = True,
        gzip_level: int = 6,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
        pool_timeout: float = 5.0,
        verify: VerifyLike = True,
        max_attempts: int = 5,
        max_retry_time: float | None = 60.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_jitter: float = 1.0,
        max_retry_after: float = 120.0,
        max_body_bytes: int = 5 * 1024 * 1024,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _import_http_libraries()
        self._url, self._auth, self._display_url, url_secrets = _split_url(url)
        #: The encoder that builds each body (a shorthand name resolved to its class).
        self.encoder: Encoder = _resolve_encoder(encoder)
        self._refused_items: Callable[[bytes], list[int] | None] | None = getattr(
            self.encoder, "refused_items", None
        )
        self._check_response: Callable[[bytes], str | None] | None = getattr(
            self.encoder, "check_response", None
        )
        self._headers = {str(name): str(value) for name, value in (headers or {}).items()}
        if any(name.lower() == "authorization" for name in self._headers):
            self._auth = None  # an explicit Authorization header wins over the URL's userinfo
        self._secrets = _secrets(self._headers.values(), [*url_secrets, *_httpx_query(self._url)])
        self._log_filter = _RedactingFilter(self._secrets)
        # The filter holds the secrets, not the sink: a sink never closed is still collected,
        # and then its filter comes off the loggers. Not at exit: a final flush may log.
        self._filter_finalizer = weakref.finalize(self, _remove_filter, self._log_filter)
        self._filter_finalizer.atexit = False  # type: ignore[misc]  # typeshed lacks the setter
        self.gzip = check_bool("gzip", gzip)
        self.gzip_level = check_int("gzip_level", gzip_level, low=1, high=9)
        self.max_body_bytes = check_int("max_body_bytes", max_body_bytes, low=1)
        self._timeouts = {
            "connect": check_seconds("connect_timeout", connect_timeout, above=True),
            "read": check_seconds("read_timeout", read_timeout, above=True),
            "write": check_seconds("write_timeout", write_timeout, above=True),
            "pool": check_seconds("pool_timeout", pool_timeout, above=True),
        }
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)  # httpx 0.28 deprecates a path
        self._verify = verify
        self.max_retry_after = check_seconds("max_retry_after", max_retry_after)
        self._retrying = make_retrying(
            retryable=_retryable,
            requested_wait=_retry_after,
            max_attempts=max_attempts,
            max_retry_time=max_retry_time,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            backoff_jitter=backoff_jitter,
            sleep=sleep,
        )
        self._client: httpx.Client | None = None
        super().__init__()

    def __repr__(self) -> str:
        headers = dict.fromkeys(self._headers, REDACTED)
        return (
            f"{type(self).__name__}({self._display_url!r}, encoder={self.encoder!r}, "
            f"headers={headers!r}, gzip={self.gzip!r}, max_body_bytes={self.max_body_bytes!r})"
        )

    @property
    def url(self) -> str:
        """The target URL with its password and query values replaced by ``***``."""
        return self._display_url

    # ------------------------------------------------------------------ one batch

    def __call__(self, batch: list[AnyRecord]) -> None:
        """POST ``batch``: one request, or several in order if it exceeds ``max_body_bytes``.

        Raises:
            DeliveryError: A request failed and retries, if allowed, are spent; or the
                sink is closed (then also a ``ValueError``).
        """
        if not batch:
            return
        records = [encode_record(record) for record in batch]
        with self._sink_lock():
            self._check_open()
            client = self._current_client()
            parts = list(self._bodies(records))
            for number, (start, body, content_type) in enumerate(parts):
                try:
                    self._send(client, body, content_type)
                except DeliveryError as exc:
                    end = parts[number + 1][0] if number + 1 < len(parts) else len(batch)
                    refused = exc.refused_in_body
                    failed: list[Any]
                    if refused is not None and all(0 <= i < end - start for i in refused):
                        # The server took the rest of this body: only its refusals failed.
                        failed = [batch[start + i] for i in refused]
                        exc.records_sent = start + (end - start - len(refused))
                    else:
                        failed, exc.records_sent = list(batch[start:end]), start
                    exc.records = failed + list(batch[end:])  # the writer counts only these
                    raise

    def _current_client(self) -> httpx.Client:
        """Return the client, made on first use (on the worker thread) and after a fork."""
        client = self._client
        if client is not None:
            return client
        import httpx

        client = httpx.Client(
            auth=self._auth,
            headers={"User-Agent": _user_agent(), **self._headers},
            timeout=httpx.Timeout(**self._timeouts),
            verify=self._verify,
            follow_redirects=False,
        )
        self._client = client
        for logger in _http_loggers():
            logger.addFilter(self._log_filter)  # a no-op if it is there already (after fork)
        return client

    def _closed_error(self) -> Exception:
        """A ``DeliveryError`` (no attempt made) that is also a ``ValueError``."""
        closed = _ClosedError(f"{self!r} is closed", url=self._display_url)
        closed.attempts = 0
        return closed

    def _bodies(self, records: list[dict[str, Any]]) -> Iterator[tuple[int, bytes, str]]:
        """Yield ``(index of first record, body, content_type)`` per request, in order.

        Each body fits ``max_body_bytes`` unless it holds a single record.
        """
        limit = self.max_body_bytes
        body, content_type = self.encoder(records)
        if len(body) <= limit or len(records) == 1:
            yield 0, body, content_type
            return
        # Pack greedily by each record's size alone: with the built-in encoders the sum
        # over-estimates the joint body (shared framing), so a group fits.
        sizes = [len(self.encoder([record])[0]) for record in records]
        start, total = 0, 0
        for index, size in enumerate(sizes):
            if index > start and total + size > limit:
                yield from self._fitted(records, start, index)
                start, total = index, 0
            total += size
        yield from self._fitted(records, start, len(records))

    def _fitted(
        self, records: list[dict[str, Any]], start: int, end: int
    ) -> Iterator[tuple[int, bytes, str]]:
        """Yield bodies for ``records[start:end]``, halving it while it does not fit."""
        body, content_type = self.encoder(records[start:end])
        if len(body) <= self.max_body_bytes or end - start == 1:
            yield start, body, content_type
            return
        middle = (start + end) // 2  # only a custom encoder whose size is not additive
        yield from self._fitted(records, start, middle)
        yield from self._fitted(records, middle, end)

    def _send(self, client: httpx.Client, body: bytes, content_type: str) -> None:
        """POST ``body``, retrying by the policy; raise ``DeliveryError`` at the end."""
        headers = {"Content-Type": content_type}
        if self.gzip:
            body = gzip_compress(body, compresslevel=self.gzip_level, mtime=0)
            headers["Content-Encoding"] = "gzip"
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            self._post_once(client, body, headers)

        try:
            self._retrying(attempt)
        except DeliveryError as exc:
            exc.attempts = attempts
            raise

    def _post_once(self, client: httpx.Client, body: bytes, headers: dict[str, str]) -> None:
        """POST once; raise ``DeliveryError`` (``retryable`` set) unless it succeeded."""
        import httpx

        try:
            response = client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # Timeouts and broken connections may succeed next time; a bad URL or protocol
            # never will. The cause is not chained: its text could carry a proxy password.
            retryable = isinstance(
                exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
            ) and not _caused_by_certificate(exc)
            reason = self._redact(f"{type(exc).__name__}: {exc}")
            raise DeliveryError(reason, url=self._display_url, retryable=retryable) from None
        status = response.status_code
        if response.is_success:
            problem = self._check_response(response.content) if self._check_response else None
            if problem is None:
                return
            refused = DeliveryError(
                self._redact(problem), url=self._display_url, status=status, body=None
            )
            if self._refused_items is not None:  # which documents: only those failed
                refused.refused_in_body = self._refused_items(response.content)
            raise refused
        reason = f"HTTP {status} {response.reason_phrase}".rstrip()
        retryable = status == 429 or status >= 500  # noqa: PLR2004 -- HTTP's own numbers
        retry_after = None
        if response.is_redirect:
            reason += " (redirects are not followed: point url at the final address)"
        elif retryable:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), time.time())
            if retry_after is not None and retry_after > self.max_retry_after:
                reason += (
                    f" (Retry-After asks for {retry_after:g} s, more than "
                    f"max_retry_after={self.max_retry_after:g} s: not retried)"
                )
                retryable = False
        raise DeliveryError(
            reason,
            url=self._display_url,
            status=status,
            body=self._response_text(response),
            retryable=retryable,
            retry_after=retry_after,
        )

    def _response_text(self, response: httpx.Response) -> str | None:
        """The start of the response body, secrets redacted, or None if it is empty."""
        try:
            content = response.content[:_BODY_SCANNED]
        except Exception:  # noqa: BLE001 -- an undecodable body must not hide the status
            return None
        text = self._redact(content.decode("utf-8", "replace")).strip()
        if len(text) > _BODY_SHOWN:
            text = text[:_BODY_SHOWN] + "..."
        return text or None

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    # ------------------------------------------------------------------ close and fork

    def _release(self) -> None:
        """Close the client and its connections (``close()`` holds the lock)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            finally:
                _remove_filter(self._log_filter)  # after the last record it may log

    def _forget_inherited(self, *, busy: bool) -> None:  # noqa: ARG002 -- dropped either way
        """In a forked child: drop the parent's client, never close it.

        Closing would take the pool's lock, which the parent's worker may hold mid-request,
        and could say goodbye on connections the parent still uses. Dropped, the client's
        sockets are collected, which closes only this process's copies of them.
        """
        self._client = None


# --------------------------------------------------------------------------- helpers


def _caused_by_certificate(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a failed TLS certificate check (retrying cannot help)."""
    cause: BaseException | None = exc
    for _ in range(10):  # the chain is short (httpx -> httpcore -> ssl); never loop forever
        if cause is None:
            break
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _split_url(url: str) -> tuple[str, tuple[str, str] | None, str, list[str]]:
    """Return the URL without userinfo, Basic auth from it, a redacted copy, its secrets.

    Raises:
        ValueError: ``url`` is not an ``http://`` or ``https://`` URL with a host.
    """
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        msg = f"url must be an http:// or https:// URL with a host, not {url!r}"
        raise ValueError(msg)
    userinfo, _, host = parts.netloc.rpartition("@")
    secrets: list[str] = []
    auth = None
    shown_userinfo = ""
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        auth = (unquote(user), unquote(password))
        secrets += [password, unquote(password)] if has_password else [user, unquote(user)]
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        secrets.append(token)  # what Basic auth sends, should a server echo it
        shown_userinfo = f"{user}:{REDACTED}@" if has_password else f"{REDACTED}@"
    query = parse_qsl(parts.query, keep_blank_values=True)
    secrets += [value for _, value in query]
    secrets += [raw.partition("=")[2] for raw in parts.query.split("&")]  # still %-encoded
    shown_query = "&".join(f"{name}={REDACTED}" for name, _ in query)
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    shown = urlunsplit((parts.scheme, shown_userinfo + host, parts.path, shown_query, ""))
    return bare, auth, shown, secrets


def _httpx_query(url: str) -> list[str]:
    """The query values of ``url`` as httpx writes them in its log line (its own %-encoding)."""
    import httpx

    try:
        query = httpx.URL(url).query.decode("ascii", "replace")
    except (httpx.InvalidURL, ValueError, TypeError):
        return []  # httpx refuses it: the first request fails with its own error
    return [raw.partition("=")[2] for raw in query.split("&")]


def _secrets(header_values: Iterable[str], url_secrets: list[str]) -> tuple[str, ...]:
    """The texts to redact, longest first: header values, their credentials, URL secrets.

    Each also as it shows inside a ``bytes`` repr (httpcore logs headers as bytes).
    """
    found = set(url_secrets)
    for value in header_values:
        found.add(value.strip())
        found.add(value.strip().partition(" ")[2].strip())  # "Bearer <token>": the token
    found |= {repr(secret.encode("utf-8", "backslashreplace"))[2:-1] for secret in found}
    return tuple(
        sorted((secret for secret in found if len(secret) >= _SHORTEST_SECRET), key=len)[::-1]
    )


#: The loggers httpx and httpcore log on. A logger's filter sees only the records logged
#: on that logger itself, not those its children pass up, so each one gets the filter.
_HTTP_LOGGER_NAMES = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def _http_loggers() -> list[logging.Logger]:
    """The loggers of httpx and httpcore: the known names and any other under theirs."""
    names = set(_HTTP_LOGGER_NAMES)
    names.update(
        name
        for name in list(logging.Logger.manager.loggerDict)  # a copy: it may grow meanwhile
        if name.startswith(("httpx.", "httpcore."))
    )
    return [logging.getLogger(name) for name in sorted(names)]


def _remove_filter(log_filter: logging.Filter) -> None:
    """Take ``log_filter`` off the loggers of httpx and httpcore (a no-op where it is not)."""
    for logger in _http_loggers():
        logger.removeFilter(log_filter)


class _RedactingFilter(logging.Filter):
    """Replaces a sink's secrets in httpx's and httpcore's records; drops nothing.

    It runs on the logger, before any handler, so every handler sees the redacted text.
    A record without a secret is left untouched. It holds the secrets, never the sink, so
    the loggers (which live as long as the process) keep no sink alive.
    """

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 -- a broken record is logging's to report
            return True
        redacted = redact(text, self._secrets)
        if redacted != text:
            record.msg, record.args = redacted, None  # the merged text, secrets replaced
        return True


def _resolve_encoder(spec: object) -> Encoder:
    """Return the encoder ``spec`` is, names (a shorthand or import string) or builds.

    Raises:
        ValueError: A name that is neither a shorthand nor importable.
        TypeError: A class (build it instead) or something not callable.
    """
    if isinstance(spec, str) and spec.strip().lower() not in ENCODER_NAMES:
        if "." not in spec and ":" not in spec:
            return encoder_named(spec)  # raises, listing the shorthands
        encoder = import_string(spec, what="encoder")
    elif isinstance(spec, str):
        return encoder_named(spec)
    else:
        encoder = build_from_spec(spec, what="encoder")
    if isinstance(encoder, type):
        name = (
            spec.strip()
            if isinstance(spec, str)
            else f"{encoder.__module__}.{encoder.__qualname__}"
        )
        msg = (
            f"encoder must be an encoder instance, not the class {encoder!r}: write "
            f"{encoder.__name__}(...), or in configuration {{'()': {name!r}, "
            "**its keyword arguments}"
        )
        raise TypeError(msg)
    if not callable(encoder):
        msg = (
            "encoder must be a shorthand name, an encoder (a callable taking list[dict] "
            f"and returning (bytes, content_type)) or a '()' mapping, not {encoder!r}"
        )
        raise TypeError(msg)
    return encoder  # type: ignore[no-any-return]


def _user_agent() -> str:
    from .. import __version__

    return f"batchlog/{__version__}"
