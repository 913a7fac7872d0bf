"""No function in wjsentiment/ longer than about 60 lines, no class longer than about 350.

Lines are counted without docstrings (they document; they do not add logic), blank lines and
comments included. A longer function or class must be in ALLOWED with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wjsentiment"
FUNCTION_LIMIT = 60
CLASS_LIMIT = 350

#: "path:qualified name" -> why it may be longer.
ALLOWED = {
    "estimator.py:SentimentClassifier.__init__":
        "one line per parameter in the signature and one per assignment, scikit-learn's "
        "convention (no logic in __init__)",
}


def _docstring_lines(node: ast.AST) -> int:
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0].end_lineno - body[0].lineno + 1
    return 0


def _length(node: ast.AST) -> int:
    """Lines of ``node`` without its docstring and, for a class, its methods' docstrings."""
    total = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
    if isinstance(node, ast.ClassDef):
        total -= sum(_docstring_lines(child) for child in ast.walk(node)
                     if child is not node and isinstance(child, (ast.FunctionDef,
                                                                 ast.AsyncFunctionDef,
                                                                 ast.ClassDef)))
    return total


def long_definitions() -> dict[str, int]:
    """``path:qualified name -> length`` of every function and class over its limit."""
    found: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        _visit(ast.parse(path.read_text(encoding="utf-8")),
               f"{path.relative_to(PACKAGE).as_posix()}:", found)
    return found


def _visit(node: ast.AST, prefix: str, found: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            limit = CLASS_LIMIT if isinstance(child, ast.ClassDef) else FUNCTION_LIMIT
            if _length(child) > limit:
                found[name] = _length(child)
            _visit(child, f"{name}.", found)


def test_functions_and_classes_stay_short():
    offenders = {k: v for k, v in long_definitions().items() if k not in ALLOWED}
    assert not offenders, f"over {FUNCTION_LIMIT} (function) or {CLASS_LIMIT} (class) lines " \
                          f"without docstrings; shorten them or justify them in ALLOWED: " \
                          f"{offenders}"


def test_the_allowed_exceptions_are_still_needed():
    stale = set(ALLOWED) - set(long_definitions())
    assert not stale, f"no longer too long, drop them from ALLOWED: {sorted(stale)}"
