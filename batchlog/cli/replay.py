"""``python -m batchlog replay FILE --sink SPEC``: feed a dead-letter file to a sink.

The file is one written by ``batchlog.sinks.FallbackSink`` (or by
``batchlog.sinks.JsonLinesSink``); ``batchlog.sinks.replay`` checks every line before
anything is sent, then hands the records to the sink in batches, in order.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any, Callable

from ._options import positive_int

__all__ = ["add_parser", "resolve_sink_spec"]


def _bare(spec: str) -> str:
    """``spec`` without surrounding blanks and dictConfig's ``ext://`` prefix."""
    text = spec.strip()
    return text[len("ext://") :] if text.startswith("ext://") else text


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
    import pkgutil

    scheme, colon, rest = spec.partition(":")
    if colon and scheme in {"sqlite", "jsonl"}:
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            example = "logs.sqlite3" if scheme == "sqlite" else "logs.jsonl"
            msg = f"{scheme}: needs a file path, as in {scheme}:{example}"
            raise ValueError(msg)
        if scheme == "sqlite":
            from batchlog.sinks import SQLiteSink

            return SQLiteSink(path)
        from batchlog.sinks import JsonLinesSink

        return JsonLinesSink(path, fsync=True)
    if not spec.strip():
        msg = "the sink is empty; give sqlite:PATH, jsonl:PATH or pkg.mod:attr"
        raise ValueError(msg)
    try:
        obj = pkgutil.resolve_name(_bare(spec))
    except (ImportError, AttributeError, ValueError) as exc:
        msg = f"sink {spec!r} cannot be imported: {exc}"
        raise ValueError(msg) from None
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        msg = f"sink {spec!r} must name a sink class or a callable taking a batch, not {obj!r}"
        raise TypeError(msg)
    return obj  # type: ignore[no-any-return]


def add_parser(subcommands: Any) -> None:
    """Add the ``replay`` subcommand to ``subcommands`` (an argparse subparsers object)."""
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
        type=positive_int,
        default=500,
        metavar="N",
        help="most records per batch (default: 500)",
    )
    parser.add_argument(
        "--remove", action="store_true", help="delete FILE once every record was delivered"
    )
    parser.set_defaults(run=functools.partial(_run, parser=parser))


def _run(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from batchlog.sinks import replay

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
