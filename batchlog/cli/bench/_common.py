"""What the benchmarks share: platform facts, the threaded timing loop, text tables, targets."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from typing import Callable

__all__ = [
    "BenchmarkError",
    "Check",
    "Column",
    "PlatformInfo",
    "Ratio",
    "check_lines",
    "format_table",
    "platform_info",
    "run_threads",
]


class BenchmarkError(RuntimeError):
    """A run could not be measured honestly: records were lost or a writer did not close."""


@dataclasses.dataclass(frozen=True)
class PlatformInfo:
    """The facts about the interpreter and machine that every report starts with."""

    implementation: str
    python_version: str
    platform: str
    machine: str
    processor: str
    cpus: int | None
    gil_enabled: bool


def platform_info() -> PlatformInfo:
    """Return the ``PlatformInfo`` of this process."""
    gil_enabled: bool = getattr(sys, "_is_gil_enabled", lambda: True)()
    return PlatformInfo(
        implementation=platform.python_implementation(),
        python_version=sys.version.split()[0],
        platform=platform.platform(),
        machine=platform.machine(),
        processor=platform.processor(),
        cpus=os.cpu_count(),
        gil_enabled=gil_enabled,
    )


def run_threads(work: Callable[[int], object], threads: int, per_thread: int) -> float:
    """Run ``work(per_thread)`` on ``threads`` threads started together; return wall seconds.

    The clock runs from the first thread's start (after a Barrier) to the last one's end,
    so the result is the aggregate wall time of all producers.
    """
    barrier = threading.Barrier(threads)
    starts: list[float] = []
    ends: list[float] = []

    def run() -> None:
        barrier.wait()
        started = time.perf_counter()
        work(per_thread)
        ends.append(time.perf_counter())
        starts.append(started)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return max(ends) - min(starts)


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a text table: its title, its width, and ``"<"`` or ``">"`` alignment."""

    title: str
    width: int
    align: str = ">"


def format_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], *, rule: bool = True
) -> list[str]:
    """Return a header line, a rule of dashes (if ``rule``) and one line per row.

    Cells are already formatted text; each is padded to its column's width (a wider cell
    pushes the rest of its line right), and cells are separated by one space.
    """

    def line(cells: Sequence[str]) -> str:
        return " ".join(
            f"{cell:{column.align}{column.width}}" for column, cell in zip(columns, cells)
        )

    header = line([column.title for column in columns])
    lines = [header]
    if rule:
        lines.append("-" * len(header))
    lines.extend(line(row) for row in rows)
    return lines


@dataclasses.dataclass(frozen=True)
class Check:
    """One PASS/FAIL line of a report: what was checked, with the figures, and the verdict."""

    label: str
    passed: bool


def check_lines(checks: Sequence[Check]) -> list[str]:
    """Return ``PASS  label`` or ``FAIL  label`` for each check."""
    return [f"{'PASS' if check.passed else 'FAIL'}  {check.label}" for check in checks]


@dataclasses.dataclass(frozen=True)
class Ratio:
    """A key comparison of a benchmark: a measured ratio and the target it is held to.

    ``at_most`` says the target is an upper bound (a cost relative to a floor); otherwise
    it is a lower bound (a speed-up). ``target`` None: shown for information.
    """

    suite: str
    name: str
    value: float
    target: float | None = None
    at_most: bool = False

    @property
    def passed(self) -> bool | None:
        """Whether the target is met; None when there is no target."""
        if self.target is None:
            return None
        return self.value <= self.target if self.at_most else self.value >= self.target

    @property
    def target_text(self) -> str:
        """The target as ``<= 1.5x`` or ``>= 3x``; ``-`` when there is none."""
        if self.target is None:
            return "-"
        return f"{'<=' if self.at_most else '>='} {self.target:g}x"
