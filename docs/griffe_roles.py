"""Griffe extension for the docs build: make the package's Sphinx-isms read well.

- Cross-reference roles such as ``:func:`download_images``` and ``:meth:`~Foo.save```, which
  mkdocstrings would print literally, become inline code showing the (short) name.
- Module constants documented with ``#:`` comments on the lines above them (Sphinx's
  convention; griffe only reads a string after the assignment) get those comments as their
  docstring.
- numpydoc types that griffe would read as Python expressions and print changed
  (``{"linear", "mlp"}`` as a tuple, ``path-like`` as ``path - like``) are shown as written.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _short(match: re.Match) -> str:
    tilde, target = match.groups()
    if "<" in target:  # :func:`shown text <target>`
        return f"`{target.split('<', 1)[0].strip()}`"
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _comment_docstring(attr: griffe.Attribute) -> str | None:
    """The ``#:`` comment lines right above the attribute, joined, or None."""
    if attr.lineno is None or attr.filepath is None or isinstance(attr.filepath, list):
        return None
    try:
        lines = attr.lines_collection[attr.filepath]
    except KeyError:
        return None
    found: list[str] = []
    index = attr.lineno - 2  # the line above, 0-based
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        found.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    return " ".join(found) or None


#: Expressions griffe makes of numpydoc types that do not print back as they were written.
_MISREAD = ("ExprTuple", "ExprSet", "ExprBinOp", "ExprDict")


def _written_types(text: str) -> dict[str, str]:
    """``name -> type`` as written in the numpydoc sections of a docstring, without the
    ``, default=...`` and ``, optional`` that griffe reads separately."""
    found = {}
    for match in re.finditer(r"^\s*(\*{0,2}\w+(?:, \w+)*) : (.+)$", text, re.M):
        kind = re.sub(r",\s*(optional|default[=: ].*)$", "", match.group(2).strip())
        for name in match.group(1).split(", "):
            found[name.lstrip("*")] = kind
    return found


def _keep_written_types(docstring: griffe.Docstring) -> None:
    """Replace misread type expressions of parsed sections by the text as written."""
    written = None
    for section in docstring.parsed:
        items = section.value if isinstance(section.value, list) else []
        for item in items:
            annotation = getattr(item, "annotation", None)
            if type(annotation).__name__ not in _MISREAD:
                continue
            written = written if written is not None else _written_types(docstring.value)
            if getattr(item, "name", None) in written:
                item.annotation = written[item.name]


class SphinxRoles(griffe.Extension):
    """Rewrite roles in every docstring; read ``#:`` comments of attributes; keep numpydoc
    types as written."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is None:
            text = _comment_docstring(attr)
            if text:
                attr.docstring = griffe.Docstring(text, lineno=attr.lineno, parent=attr)

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_short, obj.docstring.value)
            if obj.docstring.parser is not None:
                _keep_written_types(obj.docstring)
