"""The benchmarks behind ``python -m batchlog bench`` and the scripts in ``benchmarks/``.

==============  =========================================================================
``writer``      ``BatchWriter.add`` / ``try_add`` against a lock + append floor and
                ``queue.Queue.put``, 1 and 4 producer threads
``logging_``    ``logger.info`` through ``BatchingHandler`` against the stdlib's handlers
                (and OpenTelemetry's, and a structlog chain when importable)
``sinks``       records per second through SQLite, JSON Lines and HTTP sinks against a
                handler that writes each record on its own
==============  =========================================================================

Each module offers the same four functions: ``sizes(quick=..., records=...)`` picks how
much to measure, ``run(sizes)`` measures and returns a ``Report`` (dataclasses: rows, the
PASS/FAIL checks, the key ``Ratio`` objects and anything lost), and
``header_lines(platform, sizes)`` / ``result_lines(report)`` give the text the
``benchmarks/`` scripts print. Shared helpers live in ``_common``.

Private: the figures are for ``docs/performance.md``, not an API.
"""

from __future__ import annotations

from types import ModuleType

from . import logging_, sinks, writer
from ._common import BenchmarkError, Check, PlatformInfo, Ratio, platform_info

__all__ = [
    "SUITES",
    "BenchmarkError",
    "Check",
    "PlatformInfo",
    "Ratio",
    "platform_info",
]

#: The benchmark modules, in the order ``python -m batchlog bench`` runs them.
SUITES: tuple[ModuleType, ...] = (writer, logging_, sinks)
