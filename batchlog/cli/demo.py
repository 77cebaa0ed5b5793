"""``python -m batchlog demo``: many threads log through a BatchingHandler into a real sink.

``add_parser`` registers the subcommand with ``batchlog.cli``; its run parses the options
into ``DemoSettings`` and a ``Target`` (from ``parse_target``), checks the target with
``Target.prepare``, then calls ``run_demo``, which needs rich (the ``cli`` extra). Only
batchlog's public API is used: the demo shows what any application can do.

``run_demo`` starts the producer threads together, draws a progress bar of the records
the sink has finished with while they log, closes the handler, prints its metrics, checks
that every record is accounted for (delivered, or counted as dropped, evicted or failed)
and that the store holds the delivered ones, and says how to look at the data.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import importlib.util
import json
import logging
import os
import shlex
import shutil
import socket
import sqlite3
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

from batchlog import BatchingHandler, Metrics, OverflowPolicy
from batchlog.metrics import METRIC_FIELDS

from ._options import MOST_THREADS, positive_int, require, seconds, size, thread_count

if TYPE_CHECKING:
    from rich.console import Console

    from .collector import LocalCollector

__all__ = [
    "DEFAULT_JSONL_PATH",
    "DEFAULT_SQLITE_PATH",
    "DemoSettings",
    "Target",
    "add_parser",
    "parse_target",
    "run_demo",
]

DEFAULT_SQLITE_PATH = "batchlog-demo.sqlite3"
DEFAULT_JSONL_PATH = "batchlog-demo.jsonl"
#: Most seconds ``close()`` waits for the sink to take the last records.
CLOSE_TIMEOUT = 120.0
#: Seconds between two redraws of the progress bar.
REFRESH = 0.1
#: The levels records are logged at, in a fixed rotation: 74 % INFO, 20 % DEBUG, 5 %
#: WARNING, 1 % ERROR, so the counts by level are predictable.
LEVELS = (logging.ERROR,) + (logging.WARNING,) * 5 + (logging.DEBUG,) * 20 + (logging.INFO,) * 74


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """How many records, from how many threads, and the handler's settings."""

    records: int
    threads: int
    capacity: int
    flush_interval: float
    overflow: str
    max_queue_size: int | None


# --------------------------------------------------------------------------- targets


def _shown_path(path: str) -> str:
    """``path`` relative to the current directory when it is inside it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith(os.pardir) else relative


def _check_writable_file(path: str) -> None:
    """Raise ValueError unless ``path`` is a file, or could be created, that we may write."""
    if os.path.isdir(path):
        msg = f"{path} is a directory; give a file path"
        raise ValueError(msg)
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            msg = f"{path} is not writable"
            raise ValueError(msg)
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        msg = f"the directory {parent} does not exist"
        raise ValueError(msg)
    if not os.access(parent, os.W_OK):
        msg = f"the directory {parent} is not writable"
        raise ValueError(msg)


def _python_command(code: str) -> str:
    return f"python -c {shlex.quote(code)}"


class Target:
    """Where the demo's records go: makes the sink, counts what it stored, says where to look.

    ``prepare()`` checks the target and notes what it held before (raising ValueError
    with a one-line reason); ``make_sink()`` builds the sink; after the handler closed,
    ``stored()`` counts what this run added (None when it cannot tell) and
    ``levels()`` counts those records by level; ``how_to_look()`` gives commands.
    """

    kind = ""

    def describe(self) -> str:
        """Say where the records go, for the first line of output."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Check the target before anything is logged; note what it held already.

        Raises:
            ValueError: The target cannot be used; the message says why, in one line.
        """

    def make_sink(self) -> Callable[[list[Any]], object]:
        """Return the sink to give the handler."""
        raise NotImplementedError

    def stored(self) -> int | None:
        """Return how many records this run added to the store; None when unknown."""
        return None

    def levels(self) -> dict[str, int]:
        """Return this run's stored records counted by level (empty when unknown)."""
        return {}

    def stored_phrase(self, stored: int) -> str:
        """Say where ``stored`` records of this run are, as a sentence."""
        return f"{stored:,} records stored."

    def how_to_look(self) -> list[tuple[str, str]]:
        """Return (what it shows, shell command) pairs for looking at the data."""
        return []

    def finish(self) -> None:
        """Release what the target holds (a local collector). Idempotent."""


