"""The ``python -m batchlog`` command: one subcommand per function, registered below.

``replay``
    ``python -m batchlog replay FILE --sink SPEC [--batch-size N] [--remove]`` feeds the
    records of a dead-letter file (written by :class:`~batchlog.sinks.FallbackSink`) or of
    a JSON Lines file to a sink. ``SPEC`` is ``sqlite:PATH`` (an
    :class:`~batchlog.sinks.SQLiteSink`), ``jsonl:PATH`` (a
    :class:`~batchlog.sinks.JsonLinesSink`, fsynced), or an import string
    ``pkg.mod:attr`` naming a sink class (called with no arguments) or any other
    callable (used as the sink).

Exit codes: 0 success; 1 the sink or the file failed while replaying; 2 bad usage (a
one-line message on stderr, never a traceback).

To add a subcommand, write ``_add_<name>(subcommands)`` that adds its parser and sets
``run`` to a function ``(args) -> int`` (bind its parser with ``functools.partial`` to
report bad usage with ``parser.error``), and list it in ``_SUBCOMMANDS``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any, Callable, NoReturn

__all__ = ["build_parser", "main", "resolve_sink_spec"]

_PROG = "python -m batchlog"


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
    from ._sinkspec import import_string

    scheme, colon, rest = spec.partition(":")
    if colon and scheme in {"sqlite", "jsonl"}:
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            example = "logs.sqlite3" if scheme == "sqlite" else "logs.jsonl"
            msg = f"{scheme}: needs a file path, as in {scheme}:{example}"
            raise ValueError(msg)
        if scheme == "sqlite":
            from .sinks.sqlite import SQLiteSink

            return SQLiteSink(path)
        from .sinks.jsonl import JsonLinesSink

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
    from .sinks.fallback import replay

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


# --------------------------------------------------------------------------- the command

#: Functions that each add one subcommand to the subparsers object.
_SUBCOMMANDS: list[Callable[[Any], None]] = [_add_replay]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``python -m batchlog`` with every subcommand registered."""
    parser = _Parser(
        prog=_PROG, description="batchlog: batched logging tools (see each command's -h)."
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
