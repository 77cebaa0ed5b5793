"""``python -m batchlog replay FILE --sink SPEC``: feed a dead-letter file to a sink.

The file is one written by ``batchlog.sinks.FallbackSink`` (or by
``batchlog.sinks.JsonLinesSink``); ``batchlog.sinks.replay`` hands its records to the
sink in batches, in order, exactly once: a checkpoint beside the file lets a failed or
interrupted run be resumed by running the same command again, and lines that are not
records (or records the sink refuses one by one) go to a quarantine file. A progress bar
(rich, the ``cli`` extra, when installed and stderr is a terminal) shows the lines left;
a summary on stdout says what was delivered, quarantined, skipped and left.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from ._options import positive_int

if TYPE_CHECKING:
    from batchlog.sinks.fallback import ReplayResult

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


_REPLAY_DESCRIPTION = """\
Feed the records of a dead-letter file written by FallbackSink (or of a JsonLinesSink
file) to a sink, in batches, in order, exactly once. A checkpoint beside FILE records how
far it got: after a failure or an interrupt, run the same command again to resume; run
twice, the second run sends nothing. Only the batch in flight when a run is killed can be
sent twice. Lines that are not records, and records the sink refuses one by one, go to a
quarantine file, and the replay goes on.
"""

_REPLAY_EPILOG = """\
files beside FILE:
  FILE.checkpoint         how far FILE is replayed (--checkpoint); delete it only to
                          replay FILE from the start
  FILE.checkpoint.lock    held while a replay runs: a second replay of FILE at the same
                          time refuses at once (exit 1); not on Windows, where runs must
                          not overlap
  FILE.quarantine.jsonl   lines that are not records and records the sink refused, each
                          with its reason (--quarantine); it replays like FILE

examples:
  python -m batchlog replay app-dead-letter.jsonl --sink sqlite:app-logs.sqlite3
  python -m batchlog replay app-dead-letter.jsonl --sink myapp.logs:store_batch --remove
  python -m batchlog replay app-dead-letter.jsonl.quarantine.jsonl --sink jsonl:fixed.jsonl

exit status: 0 every line finished (a last line still being written is left for the next
run); 1 the sink or the file failed (run again to resume); 2 bad usage; 130 interrupted
(run again to resume)
"""


def add_parser(subcommands: Any) -> None:
    """Add the ``replay`` subcommand to ``subcommands`` (an argparse subparsers object)."""
    parser = subcommands.add_parser(
        "replay",
        help="feed a dead-letter (or JSON Lines) file to a sink, exactly once",
        description=_REPLAY_DESCRIPTION,
        epilog=_REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="the dead-letter file")
    parser.add_argument(
        "--sink",
        required=True,
        metavar="SPEC",
        help="sqlite:PATH, jsonl:PATH, or pkg.mod:attr (a sink class taking no arguments "
        "or a callable taking a batch; it may be async)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=500,
        metavar="N",
        help="most lines per batch (default: 500)",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="the checkpoint file (default: FILE.checkpoint)",
    )
    parser.add_argument(
        "--quarantine",
        metavar="PATH",
        help="the quarantine file, JSON Lines (default: FILE.quarantine.jsonl)",
    )
    parser.add_argument(
        "--remove",
        action="store_true",
        help="delete FILE and its checkpoint once every line is finished (the quarantine "
        "file stays)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    parser.set_defaults(run=functools.partial(_run, parser=parser))


def _run(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from batchlog.sinks import replay

    if not os.path.isfile(args.file):
        parser.error(f"FILE {args.file!r} is not a file")
    _check_paths(args, parser)
    try:
        sink = resolve_sink_spec(args.sink)
    except Exception as exc:  # noqa: BLE001 -- a sink that cannot be built is a bad option
        parser.error(f"--sink {args.sink!r}: {exc}")
    last: list[ReplayResult] = []  # the counts so far, kept for the summary of a failed run
    failure = ""
    code = 0
    try:
        with _progress_bar(enabled=not args.no_progress) as show:

            def progress(result: ReplayResult) -> None:
                last[:] = [result]
                show(result)

            # replay closes the sink (awaiting an async close on the loop its batches
            # ran on) before it removes the file: a sink may finish its writes on close.
            last[:] = [
                replay(
                    args.file,
                    sink,
                    batch_size=args.batch_size,
                    remove=args.remove,
                    checkpoint_path=args.checkpoint,
                    quarantine_path=args.quarantine,
                    progress=progress,
                    close_sink=True,
                )
            ]
    except KeyboardInterrupt:
        failure, code = "interrupted", 130
    except Exception as exc:  # noqa: BLE001 -- a command reports in one line, not a traceback
        failure, code = f"failed: {_one_line(exc)}", 1
    if last:
        _print_summary(last[-1], sink)
    if failure:
        message = f"{parser.prog}: {failure}"
        if last:  # the checkpoint was read: a run of the same command resumes from it
            message += f"; run the same command again to resume from {last[-1].checkpoint_path}"
        sys.stderr.write(message + "\n")
    return code


def _check_paths(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse (exit 2) a checkpoint or quarantine path that is FILE or has no directory."""
    for option, value in (("--checkpoint", args.checkpoint), ("--quarantine", args.quarantine)):
        if value is None:
            continue
        if os.path.abspath(value) == os.path.abspath(args.file):
            parser.error(f"{option} {value!r} is FILE itself; give another path")
        directory = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(directory):
            parser.error(f"{option} {value!r}: its directory {directory!r} does not exist")


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _print_summary(result: ReplayResult, sink: object) -> None:
    removed_text = " and removed it" if result.removed else ""
    quarantine = f" (in {result.quarantine_path})" if result.quarantined else ""
    left = ""
    if result.left:
        left = " (the next run takes them)"
    lines = [
        f"replayed {result.delivered} records from {result.path} into {sink!r}{removed_text}",
        f"  delivered:    {result.delivered} records",
        f"  quarantined:  {result.quarantined} lines{quarantine}",
        f"  already done: {result.already_done} records (finished by earlier runs, skipped)",
        f"  left:         {result.left} lines{left}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Callable[[ReplayResult], None]]:
    """Yield a function that shows a result on a rich progress bar on stderr.

    No bar (a function that does nothing) when disabled, when rich (the ``cli`` extra) is
    not installed, or when stderr is not a terminal: the summary says it all then.
    """

    def nothing(result: ReplayResult) -> None:
        del result

    if not enabled:
        yield nothing
        return
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        yield nothing
        return
    console = Console(stderr=True)
    if not console.is_terminal:
        yield nothing
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("lines replayed", total=None, counts="")
    first: list[int] = []  # lines left at the start: the bar's total

    def show(result: ReplayResult) -> None:
        if not first:
            first.append(result.left)
            bar.update(task, total=result.left)
        bar.update(
            task,
            completed=first[0] - result.left,
            counts=f"{result.delivered} delivered, {result.quarantined} quarantined",
        )

    with bar:
        yield show
