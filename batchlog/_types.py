"""Type aliases and protocols shared by the writer, the front doors and the sinks."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Union

from typing_extensions import Protocol, runtime_checkable

__all__ = ["AnyRecord", "ClosableSink", "Sink"]

#: What the ready-made sinks accept: stdlib records or structlog event dicts.
AnyRecord = Union[logging.LogRecord, Mapping[str, Any]]


class Sink(Protocol):
    """A sink is a callable taking one batch (a ``list``) of records.

    It runs on the writer's worker thread, never concurrently with itself. Raising counts
    the batch as failed; returning normally counts it as processed. With
    ``clear_buffers=True`` the list is emptied after the call, so copy what you keep.
    """

    def __call__(self, batch: list[Any], /) -> object:
        """Write ``batch`` somewhere."""


@runtime_checkable
class ClosableSink(Protocol):
    """A sink with ``close()``: the front doors call it once, after the last batch."""

    def __call__(self, batch: list[Any], /) -> object:
        """Write ``batch`` somewhere."""

    def close(self) -> None:
        """Release files, connections and clients; called once, after the last batch."""
