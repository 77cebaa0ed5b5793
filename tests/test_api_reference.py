"""The rendered API reference: a heading and a signature per public name, no raw directives.

The site is built once (``mkdocs build --strict``, as ``tests/test_docs.py`` does) into a
temporary folder; the tests read ``api/index.html``, the page ``docs/api.md`` renders to,
with the standard library's HTML parser, and compare it with the objects themselves.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import operator
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import batchlog
import batchlog.sinks

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"

HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_VOID |= {"track", "wbr"}
#: ``.. versionadded:: 0.1.0`` and the like, and the words their admonitions' titles start with.
_DIRECTIVE = re.compile(r"^[ \t]*\.\. (versionadded|versionchanged|deprecated)::[ \t]*(\S*)", re.M)
_TITLE = {
    "versionadded": "Added in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version",
}


class Element:
    """One HTML element: its tag, attributes, parent and children (elements and text)."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Element | str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def elements(self) -> Iterator[Element]:
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.elements()

    def next_element(self) -> Element | None:
        """The element right after this one among its parent's children."""
        assert self.parent is not None
        siblings = [c for c in self.parent.children if isinstance(c, Element)]
        index = next(i for i, c in enumerate(siblings) if c is self)
        return siblings[index + 1] if index + 1 < len(siblings) else None


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self._open = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self._open)
        self._open.children.append(element)
        if tag not in _VOID:
            self._open = element

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self._open
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:  # else a stray end tag: ignored
            self._open = node.parent

    def handle_data(self, data: str) -> None:
        self._open.children.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with ``mkdocs build --strict`` into a temporary folder."""
    for needed in ("mkdocs", "mkdocstrings", "material"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed")
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=REPO_ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return site_dir


@pytest.fixture(scope="module")
def page(site: Path) -> Element:
    """The parsed ``api/index.html``."""
    return parse((site / "api" / "index.html").read_text(encoding="utf-8"))


def headings(page: Element) -> dict[str, list[Element]]:
    """Every heading with an id, by id (a list, to see ids given twice)."""
    found: dict[str, list[Element]] = {}
    for element in page.elements():
        if element.tag in HEADINGS and "id" in element.attrs:
            found.setdefault(element.attrs["id"], []).append(element)
    return found


def object_headings(page: Element) -> dict[str, Element]:
    """mkdocstrings' headings (class ``doc-heading``), by id: one per documented object."""
    return {
        element.attrs["id"]: element
        for element in page.elements()
        if element.tag in HEADINGS and "doc-heading" in element.classes
    }


def symbol_kind(heading: Element) -> str:
    """``class``, ``function``, ``method``, ``attribute``... from the heading's symbol badge."""
    for element in heading.elements():
        for name in element.classes:
            if name.startswith("doc-symbol-") and name != "doc-symbol-heading":
                return name.removeprefix("doc-symbol-")
    raise AssertionError(f"heading {heading.attrs['id']} has no symbol type")


def resolve(path: str) -> Any:
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            # A module's attribute may be lazy (batchlog.sinks); a class's is taken as
            # defined (a property, not its value).
            get = getattr if inspect.ismodule(obj) else inspect.getattr_static
            obj = get(obj, attribute)
            if isinstance(obj, (staticmethod, classmethod)):
                obj = obj.__func__
        return obj
    raise ImportError(path)


def own_docstrings(path: str) -> list[str]:
    """The docstrings mkdocstrings shows under ``path``'s own heading (not its members'):
    a function's or class's (with its ``__init__``'s), or an attribute's ``#:`` comment."""
    obj = resolve(path)
    if isinstance(obj, property):
        obj = obj.fget
    if not (inspect.isclass(obj) or callable(obj)):  # a constant: its __doc__ is its type's
        return comment_docstrings(path)
    docs = [obj.__doc__] if isinstance(obj.__doc__, str) else []
    if inspect.isclass(obj) and "__init__" in vars(obj):  # merge_init_into_class
        init_doc = vars(obj)["__init__"].__doc__
        if init_doc:
            docs.append(init_doc)
    return [inspect.cleandoc(doc) for doc in docs]


def comment_docstrings(path: str) -> list[str]:
    """The ``#:`` comment lines right above the assignment of the attribute at ``path``."""
    owner_path, _, name = path.rpartition(".")
    owner = resolve(owner_path)
    if inspect.isclass(owner):
        owner = sys.modules[owner.__module__]  # a class's own source may not be found
    source = inspect.getsource(owner)
    match = re.search(rf"((?:^[ \t]*#:.*\n)+)[ \t]*{re.escape(name)}\b\s*[:=]", source, re.M)
    if match is None:
        return []
    return ["\n".join(line.strip()[2:].strip() for line in match[1].splitlines())]


