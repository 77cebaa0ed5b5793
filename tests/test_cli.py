"""``python -m batchlog demo`` and ``bench``: what they print, store, and how they refuse."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from batchlog.cli.bench import logging_, sinks, writer
from batchlog.cli.bench._common import Ratio, spread
from batchlog.cli.demo import HTTPTarget, JsonLinesTarget, SQLiteTarget, parse_target

REPO_ROOT = Path(__file__).resolve().parents[1]
RECORDS = 3_000
# Environment variables that would make rich colour or animate output sent to a pipe.
_RICH_FORCING = {"FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}


def run_python(*args, cwd, timeout=120):
    """Run ``python ARGS`` in ``cwd`` with this checkout importable and wide, plain output."""
    env = {key: value for key, value in os.environ.items() if key not in _RICH_FORCING}
    env.update(PYTHONPATH=str(REPO_ROOT), COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_batchlog(*args, cwd):
    """Run ``python -m batchlog ARGS`` in ``cwd``."""
    return run_python("-m", "batchlog", *args, cwd=cwd)


def sqlite_rows(path):
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT count(*) FROM logs").fetchone()[0]


def assert_ran_cleanly(result):
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr


# --------------------------------------------------------------------------- demo


@pytest.mark.subprocess
def test_demo_stores_every_record_in_the_default_sqlite_file(tmp_path):
    """With no --sink the demo writes ./batchlog-demo.sqlite3 and says nothing was lost."""
    result = run_batchlog("demo", "--records", RECORDS, "--threads", 3, cwd=tmp_path)
    assert_ran_cleanly(result)
    assert f"Logging {RECORDS:,} records from 3 threads" in result.stdout
    assert f"Nothing lost: {RECORDS:,} delivered + 0 dropped" in result.stdout
    assert f"{RECORDS:,} rows added to batchlog-demo.sqlite3" in result.stdout
    assert 'sqlite3 batchlog-demo.sqlite3 "SELECT level, count(*)' in result.stdout or (
        "python -c" in result.stdout
    )
    assert sqlite_rows(tmp_path / "batchlog-demo.sqlite3") == RECORDS


@pytest.mark.subprocess
def test_demo_counts_only_its_own_rows_when_the_file_has_some(tmp_path):
    """A second run into the same file reports the rows it added, and the file holds both."""
    for _ in range(2):
        result = run_batchlog(
            "demo", "--records", RECORDS, "--sink", "sqlite:db.sqlite3", cwd=tmp_path
        )
        assert_ran_cleanly(result)
        assert f"{RECORDS:,} rows added to db.sqlite3" in result.stdout
    assert sqlite_rows(tmp_path / "db.sqlite3") == 2 * RECORDS


@pytest.mark.subprocess
def test_demo_writes_one_json_line_per_record(tmp_path):
    """``--sink jsonl:PATH`` appends one whole JSON line per record and says how to look."""
    (tmp_path / "out").mkdir()
    result = run_batchlog(
        "demo", "--records", RECORDS, "--threads", 4, "--sink", "jsonl:out/demo.jsonl", cwd=tmp_path
    )
    assert_ran_cleanly(result)
    assert "Nothing lost" in result.stdout
    assert f"{RECORDS:,} lines appended to {os.path.join('out', 'demo.jsonl')}" in result.stdout
    lines = (tmp_path / "out" / "demo.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == RECORDS
    assert {json.loads(line)["logger"] for line in lines} == {"batchlog.demo"}


@pytest.mark.subprocess
def test_demo_posts_to_a_local_collector(tmp_path):
    """``--sink http`` starts a local collector, which counts every record delivered."""
    pytest.importorskip("httpx")
    pytest.importorskip("tenacity")
    result = run_batchlog("demo", "--records", RECORDS, "--sink", "http", cwd=tmp_path)
    assert_ran_cleanly(result)
    assert "a local HTTP collector at http://127.0.0.1:" in result.stdout
    assert f"{RECORDS:,} records counted by the local collector" in result.stdout
    assert "Nothing lost" in result.stdout
    assert list(tmp_path.iterdir()) == []  # nothing stored locally


@pytest.mark.subprocess
def test_demo_against_a_failing_server_says_so_in_one_line_a_reason(tmp_path):
    """A collector refusing every batch: exit 1, one line per distinct failure with its
    count, no traceback, and a delivered bar that shows nothing delivered."""
    pytest.importorskip("httpx")
    import http.server
    import threading

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/logs"
        result = run_batchlog("demo", "--records", 1000, "--sink", url, cwd=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    failed_lines = [line for line in result.stdout.splitlines() if "The sink failed" in line]
    assert len(failed_lines) == 1, output
    assert "records: DeliveryError: POST" in failed_lines[0]
    assert "1,000 failed" in output
    assert "0 delivered + 0 dropped + 0 evicted + 1,000 failed" in output.replace("\n", " ")


@pytest.mark.subprocess
def test_demo_counts_what_a_small_queue_drops(tmp_path):
    """With drop_newest and a small queue, delivered + dropped still add up to every record."""
    result = run_batchlog(
        "demo",
        "--records",
        20_000,
        "--threads",
        4,
        "--capacity",
        100,
        "--max-queue-size",
        100,
        "--overflow",
        "drop_newest",
        "--sink",
        "jsonl:drops.jsonl",
        cwd=tmp_path,
    )
    assert_ran_cleanly(result)
    assert "Nothing lost" in result.stdout
    assert "of 20,000 logged" in result.stdout
    delivered = len((tmp_path / "drops.jsonl").read_text(encoding="utf-8").splitlines())
    assert f"{delivered:,} delivered + " in result.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["demo", "bench"])
def test_help_explains_the_command_with_examples(command, tmp_path):
    """``COMMAND --help`` exits 0 with a description and an epilog of examples."""
    result = run_batchlog(command, "--help", cwd=tmp_path)
    assert_ran_cleanly(result)
    assert "examples:" in result.stdout
    assert f"python -m batchlog {command}" in result.stdout
    assert "exit status:" in result.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--records", "-5"],
        ["demo", "--records", "0"],
        ["demo", "--records", "many"],
        ["demo", "--threads", "0"],
        ["demo", "--threads", "100000"],
        ["demo", "--capacity", "-1"],
        ["demo", "--capacity", "10000000000000"],
        ["demo", "--max-queue-size", "10000000000000"],
        ["demo", "--interval", "0"],
        ["demo", "--interval", "nan"],
        ["demo", "--overflow", "sometimes"],
        ["demo", "--capacity", "500", "--max-queue-size", "10"],
        ["demo", "--sink", "postgres"],
        ["demo", "--sink", "sqlite:"],
        ["demo", "--sink", "sqlite:no-such-dir/demo.sqlite3"],
        ["demo", "--sink", "jsonl:."],
        ["demo", "--sink", "http:ftp://example.com"],
        ["demo", "--sink", "http:http://127.0.0.1:1/ingest"],
        ["bench", "--plot", "chart.txt"],
        ["bench", "--plot", "no-such-dir/chart.png"],
        ["bench", "--records", "-1"],
        ["bench", "--repeats", "0"],
    ],
    ids=" ".join,
)
def test_bad_usage_is_one_line_and_exit_2(args, tmp_path):
    """Bad options exit 2 with one line on stderr naming the problem, never a traceback."""
    result = run_batchlog(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"python -m batchlog {args[0]}: error: ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.subprocess
def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    """``--sink sqlite:PATH`` naming a file that is not a database is bad usage, not a crash."""
    (tmp_path / "notes.txt").write_text("not a database\n", encoding="utf-8")
    result = run_batchlog("demo", "--sink", "sqlite:notes.txt", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "not a usable SQLite database" in result.stderr


HIDE_MODULE = """\
import sys
sys.modules[{module!r}] = None  # import {module} now fails, as if it were not installed
sys.argv[0] = "python -m batchlog"
from batchlog.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("module", "args", "extra"),
    [
        ("rich", ["demo"], "cli"),
        ("rich", ["bench"], "cli"),
        ("matplotlib", ["bench", "--plot", "chart.png"], "plot"),
    ],
    ids=["demo-without-rich", "bench-without-rich", "plot-without-matplotlib"],
)
def test_a_missing_extra_is_named_in_one_line(module, args, extra, tmp_path):
    """Without rich (or matplotlib for --plot) the command says which extra to install; exit 2."""
    result = run_python("-c", HIDE_MODULE.format(module=module), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert f"pip install 'batchlog[{extra}]'" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- demo pieces


@pytest.mark.parametrize(
    ("spec", "kind", "where"),
    [
        ("sqlite", SQLiteTarget, "batchlog-demo.sqlite3"),
        ("sqlite:logs/x.db", SQLiteTarget, "logs/x.db"),
        ("jsonl", JsonLinesTarget, "batchlog-demo.jsonl"),
        ("jsonl:x.jsonl", JsonLinesTarget, "x.jsonl"),
        ("http", HTTPTarget, None),
        ("http:http://127.0.0.1:8080/ingest", HTTPTarget, "http://127.0.0.1:8080/ingest"),
        ("https://logs.example.com/v1", HTTPTarget, "https://logs.example.com/v1"),
    ],
)
def test_sink_specs_name_their_targets(spec, kind, where):
    """Each ``--sink`` form gives its kind of target, with the default file or the URL."""
    target = parse_target(spec)
    assert type(target) is kind
    assert getattr(target, "path", getattr(target, "url", None)) == where


# --------------------------------------------------------------------------- bench


@pytest.mark.subprocess
def test_bench_prints_every_suites_ratios(tmp_path):
    """``bench`` (here with a tiny hidden size) prints one table of ratios from all three suites."""
    result = run_batchlog("bench", "--records", 200, cwd=tmp_path)
    assert_ran_cleanly(result)
    for name in ("Queue.put / add, 4 threads", "handle(): QueueHandler / Batching", "SQLite:"):
        assert name in result.stdout
    assert "targets met on this machine" in result.stdout
    assert "Nothing lost" in result.stdout


@pytest.mark.subprocess
def test_bench_plot_saves_a_png(tmp_path):
    """``bench --plot FILE.png`` draws the chart into FILE.png."""
    pytest.importorskip("matplotlib")
    result = run_batchlog("bench", "--records", 200, "--plot", "chart.png", cwd=tmp_path)
    assert_ran_cleanly(result)
    assert "Chart saved to chart.png" in result.stdout
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# One row of bench's table: | suite | comparison | 1.23x | 1.05-1.31x (an en dash) | 2 | ...
_TABLE_ROW = re.compile(
    r"^\S (?P<suite>writer|logging|sinks) +\S (?P<name>.+?) +\S +(?P<ratio>[\d.]+)x \S"
    r" +(?P<low>[\d.]+)\u2013(?P<high>[\d.]+)x \S +(?P<repeats>\d+) \S"
)


@pytest.mark.subprocess
def test_bench_shows_each_ratios_spread_over_the_repeats(tmp_path):
    """Every ratio in ``bench``'s table has a spread over its repeats that holds the ratio."""
    result = run_batchlog("bench", "--records", 200, "--repeats", 2, cwd=tmp_path)
    assert_ran_cleanly(result)
    table = [line for line in result.stdout.splitlines() if line.startswith("\u2502 ")]
    rows = [_TABLE_ROW.match(line) for line in table]
    assert None not in rows, "\n".join(table)
    assert {row["suite"] for row in rows} == {"writer", "logging", "sinks"}
    assert len(rows) >= 17  # 8 writer, 5 logging (+2 structlog), 4 sinks (+2 HTTP)
    for row in rows:
        low, ratio, high = float(row["low"]), float(row["ratio"]), float(row["high"])
        assert low <= ratio <= high, row.group(0)
        assert row["repeats"] == "2", row.group(0)
    assert "spread: the lowest and highest ratio of repeat i" in " ".join(result.stdout.split())


def test_spread_pairs_repeats_by_index():
    """spread() divides repeat i by repeat i, not best by best or sorted by sorted."""
    assert spread([2.0, 3.0], [1.0, 2.0]) == (1.5, 2.0)
    assert spread([1.0, 4.0], [2.0, 1.0]) == (0.5, 4.0)  # sorted pairs would give 1.0 and 2.0
    assert spread([5.0], [2.0]) == (2.5, 2.5)


@pytest.mark.parametrize(("numerators", "denominators"), [([1.0, 2.0], [1.0]), ([], [])])
def test_spread_refuses_unpaired_repeats(numerators, denominators):
    """Repeats that cannot be paired one to one are an error naming both counts."""
    with pytest.raises(ValueError, match=f"got {len(numerators)} and {len(denominators)}"):
        spread(numerators, denominators)


@pytest.mark.parametrize(
    ("best", "expected"), [(min, 3.0 / 2.0), (max, 8.0 / 5.0)], ids=["times", "rates"]
)
def test_a_ratio_of_repeats_is_the_ratio_of_bests_within_its_spread(best, expected):
    """Ratio.of_repeats keeps the headline as best over best, and the paired spread."""
    ratio = Ratio.of_repeats(
        "suite", "name", [3.0, 8.0, 6.0], [4.0, 5.0, 2.0], 1.5, at_most=True, best=best
    )
    assert (ratio.value, ratio.low, ratio.high, ratio.repeats) == (expected, 0.75, 3.0, 3)
    assert ratio.spread_text == "0.75\u20133.00x"
    assert (ratio.target, ratio.at_most) == (1.5, True)


def test_a_ratio_without_repeats_shows_no_spread():
    """A Ratio made from a single figure (the old way) still works and shows ``-``."""
    ratio = Ratio("suite", "name", 2.0, 3.0)
    assert (ratio.passed, ratio.spread_text, ratio.repeats) == (False, "-", 1)


@pytest.mark.parametrize("suite", [writer, logging_, sinks], ids=lambda suite: suite.SUITE)
def test_each_suite_keeps_every_repeat_for_its_ratios_spread(suite):
    """With 2 repeats, every key ratio of a suite carries a spread over both, around its value."""
    sizes = suite.sizes(records=100, repeats=2)
    assert sizes.repeats == 2
    report = suite.run(sizes)
    assert report.lost == []
    for ratio in report.ratios:
        assert ratio.repeats == 2, ratio
        assert ratio.low is not None, ratio
        assert ratio.high is not None, ratio
        assert ratio.low <= ratio.value <= ratio.high, ratio


@pytest.mark.parametrize("suite", [writer, logging_, sinks], ids=lambda suite: suite.SUITE)
def test_each_suite_reports_tables_checks_and_ratios(suite):
    """A tiny run of each suite gives the report the scripts print: header, table, verdicts."""
    sizes = suite.sizes(records=100)
    report = suite.run(sizes)
    assert report.lost == []
    assert report.ratios
    assert all(ratio.suite == suite.SUITE for ratio in report.ratios)
    header = suite.header_lines(report.platform, sizes)
    assert header[0].startswith("python    ")
    assert header[-1] == ""
    lines = suite.result_lines(report)
    assert set(lines[lines.index("") - 1]) != {"-"}  # a table, then a blank line
    verdicts = [line for line in lines if line[:6] in {"PASS  ", "FAIL  ", "LOST  "}]
    assert verdicts
    assert verdicts == lines[-len(verdicts) :]


@pytest.mark.subprocess
@pytest.mark.parametrize("script", ["bench_writer.py", "bench_sinks.py"])
def test_benchmark_scripts_still_print_their_report(script, tmp_path):
    """``benchmarks/SCRIPT --quick`` runs the moved code and ends with its verdict lines."""
    result = run_python(REPO_ROOT / "benchmarks" / script, "--quick", cwd=tmp_path)
    assert_ran_cleanly(result)
    assert result.stdout.splitlines()[-1][:6] in {"PASS  ", "FAIL  "}


# --------------------------------------------------------------------------- replay


@pytest.mark.subprocess
def test_replay_help_explains_checkpoint_quarantine_and_exit_status(tmp_path):
    """``replay --help`` names the files it keeps beside FILE, examples and exit codes."""
    result = run_batchlog("replay", "--help", cwd=tmp_path)
    assert_ran_cleanly(result)
    for text in ("FILE.checkpoint", "FILE.quarantine.jsonl", "examples:", "exit status:"):
        assert text in result.stdout
    assert "python -m batchlog replay" in result.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--checkpoint", "{file}"], "--checkpoint"),
        (["--quarantine", "no-such-dir/q.jsonl"], "--quarantine"),
        (["--batch-size", "-3"], "--batch-size"),
    ],
    ids=["checkpoint-is-file", "quarantine-no-dir", "batch-size"],
)
def test_replay_bad_paths_and_sizes_are_one_line(args, named, tmp_path):
    """A bad option exits 2 with one line naming it, no traceback, and nothing sent."""
    dead_letter = tmp_path / "dead.jsonl"
    dead_letter.write_text(
        json.dumps({"record": {"message": "m", "timestamp": None}}) + "\n", encoding="utf-8"
    )
    target = tmp_path / "out.jsonl"
    result = run_batchlog(
        "replay",
        dead_letter,
        "--sink",
        f"jsonl:{target}",
        *(arg.format(file=dead_letter) for arg in args),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("python -m batchlog replay: error: ")
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists() or target.read_text(encoding="utf-8") == ""


def test_the_batchlog_script_is_the_same_command(tmp_path):
    """pip installs a ``batchlog`` script (``[project.scripts]``) that runs the command."""
    import importlib.metadata

    if sys.version_info >= (3, 10):
        scripts = importlib.metadata.entry_points(group="console_scripts")
    else:  # 3.9: a dict of groups
        scripts = importlib.metadata.entry_points().get("console_scripts", ())
    (entry_point,) = [entry for entry in scripts if entry.name == "batchlog"]
    assert entry_point.value == "batchlog.cli:main"
    script = Path(sys.executable).with_name("batchlog.exe" if os.name == "nt" else "batchlog")
    assert script.exists(), f"no {script}: install the package (pip install -e '.[test]')"
    env = {key: value for key, value in os.environ.items() if key not in _RICH_FORCING}
    env.update(PYTHONPATH=str(REPO_ROOT), COLUMNS="200", NO_COLOR="1")

    def run_script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ran = run_script("replay", "--help")
    assert (ran.returncode, ran.stderr) == (0, "")
    assert ran.stdout.startswith("usage: batchlog replay ")
    bad = run_script("nope")
    assert bad.returncode == 2
    assert bad.stderr.startswith("batchlog: error: ")
    assert len(bad.stderr.splitlines()) == 1
