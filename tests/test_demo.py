"""run_demo(smoke=True): the demo's code path end to end at a tiny size."""

from __future__ import annotations

import json

import pytest
import torch

import wjsentiment
from wjsentiment import SentimentEnsemble
from wjsentiment.datasets import load_emoji_sentiment
from wjsentiment.demo import DEMO_MEMBERS, DEMO_PARAMS, SMOKE_PARAMS, demo_ensemble, run_demo

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
        "confusion_matrix.png", "metrics.json", "model", "reliability.png",
        "training_curves_lite0.png", "training_curves_lite1.png"]
    for name in ("confusion_matrix.png", "reliability.png", "training_curves_lite0.png"):
        assert (out / name).read_bytes()[:8] == PNG
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {k: v for k, v in result.items() if k != "paths"}
    assert result["paths"]["model"] == str(out / "model")


def test_metrics_content(demo):
    _, m = demo
    assert m["smoke"] is True and m["random_state"] == 0
    for scores in (m, *m["members"].values()):
        assert 0.0 <= scores["macro_f1"] <= 1.0 and 0.0 <= scores["accuracy"] <= 1.0
        assert scores["log_loss"] > 0 and 0.0 <= scores["ece"] <= 1.0
    assert sorted(m["members"]) == sorted(DEMO_MEMBERS)
    assert m["params"]["members"] == DEMO_MEMBERS
    assert m["params"]["image_size"] == SMOKE_PARAMS["image_size"]
    assert m["n_train"] > 0 and m["n_test"] == m["report"]["n_samples"]
    assert m["report"]["labels"] == ["Highly negative", "Negative", "Neutral", "Positive",
                                     "Highly positive"]
    assert m["prior_log_loss"] > 0
    assert all("weights" in source for source in m["weights_source"].values())


def test_both_drawings_of_each_test_emoji_are_tested(demo):
    _, m = demo
    assert m["n_test_emoji"] * 2 == m["n_test"]


def test_saved_ensemble_predicts(demo):
    out, m = demo
    model = wjsentiment.load(out / "model", device="cpu")
    assert isinstance(model, SentimentEnsemble)
    assert sorted(model.classes_) == sorted(m["report"]["labels"])
    for member in model.estimators_:
        member.set_params(verbose=0)
        assert member.image_size == SMOKE_PARAMS["image_size"]
        assert member.n_epochs_ == SMOKE_PARAMS["epochs"]
        assert member.finetune == DEMO_PARAMS["finetune"]
    proba = model.set_params(verbose=0).predict_proba(load_emoji_sentiment().paths[:3])
    assert proba.shape == (3, 5)


def test_full_settings_are_the_documented_ones():
    assert DEMO_MEMBERS == {"lite0": "tf_efficientnet_lite0", "lite1": "tf_efficientnet_lite1"}
    assert DEMO_PARAMS["weights"] == "imagenet"
    assert set(SMOKE_PARAMS) <= set(DEMO_PARAMS)
    ensemble = demo_ensemble(random_state=3)
    assert [m.random_state for _, m in ensemble.estimators] == [3, 3]
    assert all(m.calibration == "temperature" for _, m in ensemble.estimators)


def test_another_seed_trains_another_model_on_the_same_split(demo, tmp_path):
    _, m = demo
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        other = run_demo(tmp_path, smoke=True, random_state=1, verbose=0)
    finally:
        torch.set_num_threads(threads)
    assert other["n_test"] == m["n_test"] and other["n_train"] == m["n_train"]
    assert other["random_state"] == 1
    assert other["report"]["log_loss"] != m["report"]["log_loss"]


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
    assert "Backbone weights of lite0:" in out
    assert "ensemble" in out and "class frequencies" in out
    assert "Highly positive" in out
