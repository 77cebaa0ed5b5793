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
PASS/FAIL checks, the key ``Ratio`` objects, each with its spread over the repeats, and
anything lost), and
``header_lines(platform, sizes)`` / ``result_lines(report)`` give the text the
``benchmarks/`` scripts print. Shared helpers live in ``_common``; ``chart`` draws the
ratios (``bench --plot``). ``suites()`` lists the modules and ``add_parser`` registers the
``bench`` subcommand with ``batchlog.cli``.

Private: the figures are for ``docs/performance.md``, not an API.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from types import ModuleType
from typing import Any

from .._options import positive_int, require
from ._common import BenchmarkError, Check, PlatformInfo, Ratio, platform_info

__all__ = [
    "BenchmarkError",
    "Check",
    "PlatformInfo",
    "Ratio",
    "add_parser",
    "platform_info",
    "run_script",
    "suites",
]


def suites() -> tuple[ModuleType, ...]:
    """Return the benchmark modules, in the order ``python -m batchlog bench`` runs them.

    Imported here, not with the package, so ``python -m batchlog`` starts without them.
    """
    from . import logging_, sinks, writer

    return (writer, logging_, sinks)


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


# --------------------------------------------------------------------------- the subcommand

_BENCH_DESCRIPTION = """\
Run batchlog's benchmarks and print their key ratios against the targets, in one table:
  writer   BatchWriter.add / try_add against a lock + list.append floor and queue.Queue.put
  logging  logger.info through BatchingHandler against the stdlib's handlers (and
           OpenTelemetry's and a structlog chain, when installed)
  sinks    records/s through SQLite, JSON Lines and HTTP sinks against a handler that
           writes each record on its own (HTTP needs batchlog[http])
Ratios are measured within one run, so they hold on a noisy machine where absolute
times do not. Each ratio is the best repeat of one side over the best of the other; its
spread is the lowest and highest ratio of repeat i over repeat i. The full run takes a
few minutes; --quick about a minute.
"""

_BENCH_EPILOG = """\
examples:
  python -m batchlog bench --quick
  python -m batchlog bench --plot benchmarks.png

The same measurements, with every table: python benchmarks/bench_writer.py (and
bench_logging.py, bench_sinks.py). See docs/performance.md for a full run explained.

exit status: 0 measured (a missed target is reported, not an error); 1 records were lost;
2 bad usage
"""


def add_parser(subcommands: Any) -> None:
    """Add the ``bench`` subcommand to ``subcommands`` (an argparse subparsers object)."""
    parser = subcommands.add_parser(
        "bench",
        help="run the benchmarks and print the key ratios (optionally as a chart)",
        description=_BENCH_DESCRIPTION,
        epilog=_BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer records and repeats: a smoke run"
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the ratios against their targets as a bar chart, saved to FILE.png "
        "(needs matplotlib: pip install 'batchlog[plot]')",
    )
    # Hidden: a tiny size for tests of the plumbing (records per thread, one repeat), and
    # the number of repeats (so a tiny run can still show a spread).
    parser.add_argument("--records", type=positive_int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=positive_int, help=argparse.SUPPRESS)
    parser.set_defaults(run=functools.partial(_run, parser=parser))


def _run(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    if args.plot is not None:
        directory = os.path.dirname(os.path.abspath(args.plot))
        if not args.plot.lower().endswith((".png", ".svg", ".pdf")):
            parser.error(f"--plot {args.plot!r}: the file name must end in .png, .svg or .pdf")
        if not os.path.isdir(directory):
            parser.error(f"--plot {args.plot!r}: the directory {directory} does not exist")
    require("rich", "cli", parser)
    if args.plot is not None:
        require("matplotlib", "plot", parser)
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _FILE_WIDTH  # a file or pipe: keep each table row on one line
    info = platform_info()
    console.print(
        f"{info.implementation} {info.python_version} on {info.machine}, {info.cpus} CPUs, "
        f"GIL {'on' if info.gil_enabled else 'off'} ({info.platform})"
    )
    try:
        reports = _run_suites(console, quick=args.quick, records=args.records, repeats=args.repeats)
    except BenchmarkError as exc:
        sys.stderr.write(f"{parser.prog}: {exc}\n")
        return 1
    ratios = _print_ratios(console, reports)
    lost = [f"{suite}: {problem}" for suite, report in reports for problem in report.lost]
    for problem in lost:
        console.print(f"[bold red]LOST[/]  {problem}")
    if not lost:
        console.print("[green]Nothing lost[/]: every run accounted for every record.")
    if args.plot is not None:
        from .chart import plot_ratios

        kind = "quick run" if args.quick or args.records else "full run"
        try:
            plot_ratios(ratios, args.plot, platform=info, title=f"batchlog benchmarks ({kind})")
        except OSError as exc:
            sys.stderr.write(f"{parser.prog}: cannot write {args.plot}: {exc}\n")
            return 1
        console.print(f"Chart saved to {args.plot}")
    return 1 if lost else 0


def _run_suites(
    console: Any, *, quick: bool, records: int | None, repeats: int | None
) -> list[tuple[str, Any]]:
    """Run every benchmark suite under a spinner; return (suite name, report) pairs.

    Raises:
        BenchmarkError: A suite could not measure honestly (records lost, a hung close).
    """
    reports = []
    for suite in suites():
        sizes = suite.sizes(quick=quick, records=records, repeats=repeats)
        shown_sizes = ", ".join(f"{name} {value:,}" for name, value in vars(sizes).items())
        started = time.perf_counter()
        with console.status(f"{suite.SUITE} benchmark running ({shown_sizes}) ..."):
            try:
                report = suite.run(sizes)
            except BenchmarkError as exc:
                msg = f"{suite.SUITE}: {exc}"
                raise BenchmarkError(msg) from exc
        seconds = time.perf_counter() - started
        console.print(f"[green]done[/] {suite.SUITE} ({shown_sizes}) in {seconds:.1f} s")
        for note in report.notes:
            console.print(f"  note: {note}", style="dim")
        reports.append((suite.SUITE, report))
    return reports


_FILE_WIDTH = 120
_COLUMNS_EXPLAINED = (
    "ratio: the best repeat of one side over the best repeat of the other (the figure held "
    "to the target). spread: the lowest and highest ratio of repeat i of one side over "
    "repeat i of the other, over that many repeats. PASS/FAIL: the ratio against the target."
)


def _print_ratios(console: Any, reports: list[tuple[str, Any]]) -> list[Any]:
    """Print every suite's key ratios in one table and how many targets were met."""
    from rich.table import Table

    table = Table(
        title="batchlog benchmarks: key ratios",
        title_justify="left",
        caption=_COLUMNS_EXPLAINED,
        caption_justify="left",
    )
    table.add_column("suite")
    table.add_column("comparison")
    table.add_column("ratio", justify="right")
    table.add_column("spread", justify="right")
    table.add_column("repeats", justify="right")
    table.add_column("target", justify="right")
    table.add_column("result")
    verdicts = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[dim]info[/]"}
    ratios = [ratio for _suite, report in reports for ratio in report.ratios]
    for ratio in ratios:
        table.add_row(
            ratio.suite,
            ratio.name,
            f"{ratio.value:.2f}x",
            ratio.spread_text,
            str(ratio.repeats),
            ratio.target_text,
            verdicts[ratio.passed],
        )
    console.print(table)
    met = sum(ratio.passed is True for ratio in ratios)
    held = sum(ratio.passed is not None for ratio in ratios)
    console.print(f"{met} of {held} targets met on this machine (ratios within this run).")
    return ratios
