"""Turning what configuration says about a sink (or a handler) into the object itself.

A sink may be given as a callable, an import string (``"pkg.mod:attr"``, ``"pkg.mod.attr"``,
dictConfig's ``"ext://pkg.mod.attr"``), or a mapping ``{"()": factory, **kwargs}`` whose
factory (a callable or an import string) is called with the other keys to build it.
``build_from_spec`` does the importing and building for every caller; each caller then
checks that it got what it needs (``resolve_sink``: a sink; ``HandlerSink``: a handler).
"""

from __future__ import annotations

import pkgutil
from collections.abc import Mapping
from typing import Any

from ._types import Sink

__all__ = ["build_from_spec", "close_sink", "import_string", "resolve_sink"]

_EXT_PREFIX = "ext://"


def import_string(path: str, *, what: str = "sink") -> Any:
    """Import ``"pkg.mod:attr"`` or ``"pkg.mod.attr"`` (optionally ``"ext://..."``).

    The forms are those of ``pkgutil.resolve_name``, which does the work; ``attr`` may be
    dotted (``"pkg.mod:Class.attr"``).

    Raises:
        ValueError: ``path`` cannot be imported; the message names ``what`` and the path.
    """
    text = path.strip()
    if text.startswith(_EXT_PREFIX):
        text = text[len(_EXT_PREFIX) :].strip()
    try:
        return pkgutil.resolve_name(text)
    except ValueError:  # not the form of an import string at all
        msg = (
            f"{what} {path!r} cannot be imported: write 'package.module:attribute' "
            "or 'package.module.attribute'"
        )
        raise ValueError(msg) from None
    except (ImportError, AttributeError) as exc:
        msg = f"{what} {path!r} cannot be imported: {exc}"
        raise ValueError(msg) from exc


def build_from_spec(spec: object, *, what: str) -> object:
    """Return what ``spec`` names (an import string) or builds (a ``"()"`` mapping), or itself.

    Values of a mapping are read by indexing, never by iteration, so dictConfig's
    ``ConvertingDict`` resolves ``"ext://"`` values in them.

    Raises:
        ValueError: An import string does not import, or a mapping has no ``"()"`` key.
        TypeError: A mapping's factory is not callable, or rejected the keyword arguments.
    """
    if isinstance(spec, str):
        return import_string(spec, what=what)
    if not isinstance(spec, Mapping):
        return spec
    if "()" not in spec:
        msg = (
            f"{what} given as a mapping needs a '()' key naming the factory "
            f"(a callable or an import string); got keys {sorted(map(str, spec))}"
        )
        raise ValueError(msg)
    factory = spec["()"]
    if isinstance(factory, str):
        factory = import_string(factory, what=f"{what} factory")
    if not callable(factory):
        msg = f"{what} factory must be callable, not {factory!r}"
        raise TypeError(msg)
    return factory(**{str(key): spec[key] for key in spec if key != "()"})


def resolve_sink(spec: object, *, what: str = "sink") -> Sink:
    """Return the sink that ``spec`` is, names or builds.

    A class is refused: it is callable, but calling it with a batch would build a new
    object per batch instead of writing one. Build the sink with ``{"()": class, ...}``.

    Raises:
        TypeError: ``spec`` (or what it names or builds) is a class or not callable, or
            the factory rejected the keyword arguments.
        ValueError: an import string does not import, or a mapping has no ``"()"`` key.
    """
    obj = build_from_spec(spec, what=what)
    if isinstance(obj, type):
        name = spec.strip() if isinstance(spec, str) else f"{obj.__module__}.{obj.__qualname__}"
        msg = (
            f"{what} must be a sink (a callable taking one batch), not the class {obj!r}: "
            f"to build one, write {{'()': {name!r}, **its keyword arguments}}"
        )
        raise TypeError(msg)
    if not callable(obj):
        msg = f"{what} must be a callable taking one batch (a list), not {obj!r}"
        raise TypeError(msg)
    return obj


def close_sink(sink: object) -> object:
    """Call the sink's ``close()`` (or, an async sink's, ``aclose()``), if it has one.

    Returns what it returned: the writer awaits an awaitable on its loop (see _sinkloop).
    """
    close = getattr(sink, "close", None)
    if not callable(close):
        close = getattr(sink, "aclose", None)
    return close() if callable(close) else None
