"""The exception tree, OverflowPolicy, Metrics, and the package's public surface."""

from __future__ import annotations
import __future__

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import batchlog
from batchlog import (
    BatchlogError,
    CapacityTooSmallError,
    InvalidFlushIntervalError,
    InvalidQueueSizeError,
    Metrics,
    MissingFlushFunctionError,
    OverflowPolicy,
    QueueFullError,
    WriterClosedError,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

METRICS_FIELDS = [
    "records_added",
    "records_dropped",
    "records_evicted",
    "records_processed",
    "records_failed",
    "records_in_buffer",
    "flush_count",
    "flush_errors",
    "last_flush_duration",
    "avg_flush_duration",
    "max_flush_duration",
    "total_flush_time",
    "reopened",
]


def make_metrics() -> Metrics:
    """Return a Metrics whose fields all hold different values."""
    return Metrics(
        records_added=10,
        records_dropped=1,
        records_evicted=2,
        records_processed=3,
        records_failed=4,
        records_in_buffer=1,
        flush_count=5,
        flush_errors=6,
        last_flush_duration=0.5,
        avg_flush_duration=0.25,
        max_flush_duration=0.75,
        total_flush_time=1.25,
        reopened=7,
    )


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (CapacityTooSmallError, ValueError),
        (InvalidFlushIntervalError, ValueError),
        (InvalidQueueSizeError, ValueError),
        (MissingFlushFunctionError, TypeError),
        (WriterClosedError, RuntimeError),
        (QueueFullError, TimeoutError),
    ],
)
def test_each_error_is_a_batchlog_error_and_the_expected_builtin(error, builtin):
    """Every error subclasses BatchlogError and the built-in a Python user would catch."""
    assert issubclass(error, BatchlogError)
    assert issubclass(error, builtin)


def test_batchlog_error_is_an_exception():
    """BatchlogError is an ordinary Exception, so ``except Exception`` catches it."""
    assert issubclass(BatchlogError, Exception)


def test_errors_are_the_same_classes_in_package_and_module():
    """The package re-exports the classes of batchlog.errors, not copies."""
    from batchlog import errors

    assert [getattr(errors, name) for name in errors.__all__] == [
        getattr(batchlog, name) for name in errors.__all__
    ]


# --------------------------------------------------------------------------- OverflowPolicy


def test_overflow_policy_values_are_the_documented_strings():
    """The three policies carry the contract's string values."""
    assert (
        OverflowPolicy.BLOCK.value,
        OverflowPolicy.DROP_NEWEST.value,
        OverflowPolicy.DROP_OLDEST.value,
    ) == ("block", "drop_newest", "drop_oldest")
    assert len(OverflowPolicy) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("block", OverflowPolicy.BLOCK),
        ("BLOCK", OverflowPolicy.BLOCK),
        ("drop_newest", OverflowPolicy.DROP_NEWEST),
        ("Drop_Newest", OverflowPolicy.DROP_NEWEST),
        ("DROP_OLDEST", OverflowPolicy.DROP_OLDEST),
    ],
)
def test_overflow_policy_parses_string_values_in_any_case(text, expected):
    """A policy's string value is accepted in any case."""
    assert expected is OverflowPolicy.parse(text)


@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_overflow_policy_parse_returns_members_unchanged(policy):
    """Parsing a member gives back that member."""
    assert policy is OverflowPolicy.parse(policy)


@pytest.mark.parametrize("value", ["drop", "", "drop-newest", None, 1])
def test_overflow_policy_parse_rejects_unknown_values_naming_valid_ones(value):
    """An unknown policy raises ValueError whose message lists every valid value."""
    with pytest.raises(ValueError, match="overflow") as info:
        OverflowPolicy.parse(value)
    message = str(info.value)
    assert all(policy.value in message for policy in OverflowPolicy)


def test_overflow_policy_str_is_its_value():
    """str() of a policy is its string value, as in config files."""
    assert str(OverflowPolicy.DROP_OLDEST) == "drop_oldest"


# --------------------------------------------------------------------------- Metrics


def test_metrics_as_dict_returns_every_field_in_order():
    """as_dict() returns all fields, in declaration order, with their values."""
    metrics = make_metrics()
    assert {name: getattr(metrics, name) for name in METRICS_FIELDS} == metrics.as_dict()
    assert list(metrics.as_dict()) == METRICS_FIELDS


def test_metrics_as_dict_returns_a_plain_independent_dict():
    """as_dict() gives a plain dict; changing it does not change the snapshot."""
    metrics = make_metrics()
    as_dict = metrics.as_dict()
    as_dict["records_added"] = -1
    assert dict is type(as_dict)
    assert metrics.records_added == 10
    assert metrics.as_dict()["records_added"] == 10


def test_metrics_is_frozen():
    """A Metrics snapshot cannot be changed."""
    metrics = make_metrics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.records_added = 0  # type: ignore[misc]


def test_metrics_compare_by_value():
    """Two snapshots with the same counts are equal."""
    assert make_metrics() == make_metrics()


# --------------------------------------------------------------------------- public surface


def test_all_is_sorted():
    """``batchlog.__all__`` is kept sorted."""
    assert sorted(batchlog.__all__) == batchlog.__all__


def test_all_lists_exactly_the_public_names():
    """Every public name of the package is in ``__all__``, and nothing else is."""
    public = {
        name
        for name, value in vars(batchlog).items()
        if not name.startswith("_")
        # submodules and the ``from __future__ import annotations`` flag are not API
        and not isinstance(value, (types.ModuleType, __future__._Feature))
    }
    assert public | {"__version__"} == set(batchlog.__all__)


def test_every_name_in_all_exists():
    """``from batchlog import *`` can import every name listed in ``__all__``."""
    namespace: dict[str, object] = {}
    exec("from batchlog import *", namespace)  # noqa: S102 -- the statement under test
    assert set(batchlog.__all__) <= set(namespace)


def test_version_is_a_string():
    """``batchlog.__version__`` is a non-empty string."""
    assert isinstance(batchlog.__version__, str)
    assert batchlog.__version__


def test_import_loads_no_optional_or_network_library():
    """``import batchlog`` imports no structlog, sqlite3 or network library."""
    script = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import batchlog\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO_ROOT),
        timeout=60,
        check=True,
    )
    imported = set(json.loads(completed.stdout))
    forbidden = {
        "structlog",
        "sqlite3",
        "http.client",
        "urllib.request",
        "httpx",
        "requests",
        "urllib3",
        "tenacity",
        "psycopg",
        "prometheus_client",
        "smtplib",
        "ftplib",
        "xmlrpc.client",
    }
    assert set() == imported & forbidden
