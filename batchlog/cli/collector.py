"""A local HTTP collector that counts the NDJSON records POSTed to it.

``python -m batchlog demo --sink http`` and the sink benchmark send to it, so both run
without any server of your own. It listens on 127.0.0.1 on a free port, in a daemon
thread, speaks HTTP/1.1 keep-alive, decodes ``Content-Encoding: gzip`` and answers every
POST with 200 (or 400 for a body it cannot read). It stores nothing: it counts.
"""

from __future__ import annotations

import gzip
import http.server
import threading
from typing import Any

__all__ = ["LocalCollector"]


class LocalCollector:
    """A local HTTP/1.1 keep-alive server that counts the NDJSON lines POSTed to it.

    It starts listening when made; ``url`` is where to send. Its request handler counts
    through ``count_request`` / ``count_bad_request``; ``counts`` reads them and ``reset``
    zeroes them. ``stop`` shuts it down. Also a context manager that stops it on leaving.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records = 0
        self._requests = 0
        self._errors = 0
        self._stopped = False
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def do_POST(self) -> None:
                try:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    lines = body.count(b"\n")
                except Exception:  # noqa: BLE001 -- answer 400 rather than drop the connection
                    collector.count_bad_request()
                    self._answer(400)
                    return
                collector.count_request(lines)
                self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: one line per request would swamp the output

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="batchlog-local-collector", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        #: Where to POST: ``http://127.0.0.1:PORT/ingest``.
        self.url = f"http://{host!s}:{port}/ingest"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    def __enter__(self) -> LocalCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def count_request(self, records: int) -> None:
        """Count one POST that carried ``records`` records (its server thread calls this)."""
        with self._lock:
            self._records += records
            self._requests += 1

    def count_bad_request(self) -> None:
        """Count one POST whose body could not be read (its server thread calls this)."""
        with self._lock:
            self._errors += 1

    def reset(self) -> None:
        """Set every count back to zero."""
        with self._lock:
            self._records = self._requests = self._errors = 0

    def counts(self) -> tuple[int, int, int]:
        """Return (records, requests, bad requests) counted so far."""
        with self._lock:
            return self._records, self._requests, self._errors

    def stop(self) -> None:
        """Stop serving and close the socket; wait (at most 10 s) for the thread to end.

        Idempotent.
        """
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
