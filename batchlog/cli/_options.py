"""What the subcommands share: argument types that refuse bad values, and the extras check."""

from __future__ import annotations

import argparse
import importlib
import math

__all__ = [
    "LARGEST_SIZE",
    "MOST_THREADS",
    "SHORTEST_INTERVAL",
    "positive_int",
    "require",
    "seconds",
    "size",
    "thread_count",
]

#: The writer's shortest flush interval, in seconds.
SHORTEST_INTERVAL = 0.001
#: Most producer threads the demo starts.
MOST_THREADS = 256
#: The largest capacity or queue size a writer takes.
LARGEST_SIZE = 2**40


def _whole_number_up_to(text: str, most: int, shown: str) -> int:
    """Return ``text`` as a whole number from 1 to ``most`` (``shown`` in the message)."""
    number = positive_int(text)
    if number > most:
        msg = f"must be a whole number from 1 to {shown}, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def positive_int(text: str) -> int:
    """Return ``text`` as a whole number >= 1.

    Raises:
        argparse.ArgumentTypeError: It is not one; argparse reports the message as bad usage.
    """
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"must be a whole number >= 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def size(text: str) -> int:
    """Return ``text`` as a whole number from 1 to 2**40, the largest size a writer takes.

    Raises:
        argparse.ArgumentTypeError: It is not one; argparse reports the message as bad usage.
    """
    return _whole_number_up_to(text, LARGEST_SIZE, f"2**40 ({LARGEST_SIZE:,})")


def seconds(text: str) -> float:
    """Return ``text`` as a finite number of seconds >= ``SHORTEST_INTERVAL``.

    Raises:
        argparse.ArgumentTypeError: It is not one; argparse reports the message as bad usage.
    """
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= SHORTEST_INTERVAL):
        msg = f"must be a number of seconds >= {SHORTEST_INTERVAL}, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def thread_count(text: str) -> int:
    """Return ``text`` as a whole number from 1 to ``MOST_THREADS``.

    Raises:
        argparse.ArgumentTypeError: It is not one; argparse reports the message as bad usage.
    """
    return _whole_number_up_to(text, MOST_THREADS, str(MOST_THREADS))


def require(module: str, extra: str, parser: argparse.ArgumentParser) -> None:
    """Exit with status 2 and a one-line hint unless ``module`` (an optional extra) imports."""
    try:
        importlib.import_module(module)
    except ImportError:
        parser.exit(
            2, f"{parser.prog}: error: this needs {module}: pip install 'batchlog[{extra}]'\n"
        )
