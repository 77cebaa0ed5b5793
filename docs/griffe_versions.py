"""A griffe extension for the API reference (loaded by mkdocs.yml; the library does not use it).

batchlog's docstrings are Google style with reStructuredText version directives::

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       What changed, indented under the directive.

mkdocstrings would show those lines as literal text. ``VersionDirectives`` rewrites them, in
the docstrings griffe has loaded (the source files are not touched), into Markdown
admonitions (``!!! info "Added in version 0.1.0"``), which the ``admonition`` Markdown
extension of mkdocs.yml renders as notes.

A ``::`` that opens a literal block (``like this::``) loses a colon (``like this:``), the
block below it being a code block in Markdown already.

An attribute documented by ``#:`` comment lines above it (Sphinx's form, which griffe does
not read) gets those lines as its docstring.

It also shows a parameter's default by its value where the default is a module constant
(``flush_timeout=DEFAULT_FLUSH_TIMEOUT`` is shown as ``flush_timeout=10.0``): the constant's
literal value when the source has one, else the value's ``repr()`` when that is readable
(not ``<...>``), an enum member by its path (``OverflowPolicy.BLOCK``), else the
constant's full dotted path. Only what the
reference shows changes; the library's behaviour is the code's.
"""

from __future__ import annotations

import ast
import enum
import importlib
import re
from typing import Any

import griffe

__all__ = ["VersionDirectives", "rewrite_directives", "rewrite_literal_markers"]

#: Directive name -> the admonition's kind and the words before the version in its title.
_DIRECTIVES = {
    "versionadded": ("info", "Added in version"),
    "versionchanged": ("note", "Changed in version"),
    "deprecated": ("warning", "Deprecated since version"),
}
_DIRECTIVE = re.compile(
    r"^(?P<indent>[ \t]*)\.\. (?P<name>" + "|".join(_DIRECTIVES) + r")::[ \t]*(?P<rest>.*)$"
)


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def rewrite_directives(text: str) -> str:
    """Return ``text`` with each version directive (and its indented body) as an admonition.

    ``.. versionchanged:: 0.2.0`` followed by lines indented deeper than the directive
    becomes ``!!! note "Changed in version 0.2.0"`` with those lines indented four spaces
    under it; text after the version on the directive's own line starts the body. Blank
    lines surround each admonition so that consecutive directives stay separate.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        kind, words = _DIRECTIVES[match["name"]]
        version, _, first = match["rest"].strip().partition(" ")
        body = [first.strip()] if first.strip() else []
        i += 1
        # The body: the following lines indented deeper than the directive (blank lines
        # inside it included, trailing blank lines not).
        end = i
        while end < len(lines):
            line = lines[end]
            if line.strip() and _indent_of(line) <= len(indent):
                break
            end += 1
        while end > i and not lines[end - 1].strip():
            end -= 1
        block = lines[i:end]
        if block:
            depth = min(_indent_of(line) for line in block if line.strip())
            body.extend(line[depth:] for line in block)
        i = end
        if out and out[-1].strip():
            out.append("")
        title = f"{words} {version}" if version else words
        out.append(f'{indent}!!! {kind} "{title}"')
        out.extend(f"{indent}    {line}".rstrip() for line in body)
        out.append("")
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def rewrite_literal_markers(text: str) -> str:
    """Return ``text`` with reStructuredText's ``::`` before a literal block as Markdown has it.

    ``Like this::`` followed by a blank line and an indented block becomes ``Like this:``
    (the indented block is a code block in Markdown too); a ``::`` alone on its line, or
    after a space, is dropped.
    """
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.rstrip().endswith("::") or _DIRECTIVE.match(line):
            continue
        following = next((later for later in lines[index + 1 :] if later.strip()), None)
        if following is None or _indent_of(following) <= _indent_of(line):
            continue
        stripped = line.rstrip()[:-2]
        lines[index] = (
            stripped.rstrip() if not stripped.strip() or stripped[-1].isspace() else stripped + ":"
        )
    return "\n".join(lines)


#: A repr longer than this is not shown in a signature (the constant's path is).
_LONGEST_REPR = 60
#: The types of the values shown by their ``repr()`` whatever it is.
_PLAIN = (bool, int, float, str, bytes, type(None))


def _runtime_value(path: str) -> Any:
    """The object at dotted ``path``: the longest importable module, then its attributes."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ImportError(path)


def _value_of(expr: griffe.ExprName | griffe.ExprAttribute, package: griffe.Module) -> str | None:
    """The text to show for a default that names a constant, None to keep it as written.

    A plain value (a number, a string, True, False, None) is shown by its ``repr()``; an
    enum member by its written path (``OverflowPolicy.BLOCK``); another object by its
    ``repr()`` if that is short and readable, else by its full dotted path.
    """
    path = expr.canonical_path
    if "." not in path:
        return None
    written = str(expr) if isinstance(expr, griffe.ExprAttribute) else path
    if path.split(".", 1)[0] == package.name:
        literal = _literal_in_source(path, package)
        if literal is not None:
            return literal
    try:
        value = _runtime_value(path)
    except Exception:  # noqa: BLE001  (any import can fail: it is only not shown by value)
        return written
    shown = repr(value)
    if isinstance(value, enum.Enum) or (
        type(value) not in _PLAIN and (len(shown) > _LONGEST_REPR or shown.startswith("<"))
    ):
        return written
    return shown


def _literal_in_source(path: str, package: griffe.Module) -> str | None:
    """The ``repr()`` of the literal value assigned to the attribute at ``path``, if one is."""
    try:
        target = package.modules_collection.get_member(path)
        if isinstance(target, griffe.Alias):
            target = target.final_target
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    if not isinstance(target, griffe.Attribute) or target.value is None:
        return None
    try:
        return repr(ast.literal_eval(str(target.value)))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _comment_docstring(attribute: griffe.Attribute) -> griffe.Docstring | None:
    """The ``#:`` comment lines right above ``attribute`` (Sphinx's form), as its docstring."""
    if attribute.lineno is None:
        return None
    lines = attribute.module.lines
    comment: list[str] = []
    index = attribute.lineno - 2  # the line above, 0-based
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        text = lines[index].lstrip()[2:]
        comment.insert(0, text[1:] if text.startswith(" ") else text)
        index -= 1
    if not comment:
        return None
    return griffe.Docstring("\n".join(comment), lineno=index + 2, parent=attribute)


class VersionDirectives(griffe.Extension):
    """Version directives as admonitions, and module-constant defaults as their values."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:  # noqa: ARG002
        """Rewrite every docstring and default of the loaded package ``pkg``."""
        self._visit(pkg, pkg, set())

    def _visit(self, obj: griffe.Object, package: griffe.Module, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, griffe.Attribute) and obj.docstring is None:
            obj.docstring = _comment_docstring(obj)
        if obj.docstring is not None:
            value = rewrite_literal_markers(obj.docstring.value)
            obj.docstring.value = rewrite_directives(value)
        if isinstance(obj, griffe.Function):
            for parameter in obj.parameters:
                if isinstance(parameter.default, (griffe.ExprName, griffe.ExprAttribute)):
                    shown = _value_of(parameter.default, package)
                    if shown is not None:
                        parameter.default = shown
        for member in obj.members.values():
            if not isinstance(member, griffe.Alias):
                self._visit(member, package, seen)