class SQLiteTarget(Target):
    """An SQLite file: ``batchlog.sinks.SQLiteSink`` writes table ``logs``."""

    kind = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._last_id_before = 0  # rows of this run are those with a larger id

    def describe(self) -> str:
        return f"SQLite file {_shown_path(self.path)} (table logs)"

    def _query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(self.path)
        try:
            exists = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'logs'"
            ).fetchone()
            return connection.execute(sql, parameters).fetchall() if exists else []
        finally:
            connection.close()

    def prepare(self) -> None:
        _check_writable_file(self.path)
        if not os.path.exists(self.path):
            return
        try:
            rows = self._query("SELECT coalesce(max(id), 0) FROM logs")
        except sqlite3.Error as exc:
            msg = f"{self.path} is not a usable SQLite database ({exc})"
            raise ValueError(msg) from None
        if rows:
            self._last_id_before = int(rows[0][0])

    def make_sink(self) -> Callable[[list[Any]], object]:
        from batchlog.sinks import SQLiteSink

        return SQLiteSink(self.path)

    def stored(self) -> int | None:
        rows = self._query("SELECT count(*) FROM logs WHERE id > ?", (self._last_id_before,))
        return int(rows[0][0]) if rows else 0

    def levels(self) -> dict[str, int]:
        rows = self._query(
            "SELECT level, count(*) FROM logs WHERE id > ? GROUP BY level ORDER BY count(*) DESC",
            (self._last_id_before,),
        )
        return {str(level): int(count) for level, count in rows}

    def stored_phrase(self, stored: int) -> str:
        return f"{stored:,} rows added to {_shown_path(self.path)}."

    def how_to_look(self) -> list[tuple[str, str]]:
        path = _shown_path(self.path)
        by_level = "SELECT level, count(*) FROM logs GROUP BY level ORDER BY count(*) DESC"
        latest = "SELECT timestamp, level, thread_name, message FROM logs ORDER BY id DESC LIMIT 5"
        if shutil.which("sqlite3"):
            return [
                ("records by level", f'sqlite3 {shlex.quote(path)} "{by_level}"'),
                ("the last five records", f'sqlite3 -header {shlex.quote(path)} "{latest}"'),
            ]
        # No sqlite3 command: the same queries through Python's sqlite3 module.
        rows = "import sqlite3; rows = sqlite3.connect({}).execute({});".format
        return [
            (
                "records by level",
                _python_command(f"{rows(json.dumps(path), json.dumps(by_level))} print(*rows)"),
            ),
            (
                "the last five records",
                _python_command(
                    f"{rows(json.dumps(path), json.dumps(latest))} print(*rows, sep=chr(10))"
                ),
            ),
        ]


class JsonLinesTarget(Target):
    """A JSON Lines file: ``batchlog.sinks.JsonLinesSink`` appends one line per record."""

    kind = "jsonl"

    def __init__(self, path: str) -> None:
        self.path = path
        self._size_before = 0
        self._levels: collections.Counter[str] | None = None

    def describe(self) -> str:
        return f"JSON Lines file {_shown_path(self.path)}"

    def prepare(self) -> None:
        _check_writable_file(self.path)
        if os.path.exists(self.path):
            self._size_before = os.path.getsize(self.path)

    def make_sink(self) -> Callable[[list[Any]], object]:
        from batchlog.sinks import JsonLinesSink

        return JsonLinesSink(self.path)

    def _new_levels(self) -> collections.Counter[str]:
        """The levels of the records this run appended (every line must be whole JSON)."""
        if self._levels is None:
            self._levels = collections.Counter()
            if os.path.exists(self.path):
                with open(self.path, "rb") as file:
                    file.seek(self._size_before)
                    self._levels.update(str(json.loads(line).get("level")) for line in file)
        return self._levels

    def stored(self) -> int | None:
        return sum(self._new_levels().values())

    def levels(self) -> dict[str, int]:
        return dict(self._new_levels().most_common())

    def stored_phrase(self, stored: int) -> str:
        return f"{stored:,} lines appended to {_shown_path(self.path)}."

    def how_to_look(self) -> list[tuple[str, str]]:
        path = json.dumps(_shown_path(self.path))
        if shutil.which("head"):
            first = f"head -n 3 {shlex.quote(_shown_path(self.path))}"
        else:
            first_three = f"itertools.islice(open({path}), 3)"
            first = _python_command(f'import itertools; print(*{first_three}, sep="")')
        by_level = (
            "import collections, json; "
            f'print(collections.Counter(json.loads(line)["level"] for line in open({path})))'
        )
        return [("the first three records", first), ("records by level", _python_command(by_level))]


