"""The ``python -m batchlog`` command: one subcommand per function, registered below.

``replay``
    ``python -m batchlog replay FILE --sink SPEC [--batch-size N] [--remove]`` feeds the
    records of a dead-letter file (written by ``batchlog.sinks.FallbackSink``) or of
    a JSON Lines file to a sink. ``SPEC`` is ``sqlite:PATH`` (an
    ``batchlog.sinks.SQLiteSink``), ``jsonl:PATH`` (a
    ``batchlog.sinks.JsonLinesSink``, fsynced), or an import string
    ``pkg.mod:attr`` naming a sink class (called with no arguments) or any other
    callable (used as the sink).

``demo``
    ``python -m batchlog demo [--records N] [--threads T] [--sink SPEC] ...`` logs records
    from many threads through a ``batchlog.BatchingHandler`` into a sink (an SQLite
    file in the current directory by default; JSON Lines, or HTTP to a local collector it
    starts or to a URL), with a progress bar; then prints the metrics, checks that nothing
    was lost and says how to look at the data. Needs rich (``pip install 'batchlog[cli]'``).

``bench``
    ``python -m batchlog bench [--quick] [--plot FILE.png]`` runs the benchmarks of
    ``batchlog.cli.bench`` (also run by the scripts in ``benchmarks/``) and prints their key
    ratios against the targets in one table; ``--plot`` also draws them (matplotlib,
    ``pip install 'batchlog[plot]'``).

Exit codes: 0 success; 1 the sink or the file failed while replaying, or the demo or a
benchmark lost records; 2 bad usage (a one-line message on stderr, never a traceback),
including a missing optional library.

To add a subcommand, write ``_add_<name>(subcommands)`` that adds its parser and sets
``run`` to a function ``(args) -> int`` (bind its parser with ``functools.partial`` to
report bad usage with ``parser.error``), and list it in ``_SUBCOMMANDS``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable, NoReturn

__all__ = ["build_parser", "main", "resolve_sink_spec"]

_PROG = "python -m batchlog"
#: The writer's shortest flush interval, in seconds.
_SHORTEST_INTERVAL = 0.001
#: Most producer threads the demo starts.
_MOST_THREADS = 256


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` (one line) and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"must be a whole number >= 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _seconds(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= _SHORTEST_INTERVAL):
        msg = f"must be a number of seconds >= {_SHORTEST_INTERVAL}, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _thread_count(text: str) -> int:
    number = _positive_int(text)
    if number > _MOST_THREADS:
        msg = f"must be a whole number from 1 to {_MOST_THREADS}, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _require(module: str, extra: str, parser: argparse.ArgumentParser) -> None:
    """Exit with status 2 and a one-line hint unless ``module`` (an optional extra) imports."""
    try:
        importlib.import_module(module)
    except ImportError:
        parser.exit(
            2, f"{parser.prog}: error: this needs {module}: pip install 'batchlog[{extra}]'\n"
        )


def resolve_sink_spec(spec: str) -> Callable[[list[Any]], object]:
    """Return the sink that a command-line ``--sink`` value names.

    ``sqlite:PATH`` (also ``sqlite://PATH``) and ``jsonl:PATH`` build the sinks of those
    kinds; anything else is an import string: a class is called with no arguments, any
    other callable is the sink itself.

    Raises:
        ValueError: The value is empty, a shorthand has no path, or the import fails.
        TypeError: What it names is not callable, or the class needs arguments.

    .. versionadded:: 0.1.0
    """
    from .._sinkspec import import_string

    scheme, colon, rest = spec.partition(":")
    if colon and scheme in {"sqlite", "jsonl"}:
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            example = "logs.sqlite3" if scheme == "sqlite" else "logs.jsonl"
            msg = f"{scheme}: needs a file path, as in {scheme}:{example}"
            raise ValueError(msg)
        if scheme == "sqlite":
            from ..sinks.sqlite import SQLiteSink

            return SQLiteSink(path)
        from ..sinks.jsonl import JsonLinesSink

        return JsonLinesSink(path, fsync=True)
    if not spec.strip():
        msg = "the sink is empty; give sqlite:PATH, jsonl:PATH or pkg.mod:attr"
        raise ValueError(msg)
    obj = import_string(spec, what="sink")
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        msg = f"sink {spec!r} must name a sink class or a callable taking a batch, not {obj!r}"
        raise TypeError(msg)
    return obj  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- replay


def _add_replay(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "replay",
        help="feed a dead-letter (or JSON Lines) file to a sink",
        description="Feed the records of a dead-letter file written by FallbackSink (or of "
        "a JsonLinesSink file) to a sink, in batches, in order. Every line is checked "
        "before anything is sent.",
    )
    parser.add_argument("file", metavar="FILE", help="the dead-letter file")
    parser.add_argument(
        "--sink",
        required=True,
        metavar="SPEC",
        help="sqlite:PATH, jsonl:PATH, or pkg.mod:attr (a sink class taking no arguments "
        "or a callable taking a batch)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=500,
        metavar="N",
        help="most records per batch (default: 500)",
    )
    parser.add_argument(
        "--remove", action="store_true", help="delete FILE once every record was delivered"
    )
    parser.set_defaults(run=functools.partial(_run_replay, parser=parser))


def _run_replay(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from ..sinks.fallback import replay

    if not os.path.isfile(args.file):
        parser.error(f"FILE {args.file!r} is not a file")
    try:
        sink = resolve_sink_spec(args.sink)
    except Exception as exc:  # noqa: BLE001 -- a sink that cannot be built is a bad option
        parser.error(f"--sink {args.sink!r}: {exc}")
    try:
        count = replay(args.file, sink, batch_size=args.batch_size)
        close = getattr(sink, "close", None)
        if callable(close):
            close()  # before removing: a sink may finish its writes on close
        if args.remove:
            os.remove(args.file)
    except Exception as exc:  # noqa: BLE001 -- a command reports in one line, not a traceback
        sys.stderr.write(f"{parser.prog}: failed: {type(exc).__name__}: {exc}\n")
        return 1
    removed = " and removed it" if args.remove else ""
    sys.stdout.write(f"replayed {count} records from {args.file} into {sink!r}{removed}\n")
    return 0


# --------------------------------------------------------------------------- demo

_DEMO_DESCRIPTION = """\
Log records from many threads through a BatchingHandler into a sink, and watch them
arrive: a progress bar counts the records the sink has taken while the threads log.
Then it prints the handler's metrics, checks that nothing was lost (every record is
delivered, or counted as dropped), counts what the store holds, and shows the commands
to look at the data yourself.

