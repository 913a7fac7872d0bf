"""Training never returns a model with non-finite weights, and batch norm gets a clear error
for batches of one image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_bright_dark

from wjsentiment import SentimentClassifier
from wjsentiment.training import TrainingDivergedError
from wjsentiment.training import loop as loop_module


def _finite(clf: SentimentClassifier) -> bool:
    return all(torch.isfinite(t).all() for t in clf.model_.state_dict().values()
               if t.is_floating_point())


def test_a_diverging_fit_raises_naming_epoch_and_step(tiny_params):
    X, y = make_bright_dark(12)
    clf = SentimentClassifier(**{**tiny_params, "lr": 1e6, "lr_schedule": "constant",
                                 "optimizer": "sgd"})
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+, step \d+ of \d+") as info:
        clf.fit(X, y)
    assert isinstance(info.value, FloatingPointError)
    assert info.value.epoch >= 1 and info.value.step >= 1
    assert not hasattr(clf, "model_")  # no NaN model is left behind


class _PoisonAfter:
    """An EagerStep that turns the weights to NaN from call ``n`` on (a stand-in for a fit that
    diverges late, which a real learning rate cannot produce on cue)."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0
        self.real = loop_module.EagerStep

    def __call__(self, *args, **kwargs):
        real_step = self.real(*args, **kwargs)

        def step(x, target, weight):
            self.calls += 1
            loss, logits = real_step(x, target, weight)
            if self.calls >= self.n:
                with torch.no_grad():
                    next(real_step.module.parameters()).fill_(float("nan"))
                return loss * float("nan"), logits
            return loss, logits

        return step


def test_restore_keeps_the_last_good_epoch(tiny_params, monkeypatch):
    X, y = make_bright_dark(12)  # 24 images, batch 8: 3 steps per epoch
    poison = _PoisonAfter(n=3 * 2 + 2)  # epoch 3, step 2
    monkeypatch.setattr(loop_module, "EagerStep", poison)
    clf = SentimentClassifier(**{**tiny_params, "epochs": 5, "on_divergence": "restore"})
    with pytest.warns(RuntimeWarning, match="epoch 3, step 2 of 3.*Kept the weights of epoch 2"):
        clf.fit(X, y)
    assert clf.n_epochs_ == clf.best_epoch_ == 2 and len(clf.history_) == 2
    assert _finite(clf)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()


def test_restore_with_nothing_to_restore_raises(tiny_params, monkeypatch):
    X, y = make_bright_dark(12)
    monkeypatch.setattr(loop_module, "EagerStep", _PoisonAfter(n=1))
    clf = SentimentClassifier(**{**tiny_params, "on_divergence": "restore"})
    with pytest.raises(TrainingDivergedError, match="epoch 1, step 1"):
        clf.fit(X, y)


def test_weights_that_go_non_finite_after_a_finite_loss_are_caught(tiny_params, monkeypatch):
    X, y = make_bright_dark(12)
    real = loop_module.EagerStep  # 24 images, batch 8: 3 steps per epoch
    calls = []

    def factory(*args, **kwargs):
        step = real(*args, **kwargs)

        def call(x, target, weight):
            calls.append(1)
            loss, logits = step(x, target, weight)
            if len(calls) == 3:  # after the epoch's last (finite) loss
                with torch.no_grad():
                    next(step.module.parameters()).fill_(float("inf"))
            return loss, logits

        return call

    monkeypatch.setattr(loop_module, "EagerStep", factory)
    with pytest.raises(TrainingDivergedError, match="weights became non-finite during epoch 1"):
        SentimentClassifier(**tiny_params).fit(X, y)


def test_non_finite_probabilities_are_an_error_not_a_result(tiny_params):
    X, y = make_bright_dark(8)
    clf = SentimentClassifier(**tiny_params).fit(X, y)
    with torch.no_grad():
        next(clf.model_.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite probabilities"):
        clf.predict_proba(X[:2])
    with pytest.raises(FloatingPointError):
        clf.predict(X[:2])


def test_batch_size_one_with_batch_norm_is_a_clear_error(tiny_params):
    X, y = make_bright_dark(4)
    with pytest.raises(ValueError, match="batch-norm layers.*batch_size >= 2"):
        SentimentClassifier(**{**tiny_params, "batch_size": 1}).fit(X, y)


def test_batch_size_one_trains_a_head_and_a_last_batch_of_one_is_dropped(tiny_params):
    X, y = make_bright_dark(4)
    head = SentimentClassifier(**{**tiny_params, "batch_size": 1, "finetune": "head"}).fit(X, y)
    assert head.history_[-1]["samples"] == 8
    full = SentimentClassifier(**{**tiny_params, "batch_size": 7}).fit(X, y)  # 8 = 7 + 1
    assert full.history_[-1]["samples"] == 7 and _finite(full)


def test_on_divergence_is_validated(tiny_params):
    X, y = make_bright_dark(4)
    with pytest.raises(ValueError, match="on_divergence"):
        SentimentClassifier(**{**tiny_params, "on_divergence": "ignore"}).fit(X, y)
