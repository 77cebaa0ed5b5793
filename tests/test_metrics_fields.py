"""``batchlog.metrics.METRIC_FIELDS``: one definition per counter, and the docs agree with it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from batchlog import Metrics
from batchlog.metrics import METRIC_FIELDS, METRIC_FIELDS_BY_NAME, MetricField
from batchlog.sinks import FallbackMetrics
from batchlog.sinks.fallback import FALLBACK_METRIC_FIELDS

METRICS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"

#: How docs/metrics.md writes each OpenTelemetry instrument kind.
INSTRUMENT_WORDS = {"counter": "counter", "up_down_counter": "up-down counter", "gauge": "gauge"}


def docs_table(first_header: str) -> list[dict[str, str]]:
    """Return the rows of the docs/metrics.md table whose first header cell is ``first_header``.

    Each row maps a header cell to its cell, both stripped of spaces and backticks.
    """
    lines = METRICS_PAGE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        cells = table_cells(line)
        if cells and cells[0] == first_header:
            rows = []
            for row in lines[number + 2 :]:  # after the |---| separator
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(cells, table_cells(row))))
            return rows
    raise AssertionError(f"docs/metrics.md has no table headed {first_header!r}")


def table_cells(line: str) -> list[str]:
    """Return the cells of one Markdown table row, without backticks; [] if it is none."""
    if not line.startswith("|"):
        return []
    return [cell.strip().replace("`", "") for cell in line.strip().strip("|").split("|")]


def by_field(rows: list[dict[str, str]], header: str) -> dict[str, dict[str, str]]:
    """Key ``rows`` by their ``header`` cell, failing if a field is listed twice."""
    names = [row[header] for row in rows]
    assert sorted(set(names)) == sorted(names), f"listed twice: {names}"
    return {row[header]: row for row in rows}


@pytest.mark.parametrize(
    ("snapshot_class", "definitions"),
    [(Metrics, METRIC_FIELDS), (FallbackMetrics, FALLBACK_METRIC_FIELDS)],
)
def test_definitions_name_every_field_in_declaration_order(snapshot_class, definitions):
    """One definition per snapshot field, in the dataclass's order."""
    expected = [field.name for field in dataclasses.fields(snapshot_class)]

    assert expected == [definition.name for definition in definitions]


@pytest.mark.parametrize(
    "definition", [*METRIC_FIELDS, *FALLBACK_METRIC_FIELDS], ids=lambda field: field.name
)
def test_each_definition_follows_the_naming_rules(definition):
    """Counters end in _total, durations are in seconds, instrument kinds match."""
    if definition.kind == "counter":
        assert definition.prometheus_name.endswith("_total")
        assert definition.otel_instrument == "counter"
    else:
        assert definition.kind == "gauge"
        assert not definition.prometheus_name.endswith("_total")
        assert definition.otel_instrument in {"gauge", "up_down_counter"}
    if definition.unit == "s":
        assert "_seconds" in definition.prometheus_name
    else:
        assert re.fullmatch(r"\{[a-z]+\}", definition.unit)
    assert definition.otel_name.startswith("batchlog.")
    assert definition.description.endswith(".")
    assert "`" not in definition.description  # plain text: it is a help text too


def test_exported_names_are_unique():
    """No two definitions share a Prometheus or an OpenTelemetry name."""
    definitions = (*METRIC_FIELDS, *FALLBACK_METRIC_FIELDS)

    prometheus_names = {definition.prometheus_name for definition in definitions}
    otel_names = {definition.otel_name for definition in definitions}

    assert len(definitions) == len(prometheus_names) == len(otel_names)


def test_definitions_are_immutable():
    """A MetricField cannot be changed or given new attributes."""
    definition = METRIC_FIELDS[0]

    with pytest.raises(dataclasses.FrozenInstanceError):
        definition.description = "changed"  # type: ignore[misc]
    assert not hasattr(definition, "__dict__")


def test_definitions_by_name_look_up_every_field():
    """METRIC_FIELDS_BY_NAME maps each name to its definition, read-only."""
    assert list(METRIC_FIELDS) == list(METRIC_FIELDS_BY_NAME.values())
    assert METRIC_FIELDS_BY_NAME["flush_count"].prometheus_name == "flushes_total"
    with pytest.raises(TypeError):
        METRIC_FIELDS_BY_NAME["flush_count"] = METRIC_FIELDS[0]  # type: ignore[index]


def test_docs_fields_table_gives_each_meaning():
    """The "Fields" table of docs/metrics.md lists every field once, with its description."""
    rows = by_field(docs_table("field"), "field")

    assert [field.name for field in METRIC_FIELDS] == list(rows)
    for field in METRIC_FIELDS:
        assert field.description == rows[field.name]["meaning"], field.name


def test_docs_export_table_gives_each_exported_name():
    """The export table of docs/metrics.md gives every field's names, kinds and unit."""
    rows = by_field(docs_table("Metrics field"), "Metrics field")

    assert [field.name for field in METRIC_FIELDS] == list(rows)
    for field in METRIC_FIELDS:
        assert expected_export_row(field) == rows[field.name]


def expected_export_row(field: MetricField) -> dict[str, str]:
    """The export-table row docs/metrics.md should show for ``field``."""
    return {
        "Metrics field": field.name,
        "Prometheus (batchlog.prometheus)": f"batchlog_{field.prometheus_name}",
        "type": field.kind,
        "OpenTelemetry (batchlog.otel)": field.otel_name,
        "instrument": INSTRUMENT_WORDS[field.otel_instrument],
        "unit": field.unit,
    }


def test_docs_fallback_table_gives_each_counter():
    """The FallbackSink table of docs/metrics.md gives every counter's meaning and names."""
    rows = by_field(docs_table("FallbackMetrics field"), "FallbackMetrics field")

    assert [field.name for field in FALLBACK_METRIC_FIELDS] == list(rows)
    for field in FALLBACK_METRIC_FIELDS:
        assert field.kind == "counter"  # the page says they all are
        assert {
            "FallbackMetrics field": field.name,
            "meaning": field.description,
            "Prometheus": f"batchlog_{field.prometheus_name}",
            "OpenTelemetry": field.otel_name,
            "unit": field.unit,
        } == rows[field.name]
