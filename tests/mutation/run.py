"""Mutation check of the writer's core: apply each mutant to a copy, run the fast tests.

Run by hand (too slow for CI), from anywhere::

    . /work/venv/bin/activate
    python tests/mutation/run.py                 # every mutant, 2 at a time
    python tests/mutation/run.py --only I05 W32  # some of them
    python tests/mutation/run.py --list          # the mutants, checked, without running

It snapshots the repository once (``shutil.copytree``, without ``.git``, caches and
``__pycache__``; the working tree is never modified), checks that every mutant's ``old``
occurs exactly once, runs the unmutated snapshot (the subset must pass) and the canary
(``import batchlog`` fails: the subset must fail, which proves the copy is what the tests
import), then runs each mutant in a fresh copy of the snapshot with ``PYTHONPATH`` and the
working directory set to that copy. A run that passes means the mutant survived; one that
outlives ``--timeout`` is killed (its process group) and counted as ``timeout`` (a hang
the tests noticed, so a kill). Exits 1 if a mutant not marked ``equivalent`` survived, or
if one marked ``equivalent`` was killed (its justification is then wrong); 2 if the set-up
checks fail.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

#: The core's tests, run against each mutant (those that exist). With ``-x`` a run stops at
#: the first failure, so the quick and targeted files come first and the slow
#: interrupt-at-every-step file last: a mutant it alone kills still costs its full time.
DEFAULT_TESTS = (
    "tests/test_writer.py",
    "tests/test_writer_mutants.py",
    "tests/test_writer_callbacks.py",
    "tests/test_writer_timing.py",
    "tests/test_writer_gc.py",
    "tests/test_writer_memory.py",
    "tests/test_handler.py",
    "tests/test_processor.py",
    "tests/test_writer_model.py",
    "tests/test_writer_stress.py",
    "tests/test_writer_interrupts.py",
)
IGNORED = (".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")
MAX_JOBS = 2  # the machine has two cores


def _load_mutants() -> ModuleType:
    spec = importlib.util.spec_from_file_location("batchlog_mutants", HERE / "mutants.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks the module up by name
    spec.loader.exec_module(module)
    return module


mutants_module = _load_mutants()
Mutant = mutants_module.Mutant


@dataclass
class Result:
    """How one run ended."""

    mutant: Mutant  # type: ignore[valid-type]
    outcome: str  # "killed", "survived" or "timeout"
    seconds: float
    tail: str  # the end of pytest's output, to see what killed it

    @property
    def detected(self) -> bool:
        return self.outcome != "survived"


def check_mutants(snapshot: Path, mutants: list[Mutant]) -> list[str]:  # type: ignore[valid-type]
    """Return a problem for each mutant whose ``old`` is not exactly once in its file."""
    problems = []
    seen: set[str] = set()
    for mutant in mutants:
        if mutant.id in seen:
            problems.append(f"{mutant.id}: duplicate id")
        seen.add(mutant.id)
        text = (snapshot / mutant.file).read_text(encoding="utf-8")
        count = text.count(mutant.old)
        if count != 1:
            problems.append(f"{mutant.id}: `old` occurs {count} times in {mutant.file}")
        if mutant.old == mutant.new:
            problems.append(f"{mutant.id}: `new` is the same as `old`")
    return problems


def make_copy(source: Path, workdir: Path, name: str) -> Path:
    """Copy ``source`` to ``workdir / name`` without VCS data and caches."""
    target = workdir / name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    return target


def apply(copy: Path, mutant: Mutant) -> None:  # type: ignore[valid-type]
    path = copy / mutant.file
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(mutant.old, mutant.new, 1), encoding="utf-8")


def env_for(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """Run ``tests`` in ``copy``; return the outcome, the seconds taken and the output's tail."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=copy,
        env=env_for(copy),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a hang is killed whole
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        outcome = "timeout"
    else:
        outcome = "survived" if process.returncode == 0 else "killed"
    seconds = time.monotonic() - started
    tail = "\n".join(output.strip().splitlines()[-6:])
    return outcome, seconds, tail