By default the records go to an SQLite file in the current directory,
./batchlog-demo.sqlite3 (a second run adds to it; each run checks its own rows).
"""

_DEMO_EPILOG = """\
sinks (--sink):
  sqlite[:PATH]   an SQLite file, table logs (default: ./batchlog-demo.sqlite3)
  jsonl[:PATH]    a JSON Lines file, one record per line (default: ./batchlog-demo.jsonl)
  http            one POST per batch to a local collector the demo starts on 127.0.0.1
                  and stops at the end; it counts the records (needs batchlog[http])
  http:URL        one POST per batch (NDJSON) to your own server

examples:
  python -m batchlog demo
  python -m batchlog demo --records 20000 --threads 4
  python -m batchlog demo --sink jsonl:/tmp/demo.jsonl
  python -m batchlog demo --sink http
  python -m batchlog demo --max-queue-size 1000 --overflow drop_newest

exit status: 0 every record accounted for; 1 records lost or the sink failed; 2 bad usage
"""


def _add_demo(subcommands: Any) -> None:
    from ..overflow import OverflowPolicy

    parser = subcommands.add_parser(
        "demo",
        help="log from many threads into SQLite, JSON Lines or HTTP, and check nothing is lost",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--records",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="records to log, in all (default: 100000)",
    )
    parser.add_argument(
        "--threads",
        type=_thread_count,
        default=8,
        metavar="T",
        help=f"threads logging at the same time, 1 to {_MOST_THREADS} (default: 8)",
    )
    parser.add_argument(
        "--capacity",
        type=_positive_int,
        default=500,
        metavar="N",
        help="most records per batch handed to the sink (default: 500)",
    )
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=0.2,
        metavar="SECONDS",
        help="the longest a record waits before its batch is sent (default: 0.2)",
    )
    parser.add_argument(
        "--overflow",
        type=str.lower,
        choices=[policy.value for policy in OverflowPolicy],
        default="block",
        help="what a thread does when the queue is full: wait (block, the default), "
        "refuse the new record (drop_newest) or discard the oldest (drop_oldest)",
    )
    parser.add_argument(
        "--max-queue-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="most records waiting for the sink, at least --capacity "
        "(default: 10 x capacity, at least 10000)",
    )
    parser.add_argument(
        "--sink",
        default="sqlite",
        metavar="SPEC",
        help="where the records go: sqlite[:PATH], jsonl[:PATH], http or http:URL "
        "(default: sqlite, i.e. ./batchlog-demo.sqlite3)",
    )
    parser.set_defaults(run=functools.partial(_run_demo, parser=parser))


def _run_demo(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    if args.max_queue_size is not None and args.max_queue_size < args.capacity:
        parser.error(
            f"--max-queue-size {args.max_queue_size} must be at least --capacity {args.capacity}"
        )
    from .demo import DemoSettings, parse_target

    try:
        target = parse_target(args.sink)
    except ValueError as exc:
        parser.error(f"--sink {args.sink!r}: {exc}")
    _require("rich", "cli", parser)
    from rich.console import Console

    from .demo import run_demo

    try:
        target.prepare()
    except ValueError as exc:
        parser.error(f"--sink {args.sink!r}: {exc}")
    settings = DemoSettings(
        records=args.records,
        threads=args.threads,
        capacity=args.capacity,
        flush_interval=args.interval,
        overflow=args.overflow,
        max_queue_size=args.max_queue_size,
    )
    try:
        return run_demo(settings, target, Console(highlight=False))
    finally:
        target.finish()


# --------------------------------------------------------------------------- bench

_BENCH_DESCRIPTION = """\
Run batchlog's benchmarks and print their key ratios against the targets, in one table:
  writer   BatchWriter.add / try_add against a lock + list.append floor and queue.Queue.put
  logging  logger.info through BatchingHandler against the stdlib's handlers (and
           OpenTelemetry's and a structlog chain, when installed)
  sinks    records/s through SQLite, JSON Lines and HTTP sinks against a handler that
           writes each record on its own (HTTP needs batchlog[http])
