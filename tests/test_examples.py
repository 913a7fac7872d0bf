"""Every script in examples/ runs with --smoke (offline, seconds) and prints its result."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

#: A line each example prints when it got to the end.
EXPECTED = {
    "quickstart.py": "macro-F1 on held-out emoji:",
    "grid_search.py": "Best cross-validated macro-F1:",
    "ensemble.py": "Saved to",
    "custom_folder.py": "Test accuracy",
    "predict_folder.py": "Wrote 922 predictions to",
    "export_onnx.py": "ONNX and PyTorch agree",
    "image_text_pipeline.py": "Cross-validated macro-F1, text and image:",
    "reproduce_reference_study.py": "resnet152 backbone weights: random initialisation",
}


def example_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    # One thread: on a busy two-core machine, two OpenMP threads per process can slow torch
    # down many times over; one thread per process is fast either way.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_has_a_docstring_with_how_to_run(name):
    doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
    assert doc, f"{name} has no module docstring"
    assert f"python examples/{name}" in doc
    assert "--smoke" in doc


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_with_smoke(name, tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLES / name), "--smoke"], cwd=tmp_path,
                            env=example_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert EXPECTED[name] in result.stdout, result.stdout[-2000:]
    assert "Traceback" not in result.stderr
