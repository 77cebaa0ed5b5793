"""How a sink may be given: a callable, an import string of any form, or a factory mapping."""

from __future__ import annotations

import logging.handlers
import string
import sys
import threading

import pytest
import structlog
from conftest import WAIT

from batchlog import BatchingHandler, BatchingProcessor
from batchlog._sinkspec import build_from_spec, import_string, resolve_sink
from batchlog.sinks import HandlerSink, JsonLinesSink

# --------------------------------------------------------------------------- import strings


@pytest.mark.parametrize(
    "template",
    [
        "{module}:sink",
        "{module}.sink",
        "ext://{module}.sink",
        "ext://{module}:sink",
        "{module}:Sinks.sink",
        "{module}.Sinks.sink",
        "  {module}:sink  ",
    ],
)
def test_import_string_names_the_sink(sink_module, template):
    """Every import string form resolves to the object it names."""
    assert resolve_sink(template.format(module=sink_module.__name__)) is sink_module.sink


@pytest.mark.parametrize(
    "spec",
    [
        "logging.handlers:RotatingFileHandler.doRollover",
        "logging.handlers.RotatingFileHandler.doRollover",
        "ext://logging.handlers.RotatingFileHandler.doRollover",
    ],
)
def test_import_string_walks_attributes_after_the_module(spec):
    """As pkgutil.resolve_name: after "pkg.mod:" (or the longest importable prefix) come
    attributes of attributes."""
    assert import_string(spec) is logging.handlers.RotatingFileHandler.doRollover


def test_callable_is_used_as_it_is(sink):
    """A callable is the sink itself."""
    assert resolve_sink(sink) is sink


def test_handler_accepts_an_import_string(make_handler, sink_module):
    """BatchingHandler resolves an import string to its sink."""
    assert make_handler(f"{sink_module.__name__}:sink").sink is sink_module.sink


def test_processor_accepts_an_import_string(make_processor, sink_module):
    """BatchingProcessor resolves an import string and delivers to that sink."""
    processor = make_processor(f"{sink_module.__name__}.sink")
    with pytest.raises(structlog.DropEvent):
        processor(None, "info", {"event": "hello"})
    processor.flush()
    assert sink_module.received == [{"event": "hello"}]


# --------------------------------------------------------------------------- factory mappings


def test_mapping_with_a_callable_factory_is_called_with_its_keywords(sink_module):
    """{"()": factory, **kwargs} builds the sink by calling factory(**kwargs)."""
    built = resolve_sink({"()": sink_module.TaggingSink, "tag": "a", "suffix": "-1"})
    assert isinstance(built, sink_module.TaggingSink)
    assert built.tag == "a-1"


@pytest.mark.parametrize(
    "template", ["{module}:TaggingSink", "{module}.TaggingSink", "ext://{module}.TaggingSink"]
)
def test_mapping_with_an_import_string_factory_is_imported_then_called(sink_module, template):
    """A factory given as an import string is imported, then called with the other keys."""
    built = resolve_sink({"()": template.format(module=sink_module.__name__), "tag": "b"})
    assert isinstance(built, sink_module.TaggingSink)
    assert built.tag == "b"


def test_mapping_factory_may_be_a_function(sink_module):
    """The factory may be any callable returning a sink, such as a function."""
    built = resolve_sink({"()": f"{sink_module.__name__}:make_tagging_sink", "tag": "c"})
    built(["record"])
    assert sink_module.received == [("c", "record")]


def test_dictconfig_resolves_ext_values_inside_a_factory_mapping(dict_config, sink_module):
    """A mapping's values are indexed, so dictConfig turns an "ext://" value into its object."""
    sink_spec = {
        "()": f"{sink_module.__name__}.TaggingSink",
        "tag": "cfg-",
        "suffix": "ext://string.digits",
    }
    _, handler = dict_config(
        {"class": "batchlog.BatchingHandler", "sink": sink_spec, "capacity": 1}
    )
    assert handler.sink.tag == f"cfg-{string.digits}"


def test_handler_closes_a_sink_built_from_a_mapping(make_handler, sink_module):
    """A sink the handler built from a mapping is closed when the handler closes."""
    handler = make_handler({"()": f"{sink_module.__name__}.TaggingSink", "tag": "d"})
    handler.close()
    assert handler.sink.closed


# --------------------------------------------------------------------------- dictConfig


