"""Shared fixtures: small real and synthetic image sets, and a clean cache per test module."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
# One torch thread per pytest-xdist worker (make test runs one worker per core); two threads
# of one process otherwise.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def emoji():
    """The real emoji sentiment set shipped with the package."""
    from wjsentiment.datasets import load_emoji_sentiment

    return load_emoji_sentiment()


def make_bright_dark(n_per_class: int, size: int = 32, seed: int = 0):
    """An easy, separable two-class set: dark noisy images vs bright noisy images."""
    rng = np.random.default_rng(seed)
    dark = rng.integers(0, 90, (n_per_class, size, size, 3))
    bright = rng.integers(165, 256, (n_per_class, size, size, 3))
    X = np.concatenate([dark, bright]).astype(np.uint8)
    y = np.array(["Negative"] * n_per_class + ["Positive"] * n_per_class)
    return X, y


@pytest.fixture
def bright_dark():
    return make_bright_dark(24)


@pytest.fixture
def image_files(tmp_path):
    """Twelve small JPEG and PNG files of two classes, and their labels."""
    X, y = make_bright_dark(6, size=40, seed=1)
    paths = []
    for i, pixels in enumerate(X):
        path = tmp_path / f"img_{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths, y


@pytest.fixture
def tiny_params():
    """Estimator settings that train in about a second on a CPU."""
    return dict(weights=None, image_size=32, epochs=2, batch_size=8, verbose=0, random_state=0)