class HTTPTarget(Target):
    """One POST per batch (``batchlog.sinks.HTTPSink``, NDJSON), to ``url``.

    Without a URL, a local collector is started on 127.0.0.1 that counts the records it
    receives (and stores nothing); ``finish`` stops it.
    """

    kind = "http"

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._collector: LocalCollector | None = None

    def describe(self) -> str:
        if self._collector is not None:
            return f"a local HTTP collector at {self._collector.url} (started for the demo)"
        return f"HTTP endpoint {self.url} (NDJSON, one POST per batch)"

    def prepare(self) -> None:
        if not all(importlib.util.find_spec(name) for name in ("httpx", "tenacity")):
            msg = "the http sink needs httpx and tenacity: pip install 'batchlog[http]'"
            raise ValueError(msg)
        if self.url is None:
            from .collector import LocalCollector

            self._collector = LocalCollector()
            self.url = self._collector.url
            return
        parts = urllib.parse.urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=3.0):
                pass
        except OSError as exc:
            msg = f"cannot connect to {parts.hostname}:{port} ({exc.strerror or exc})"
            raise ValueError(msg) from None

    def make_sink(self) -> Callable[[list[Any]], object]:
        from batchlog.sinks import HTTPSink

        if self.url is None:
            msg = "prepare() must run before make_sink()"
            raise RuntimeError(msg)
        return HTTPSink(self.url, encoder="ndjson")

    def stored(self) -> int | None:
        if self._collector is None:
            return None  # someone else's server: it alone knows what it kept
        records, _requests, _errors = self._collector.counts()
        return records

    def stored_phrase(self, stored: int) -> str:
        requests = self._collector.counts()[1] if self._collector is not None else 0
        return f"{stored:,} records counted by the local collector, in {requests:,} POST requests."

    def finish(self) -> None:
        if self._collector is not None:
            self._collector.stop()


def parse_target(spec: str) -> Target:
    """Return the ``Target`` that a ``--sink`` value names.

    ``sqlite`` or ``sqlite:PATH``; ``jsonl`` or ``jsonl:PATH``; ``http`` (a local
    collector) or ``http:URL``; a bare ``http://`` or ``https://`` URL works too.

    Raises:
        ValueError: The value names none of these; the message lists what is allowed.
    """
    text = spec.strip()
    if text.startswith(("http://", "https://")):
        text = f"http:{text}"
    kind, colon, rest = text.partition(":")
    if kind == "sqlite":
        return SQLiteTarget(rest or DEFAULT_SQLITE_PATH) if rest or not colon else _no_path(kind)
    if kind == "jsonl":
        return JsonLinesTarget(rest or DEFAULT_JSONL_PATH) if rest or not colon else _no_path(kind)
    if kind == "http":
        if not colon:
            return HTTPTarget(None)
        parts = urllib.parse.urlsplit(rest)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            msg = f"http:URL needs a URL such as http://127.0.0.1:8080/ingest, not {rest!r}"
            raise ValueError(msg)
        return HTTPTarget(rest)
    msg = f"must be sqlite[:PATH], jsonl[:PATH], http (a local collector) or http:URL, not {spec!r}"
    raise ValueError(msg)


def _no_path(kind: str) -> Target:
    msg = f"{kind}: needs a file path after the colon, or no colon for the default file"
    raise ValueError(msg)


# --------------------------------------------------------------------------- running


def _settled(metrics: Metrics) -> int:
    """Records the handler is finished with: delivered, failed, dropped or evicted."""
    return (
        metrics.records_processed
        + metrics.records_failed
        + metrics.records_dropped
        + metrics.records_evicted
    )


