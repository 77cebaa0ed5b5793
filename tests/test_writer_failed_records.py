"""A sink that says which records failed: counted per record, on_error gets only those."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchlog import BatchWriter, FailedRecordsError
from batchlog.sinks import FallbackSink, replay

WAIT = 30.0


def odd_ones_fail(batch: list[int]) -> None:
    failed = [number for number in batch if number % 2]
    if failed:
        raise FailedRecordsError(failed, cause=ConnectionError("refused"))


def run(sink: Any, records: int = 10, **options: Any) -> tuple[BatchWriter[int], list[Any]]:
    errors: list[tuple[Exception, list[int]]] = []
    writer: BatchWriter[int] = BatchWriter(
        records, 60.0, sink, on_error=lambda exc, batch: errors.append((exc, list(batch)))
    )
    for number in range(records):
        writer.add(number)
    writer.close(timeout=WAIT)
    return writer, errors


def test_only_the_records_the_sink_names_count_failed() -> None:
    writer, errors = run(odd_ones_fail)
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (5, 5)
    assert writer.metrics.flush_errors == 1
    ((error, failed),) = errors
    assert isinstance(error, FailedRecordsError)
    assert failed == [1, 3, 5, 7, 9]
    assert isinstance(error.cause, ConnectionError)
    assert str(error) == "5 record(s) of the batch not delivered: ConnectionError('refused')"


@pytest.mark.parametrize(
    "records", [None, list(range(11))], ids=["none-means-all", "more-than-the-batch"]
)
def test_none_or_too_many_records_fail_the_whole_batch(records: Any) -> None:
    def sink(batch: list[int]) -> None:
        raise FailedRecordsError(records)

    writer, errors = run(sink)
    assert (writer.metrics.records_processed, writer.metrics.records_failed) == (0, 10)
    assert errors[0][1] == list(range(10))


def test_records_must_be_a_list() -> None:
    with pytest.raises(TypeError, match=r"records must be a list .* not \(1, 2\)"):
        FailedRecordsError((1, 2))  # type: ignore[arg-type]


def test_without_on_error_the_report_says_how_many_of_the_batch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    writer: BatchWriter[int] = BatchWriter(10, 60.0, odd_ones_fail)
    for number in range(10):
        writer.add(number)
    writer.close(timeout=WAIT)
    assert "flush_fn failed 5 of the 10 records of a batch" in capsys.readouterr().err


def test_fallback_dead_letters_only_the_failed_records_and_replay_sends_them_once(
    tmp_path: Path,
) -> None:
    dead = tmp_path / "dead.jsonl"
    fallback = FallbackSink(odd_ones_fail, dead)
    writer, errors = run(fallback)
    fallback.close()
    assert errors == []  # every record is delivered or dead-lettered: none failed
    assert writer.metrics.records_processed == 10
    assert (fallback.metrics.dead_lettered_batches, fallback.metrics.dead_lettered_records) == (
        1,
        5,
    )
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [line["record"]["message"] for line in lines] == ["1", "3", "5", "7", "9"]
    replayed: list[Any] = []
    assert replay(dead, replayed.extend).delivered == 5
    assert [record["message"] for record in replayed] == ["1", "3", "5", "7", "9"]
