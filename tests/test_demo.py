"""run_demo(smoke=True): the demo's code path end to end at a tiny size."""

from __future__ import annotations

import json

import pytest
import torch

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import load_emoji_sentiment
from wjsentiment.demo import DEMO_PARAMS, SMOKE_PARAMS, run_demo

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_examples.py: fast on a busy two-core machine
    try:
        out = tmp_path_factory.mktemp("demo") / "run"
        yield out, run_demo(out, smoke=True, verbose=0)
    finally:
        torch.set_num_threads(threads)


def test_writes_model_plots_and_metrics(demo):
    out, result = demo
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png", "metrics.json", "model", "training_curves.png"]
    for name in ("confusion_matrix.png", "training_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {k: v for k, v in result.items() if k != "paths"}
    assert result["paths"]["model"] == str(out / "model")


def test_metrics_content(demo):
    _, m = demo
    assert m["smoke"] is True
    assert 0.0 <= m["macro_f1"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0
    assert m["params"]["backbone"] == "tf_efficientnet_lite0"
    assert m["params"]["image_size"] == SMOKE_PARAMS["image_size"]
    assert m["n_train"] > 0 and m["n_test"] == m["report"]["n_samples"]
    assert m["report"]["labels"] == ["Highly negative", "Negative", "Neutral", "Positive",
                                     "Highly positive"]
    assert "weights" in m["weights_source"] or "initialisation" in m["weights_source"]


def test_both_drawings_of_each_test_emoji_are_tested(demo):
    _, m = demo
    assert m["n_test_emoji"] * 2 == m["n_test"]


def test_saved_model_predicts(demo):
    out, m = demo
    clf = SentimentClassifier.load(out / "model", device="cpu")
    assert sorted(clf.classes_) == sorted(m["report"]["labels"])
    proba = clf.set_params(verbose=0).predict_proba(load_emoji_sentiment().paths[:3])
    assert proba.shape == (3, 5)
    assert clf.image_size == SMOKE_PARAMS["image_size"]
    assert clf.finetune == DEMO_PARAMS["finetune"]
    assert clf.n_epochs_ == SMOKE_PARAMS["epochs"]


def test_full_settings_are_the_documented_ones():
    assert DEMO_PARAMS["backbone"] == "tf_efficientnet_lite0"
    assert DEMO_PARAMS["weights"] == "imagenet"
    assert set(SMOKE_PARAMS) <= set(DEMO_PARAMS)


def test_prints_report_when_verbose(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(SMOKE_PARAMS, "image_size", 16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_demo(tmp_path, smoke=True, verbose=1)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "Held-out emoji: accuracy" in out
    assert "Backbone weights:" in out
    assert "Highly positive" in out