@pytest.mark.parametrize(
    ("sink_spec", "expected"),
    [
        ("{module}:sink", "message"),
        ("{module}.sink", "message"),
        ("ext://{module}.sink", "message"),
        ({"()": "{module}.TaggingSink", "tag": "cfg"}, ("cfg", "message")),
        ({"()": "{module}:make_tagging_sink", "tag": "fn"}, ("fn", "message")),
    ],
    ids=["colon", "dotted", "ext", "mapping-class", "mapping-function"],
)
def test_dictconfig_accepts_every_sink_form(dict_config, sink_module, sink_spec, expected):
    """From dictConfig, with plain values only, every sink form delivers records."""
    module = sink_module.__name__
    if isinstance(sink_spec, str):
        sink_spec = sink_spec.format(module=module)
    else:
        sink_spec = {key: value.format(module=module) for key, value in sink_spec.items()}
    logger, _ = dict_config({"class": "batchlog.BatchingHandler", "sink": sink_spec, "capacity": 1})
    logger.info("message")
    assert sink_module.wait_for(1, WAIT)
    (received,) = sink_module.received
    if isinstance(received, tuple):
        received = (received[0], received[1].getMessage())
    else:
        received = received.getMessage()
    assert received == expected


def test_dictconfig_reports_an_unimportable_sink(dict_config):
    """dictConfig fails on a sink that does not import, and the cause names the path."""
    with pytest.raises(ValueError, match="batching") as info:
        dict_config({"class": "batchlog.BatchingHandler", "sink": "no_such_module_q7:sink"})
    assert "no_such_module_q7:sink" in str(info.value.__cause__)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("spec", [42, None, ["not", "callable"]])
def test_non_callable_sink_raises_type_error(spec):
    """A sink that is not callable (nor a string or mapping) raises TypeError naming it."""
    with pytest.raises(TypeError, match="sink must be a callable") as info:
        resolve_sink(spec)
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize(
    "template", ["{module}.TaggingSink", "{module}:TaggingSink", "ext://{module}.TaggingSink"]
)
def test_import_string_naming_a_class_is_refused_with_the_factory_hint(sink_module, template):
    """A class where a sink is wanted is refused (calling it per batch would build objects),
    and the message shows the "()" mapping that builds one."""
    spec = template.format(module=sink_module.__name__)
    with pytest.raises(TypeError, match=r"not the class") as info:
        resolve_sink(spec)
    assert f"{{'()': {spec!r}, **its keyword arguments}}" in str(info.value)


def test_class_given_directly_is_refused_with_its_import_path():
    """A class object is refused too; the hint names it by its import path."""
    with pytest.raises(TypeError, match=r"'\(\)': 'batchlog\.sinks\.jsonl\.JsonLinesSink'"):
        resolve_sink(JsonLinesSink)


def test_factory_building_a_class_is_refused(sink_module):
    """A factory that returns a class (not a sink built from it) is refused as well."""
    with pytest.raises(TypeError, match="not the class"):
        resolve_sink({"()": lambda: sink_module.TaggingSink})


def test_dictconfig_naming_a_sink_class_fails_with_the_factory_hint(dict_config):
    """dictConfig's "sink": "batchlog.sinks.JsonLinesSink" fails, and the cause says how to
    build the sink instead."""
    with pytest.raises(ValueError, match="batching") as info:
        dict_config({"class": "batchlog.BatchingHandler", "sink": "batchlog.sinks.JsonLinesSink"})
    assert isinstance(info.value.__cause__, TypeError)
    assert "{'()': 'batchlog.sinks.JsonLinesSink'" in str(info.value.__cause__)


def test_import_string_naming_a_non_callable_raises_type_error(sink_module):
    """An import string naming something not callable raises TypeError."""
    with pytest.raises(TypeError, match="42"):
        resolve_sink(f"{sink_module.__name__}:not_callable")


@pytest.mark.parametrize(
    "spec", ["no_such_module_q7:sink", "no_such_module_q7.sink", "ext://no_such_module_q7.sink"]
)
def test_unimportable_module_raises_value_error_naming_the_path(spec):
    """An import string whose module does not exist raises ValueError naming the string."""
    with pytest.raises(ValueError, match="cannot be imported") as info:
        resolve_sink(spec)
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize(
    "template", ["{module}:missing", "{module}.missing", "{module}:Sinks.gone"]
)
def test_missing_attribute_raises_value_error_naming_the_path(sink_module, template):
    """An import string naming a missing attribute raises ValueError naming path and attribute."""
    spec = template.format(module=sink_module.__name__)
    with pytest.raises(ValueError, match="cannot be imported") as info:
        resolve_sink(spec)
    assert repr(spec) in str(info.value)
    assert spec.rsplit(".", 1)[-1].rsplit(":", 1)[-1] in str(info.value)


@pytest.mark.parametrize("spec", ["", "   ", "ext://"])
def test_empty_import_string_raises_value_error(spec):
    """An empty import string raises the library's ValueError saying it cannot be imported."""
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve_sink(spec)


