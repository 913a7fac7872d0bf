"""The package's layers import one way: images <- batches <- models <- training <- estimators
<- the consumers (export, explain, scale, the command line, the HTTP service).

Read from the source (imports inside functions included), so a lazy import cannot hide a
dependency that goes the wrong way. ``params`` (the parameter declarations and their lists of
choices), ``config`` and ``exceptions`` import nothing of the package but each other's lower
ones, so every layer may read them. The whole package's import graph has no cycle.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wjsentiment"

#: Module (or package) -> the wjsentiment modules and packages it must never import.
FORBIDDEN = {
    "images": ["batches", "models", "training", "datasets", "estimator", "ensemble"],
    "batches": ["models", "training", "datasets", "estimator", "ensemble"],
    "models": ["training", "datasets", "estimator", "ensemble", "calibration", "holdout"],
    "training": ["datasets", "estimator", "ensemble", "holdout", "inputs"],
    # persistence reads and writes states; the estimators build themselves from them
    "persistence": ["images", "batches", "models", "training", "datasets", "inference",
                    "estimator", "ensemble", "export", "explain", "scale", "cli", "serve"],
    # the consumers use the inference seam (and wjsentiment.load), never the estimators
    "export": ["estimator", "ensemble"],
    "explain": ["estimator", "ensemble"],
    "scale": ["estimator", "ensemble"],
    "serve": ["estimator", "ensemble"],
}


def imports_of(path: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports, anywhere in the file."""
    package = ".".join(path.relative_to(PACKAGE.parent).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def files_of(layer: str) -> list[Path]:
    """The files of a module or package (none for one that does not exist yet)."""
    folder = PACKAGE / layer
    if folder.is_dir():
        return sorted(folder.rglob("*.py"))
    return [folder.with_suffix(".py")] if folder.with_suffix(".py").is_file() else []


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(layer):
    wrong = []
    for path in files_of(layer):
        for name in imports_of(path):
            for other in FORBIDDEN[layer]:
                if name == f"wjsentiment.{other}" or name.startswith(f"wjsentiment.{other}."):
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, wrong


def _outside(names: set[str], allowed: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] not in allowed}


@pytest.mark.parametrize("module, package_modules", [
    ("exceptions.py", set()),
    ("config.py", {"wjsentiment.exceptions", "wjsentiment.exceptions.InputError"}),
])
def test_config_and_exceptions_use_only_the_standard_library(module, package_modules):
    """exceptions imports only the standard library; config only it and exceptions."""
    names = imports_of(PACKAGE / module) - package_modules
    assert _outside(names, set(sys.stdlib_module_names) | {"__future__"}) == set()


def test_params_is_torch_free():
    names = imports_of(PACKAGE / "params.py")
    assert _outside(names, set(sys.stdlib_module_names) | {"__future__", "numpy",
                                                           "sklearn"}) == set()


def test_the_checker_resolves_relative_imports():
    names = imports_of(PACKAGE / "training" / "loop.py")
    assert "wjsentiment.batches" in names and "wjsentiment.training.callbacks" in names


# ------------------------------------------------------------------------------ no cycle
def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports only type checkers run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = getattr(child, "test", None)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the modules of the package it imports when it runs
    (inside functions too), each name resolved to the module that defines it."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def test_the_package_has_no_import_cycle():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_graph_sees_imports_inside_functions_and_resolves_names():
    graph = import_graph()
    assert "wjsentiment.export" in graph["wjsentiment.estimator"]  # in export_onnx()
    assert "wjsentiment.persistence.files" in graph["wjsentiment.persistence"]
    assert "wjsentiment" in graph["wjsentiment.export"]  # from . import __version__
