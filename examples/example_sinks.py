"""Sinks the dictConfig examples name by import string (this directory is put on sys.path).

A sink is any callable taking one batch (a list of records); if it has ``close()``, the
handler calls it after the last batch. Both sinks here count what they received in
``RECEIVED`` so the examples can check that nothing was lost.
"""

from __future__ import annotations

import logging
import threading

#: Records received per sink name, across every sink in this process.
RECEIVED: dict[str, int] = {}
_lock = threading.Lock()


def _count(name: str, batch: list[logging.LogRecord]) -> None:
    with _lock:
        RECEIVED[name] = RECEIVED.get(name, 0) + len(batch)


def _text(record: logging.LogRecord) -> str:
    # With a Formatter on the handler each record carries ``formatted`` (made on the
    # worker thread); without one, the merged message is the cheapest text.
    return getattr(record, "formatted", None) or record.getMessage()


class PrintSink:
    """Print each batch's size and lines behind ``prefix``; say when closed.

    Build it from configuration with ``{"()": "example_sinks.PrintSink", "prefix": "..."}``.
    """

    def __init__(self, prefix: str = "sink") -> None:
        self.prefix = prefix

    def __call__(self, batch: list[logging.LogRecord]) -> None:
        print(f"[{self.prefix}] batch of {len(batch)}")
        for record in batch:
            print(f"[{self.prefix}]   {_text(record)}")
        _count(self.prefix, batch)

    def close(self) -> None:
        print(f"[{self.prefix}] closed")


def print_batch(batch: list[logging.LogRecord]) -> None:
    """A plain function sink, named as ``"example_sinks.print_batch"``."""
    print(f"[print_batch] batch of {len(batch)}")
    for record in batch:
        print(f"[print_batch]   {_text(record)}")
    _count("print_batch", batch)
