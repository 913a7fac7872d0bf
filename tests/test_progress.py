"""Progress bars (issue 21, #5): one bar per call, cleared, none for quick or silent calls.

Bars appear after ``DELAY_SECONDS``; the tests that look at a bar set it to 0, so that they
do not depend on how long a call takes.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from wjsentiment import SentimentClassifier, SentimentEnsemble, progress
from wjsentiment.images import clear_image_cache
from wjsentiment.models import clear_feature_cache

CURSOR_UP = "\x1b[A"


def pictures(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ensemble(tiny_params_module):
    y = ["Negative", "Positive"] * 4
    members = [("a", SentimentClassifier(**tiny_params_module, finetune="head")),
               ("b", SentimentClassifier(**tiny_params_module))]
    return SentimentEnsemble(members, verbose=0).fit(pictures(8, 0), y)


@pytest.fixture(scope="module")
def tiny_params_module():
    return dict(weights=None, image_size=32, batch_size=8, epochs=1, calibration=None,
                verbose=0, random_state=0)


def talkative(ensemble: SentimentEnsemble, verbose: int) -> SentimentEnsemble:
    """The ensemble with ``verbose``, and members that would show their own bars."""
    ensemble.set_params(verbose=verbose)
    for member in ensemble.estimators_:
        member.set_params(verbose=1)
    return ensemble


def fresh_predict(ensemble: SentimentEnsemble, seed: int) -> None:
    """A predict that decodes and computes features (nothing cached), so members have work
    that shows progress of its own."""
    clear_image_cache()
    clear_feature_cache()
    ensemble.predict_proba(pictures(6, seed))


def test_an_ensemble_predict_shows_one_bar_and_clears_it(ensemble, capsys, monkeypatch):
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0)
    fresh_predict(talkative(ensemble, 1), seed=1)
    err = capsys.readouterr().err
    assert "Predicting members" in err
    assert "decode" not in err and "backbone features" not in err  # the members' bars
    assert CURSOR_UP not in err
    assert "\n" not in err  # one line, rewritten in place and cleared (no blank line left)
    assert err.endswith("\r")


def test_an_ensemble_with_verbose_zero_prints_nothing(ensemble, capsys, monkeypatch):
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0)
    fresh_predict(talkative(ensemble, 0), seed=2)
    assert capsys.readouterr() == ("", "")


def test_a_member_alone_shows_its_bars_one_after_the_other(ensemble, capsys, monkeypatch):
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0)
    member = talkative(ensemble, 0).estimators_[0]  # finetune="head": decode, then features
    clear_image_cache()
    clear_feature_cache()
    member.predict_proba(pictures(6, 3))
    err = capsys.readouterr().err
    assert "decode 32px" in err and "backbone features" in err
    assert CURSOR_UP not in err and "\n" not in err


def test_a_quick_call_prints_no_bar(capsys, monkeypatch):
    with progress.progress(10, "quick", "item", verbose=1) as bar:
        bar.update(10)  # well within the delay
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0)  # the same call, shown at once
    with progress.progress(10, "quick", "item", verbose=1) as bar:
        bar.update(10)
    assert "quick" in capsys.readouterr().err


def test_a_fit_quicker_than_the_delay_prints_nothing(capsys, monkeypatch, tiny_params):
    monkeypatch.setattr(progress, "DELAY_SECONDS", 60)  # longer than any fit here
    SentimentClassifier(**{**tiny_params, "verbose": 1, "epochs": 1, "calibration": None}).fit(
        pictures(8, 6), ["Negative", "Positive"] * 4)
    assert capsys.readouterr().err == ""  # not even the epoch's description


def test_an_ensemble_fit_shows_its_bar_not_the_members(capsys, monkeypatch, tiny_params):
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0)
    member = SentimentClassifier(**{**tiny_params, "verbose": 1, "epochs": 1, "calibration": None})
    SentimentEnsemble([("a", member)], verbose=1).fit(pictures(8, 4), ["Negative", "Positive"] * 4)
    err = capsys.readouterr().err
    assert "Fitting members" in err and "fit epoch" not in err and CURSOR_UP not in err
    SentimentClassifier(**{**tiny_params, "verbose": 1, "epochs": 1, "calibration": None}).fit(
        pictures(8, 5), ["Negative", "Positive"] * 4)
    err = capsys.readouterr().err
    assert "fit epoch 1/1" in err and CURSOR_UP not in err
    assert err.endswith("\n")  # a fit's bar stays, as its record


class TalkativeMember(ClassifierMixin, BaseEstimator):
    """A member whose predict_proba shows a bar of its own, as a classifier's decoding does."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        with progress.progress(len(X), "member work", "img", verbose=1) as bar:
            bar.update(len(X))
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def test_members_run_in_threads_show_no_bar_of_their_own(capsys, monkeypatch):
    """With several GPUs, members run in joblib threads, which start outside the call."""
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0)
    X, y = np.zeros((4, 1)), [0, 1, 0, 1]
    ensemble = SentimentEnsemble([("a", TalkativeMember()), ("b", TalkativeMember())],
                                 verbose=1).fit(X, y)
    capsys.readouterr()
    monkeypatch.setattr(SentimentEnsemble, "_n_gpus", staticmethod(lambda: 2))
    ensemble.predict_proba(X)
    err = capsys.readouterr().err
    assert "Predicting members" in err and "member work" not in err and CURSOR_UP not in err
    ensemble.set_params(verbose=0).predict_proba(X)
    assert capsys.readouterr().err == ""
