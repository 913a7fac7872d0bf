"""The package's layers import one way: images <- batches <- models <- training <- estimators.

Read from the source (imports inside functions included), so a lazy import cannot hide a
dependency that goes the wrong way. ``params`` (the parameter declarations and their lists of
choices) and ``config`` import nothing of the package, so every layer may read them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wjsentiment"

#: Module (or package) -> the wjsentiment modules and packages it must never import.
FORBIDDEN = {
    "images": ["batches", "models", "training", "datasets", "estimator", "ensemble"],
    "batches": ["models", "training", "datasets", "estimator", "ensemble"],
    "models": ["training", "datasets", "estimator", "ensemble", "calibration", "holdout"],
    "training": ["datasets", "estimator", "ensemble", "holdout", "inputs"],
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
    folder = PACKAGE / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]


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


def test_config_uses_only_the_standard_library():
    names = imports_of(PACKAGE / "config.py")
    assert _outside(names, set(sys.stdlib_module_names) | {"__future__"}) == set()


def test_params_is_torch_free():
    names = imports_of(PACKAGE / "params.py")
    assert _outside(names, set(sys.stdlib_module_names) | {"__future__", "numpy",
                                                           "sklearn"}) == set()


def test_the_checker_resolves_relative_imports():
    names = imports_of(PACKAGE / "training" / "loop.py")
    assert "wjsentiment.batches" in names and "wjsentiment.training.callbacks" in names
