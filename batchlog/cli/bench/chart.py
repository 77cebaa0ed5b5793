"""A bar chart of the benchmarks' key ratios against their targets (needs matplotlib).

Only ``python -m batchlog bench --plot FILE`` imports this module; matplotlib is the
optional ``plot`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._common import PlatformInfo, Ratio

__all__ = ["plot_ratios"]

_COLOURS = {True: "#2e7d32", False: "#c62828", None: "#78909c"}  # met, missed, no target


def plot_ratios(ratios: Sequence[Ratio], path: str, *, platform: PlatformInfo, title: str) -> None:
    """Draw one horizontal bar per ratio, its target as a black tick, and save it to ``path``.

    The axis is logarithmic (ratios run from about 1 to 100). A bar is green when its
    target is met, red when not, grey when it has none; its error bar spans the ratio's
    spread over the repeats; a label says ``<= 1.5x`` (a cost that must stay under) or
    ``>= 3x`` (a speed-up that must reach).

    Raises:
        ImportError: matplotlib is not installed.
        OSError: The file could not be written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    from matplotlib import lines, patches, pyplot, ticker

    ratios = list(reversed(ratios))  # barh draws bottom-up; keep the table's order top-down
    height = 1.2 + 0.38 * len(ratios)
    figure, axes = pyplot.subplots(figsize=(10, height))
    try:
        positions = list(range(len(ratios)))
        values = [ratio.value for ratio in ratios]
        # The spread over repeats as an error bar; none where only the best was kept.
        below = [
            ratio.value - (ratio.low if ratio.low is not None else ratio.value) for ratio in ratios
        ]
        above = [
            (ratio.high if ratio.high is not None else ratio.value) - ratio.value
            for ratio in ratios
        ]
        axes.barh(
            positions,
            values,
            color=[_COLOURS[ratio.passed] for ratio in ratios],
            height=0.62,
            xerr=[below, above],
            error_kw={"ecolor": "#424242", "elinewidth": 1, "capsize": 2},
        )
        for position, ratio in zip(positions, ratios):
            if ratio.target is not None:
                axes.plot(
                    [ratio.target, ratio.target],
                    [position - 0.42, position + 0.42],
                    color="black",
                    linewidth=2,
                )
            target = "no target" if ratio.target is None else f"target {ratio.target_text}"
            axes.text(
                max(ratio.high or ratio.value, ratio.target or 0.0) * 1.1,
                position,
                f"{ratio.value:.2f}x  ({target})",
                va="center",
                fontsize=8,
            )
        axes.set_yticks(positions)
        axes.set_yticklabels([f"{ratio.suite}: {ratio.name}" for ratio in ratios], fontsize=8)
        axes.set_xscale("log")
        largest = max(
            [*values, *(ratio.high or 1.0 for ratio in ratios), *(r.target or 1.0 for r in ratios)]
        )
        smallest = min([*values, *(ratio.low or 1.0 for ratio in ratios), 1.0])
        axes.set_xlim(
            10 ** math.floor(math.log10(smallest)), 10 ** math.ceil(math.log10(largest * 6))
        )
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}x"))
        axes.axvline(1.0, color="#9e9e9e", linewidth=0.8, linestyle=":", zorder=0)
        axes.set_xlabel("ratio (log scale)")
        axes.legend(
            handles=[
                patches.Patch(color=_COLOURS[True], label="target met"),
                patches.Patch(color=_COLOURS[False], label="target missed"),
                patches.Patch(color=_COLOURS[None], label="no target"),
                lines.Line2D([], [], color="black", linewidth=2, label="target"),
                lines.Line2D([], [], color="#424242", linewidth=1, label="spread over repeats"),
            ],
            loc="lower right",
            fontsize=8,
        )
        axes.set_title(
            f"{title}\n{platform.implementation} {platform.python_version}, "
            f"{platform.machine}, {platform.cpus} CPUs",
            fontsize=10,
        )
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        pyplot.close(figure)
