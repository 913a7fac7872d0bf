"""The training loop treats decoded images and cached features differently: images are
augmented (when asked), and a head trained on features on a CPU runs on one thread."""

from __future__ import annotations

import pytest
from conftest import make_bright_dark

from wjsentiment import SentimentClassifier, get_config
from wjsentiment.training import loop as loop_module


@pytest.fixture
def data():
    return make_bright_dark(8, size=32, seed=0)


def _fit(params: dict, X, y, **changes) -> None:
    SentimentClassifier(**{**params, "calibration": None, **changes}).fit(X, y)


def test_augmentation_runs_on_image_batches_when_asked(tiny_params, data, monkeypatch):
    calls = []
    real = loop_module.random_resized_crop_flip

    def counting(x, generator):
        calls.append(len(x))
        return real(x, generator)

    monkeypatch.setattr(loop_module, "random_resized_crop_flip", counting)
    _fit(tiny_params, *data, augment=True)
    assert calls, "augment=True fine-tuned the network without augmenting a batch"
    seen = len(calls)
    _fit(tiny_params, *data, augment=False)
    assert len(calls) == seen
    _fit(tiny_params, *data, augment=True, finetune="head")  # features: nothing to crop
    assert len(calls) == seen


def test_a_head_on_cached_features_trains_on_one_cpu_thread(tiny_params, data, monkeypatch):
    threads = []
    real = loop_module.cpu_threads

    def recording(n):
        threads.append(n)
        return real(n)

    monkeypatch.setattr(loop_module, "cpu_threads", recording)
    _fit(tiny_params, *data, finetune="head", device="cpu")
    _fit(tiny_params, *data, finetune="full", device="cpu")
    assert threads == [1, get_config()["torch_threads"]]
