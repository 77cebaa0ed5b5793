"""The ``batchlog`` command (also ``python -m batchlog``): one subcommand per module.

``replay``
    ``python -m batchlog replay FILE --sink SPEC [--batch-size N] [--checkpoint PATH]
    [--quarantine PATH] [--remove] [--no-progress]`` feeds the records of a dead-letter
    file (written by ``batchlog.sinks.FallbackSink``) or of a JSON Lines file to a sink,
    exactly once: a checkpoint beside the file lets an interrupted or failed run resume,
    and records that cannot be stored go to a quarantine file. ``SPEC`` is ``sqlite:PATH`` (an
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
including a missing optional library; 130 interrupted (Ctrl-C) while replaying.

Each subcommand is a module of this package (``replay``, ``demo``, ``bench``) with an
``add_parser(subcommands)`` that adds its parser and sets ``run`` to a function
``(args) -> int`` (its parser bound with ``functools.partial``, to report bad usage with
``parser.error``). To add one, write such a module and list its ``add_parser`` in
``_SUBCOMMANDS``. The helpers they share (argument types, the extras check) are in
``_options``; ``collector`` is the local HTTP server of the demo and the benchmarks.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, Callable, NoReturn

from . import bench, demo, replay
from .replay import resolve_sink_spec

__all__ = ["build_parser", "main", "resolve_sink_spec"]

_PROG = "python -m batchlog"
_SCRIPT = "batchlog"  # the console script pip installs ([project.scripts])


def _prog() -> str:
    """How the command was run: the ``batchlog`` script, or ``python -m batchlog``."""
    return _SCRIPT if os.path.basename(sys.argv[0]) == _SCRIPT else _PROG


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` (one line) and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


#: Functions that each add one subcommand to the subparsers object.
_SUBCOMMANDS: list[Callable[[Any], None]] = [
    replay.add_parser,
    demo.add_parser,
    bench.add_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``batchlog`` (``python -m batchlog``), every subcommand in it."""
    prog = _prog()
    parser = _Parser(
        prog=prog,
        description="batchlog: batched logging tools (see each command's -h).",
        epilog=f"New here? Try '{prog} demo'.",
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
