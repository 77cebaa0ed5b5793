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

import argparse
import sys
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
    "run_script",
]

#: The benchmark modules, in the order ``python -m batchlog bench`` runs them.
SUITES: tuple[ModuleType, ...] = (writer, logging_, sinks)


def run_script(suite: ModuleType, argv: list[str] | None = None) -> int:
    """Be ``benchmarks/bench_<suite>.py``: parse ``--quick``, print the header and report.

    Returns 0; a ``BenchmarkError`` (a record lost) ends the process with its message.
    """
    summary = (suite.__doc__ or "").strip().splitlines()[0]
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    chosen = suite.sizes(quick=args.quick)
    print("\n".join(suite.header_lines(platform_info(), chosen)))  # noqa: T201 -- a script
    try:
        report = suite.run(chosen)
    except BenchmarkError as exc:
        sys.exit(str(exc))
    print("\n".join(suite.result_lines(report)))  # noqa: T201 -- a script
    return 0
