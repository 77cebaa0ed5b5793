"""Sinks that write files check their path at construction, naming it (not at a batch)."""

from __future__ import annotations

import logging.config
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from batchlog.sinks import FallbackSink, JsonLinesSink, SQLiteSink

SINKS: dict[str, tuple[Callable[[str], Any], str]] = {
    "jsonl": (JsonLinesSink, "path"),
    "sqlite": (SQLiteSink, "path"),
    "fallback": (lambda path: FallbackSink(lambda batch: None, path), "dead_letter_path"),
}


@pytest.fixture(params=sorted(SINKS))
def build(request: pytest.FixtureRequest) -> tuple[Callable[[str], Any], str]:
    return SINKS[request.param]


def test_a_missing_directory_is_refused_naming_the_path(tmp_path: Path, build: Any) -> None:
    make, what = build
    path = str(tmp_path / "missing" / "logs.out")
    with pytest.raises(FileNotFoundError) as caught:
        make(path)
    message = str(caught.value)
    assert message.startswith(f"{what} {path!r}")
    assert str(tmp_path / "missing") in message


def test_a_directory_where_a_file_is_expected_is_refused(tmp_path: Path, build: Any) -> None:
    make, _ = build
    with pytest.raises(IsADirectoryError, match="is a directory"):
        make(str(tmp_path))


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: Path, build: Any) -> None:
    make, _ = build
    (tmp_path / "plain").write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        make(str(tmp_path / "plain" / "logs.out"))


def test_a_path_this_process_cannot_write_is_refused(
    tmp_path: Path, build: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.access decides (as root, which CI is, chmod would not refuse anything)."""
    make, _ = build
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="is not writable by this process"):
        make(str(tmp_path / "logs.out"))


def test_a_new_file_in_an_existing_directory_and_an_existing_file_are_fine(
    tmp_path: Path, build: Any
) -> None:
    make, _ = build
    make(str(tmp_path / "new.out")).close()
    existing = tmp_path / "existing.out"
    existing.touch()
    make(str(existing)).close()


def test_sqlite_in_memory_needs_no_path() -> None:
    SQLiteSink(":memory:").close()


def test_dictconfig_reports_a_missing_directory_at_configuration(tmp_path: Path) -> None:
    path = str(tmp_path / "missing" / "logs.jsonl")
    config = {
        "version": 1,
        "handlers": {
            "batch": {
                "class": "batchlog.BatchingHandler",
                "sink": {"()": "batchlog.sinks.JsonLinesSink", "path": path},
            }
        },
    }
    with pytest.raises(ValueError, match="Unable to configure handler 'batch'") as caught:
        logging.config.dictConfig(config)
    cause = caught.value.__cause__
    assert isinstance(cause, FileNotFoundError)
    assert str(cause) == (
        f"path {path!r}: its directory {str(tmp_path / 'missing')!r} does not exist"
    )