def section(heading: Element, page: Element) -> list[Element]:
    """The elements after ``heading`` up to the next heading: the object's own text."""
    elements = list(page.elements())
    start = next(i for i, e in enumerate(elements) if e is heading)
    inside = set(map(id, heading.elements()))
    out = []
    for element in elements[start + 1 :]:
        if id(element) in inside:
            continue
        if element.tag in HEADINGS:
            break
        out.append(element)
    return out


def public_names() -> list[str]:
    return [f"batchlog.{n}" for n in batchlog.__all__] + [
        f"batchlog.sinks.{n}" for n in batchlog.sinks.__all__
    ]


@pytest.mark.parametrize("path", public_names())
def test_each_public_name_has_one_heading(page: Element, path: str) -> None:
    """Every name of ``batchlog.__all__`` and ``batchlog.sinks.__all__`` has one heading."""
    found = headings(page).get(path, [])
    assert len(found) == 1, f"{path}: {len(found)} headings"
    assert "doc-heading" in found[0].classes
    assert path in found[0].text()


def test_no_raw_version_directive_on_any_page(site: Path) -> None:
    """No page shows ``.. versionadded::``, ``.. versionchanged::`` or ``.. deprecated::``."""
    pages = sorted(site.rglob("*.html"))
    assert site / "api" / "index.html" in pages
    for html_page in pages:
        text = parse(html_page.read_text(encoding="utf-8")).text()
        for raw in (".. versionadded", ".. versionchanged", ".. deprecated"):
            assert raw not in text, f"{html_page.relative_to(site)} shows {raw!r}"


def test_no_literal_block_marker_in_the_reference(page: Element) -> None:
    """reStructuredText's ``text::`` before a code block is shown as ``text:``."""
    assert re.findall(r"\S{0,20}\w::(?=\s)", page.text()) == []


def test_each_version_directive_is_an_admonition(page: Element) -> None:
    """An object's version directives are admonitions under its heading, bodies included."""
    checked = 0
    for ident, heading in object_headings(page).items():
        docs = own_docstrings(ident)
        expected = sorted(
            f"{_TITLE[m[1]]} {m[2]}".strip() for doc in docs for m in _DIRECTIVE.finditer(doc)
        )
        admonitions = [e for e in section(heading, page) if "admonition" in e.classes]
        titles = [
            " ".join(e.text().split())
            for a in admonitions
            for e in a.elements()
            if "admonition-title" in e.classes
        ]
        assert expected == sorted(t for t in titles if t.startswith(tuple(_TITLE.values())))
        # A versionchanged's explanation is inside its admonition.
        bodies = " ".join(" ".join(a.text().split()) for a in admonitions)
        for doc in docs:
            for first_line in re.findall(
                r"^[ \t]*\.\. versionchanged:: \S+\n[ \t]+(.+)$", doc, re.M
            ):
                words = " ".join(first_line.replace("``", "").split()[:4])
                assert words in bodies, f"{ident}: {words!r} is not in an admonition"
        checked += len(expected)
    assert checked > 40  # the directives of the documented objects were found


def needs_signature(obj: Any) -> bool:
    """A function, or a class whose constructor batchlog defines (exceptions and protocols
    that take their base's arguments have none to show)."""
    if inspect.isfunction(obj):
        return True
    if not inspect.isclass(obj):
        return False
    inits = (vars(k).get("__init__") for k in obj.__mro__)  # typing.Protocol adds one
    return dataclasses.is_dataclass(obj) or any(
        getattr(init, "__module__", "").startswith("batchlog") for init in inits
    )


_ARITHMETIC: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Pow: operator.pow,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
}


