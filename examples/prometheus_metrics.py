"""Serve the counters of a BatchingHandler and a BatchWriter to Prometheus at ``/metrics``.

Install the extra first: ``pip install -e '.[prometheus]'``. Then run
``python examples/prometheus_metrics.py [PORT]`` (default 8000) and open
http://127.0.0.1:PORT/metrics while a background thread logs; Ctrl-C stops it.

``python examples/prometheus_metrics.py --once`` logs a fixed number of records, serves on
a free port, fetches ``/metrics`` from itself, prints the ``batchlog_`` lines and exits
(status 1 if the counts are not what was logged).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
import urllib.request
from typing import Any

import prometheus_client

from batchlog import BatchingHandler, BatchWriter
from batchlog.prometheus import register

RECORDS_ONCE = 250  # records each source gets in --once mode


def slow_sink(batch: list[Any]) -> None:
    # Stands in for a database: a round trip per batch plus a little per record.
    time.sleep(0.002 + 0.000_01 * len(batch))


def produce(
    logger: logging.Logger, writer: BatchWriter[dict[str, int]], stop: threading.Event, limit: int
) -> None:
    """Log to the handler and add to the writer until ``stop`` is set or ``limit`` is reached."""
    number = 0
    while not stop.is_set() and (limit == 0 or number < limit):
        logger.info("order %d received", number)
        writer.add({"order": number})
        number += 1
        if limit == 0:
            stop.wait(0.05)  # a steady trickle while the server runs


def fetch_metrics(port: int) -> str:
    """Return the text of ``/metrics`` served on 127.0.0.1:``port``."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", nargs="?", type=int, default=8000, help="default: 8000")
    parser.add_argument(
        "--once", action="store_true", help="serve on a free port, fetch /metrics once, exit"
    )
    args = parser.parse_args(argv)

    handler = BatchingHandler(slow_sink, capacity=50, flush_interval=1.0, name="app-log")
    writer: BatchWriter[dict[str, int]] = BatchWriter(
        capacity=100, flush_interval=1.0, flush_fn=slow_sink, name="audit"
    )
    logger = logging.getLogger("example.prometheus")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    register(handler, writer)  # on prometheus_client's default registry

    stop = threading.Event()
    producer = threading.Thread(
        target=produce,
        args=(logger, writer, stop, RECORDS_ONCE if args.once else 0),
        name="producer",
    )
    producer.start()
    port = free_port() if args.once else args.port
    # prometheus-client 0.20+ returns the server and its thread; older versions, None.
    started = prometheus_client.start_http_server(port, addr="127.0.0.1")
    try:
        if args.once:
            return run_once(port, producer, handler, writer)
        print(f"serving http://127.0.0.1:{port}/metrics; Ctrl-C stops")
        try:
            producer.join()
        except KeyboardInterrupt:
            print()
        return 0
    finally:
        stop.set()
        producer.join()
        if started is not None:
            server, server_thread = started
            server.shutdown()
            server.server_close()
            server_thread.join()
        logger.removeHandler(handler)
        handler.close()
        writer.close(timeout=10.0)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def run_once(
    port: int,
    producer: threading.Thread,
    handler: BatchingHandler,
    writer: BatchWriter[dict[str, int]],
) -> int:
    """Fetch ``/metrics`` once everything logged was delivered; print the batchlog lines."""
    producer.join()
    delivered = handler.writer.flush(10.0) and writer.flush(10.0)
    lines = [line for line in fetch_metrics(port).splitlines() if line.startswith("batchlog_")]
    for line in lines:
        print(line)
    expected = [
        f'batchlog_records_processed_total{{writer="{name}"}} {float(RECORDS_ONCE)}'
        for name in ("app-log", "audit")
    ]
    missing = [line for line in expected if line not in lines]
    if not delivered:
        print("error: the sinks did not finish within 10 s", file=sys.stderr)
    for line in missing:
        print(f"error: expected the line {line!r}", file=sys.stderr)
    return 1 if missing or not delivered else 0


if __name__ == "__main__":
    sys.exit(main())
