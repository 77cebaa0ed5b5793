"""What the benchmarks share: platform facts, the threaded timing loop, text tables, targets."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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
    "spread",
    "with_repeats",
]

_SizesT = TypeVar("_SizesT", bound="DataclassInstance")


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

    @classmethod
    def of(cls, ratio: Ratio, label: str) -> Check:
        """The check that ``ratio`` meets its target (it must have one)."""
        return cls(label, bool(ratio.passed))


def check_lines(checks: Sequence[Check]) -> list[str]:
    """Return ``PASS  label`` or ``FAIL  label`` for each check."""
    return [f"{'PASS' if check.passed else 'FAIL'}  {check.label}" for check in checks]


def with_repeats(chosen: _SizesT, repeats: int | None) -> _SizesT:
    """``chosen`` (a suite's ``Sizes`` dataclass), with ``repeats`` repeats when given."""
    return chosen if repeats is None else dataclasses.replace(chosen, repeats=repeats)


def spread(numerators: Sequence[float], denominators: Sequence[float]) -> tuple[float, float]:
    """Return the lowest and highest of ``numerators[i] / denominators[i]``.

    Repeat ``i`` of one side is paired with repeat ``i`` of the other, so the spread shows
    how far the ratio moves when each side's repeats vary (a busy machine widens it). The
    ratio of the two sides' best repeats (both smallest, or both largest) always lies
    within it.

    Raises:
        ValueError: The sequences are empty or of different lengths.
    """
    if not numerators or len(numerators) != len(denominators):
        msg = (
            f"spread needs as many numerators as denominators, at least one: got "
            f"{len(numerators)} and {len(denominators)}"
        )
        raise ValueError(msg)
    ratios = [top / bottom for top, bottom in zip(numerators, denominators)]
    return min(ratios), max(ratios)


@dataclasses.dataclass(frozen=True)
class Ratio:
    """A key comparison of a benchmark: a measured ratio and the target it is held to.

    ``value`` is the best repeat of the numerator over the best repeat of the denominator.
    ``at_most`` says the target is an upper bound (a cost relative to a floor); otherwise
    it is a lower bound (a speed-up). ``target`` None: shown for information. ``low`` and
    ``high`` are the ``spread`` of the per-repeat ratios over ``repeats`` repeats (None
    when only the bests were kept).
    """

    suite: str
    name: str
    value: float
    target: float | None = None
    at_most: bool = False
    low: float | None = None
    high: float | None = None
    repeats: int = 1

    @classmethod
    def of_repeats(
        cls,
        suite: str,
        name: str,
        numerators: Sequence[float],
        denominators: Sequence[float],
        target: float | None = None,
        *,
        at_most: bool = False,
        best: Callable[[Sequence[float]], float] = min,
    ) -> Ratio:
        """The ratio of ``best`` of each side's repeats, with the ``spread`` of paired repeats.

        ``best`` is ``min`` for times (smaller is better) and ``max`` for rates.
        """
        low, high = spread(numerators, denominators)
        return cls(
            suite,
            name,
            best(numerators) / best(denominators),
            target,
            at_most,
            low,
            high,
            len(numerators),
        )

    @property
    def spread_text(self) -> str:
        """The spread as ``1.18`` to ``1.31x`` joined by an en dash; ``-`` when not kept."""
        if self.low is None or self.high is None:
            return "-"
        return f"{self.low:.2f}\u2013{self.high:.2f}x"

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