Ratios are measured within one run, so they hold on a noisy machine where absolute
times do not. The full run takes a few minutes; --quick about a minute.
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


def _add_bench(subcommands: Any) -> None:
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
    # Hidden: a tiny size for tests of the plumbing (records per thread, one repeat).
    parser.add_argument("--records", type=_positive_int, help=argparse.SUPPRESS)
    parser.set_defaults(run=functools.partial(_run_bench, parser=parser))


def _run_bench(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    if args.plot is not None:
        directory = os.path.dirname(os.path.abspath(args.plot))
        if not args.plot.lower().endswith((".png", ".svg", ".pdf")):
            parser.error(f"--plot {args.plot!r}: the file name must end in .png, .svg or .pdf")
        if not os.path.isdir(directory):
            parser.error(f"--plot {args.plot!r}: the directory {directory} does not exist")
    _require("rich", "cli", parser)
    if args.plot is not None:
        _require("matplotlib", "plot", parser)
    from rich.console import Console

    from .bench import BenchmarkError, platform_info

    console = Console(highlight=False)
    info = platform_info()
    console.print(
        f"{info.implementation} {info.python_version} on {info.machine}, {info.cpus} CPUs, "
        f"GIL {'on' if info.gil_enabled else 'off'} ({info.platform})"
    )
    try:
        reports = _run_suites(console, quick=args.quick, records=args.records)
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
        from .bench.chart import plot_ratios

        kind = "quick run" if args.quick or args.records else "full run"
        try:
            plot_ratios(ratios, args.plot, platform=info, title=f"batchlog benchmarks ({kind})")
        except OSError as exc:
            sys.stderr.write(f"{parser.prog}: cannot write {args.plot}: {exc}\n")
            return 1
        console.print(f"Chart saved to {args.plot}")
    return 1 if lost else 0


def _run_suites(console: Any, *, quick: bool, records: int | None) -> list[tuple[str, Any]]:
    """Run every benchmark suite under a spinner; return (suite name, report) pairs.

    Raises:
        BenchmarkError: A suite could not measure honestly (records lost, a hung close).
    """
    from .bench import SUITES, BenchmarkError

    reports = []
    for suite in SUITES:
        sizes = suite.sizes(quick=quick, records=records)
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


def _print_ratios(console: Any, reports: list[tuple[str, Any]]) -> list[Any]:
    """Print every suite's key ratios in one table and how many targets were met."""
    from rich.table import Table

    table = Table(title="batchlog benchmarks: key ratios", title_justify="left")
    table.add_column("suite")
    table.add_column("comparison")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("result")
    verdicts = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[dim]info[/]"}
    ratios = [ratio for _suite, report in reports for ratio in report.ratios]
    for ratio in ratios:
        table.add_row(
            ratio.suite,
            ratio.name,
            f"{ratio.value:.2f}x",
            ratio.target_text,
            verdicts[ratio.passed],
        )
    console.print(table)
    met = sum(ratio.passed is True for ratio in ratios)
    held = sum(ratio.passed is not None for ratio in ratios)
    console.print(f"{met} of {held} targets met on this machine (ratios within this run).")
    return ratios


# --------------------------------------------------------------------------- the command

#: Functions that each add one subcommand to the subparsers object.
_SUBCOMMANDS: list[Callable[[Any], None]] = [_add_replay, _add_demo, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``python -m batchlog`` with every subcommand registered."""
    parser = _Parser(
        prog=_PROG,
        description="batchlog: batched logging tools (see each command's -h).",
        epilog=f"New here? Try '{_PROG} demo'.",
    )
    subcommands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for add in _SUBCOMMANDS:
        add(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Bad usage exits with status 2 (``SystemExit``) after a one-line message on stderr.

    .. versionadded:: 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
