"""Ready-made sinks: each a callable taking one batch, each with ``close()``.

Every sink takes both record kinds, stdlib ``logging.LogRecord`` objects and structlog
event dicts, and stores them in one common encoding (see ``encode_record``). Every sink is
a ``SinkBase``: ``close()`` is idempotent, ``reopen()`` makes a closed sink usable again,
and a child made by ``os.fork()`` opens its own files, connections and clients.

==========================  ======================================================
``JsonLinesSink``      a JSON Lines file: one write per batch, logrotate-friendly
``SQLiteSink``         an SQLite database (the embedded default)
``PostgresSink``       PostgreSQL via ``COPY`` (``pip install 'batchlog[postgres]'``)
``HTTPSink``           one POST per batch, retries with backoff
                            (``pip install 'batchlog[http]'``)
``HandlerSink``        forwards each record to ordinary logging handlers
``FallbackSink``       a primary sink plus a dead-letter JSON Lines file;
                            ``replay`` feeds such a file to any sink
==========================  ======================================================

``HTTPSink(encoder=...)`` takes one of the encoders of ``batchlog.sinks.encoders``, all
exported here: ``NDJSONEncoder``, ``JSONEncoder``, ``LokiEncoder``, ``BulkEncoder``
(Elasticsearch/OpenSearch ``_bulk``), ``OTLPEncoder``; ``Encoder`` and
``CheckingEncoder`` are the protocols a custom one keeps.

Submodules are imported when a name is first used, so ``import batchlog.sinks`` pulls
in neither sqlite3 nor any network library.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._types import ClosableSink, Sink
    from ._base import SinkBase
    from ._encode import FIELDS, encode_record, json_bytes, storable_text, to_json
    from .encoders import (
        BulkEncoder,
        CheckingEncoder,
        Encoder,
        JSONEncoder,
        LokiEncoder,
        NDJSONEncoder,
        OTLPEncoder,
    )
    from .fallback import (
        FallbackMetrics,
        FallbackSink,
        ReplayCheckpointError,
        ReplayResult,
        replay,
    )
    from .forward import HandlerSink
    from .http import DeliveryError, HTTPSink
    from .jsonl import JsonLinesSink
    from .postgres import PostgresSink
    from .sqlite import SQLiteSink

__all__ = [
    "FIELDS",
    "BulkEncoder",
    "CheckingEncoder",
    "ClosableSink",
    "DeliveryError",
    "Encoder",
    "FallbackMetrics",
    "FallbackSink",
    "HTTPSink",
    "HandlerSink",
    "JSONEncoder",
    "JsonLinesSink",
    "LokiEncoder",
    "NDJSONEncoder",
    "OTLPEncoder",
    "PostgresSink",
    "ReplayCheckpointError",
    "ReplayResult",
    "SQLiteSink",
    "Sink",
    "SinkBase",
    "encode_record",
    "json_bytes",
    "replay",
    "storable_text",
    "to_json",
]

_WHERE = {
    "FIELDS": "._encode",
    "encode_record": "._encode",
    "to_json": "._encode",
    "json_bytes": "._encode",
    "storable_text": "._encode",
    "ClosableSink": ".._types",
    "Sink": ".._types",
    "SinkBase": "._base",
    "FallbackMetrics": ".fallback",
    "FallbackSink": ".fallback",
    "replay": ".fallback",
    "ReplayResult": ".fallback",
    "ReplayCheckpointError": ".fallback",
    "HandlerSink": ".forward",
    "HTTPSink": ".http",
    "BulkEncoder": ".encoders",
    "CheckingEncoder": ".encoders",
    "Encoder": ".encoders",
    "JSONEncoder": ".encoders",
    "LokiEncoder": ".encoders",
    "NDJSONEncoder": ".encoders",
    "OTLPEncoder": ".encoders",
    "DeliveryError": ".http",
    "JsonLinesSink": ".jsonl",
    "PostgresSink": ".postgres",
    "SQLiteSink": ".sqlite",
}


def __getattr__(name: str) -> Any:
    module_name = _WHERE.get(name)
    if module_name is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