@pytest.mark.parametrize("separator", [":", "."])
def test_module_failing_to_import_reports_its_own_error(tmp_path, monkeypatch, separator):
    """A module that exists but fails to import is reported with its own ImportError, not as
    a missing module."""
    (tmp_path / "batchlog_broken_sinks.py").write_text("import no_such_dependency_q7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "batchlog_broken_sinks", raising=False)
    with pytest.raises(ValueError, match="no_such_dependency_q7"):
        resolve_sink(f"batchlog_broken_sinks{separator}sink")


@pytest.mark.parametrize("spec", ["pkg mod:attr", "1abc.sink", "pkg..mod", ":sink", "pkg:a:b"])
def test_malformed_import_string_names_the_path_and_the_form(spec):
    """A string that is no import string at all raises ValueError naming it and the form."""
    with pytest.raises(ValueError, match=r"write 'package\.module:attribute'") as info:
        import_string(spec, what="primary")
    assert f"primary {spec!r} cannot be imported" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no_such_module_q7:sink", "No module named 'no_such_module_q7'"),
        ("logging.handlers:NoSuchHandlerQ7", "NoSuchHandlerQ7"),
        ("logging.handlers.NoSuchHandlerQ7", "NoSuchHandlerQ7"),
    ],
)
def test_import_failure_names_what_the_path_and_the_reason(spec, reason):
    """The one ValueError names the role (``what``), the path and why it did not import."""
    with pytest.raises(ValueError, match=r"^primary factory ") as info:
        import_string(spec, what="primary factory")
    assert repr(spec) in str(info.value)
    assert reason in str(info.value)
    assert isinstance(info.value.__cause__, (ImportError, AttributeError))


def test_build_from_spec_returns_other_objects_as_they_are():
    """Neither a string nor a mapping: the object itself, for the caller to type-check."""
    marker = object()
    assert build_from_spec(marker, what="sink") is marker


def test_handler_sink_shares_the_resolver_errors():
    """HandlerSink builds its handlers with the same resolver: the same errors, its own role."""
    with pytest.raises(ValueError, match=r"^handler #1 given as a mapping needs a '\(\)' key"):
        HandlerSink({"class": "logging.StreamHandler"})
    with pytest.raises(ValueError, match=r"^handler #2 'no_such_module_q7\.H' cannot be imported"):
        HandlerSink("logging.NullHandler", "no_such_module_q7.H")


def test_mapping_without_factory_key_raises_value_error():
    """A mapping with no "()" key raises ValueError saying the key is needed."""
    with pytest.raises(ValueError, match=r"'\(\)'"):
        resolve_sink({"class": "mymod.Sink", "path": "out.jsonl"})


def test_mapping_with_non_callable_factory_raises_type_error():
    """A mapping whose "()" is neither callable nor an import string raises TypeError."""
    with pytest.raises(TypeError, match="factory must be callable"):
        resolve_sink({"()": 42})


def test_mapping_with_unimportable_factory_raises_value_error_naming_the_path():
    """A factory import string that does not import raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"no_such_module_q7\.Factory"):
        resolve_sink({"()": "no_such_module_q7.Factory"})


def test_mapping_whose_factory_rejects_the_keywords_raises_type_error(sink_module):
    """Keywords the factory does not take raise TypeError."""
    with pytest.raises(TypeError, match="colour"):
        resolve_sink({"()": sink_module.TaggingSink, "tag": "x", "colour": "red"})


def test_mapping_whose_factory_returns_a_non_callable_raises_type_error():
    """A factory that builds something not callable raises TypeError."""
    with pytest.raises(TypeError, match="sink must be a callable"):
        resolve_sink({"()": dict, "a": 1})


@pytest.mark.parametrize("front_door", [BatchingHandler, BatchingProcessor])
@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("no_such_module_q7:sink", ValueError, "no_such_module_q7"),
        ({"factory": "x"}, ValueError, r"'\(\)'"),
        (42, TypeError, "callable"),
    ],
    ids=["unimportable", "no-factory-key", "not-callable"],
)
def test_front_doors_reject_a_bad_sink_spec(front_door, spec, error, match):
    """BatchingHandler and BatchingProcessor raise the same clear errors for a bad sink."""
    with pytest.raises(error, match=match):
        front_door(spec)


def test_rejected_sink_spec_starts_no_writer_thread():
    """A handler whose sink spec was rejected starts no worker thread."""
    with pytest.raises(TypeError):
        BatchingHandler(42, name="never-started")
    assert "batchlog-never-started" not in {thread.name for thread in threading.enumerate()}