def shown_value(node: ast.expr) -> Any:
    """The value a default shown as ``10.0``, ``"ndjson"`` or ``5 * 1024 * 1024`` stands for
    (a name, such as a module constant's, raises ValueError)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](shown_value(node.left), shown_value(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](shown_value(node.operand))
    raise ValueError(f"{ast.unparse(node)!r} is not a value")


def shown_parameters(signature: str) -> dict[str, ast.expr | None]:
    """The parameters of a rendered signature (``name(...) -> type``), by name as written
    (``*args``, ``**kwargs``), each with the expression of its default or None."""
    tree = ast.parse(f"def {signature.strip()}: pass")
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    shown = dict(zip((a.arg for a in positional), [*defaults, *args.defaults]))
    if args.vararg is not None:
        shown["*" + args.vararg.arg] = None
    shown.update(zip((a.arg for a in args.kwonlyargs), args.kw_defaults))
    if args.kwarg is not None:
        shown["**" + args.kwarg.arg] = None
    return shown


def test_each_function_and_class_heading_is_followed_by_its_signature(page: Element) -> None:
    """Right after the heading: the full signature, every parameter, defaults as values."""
    checked = 0
    for ident, heading in object_headings(page).items():
        if symbol_kind(heading) not in ("class", "function", "method"):
            continue
        obj = resolve(ident)
        if not needs_signature(obj):
            continue
        block = heading.next_element()
        assert block is not None, ident
        assert "doc-signature" in block.classes, f"{ident}: no signature after the heading"
        text = block.text()
        name = ident.rpartition(".")[2]
        assert text.startswith(f"{name}("), f"{ident}: {text[:60]!r}"
        shown = shown_parameters(text)
        shown.pop("self", None)
        shown.pop("cls", None)
        expected = {}
        for parameter in inspect.signature(obj).parameters.values():
            star = {parameter.VAR_POSITIONAL: "*", parameter.VAR_KEYWORD: "**"}
            expected[star.get(parameter.kind, "") + parameter.name] = parameter.default
        expected.pop("self", None)
        expected.pop("cls", None)
        assert list(expected) == list(shown), ident
        for parameter_name, default in expected.items():
            node = shown[parameter_name]
            where = f"{ident}({parameter_name})"
            if default is inspect.Parameter.empty:
                assert node is None, f"{where} shows a default"
            else:
                assert node is not None, f"{where} shows no default"
                if default is None or type(default) in (bool, int, float, str):
                    try:
                        value = shown_value(node)
                    except ValueError:
                        pytest.fail(f"{where} = {ast.unparse(node)}, not {default!r}")
                    assert default == value, where
                    assert type(default) is type(value), where
            checked += 1
    assert checked > 150  # the parameters of the documented functions and classes


def test_module_constant_defaults_show_their_values(page: Element) -> None:
    """``DEFAULT_FLUSH_TIMEOUT`` and the like appear as values, never by name."""
    text = page.text()
    for constant in (
        "DEFAULT_FLUSH_TIMEOUT",
        "DEFAULT_EXIT_TIMEOUT",
        "_FLUSH_TIMEOUT",
        "DEFAULT_PATH",
    ):
        assert constant not in text
    # The sentinel of BatchingProcessor.flush/close shows its repr, what an omitted timeout means.
    assert "timeout: float | _Default | None = flush_timeout" in text


def docs_extension() -> Any:
    """``docs/griffe_versions.py``, the griffe extension mkdocs.yml loads (skip without griffe)."""
    pytest.importorskip("griffe")
    sys.path.insert(0, str(DOCS))
    try:
        import griffe_versions
    finally:
        sys.path.remove(str(DOCS))
    return griffe_versions


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        pytest.param(
            "Text.\n\n.. versionadded:: 0.1.0",
            'Text.\n\n!!! info "Added in version 0.1.0"',
            id="added",
        ),
        pytest.param(
            "Text.\n.. versionadded:: 0.1.0\n.. versionchanged:: 0.2.0\n   Why, line one\n"
            "   and two.\n\n   A second paragraph.\n.. versionchanged:: 0.3.0 Inline.\nAfter.",
            'Text.\n\n!!! info "Added in version 0.1.0"\n\n!!! note "Changed in version 0.2.0"\n'
            "    Why, line one\n    and two.\n\n    A second paragraph.\n\n"
            '!!! note "Changed in version 0.3.0"\n    Inline.\n\nAfter.',
            id="changed-with-bodies",
        ),
        pytest.param(
            "Args:\n    x: A value.\n\n    .. versionchanged:: 0.2.0\n       Now an int.",
            'Args:\n    x: A value.\n\n    !!! note "Changed in version 0.2.0"\n'
            "        Now an int.",
            id="indented",
        ),
        pytest.param(
            "No directive.\n\n    .. code:: python",
            "No directive.\n\n    .. code:: python",
            id="other",
        ),
    ],
)
def test_rewrite_directives(docstring: str, expected: str) -> None:
    """The extension's rewriting of docstrings, directive by directive."""
    assert expected == docs_extension().rewrite_directives(docstring)


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        pytest.param("Like this::\n\n    code()", "Like this:\n\n    code()", id="after-text"),
        pytest.param("Like this ::\n\n    code()", "Like this\n\n    code()", id="after-space"),
        pytest.param("Text.\n\n::\n\n    code()", "Text.\n\n\n\n    code()", id="alone"),
        pytest.param("A C++ name::\nnot a block.", "A C++ name::\nnot a block.", id="no-block"),
    ],
)
def test_rewrite_literal_markers(docstring: str, expected: str) -> None:
    """``::`` before an indented block becomes Markdown's ``:``; elsewhere it stays."""
    assert expected == docs_extension().rewrite_literal_markers(docstring)
