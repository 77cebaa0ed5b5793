"""Every argument check in one place: each error names the argument, the value and what is allowed.

The checks reject ``bool`` where a number is wanted (``True`` is an ``int`` to Python, never a
size or a number of seconds to a user), and each takes the exception class to raise, so the
writer can raise its own ``BatchlogError`` subclasses with the same wording as everyone else.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Callable, Literal, TypeVar, overload

__all__ = [
    "MAX_SIZE",
    "bool_from_config",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_int",
    "check_pattern",
    "check_seconds",
    "level_number",
    "number_from_config",
]

#: The largest size (a capacity, a queue size) any check accepts: larger is a typo, not a plan.
MAX_SIZE = 2**40

N = TypeVar("N", int, float)


def _allowed_range(low: float | None, high: float | None, *, above: bool = False) -> str:
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    if low is not None:
        return f"> {low:g}" if above else f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return "of any size"


def check_int(
    name: str,
    value: object,
    *,
    low: int | None = None,
    high: int | None = None,
    error: type[Exception] = ValueError,
) -> int:
    """Return ``value`` if it is an int (not a bool) within ``low``..``high``.

    Raises:
        error: ``value`` is not an int, or out of range; the message names ``name``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        msg = f"{name} must be an int {_allowed_range(low, high)}, not {value!r}"
        raise error(msg)
    return value


@overload
def check_seconds(
    name: str,
    value: object,
    *,
    low: float = ...,
    above: bool = ...,
    high: float | None = ...,
    allow_none: Literal[False] = ...,
    allow_timedelta: bool = ...,
    error: type[Exception] = ...,
    type_error: type[Exception] | None = ...,
) -> float: ...


@overload
def check_seconds(
    name: str,
    value: object,
    *,
    low: float = ...,
    above: bool = ...,
    high: float | None = ...,
    allow_none: bool,
    allow_timedelta: bool = ...,
    error: type[Exception] = ...,
    type_error: type[Exception] | None = ...,
) -> float | None: ...


def check_seconds(
    name: str,
    value: object,
    *,
    low: float = 0.0,
    above: bool = False,
    high: float | None = None,
    allow_none: bool = False,
    allow_timedelta: bool = False,
    error: type[Exception] = ValueError,
    type_error: type[Exception] | None = None,
) -> float | None:
    """Return ``value`` as float seconds if it is a finite number >= ``low`` (> with ``above``).

    Args:
        name: The argument's name, for the message.
        value: What was given.
        low: The least allowed.
        above: ``value`` must be strictly above ``low``.
        high: The most allowed, if any.
        allow_none: None is allowed (and returned): "no limit".
        allow_timedelta: A ``datetime.timedelta`` is allowed too.
        error: Raised for a number out of range (and for a non-number, unless
            ``type_error`` is given).
        type_error: Raised for something that is not a number at all.

    Raises:
        error: ``value`` is out of range, NaN or infinite.
        type_error: ``value`` is not a number of seconds.
    """
    if value is None and allow_none:
        return None
    if allow_timedelta and isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        kinds = "a number of seconds"
        if allow_timedelta:
            kinds += " or a timedelta"
        if allow_none:
            kinds += " or None"
        msg = f"{name} must be {kinds}, not {value!r}"
        raise (type_error or error)(msg)
    if (
        not math.isfinite(seconds)
        or (seconds <= low if above else seconds < low)
        or (high is not None and seconds > high)
    ):
        tail = " or None" if allow_none else ""
        msg = (
            f"{name} must be a finite number of seconds "
            f"{_allowed_range(low, high, above=above)}{tail}, not {value!r}"
        )
        raise error(msg)
    return seconds


@overload
def check_callable(
    name: str,
    value: object,
    *,
    optional: Literal[False] = ...,
    what: str = ...,
    error: type[Exception] = ...,
) -> Callable[..., Any]: ...


@overload
def check_callable(
    name: str,
    value: object,
    *,
    optional: bool,
    what: str = ...,
    error: type[Exception] = ...,
) -> Callable[..., Any] | None: ...


def check_callable(
    name: str,
    value: object,
    *,
    optional: bool = False,
    what: str = "callable",
    error: type[Exception] = TypeError,
) -> Callable[..., Any] | None:
    """Return ``value`` if it is callable (or None, when ``optional``).

    Raises:
        error: ``value`` is not callable; the message says it should be ``what``.
    """
    if value is None and optional:
        return None
    if value is None or not callable(value):
        tail = " or None" if optional else ""
        msg = f"{name} must be {what}{tail}, not {value!r}"
        raise error(msg)
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is True or False.

    Raises:
        TypeError: ``value`` is not a bool.
    """
    if not isinstance(value, bool):
        msg = f"{name} must be True or False, not {value!r}"
        raise TypeError(msg)
    return value


def check_choice(
    name: str,
    value: object,
    choices: Sequence[str],
    *,
    error: type[Exception] = ValueError,
) -> str:
    """Return the one of ``choices`` that ``value`` names, in any case and around spaces.

    Raises:
        error: ``value`` is not a str naming one of ``choices``; the message lists them.
    """
    if isinstance(value, str):
        wanted = value.strip().casefold()
        for choice in choices:
            if choice.casefold() == wanted:
                return choice
    allowed = ", ".join(map(repr, choices))
    msg = f"{name} must be one of {allowed} (any case), not {value!r}"
    raise error(msg)


def check_pattern(
    name: str,
    value: object,
    pattern: re.Pattern[str],
    *,
    allowed: str,
    error: type[Exception] = ValueError,
) -> str:
    """Return ``value`` if it is a str that ``pattern`` matches in full.

    Args:
        name: The argument's name, for the message.
        value: What was given.
        pattern: What a valid value looks like.
        allowed: What a valid value is, in words, for the message ("a plain SQL identifier").
        error: Raised for anything else (a non-str too).

    Raises:
        error: ``value`` is not a str, or ``pattern`` does not match all of it.
    """
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        msg = f"{name} must be {allowed}, not {value!r}"
        raise error(msg)
    return value


def level_number(level: object, *, what: str = "level") -> int:
    """Return the number of a logging level given as a number or a name (any case).

    Raises:
        ValueError: ``level`` names no level; the message names ``what``.
    """
    if isinstance(level, bool):
        pass
    elif isinstance(level, int):
        return level
    elif isinstance(level, str):
        number = logging.getLevelName(level.strip().upper())
        if isinstance(number, int):
            return number
    msg = f"{what} must be a logging level number or name such as 'ERROR', not {level!r}"
    raise ValueError(msg)


_CONFIG_BOOLS = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}


def bool_from_config(value: Any) -> Any:
    """Turn a boolean string from a config file ("true", "off", "1") into a bool; else as is.

    Anything else passes through untouched, for ``check_bool`` to accept or reject by name.
    """
    if isinstance(value, str):
        return _CONFIG_BOOLS.get(value.strip().lower(), value)
    return value


def number_from_config(value: Any, kind: type[N]) -> Any:
    """Turn a numeric string from a config file ("100", "2.5") into ``kind``; else as is.

    Anything else passes through untouched, for the real check to accept or reject by name.
    """
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            return value
    return value