def imported_from(copy: Path) -> str:
    """Where ``import batchlog`` comes from with the copy's environment."""
    return subprocess.run(
        [sys.executable, "-c", "import batchlog; print(batchlog.__file__)"],
        cwd=copy,
        env=env_for(copy),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def run_mutant(
    snapshot: Path,
    workdir: Path,
    mutant: Mutant,  # type: ignore[valid-type]
    tests: list[str],
    timeout: float,
) -> Result:
    copy = make_copy(snapshot, workdir, f"mutant-{mutant.id}")
    try:
        apply(copy, mutant)
        outcome, seconds, tail = run_tests(copy, tests, timeout)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return Result(mutant, outcome, seconds, tail)


def say(*parts: object) -> None:
    """Report progress on stdout (this is a command-line script)."""
    print(*parts, flush=True)  # noqa: T201 -- a script reports by printing


def label(result: Result) -> str:
    outcome = result.outcome
    if not result.mutant.equivalent:
        return outcome
    return "survived (equivalent)" if outcome == "survived" else f"{outcome} (marked equivalent!)"


def table(results: list[Result]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| id | result | seconds | fault modelled |",
        "|----|--------|--------:|----------------|",
    ]
    lines.extend(
        f"| {result.mutant.id} | {label(result)} | {result.seconds:.1f} "
        f"| {result.mutant.description} |"
        for result in results
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    parser.add_argument("--jobs", type=int, default=MAX_JOBS, help="parallel runs (at most 2)")
    parser.add_argument("--timeout", type=float, help="seconds per run (default: from baseline)")
    parser.add_argument("--tests", nargs="+", help="test files to run (default: the core's)")
    parser.add_argument("--list", action="store_true", help="check and list the mutants")
    parser.add_argument("--markdown", type=Path, help="also write the result table here")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each kill's output")
    args = parser.parse_args(argv)
    args.jobs = max(1, min(args.jobs, MAX_JOBS))
    if args.only:
        unknown = set(args.only) - {mutant.id for mutant in mutants_module.MUTANTS}
        if unknown:
            parser.error(f"no such mutant: {', '.join(sorted(unknown))}")
    return args


class SetupError(Exception):
    """A check before the mutants run failed; the message says which."""


def check_setup(snapshot: Path, workdir: Path, tests: list[str]) -> tuple[float, float]:
    """Check the copy imports itself, passes unmutated and fails with the canary.

    Returns the baseline's seconds and the per-mutant timeout derived from it.
    """
    origin = imported_from(snapshot)
    if not origin.startswith(str(snapshot)):
        msg = f"the copy imports batchlog from {origin}, not from the copy"
        raise SetupError(msg)
    outcome, baseline, tail = run_tests(snapshot, tests, 600.0)
    say(f"baseline (unmutated copy): {outcome} in {baseline:.1f} s")
    if outcome != "survived":
        msg = f"the unmutated copy does not pass the subset:\n{tail}"
        raise SetupError(msg)
    timeout = max(60.0, 3 * baseline)
    canary = run_mutant(snapshot, workdir, mutants_module.CANARY, tests, timeout)
    say(f"canary (import fails): {canary.outcome} in {canary.seconds:.1f} s")
    if canary.outcome != "killed":
        msg = "the canary was not killed: the tests do not import the mutated copy"
        raise SetupError(msg)
    return baseline, timeout


def run_all(
    snapshot: Path,
    workdir: Path,
    mutants: list[Mutant],  # type: ignore[valid-type]
    tests: list[str],
    args: argparse.Namespace,
) -> list[Result]:
    results: list[Result] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(run_mutant, snapshot, workdir, mutant, tests, args.timeout)
            for mutant in mutants
        ]
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            results.append(result)
            say(f"  {result.mutant.id:5} {label(result):24} {result.seconds:6.1f} s")
            if args.verbose and result.outcome == "killed":
                say("    " + result.tail.replace("\n", "\n    "))
    order = {mutant.id: index for index, mutant in enumerate(mutants)}
    return sorted(results, key=lambda result: order[result.mutant.id])


def summarize(results: list[Result], minutes: float, baseline: float, tests: list[str]) -> str:
    detected = sum(result.detected for result in results)
    timeouts = sum(result.outcome == "timeout" for result in results)
    equivalent = sum(bool(result.mutant.equivalent) for result in results)
    return (
        f"{detected}/{len(results)} killed ({timeouts} of them by timeout), "
        f"{equivalent} marked equivalent; {minutes:.1f} min for the mutants "
        f"({len(tests)} test files, baseline {baseline:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mutants = [
        mutant for mutant in mutants_module.MUTANTS if not args.only or mutant.id in args.only
    ]
    with tempfile.TemporaryDirectory(prefix="batchlog-mutation-") as temp:
        workdir = Path(temp)
        # One snapshot: others may edit the tree while this runs; every mutant sees the same.
        snapshot = make_copy(REPO, workdir, "snapshot")
        problems = check_mutants(snapshot, [mutants_module.CANARY, *mutants])
        if problems:
            say("mutants that cannot be applied:\n  " + "\n  ".join(problems))
            return 2
        if args.list:
            for mutant in mutants:
                mark = " [equivalent]" if mutant.equivalent else ""
                say(f"{mutant.id:5} {mutant.file:22} {mutant.description}{mark}")
            say(f"{len(mutants)} mutants, all applicable")
            return 0
        tests = args.tests or [name for name in DEFAULT_TESTS if (snapshot / name).is_file()]
        say("tests:", " ".join(tests))
        try:
            baseline, timeout = check_setup(snapshot, workdir, tests)
        except SetupError as error:
            say(error)
            return 2
        args.timeout = args.timeout or timeout
        say(f"{len(mutants)} mutants, {args.jobs} at a time, {args.timeout:.0f} s each at most")
        started = time.monotonic()
        results = run_all(snapshot, workdir, mutants, tests, args)
        minutes = (time.monotonic() - started) / 60

    report = table(results)
    summary = summarize(results, minutes, baseline, tests)
    say(f"\n{report}\n\n{summary}")
    for result in results:
        if result.mutant.equivalent:
            say(f"  {result.mutant.id} equivalent: {result.mutant.equivalent}")
    if args.markdown:
        args.markdown.write_text(f"{report}\n\n{summary}\n", encoding="utf-8")
    bad = [r for r in results if (r.outcome == "survived") != bool(r.mutant.equivalent)]
    if bad:
        say("not as expected:", ", ".join(f"{r.mutant.id} ({label(r)})" for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
