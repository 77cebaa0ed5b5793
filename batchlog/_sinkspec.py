"""Turning what configuration says about a sink into a callable.

A sink may be given as a callable, an import string (``"pkg.mod:attr"``, ``"pkg.mod.attr"``,
dictConfig's ``"ext://pkg.mod.attr"``), or a mapping ``{"()": factory, **kwargs}`` whose
factory (a callable or an import string) is called with the other keys to build it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Callable

__all__ = ["import_string", "resolve_sink"]

_EXT_PREFIX = "ext://"


def import_string(path: str, *, what: str = "sink") -> Any:
    """Import ``"pkg.mod:attr"`` or ``"pkg.mod.attr"`` (optionally ``"ext://..."``).

    Raises:
        ValueError: ``path`` cannot be imported; the message names ``what`` and the path.
    """
    text = path.strip()
    if text.startswith(_EXT_PREFIX):
        text = text[len(_EXT_PREFIX) :].strip()
    if not text or text.startswith((".", ":")):
        msg = f"{what} {path!r} cannot be imported: write 'package.module:attribute'"
        raise ValueError(msg)
    if ":" in text:
        module_name, _, attribute_path = text.partition(":")
        attributes = attribute_path.split(".") if attribute_path else []
    else:
        module_name, attributes = text, []
    # "pkg.mod.attr": import the longest importable prefix, then walk the attributes.
    parts = module_name.split(".")
    module = None
    error: Exception | None = None
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError as exc:
            if error is None:
                error = exc
            continue
        attributes = parts[cut:] + attributes
        break
    if module is None:
        msg = f"{what} {path!r} cannot be imported: {error}"
        raise ValueError(msg) from error
    obj: Any = module
    for attribute in attributes:
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            msg = f"{what} {path!r} cannot be imported: {obj!r} has no attribute {attribute!r}"
            raise ValueError(msg) from None
    return obj


def resolve_sink(spec: object, *, what: str = "sink") -> Callable[[list[Any]], object]:
    """Return the sink callable that ``spec`` describes.

    Raises:
        TypeError: ``spec`` (or what it names) is not callable, or the factory rejected
            the keyword arguments.
        ValueError: an import string does not import, or a mapping has no ``"()"`` key.
    """
    if isinstance(spec, str):
        obj = import_string(spec, what=what)
    elif isinstance(spec, Mapping):
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
        kwargs = {str(key): spec[key] for key in spec if key != "()"}
        obj = factory(**kwargs)
    else:
        obj = spec
    if not callable(obj):
        msg = f"{what} must be a callable taking one batch (a list), not {obj!r}"
        raise TypeError(msg)
    return obj  # type: ignore[no-any-return]
