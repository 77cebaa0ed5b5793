"""The argument checks every part of batchlog shares: what each accepts, and what it says."""

from __future__ import annotations

import logging
import math
import re
from datetime import timedelta

import pytest

from batchlog import BatchingHandler, BatchingProcessor
from batchlog._validate import (
    MAX_SIZE,
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_pattern,
    check_seconds,
    level_number,
    number_from_config,
)

# --------------------------------------------------------------------------- check_int


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (5, 5), (10, 10)])
def test_check_int_returns_an_int_in_range(value, expected):
    """An int within the bounds (both included) comes back as it is."""
    assert expected == check_int("capacity", value, low=1, high=10)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (True, "from 1 to 10"),
        (False, "from 1 to 10"),
        (0, "from 1 to 10"),
        (11, "from 1 to 10"),
        (2.0, "from 1 to 10"),
        ("3", "from 1 to 10"),
        (None, "from 1 to 10"),
    ],
)
def test_check_int_rejects_bools_non_ints_and_out_of_range(value, allowed):
    """A bool is no size; neither is a float, a string or a number out of range."""
    with pytest.raises(ValueError, match=re.escape(f"capacity must be an int {allowed}")) as info:
        check_int("capacity", value, low=1, high=10)
    assert str(info.value).endswith(f"not {value!r}")


def test_check_int_raises_the_given_error_class():
    """The caller chooses the exception class (the writer raises its own errors)."""

    class CapacityError(ValueError):
        pass

    with pytest.raises(CapacityError, match=r"capacity must be an int >= 1, not 0"):
        check_int("capacity", 0, low=1, error=CapacityError)


def test_check_int_accepts_up_to_max_size():
    """MAX_SIZE is the largest size accepted with high=MAX_SIZE; one more is refused."""
    assert check_int("max_queue_size", MAX_SIZE, low=1, high=MAX_SIZE) == MAX_SIZE
    with pytest.raises(ValueError, match="max_queue_size"):
        check_int("max_queue_size", MAX_SIZE + 1, low=1, high=MAX_SIZE)


# --------------------------------------------------------------------------- check_seconds


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (2, 2.0), (0.5, 0.5)])
def test_check_seconds_returns_a_float(value, expected):
    """A finite number at or above the lower bound comes back as a float."""
    result = check_seconds("backoff", value)
    assert (expected, float) == (result, type(result))