def _shares(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` whole shares that differ by at most one."""
    share, extra = divmod(total, parts)
    return [share + (1 if number < extra else 0) for number in range(parts)]


def _log_from_threads(
    handler: BatchingHandler, settings: DemoSettings, watch: Callable[[], None]
) -> float:
    """Log from the producer threads, calling ``watch()`` until they end; return seconds.

    The threads start together at a Barrier. On KeyboardInterrupt they stop early (they
    check every 1,000 records) and the interrupt is re-raised once they ended.
    """
    logger = logging.getLogger("batchlog.demo")
    logger.propagate = False  # the demo's records go to the demo's handler alone
    logger.setLevel(logging.DEBUG)
    logger.handlers = [handler]
    start_together = threading.Barrier(settings.threads + 1)
    stopping = threading.Event()

    def produce(worker: int, count: int) -> None:
        log = logger.log
        levels = LEVELS
        rotation = len(levels)
        start_together.wait()
        for sequence in range(count):
            if sequence % 1000 == 0 and stopping.is_set():
                return
            log(levels[sequence % rotation], "order %d placed by worker %d", sequence, worker)

    producers = [
        threading.Thread(target=produce, args=(worker, count), name=f"producer-{worker}")
        for worker, count in enumerate(_shares(settings.records, settings.threads))
    ]
    try:
        for producer in producers:
            producer.start()
        start_together.wait()
        started = time.perf_counter()
        for producer in producers:
            while producer.is_alive():
                producer.join(REFRESH)
                watch()
        return time.perf_counter() - started
    except KeyboardInterrupt:
        stopping.set()
        start_together.abort()
        for producer in producers:
            producer.join()
        raise
    finally:
        logger.handlers = []


def _close_watching(handler: BatchingHandler, watch: Callable[[], None]) -> None:
    """Close the handler on a helper thread, calling ``watch()`` until it is done."""
    closer = threading.Thread(target=handler.close, name="batchlog-demo-close")
    closer.start()
    while closer.is_alive():
        closer.join(REFRESH)
        watch()


class _FailureTally:
    """Wraps the demo's sink: counts each distinct failure (one line each) and re-raises.

    The handler counts the failed records; the demo shows each reason once, with how
    many batches and records it cost, instead of a traceback per batch.
    """

    __slots__ = ("_lock", "failures", "sink")

    def __init__(self, sink: Callable[[list[Any]], object]) -> None:
        self.sink = sink
        self.failures: dict[str, list[int]] = {}  # one-line reason -> [batches, records]
        self._lock = threading.Lock()

    def __call__(self, batch: list[Any]) -> object:
        try:
            return self.sink(batch)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            with self._lock:
                counts = self.failures.setdefault(reason, [0, 0])
                counts[0] += 1
                counts[1] += len(batch)
            raise

    def close(self) -> None:
        close = getattr(self.sink, "close", None)
        if callable(close):
            close()


def run_demo(settings: DemoSettings, target: Target, console: Console) -> int:
    """Run the demo into ``target`` (already prepared); print as it goes; return the exit code.

    0: every record is accounted for and the store holds the delivered ones; 1: not.
    """
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console.print(
        f"Logging [bold]{settings.records:,}[/] records from [bold]{settings.threads}[/] "
        f"threads through a BatchingHandler (capacity {settings.capacity}, flush interval "
        f"{settings.flush_interval:g} s, overflow {settings.overflow}) into "
        f"{escape(target.describe())}.",
        highlight=False,
    )
    sink = _FailureTally(target.make_sink())
    handler = BatchingHandler(
        sink,
        settings.capacity,
        settings.flush_interval,
        overflow=settings.overflow,
        max_queue_size=settings.max_queue_size,
        flush_timeout=CLOSE_TIMEOUT,
        name="batchlog-demo",
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    accepted = progress.add_task("records accepted ", total=settings.records)
    delivered = progress.add_task("records delivered", total=settings.records)

    def watch() -> None:
        metrics = handler.metrics
        progress.update(accepted, completed=metrics.records_added)
        failed = metrics.records_failed
        progress.update(
            delivered,
            completed=metrics.records_processed,
            description=f"records delivered ({failed:,} failed)" if failed else None,
        )

    # The sink's failures are shown once each (see _FailureTally), not as a traceback per
    # batch: the handler reports nothing while logging.raiseExceptions is off.
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        with progress:
            try:
                seconds = _log_from_threads(handler, settings, watch)
            finally:
                _close_watching(handler, watch)
            watch()
    except KeyboardInterrupt:
        console.print("interrupted: the records logged so far were delivered")
        return 130
    finally:
        logging.raiseExceptions = raise_exceptions
    metrics = handler.metrics
    console.print(
        f"The threads logged {settings.records:,} records in {seconds:.2f} s "
        f"({settings.records / max(seconds, 1e-9):,.0f} records/s); the sink took them in "
        f"{metrics.flush_count:,} batches.",
        highlight=False,
    )
    _print_metrics(console, metrics)
    for reason, (batches, records) in sink.failures.items():
        console.print(
            f"[bold red]The sink failed[/] {batches:,} batch(es), {records:,} records: "
            f"{escape(reason)}",
            highlight=False,
        )
    ok = _print_verdict(console, settings, target, metrics)
    _print_how_to_look(console, target)
    return 0 if ok else 1


def _print_metrics(console: Console, metrics: Metrics) -> None:
    from rich.table import Table

    table = Table(title="handler.metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    values = metrics.as_dict()
    for field in METRIC_FIELDS:  # each metric's one definition: the exporters show it too
        value = values[field.name]
        shown = f"{value * 1000:,.2f} ms" if field.unit == "s" else f"{value:,}"
        table.add_row(field.name, shown, field.description)
    console.print(table)


def _print_verdict(
    console: Console, settings: DemoSettings, target: Target, metrics: Metrics
) -> bool:
    """Say whether every record is accounted for and stored; return whether it is."""
    total = settings.records
    accounted = _settled(metrics)
    sums = (
        f"{metrics.records_processed:,} delivered + {metrics.records_dropped:,} dropped + "
        f"{metrics.records_evicted:,} evicted + {metrics.records_failed:,} failed = "
        f"{accounted:,} of {total:,} logged"
    )
    problems = []
    if accounted != total or metrics.records_in_buffer:
        problems.append(
            f"{total - accounted:,} records are unaccounted for "
            f"({metrics.records_in_buffer:,} still in the buffer after {CLOSE_TIMEOUT:g} s)"
        )
    if metrics.records_failed:
        problems.append(f"the sink raised on {metrics.records_failed:,} records")
    stored = target.stored()
    if stored is not None and stored != metrics.records_processed:
        problems.append(
            f"the {target.kind} store holds {stored:,} new records, "
            f"not the {metrics.records_processed:,} delivered"
        )
    if problems:
        console.print(f"[bold red]Records lost or failed[/]: {sums}.", highlight=False)
        for problem in problems:
            console.print(f"  - {problem}", highlight=False)
        return False
    dropped = metrics.records_dropped + metrics.records_evicted
    if dropped:
        headline = (
            f"[bold yellow]Nothing lost silently[/]: {sums}; the {dropped:,} dropped by "
            f"overflow={settings.overflow} are counted, not hidden."
        )
    else:
        headline = f"[bold green]Nothing lost[/]: {sums}."
    console.print(headline, highlight=False)
    if stored is None:
        console.print(
            "The server accepted every batch; what it kept, only it can say.", highlight=False
        )
        return True
    console.print(target.stored_phrase(stored), highlight=False, markup=False)
    levels = target.levels()
    if levels:
        by_level = ", ".join(f"{level} {count:,}" for level, count in levels.items())
        console.print(f"By level: {by_level}.", highlight=False, markup=False)
    return True


def _print_how_to_look(console: Console, target: Target) -> None:
    looks = target.how_to_look()
    if isinstance(target, HTTPTarget) and target.stored() is not None:
        console.print(
            "The local collector only counts, and it has stopped. To keep the records, use "
            "--sink sqlite or --sink jsonl, or point --sink http:URL at your own collector.",
            highlight=False,
        )
    if not looks:
        return
    console.print("Look at the data:")
    for what, command in looks:
        console.print(f"  # {what}", style="dim", highlight=False)
        console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)


# --------------------------------------------------------------------------- the subcommand

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


def add_parser(subcommands: Any) -> None:
    """Add the ``demo`` subcommand to ``subcommands`` (an argparse subparsers object)."""
    parser = subcommands.add_parser(
        "demo",
        help="log from many threads into SQLite, JSON Lines or HTTP, and check nothing is lost",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--records",
        type=positive_int,
        default=100_000,
        metavar="N",
        help="records to log, in all (default: 100000)",
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=8,
        metavar="T",
        help=f"threads logging at the same time, 1 to {MOST_THREADS} (default: 8)",
    )
    parser.add_argument(
        "--capacity",
        type=size,
        default=500,
        metavar="N",
        help="most records per batch handed to the sink (default: 500)",
    )
    parser.add_argument(
        "--interval",
        type=seconds,
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
        type=size,
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
    parser.set_defaults(run=functools.partial(_run, parser=parser))


def _run(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    if args.max_queue_size is not None and args.max_queue_size < args.capacity:
        parser.error(
            f"--max-queue-size {args.max_queue_size} must be at least --capacity {args.capacity}"
        )
    try:
        target = parse_target(args.sink)
    except ValueError as exc:
        parser.error(f"--sink {args.sink!r}: {exc}")
    require("rich", "cli", parser)
    from rich.console import Console

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
