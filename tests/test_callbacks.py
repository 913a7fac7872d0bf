"""The callbacks parameter: what a callback sees, how it stops training, and that it changes
nothing else; the learning-rate schedule on torch's LambdaLR."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from conftest import make_bright_dark
from sklearn.base import clone

from wjsentiment import SentimentClassifier, config_context
from wjsentiment.training import Callback
from wjsentiment.training.optim import lr_factor_schedule, make_optimizer, make_scheduler


class Recorder(Callback):
    """Keeps everything it is told (picklable: plain attributes)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.events: list[str] = []
        self.records: list[dict] = []
        self.steps: list[int] = []
        self.threads: list[int] = []

    def on_fit_begin(self, estimator):
        self.events.append("begin")

    def on_batch_end(self, estimator, step):
        self.steps.append(step)

    def on_epoch_end(self, estimator, record):
        self.events.append("epoch")
        self.records.append(record)
        self.threads.append(torch.get_num_threads())
        record["train_loss"] = -1.0  # a copy: history_ keeps its own
        return self.stop_after is not None and record["epoch"] >= self.stop_after

    def on_fit_end(self, estimator):
        self.events.append("end")


@pytest.fixture
def data():
    return make_bright_dark(8)


def params(**extra):
    return {**dict(weights=None, image_size=32, epochs=3, batch_size=8, verbose=0,
                   random_state=0, calibration=None), **extra}


def test_a_callback_sees_every_epoch(data):
    X, y = data
    recorder = Recorder()
    clf = SentimentClassifier(**params(validation_fraction=0.25), callbacks=[recorder])
    clf.fit(X, y)
    assert recorder.events == ["begin", "epoch", "epoch", "epoch", "end"]
    assert [r["epoch"] for r in recorder.records] == [1, 2, 3]
    assert {"train_loss", "valid_f1", "lr"} <= set(recorder.records[0])
    for seen, kept in zip(recorder.records, clf.history_):
        assert kept["train_loss"] > 0  # changing the record changed nothing
        assert {k: v for k, v in seen.items() if k != "train_loss"} == \
            {k: v for k, v in kept.items() if k != "train_loss"}
    assert recorder.steps == list(range(1, len(recorder.steps) + 1))
    assert len(recorder.steps) == 3 * 2  # 12 training images, batches of 8 -> 8 + 4


def test_a_callback_can_stop_training(data):
    X, y = data
    clf = SentimentClassifier(**params(epochs=5), callbacks=[Recorder(stop_after=2)]).fit(X, y)
    assert clf.n_epochs_ == 2 and len(clf.history_) == 2 and clf.best_epoch_ == 2
    assert clf.callbacks[0].events[-1] == "end"


def test_callbacks_do_not_change_the_results(data):
    X, y = data
    plain = SentimentClassifier(**params()).fit(X, y)
    watched = SentimentClassifier(**params(), callbacks=[Recorder(), Callback()]).fit(X, y)
    np.testing.assert_array_equal(plain.predict_proba(X), watched.predict_proba(X))
    timing = {"seconds", "images_per_second"}
    assert [{k: v for k, v in h.items() if k not in timing} for h in plain.history_] == \
        [{k: v for k, v in h.items() if k not in timing} for h in watched.history_]


def test_early_stopping_is_a_callback_beside_the_users(data):
    X, y = data
    recorder = Recorder()
    clf = SentimentClassifier(**params(epochs=8, validation_fraction=0.25, early_stopping=True,
                                       n_iter_no_change=1, lr=1e-6),
                              callbacks=[recorder]).fit(X, y)
    assert clf.n_epochs_ < 8  # a learning rate this small stops improving at once
    assert len(recorder.records) == clf.n_epochs_ and recorder.events[-1] == "end"


def test_callbacks_survive_clone_and_pickle(data):
    X, y = data
    clf = SentimentClassifier(**params(epochs=1), callbacks=[Recorder(stop_after=3)])
    copy = clone(clf)
    assert copy.callbacks[0] is not clf.callbacks[0]
    assert copy.callbacks[0].stop_after == 3
    clf.fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    assert again.callbacks[0].events == ["begin", "epoch", "end"]
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_save_leaves_the_callbacks_out(data, tmp_path):
    X, y = data
    clf = SentimentClassifier(**params(epochs=1), callbacks=[Recorder()]).fit(X, y)
    clf.save(tmp_path / "model")
    assert SentimentClassifier.load(tmp_path / "model").callbacks is None


def test_something_that_is_not_a_callback_is_refused(data):
    X, y = data
    with pytest.raises(ValueError, match=r"callbacks\[1\] is 3, which has none of the methods"):
        SentimentClassifier(**params(), callbacks=[Recorder(), 3]).fit(X, y)


def test_training_uses_the_configured_torch_threads(data):
    X, y = data
    recorder = Recorder()
    before = torch.get_num_threads()
    with config_context(torch_threads=2):
        SentimentClassifier(**params(epochs=1), callbacks=[recorder]).fit(X, y)
    assert recorder.threads == [2]
    assert torch.get_num_threads() == before


def test_the_schedule_fills_a_tensor_learning_rate_in_place():
    """What a captured CUDA graph needs: the optimizer keeps reading the same tensor."""
    parameter = torch.nn.Parameter(torch.ones(3))
    lr = torch.tensor(0.1)
    optimizer = torch.optim.SGD([parameter], lr=lr)
    schedule = make_scheduler(optimizer, "cosine", total_steps=40)
    factor = lr_factor_schedule("cosine", 40)
    for step in range(1, 6):
        parameter.sum().backward()
        optimizer.step()
        schedule.step()
        assert optimizer.param_groups[0]["lr"] is lr
        assert float(lr) == pytest.approx(0.1 * factor(step), rel=1e-6)


def test_history_learning_rates_follow_the_schedule(data):
    X, y = data
    clf = SentimentClassifier(**params(epochs=4)).fit(X, y)
    factor = lr_factor_schedule("cosine", total_steps=4 * 2)
    assert [h["lr"] for h in clf.history_] == [1e-3 * factor(2 * e - 1) for e in (1, 2, 3, 4)]


def test_a_python_float_learning_rate_is_set_exactly():
    layer = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(layer.parameters(), "adamw", 1e-3, 0.0)
    make_scheduler(optimizer, "constant", total_steps=10)
    assert optimizer.param_groups[0]["lr"] == 1e-3