@pytest.mark.parametrize("value", [True, False])
def test_check_seconds_rejects_a_bool(value):
    """True is an int to Python, never a number of seconds to a user."""
    with pytest.raises(ValueError, match=rf"backoff must be a number of seconds, not {value}"):
        check_seconds("backoff", value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_seconds_rejects_nan_and_infinity(value):
    """NaN and infinities are refused, naming the argument and the value."""
    expected = "backoff must be a finite number of seconds >= 0"
    with pytest.raises(ValueError, match=expected) as info:
        check_seconds("backoff", value)
    assert str(info.value).endswith(f"not {value!r}")


@pytest.mark.parametrize(
    ("kwargs", "value", "allowed"),
    [
        ({}, -0.1, ">= 0"),
        ({"above": True}, 0, "> 0"),
        ({"low": 0.001}, 0.0005, ">= 0.001"),
        ({"high": 60.0}, 61, "from 0 to 60"),
    ],
)
def test_check_seconds_enforces_its_range(kwargs, value, allowed):
    """Below ``low`` (or at it, with ``above``) or over ``high`` is refused, saying the range."""
    expected = f"read_timeout must be a finite number of seconds {allowed}, not {value!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_seconds("read_timeout", value, **kwargs)


def test_check_seconds_none_only_when_allowed():
    """None means "no limit" where allowed (and the message says so); elsewhere it is refused."""
    assert check_seconds("flush_timeout", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"flush_timeout must be a number of seconds, not None"):
        check_seconds("flush_timeout", None)
    with pytest.raises(ValueError, match=r">= 0 or None, not -1"):
        check_seconds("flush_timeout", -1, allow_none=True)


def test_check_seconds_timedelta_only_when_allowed():
    """A timedelta is taken as its seconds where allowed, and refused elsewhere."""
    assert check_seconds("flush_interval", timedelta(seconds=1.5), allow_timedelta=True) == 1.5
    with pytest.raises(ValueError, match=r"flush_interval must be a number of seconds, not"):
        check_seconds("flush_interval", timedelta(seconds=1))


def test_check_seconds_non_number_raises_type_error_when_asked():
    """With ``type_error``, a non-number raises that class; a bad number still ``error``."""
    with pytest.raises(TypeError, match=r"a number of seconds or a timedelta, not '5'"):
        check_seconds("flush_interval", "5", allow_timedelta=True, type_error=TypeError)
    with pytest.raises(ValueError, match="flush_interval"):
        check_seconds("flush_interval", -5, type_error=TypeError)


# --------------------------------------------------------------------------- check_callable


def test_check_callable_returns_a_callable():
    """A callable comes back as it is."""
    assert check_callable("sleep", print) is print


@pytest.mark.parametrize("value", [None, 42, "time.sleep"])
def test_check_callable_rejects_what_cannot_be_called(value):
    """Not callable raises TypeError naming the argument, what it must be, and the value."""
    with pytest.raises(TypeError, match=re.escape(f"sleep must be callable, not {value!r}")):
        check_callable("sleep", value)


def test_check_callable_optional_accepts_none_and_says_so():
    """With ``optional``, None is returned, and the message of a refusal mentions it."""
    assert check_callable("on_error", None, optional=True) is None
    with pytest.raises(TypeError, match=r"on_error must be a function or None, not 1"):
        check_callable("on_error", 1, optional=True, what="a function")


# --------------------------------------------------------------------------- check_bool


@pytest.mark.parametrize("value", [True, False])
def test_check_bool_returns_a_bool(value):
    """True and False come back as they are."""
    assert check_bool("fsync", value) is value


@pytest.mark.parametrize("value", [0, 1, "false", None])
def test_check_bool_rejects_anything_else(value):
    """0, 1 and the string "false" are not booleans: "false" would be truthy."""
    with pytest.raises(TypeError, match=re.escape(f"fsync must be True or False, not {value!r}")):
        check_bool("fsync", value)


# --------------------------------------------------------------------------- check_choice


@pytest.mark.parametrize("value", ["NORMAL", "normal", " Normal "])
def test_check_choice_returns_the_choice_as_spelt_in_choices(value):
    """Any case, around spaces, names the choice; the choice comes back as listed."""
    assert check_choice("synchronous", value, ("OFF", "NORMAL", "FULL")) == "NORMAL"


@pytest.mark.parametrize("value", ["sometimes", "", None, 1])
def test_check_choice_rejects_others_listing_the_choices(value):
    """Anything else is refused; the message names the argument, every choice and the value."""
    expected = f"synchronous must be one of 'OFF', 'NORMAL', 'FULL' (any case), not {value!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_choice("synchronous", value, ("OFF", "NORMAL", "FULL"))


# --------------------------------------------------------------------------- check_pattern


def test_check_pattern_returns_a_matching_string():
    """A string the pattern matches in full comes back as it is."""
    assert check_pattern("table", "logs", re.compile("[a-z]+"), allowed="lower case") == "logs"


@pytest.mark.parametrize("value", ["logs; DROP TABLE x", "LOGS", "", None, 42])
def test_check_pattern_needs_a_full_match_of_a_string(value):
    """A prefix match is not enough, and a non-string is refused with the same message."""
    expected = f"table must be lower-case letters, not {value!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_pattern("table", value, re.compile("[a-z]+"), allowed="lower-case letters")


# --------------------------------------------------------------------------- level_number


@pytest.mark.parametrize(
    ("level", "expected"),
    [(logging.ERROR, 40), (15, 15), ("ERROR", 40), ("warning", 30), (" info ", 20)],
)
def test_level_number_takes_numbers_and_names(level, expected):
    """A number is itself; a level name, in any case, is its number."""
    assert expected == level_number(level)


@pytest.mark.parametrize("level", [True, "LOUD", None, 2.5])
def test_level_number_rejects_bools_and_unknown_names(level):
    """A bool, an unknown name or another type raises ValueError naming the argument."""
    with pytest.raises(ValueError, match=r"^flush_level must be a logging level") as info:
        level_number(level, what="flush_level")
    assert str(info.value).endswith(f"not {level!r}")


# --------------------------------------------------------------------------- number_from_config


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [("100", int, 100), (" 2.5 ", float, 2.5), ("1e3", float, 1000.0), (7, int, 7)],
)
def test_number_from_config_converts_numeric_strings(value, kind, expected):
    """A numeric string from a config file becomes a number; a number stays as it is."""
    result = number_from_config(value, kind)
    assert (expected, kind) == (result, type(result))


@pytest.mark.parametrize(
    ("value", "kind"), [("lots", int), ("1.5", int), (None, int), (True, float)]
)
def test_number_from_config_passes_anything_else_through(value, kind):
    """What is not a numeric string is left for the real check to accept or reject by name."""
    assert number_from_config(value, kind) is value


# --------------------------------------------------------------------------- the front doors


@pytest.mark.parametrize("front_door", [BatchingHandler, BatchingProcessor])
@pytest.mark.parametrize("flush_timeout", [-1, math.nan, math.inf, "soon", True])
def test_front_doors_reject_a_bad_flush_timeout_alike(front_door, sink, flush_timeout):
    """The handler and the processor refuse the same bad flush_timeout with the same words."""
    with pytest.raises(ValueError, match=r"^flush_timeout must be a (finite )?number of seconds"):
        front_door(sink, flush_timeout=flush_timeout)


@pytest.mark.parametrize("front_door", [BatchingHandler, BatchingProcessor])
def test_front_doors_accept_none_as_flush_timeout(front_door, sink):
    """None (wait as long as it takes) is a valid flush_timeout for both front doors."""
    door = front_door(sink, flush_timeout=None)
    try:
        assert door.flush_timeout is None
    finally:
        door.close()
