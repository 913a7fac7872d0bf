"""Calibrated probabilities, the decision rule and grouped validation (issue 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sklearn
from conftest import make_bright_dark
from scipy.special import log_softmax, softmax
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score

import wjsentiment
from wjsentiment import SentimentClassifier, SentimentEnsemble
from wjsentiment import estimator as estimator_module
from wjsentiment.calibration import (
    calibrated_proba,
    decide,
    fit_temperature,
    log_loss_of,
    logit_adjustment,
    too_few_to_calibrate,
)
from wjsentiment.exceptions import CalibrationWarning
from wjsentiment.holdout import holdout_split

SAVED_V1 = Path(__file__).parent / "data" / "saved_v1"


# ------------------------------------------------------------------------ the calibration maths
def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 5))
    truth = 3.0
    y = np.array([rng.choice(5, p=p) for p in softmax(logits / truth, axis=1)])
    assert fit_temperature(logits, y) == pytest.approx(truth, rel=0.1)
    assert log_loss_of(logits, y, fit_temperature(logits, y)) < log_loss_of(logits, y, 1.0)


def test_fit_temperature_is_never_worse_than_one_on_its_data():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (50, 3))
    y = rng.integers(0, 3, 50)
    t = fit_temperature(logits, y)
    assert log_loss_of(logits, y, t) <= log_loss_of(logits, y, 1.0)


def test_logit_adjustment_turns_balanced_scores_into_real_frequencies():
    prior = np.array([0.7, 0.2, 0.1])
    # A model trained on balanced classes that knows nothing answers uniform probabilities:
    # adjusted, it answers the class frequencies.
    proba = calibrated_proba(np.zeros((1, 3)), 1.0, logit_adjustment(prior, np.ones(3)))
    np.testing.assert_allclose(proba[0], prior)
    np.testing.assert_allclose(logit_adjustment(prior, prior), 0.0, atol=1e-12)


def test_decide_balanced_divides_by_the_prior():
    proba = np.array([[0.6, 0.3, 0.1], [0.8, 0.15, 0.05]])
    prior = np.array([0.7, 0.2, 0.1])
    assert decide(proba, "argmax").tolist() == [0, 0]
    assert decide(proba, "balanced", prior).tolist() == [1, 0]
    with pytest.raises(ValueError, match="training class frequencies"):
        decide(proba, "balanced")


# ------------------------------------------------------------------------------ the estimator
def _noise(n: int, minority: int, size: int = 32, seed: int = 0):
    """Images of pure noise whose labels have nothing to do with the pixels: the best answer
    is the class frequencies."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    y = np.array(["Negative"] * minority + ["Positive"] * (n - minority))
    return X, y


@pytest.fixture(scope="module")
def balanced_on_noise():
    X, y = _noise(160, minority=40)
    clf = SentimentClassifier(weights=None, image_size=32, epochs=3, batch_size=16,
                              class_weight="balanced", validation_fraction=0.25, lr=3e-3,
                              verbose=0, random_state=0).fit(X, y)
    return clf, _noise(200, minority=50, seed=1)


def test_calibrated_probabilities_estimate_the_real_class_frequencies(balanced_on_noise):
    clf, (X_test, _) = balanced_on_noise
    assert clf.temperature_ > 1.0  # a net that memorised noise is over-confident
    np.testing.assert_allclose(clf.class_prior_, [0.25, 0.75])
    proba = clf.predict_proba(X_test)
    minority = list(clf.classes_).index("Negative")
    assert abs(proba[:, minority].mean() - 0.25) < 0.1
    # Without the temperature and the adjustment, balanced training says ~0.5.
    clf_raw = clf
    saved = clf.temperature_, clf.logit_adjustment_
    clf_raw.temperature_, clf_raw.logit_adjustment_ = 1.0, np.zeros(2)
    try:
        raw = clf_raw.predict_proba(X_test)
    finally:
        clf.temperature_, clf.logit_adjustment_ = saved
    assert raw[:, minority].mean() > 0.35


def test_decision_changes_predictions_not_probabilities(balanced_on_noise):
    clf, (X_test, _) = balanced_on_noise
    assert clf.decision == "auto"  # balanced training: "balanced"
    proba = clf.predict_proba(X_test)
    balanced = clf.predict(X_test)
    argmax = clf.set_params(decision="argmax").predict(X_test)
    try:
        np.testing.assert_array_equal(clf.predict_proba(X_test), proba)
        assert argmax.tolist() == clf.classes_[proba.argmax(1)].tolist()
        assert balanced.tolist() == clf.classes_[(proba / clf.class_prior_).argmax(1)].tolist()
        assert (argmax != balanced).any()
        assert (argmax == "Positive").mean() > (balanced == "Positive").mean()
    finally:
        clf.set_params(decision="auto")
    assert clf.set_params(decision="balanced").predict(X_test).tolist() == balanced.tolist()
    clf.set_params(decision="auto")


def test_without_calibration_the_temperature_is_one_and_every_image_trains(tiny_params):
    X, y = make_bright_dark(30)
    clf = SentimentClassifier(**tiny_params, calibration=None).fit(X, y)
    assert clf.temperature_ == 1.0 and "valid_loss" not in clf.history_[0]
    assert clf.history_[0]["samples"] == 60


def test_calibration_holds_out_a_tenth_when_there_is_no_validation_split(tiny_params):
    X, y = make_bright_dark(110)  # 11 per class held out: 22 >= 20
    clf = SentimentClassifier(**{**tiny_params, "epochs": 1}).fit(X, y)
    assert clf.history_[0]["samples"] == 220 - 22 and "valid_loss" in clf.history_[0]
    assert clf.temperature_ != 1.0


def test_too_few_images_to_calibrate_warns_and_trains_on_all(tiny_params):
    X, y = make_bright_dark(12)
    with pytest.warns(UserWarning, match="temperature stays 1") as caught:
        clf = SentimentClassifier(**tiny_params).fit(X, y)
    assert clf.temperature_ == 1.0 and clf.history_[0]["samples"] == 24
    (warning,) = [w for w in caught if issubclass(w.category, CalibrationWarning)]
    assert "\n" not in str(warning.message) and "2 of these 24 images" in str(warning.message)
    assert warning.filename == __file__  # the line that called fit, not the package's


def test_the_calibration_warning_says_why_and_what_to_do():
    """On 40 images with validation_fraction=0, 10% of each class is 4 images in all."""
    message = too_few_to_calibrate(40, 4, 0.0, 2)
    assert "10% of each class, which is 4 of these 40 images" in message
    assert "pass validation_fraction=0.55 or more, use more images, or pass " \
           "calibration=None" in message
    X, y = make_bright_dark(20)  # 0.55 holds out 11 of each class's 20: 22 >= 20
    assert len(holdout_split(np.unique(y, return_inverse=True)[1], 0.55, random_state=0)[1]) \
        >= 20
    assert "validation_fraction=0.2 held out 8 of the 40" in too_few_to_calibrate(40, 8, 0.2, 2)
    # Groups made the holdout small though the fraction is already large enough: no advice
    # to pass a fraction the caller has passed.
    grouped = too_few_to_calibrate(40, 12, 0.6, 2)
    assert "validation_fraction=0.6 held out 12 of the 40" in grouped
    assert "pass validation_fraction" not in grouped and "use more images" in grouped


def test_predict_proba_applies_temperature_and_adjustment(balanced_on_noise):
    clf, (X_test, _) = balanced_on_noise
    proba = clf.predict_proba(X_test[:5])
    saved = clf.temperature_, clf.logit_adjustment_
    clf.temperature_, clf.logit_adjustment_ = 1.0, np.zeros(2)
    try:
        logits = np.log(clf.predict_proba(X_test[:5]))  # logits up to a constant per row
    finally:
        clf.temperature_, clf.logit_adjustment_ = saved
    expected = np.exp(log_softmax(logits / saved[0] + saved[1], axis=1))
    np.testing.assert_allclose(proba, expected, rtol=1e-6)


# ----------------------------------------------------------------------------- grouped splits
@pytest.fixture
def split_spy(monkeypatch):
    calls = []

    def spy(y, fraction, **kwargs):
        result = holdout_split(y, fraction, **kwargs)
        calls.append((kwargs.get("groups"), result))
        return result

    monkeypatch.setattr(estimator_module, "holdout_split", spy)
    return calls


def _grouped(n_groups: int):
    X, y = make_bright_dark(n_groups)  # two images per group, like the emoji's two drawings
    groups = np.arange(2 * n_groups) % n_groups
    return X, y, groups


def test_groups_stay_on_one_side_of_the_validation_split(tiny_params, split_spy):
    X, y, groups = _grouped(20)
    clf = SentimentClassifier(**tiny_params, validation_fraction=0.3)
    clf.fit(X, y, groups=groups)
    (passed, (train, held)), = split_spy
    np.testing.assert_array_equal(passed, groups)
    assert len(held) > 0 and not set(groups[train]) & set(groups[held])


def test_groups_must_match_the_images(tiny_params):
    X, y, groups = _grouped(4)
    with pytest.raises(ValueError, match="one group per image"):
        SentimentClassifier(**tiny_params).fit(X, y, groups=groups[:-1])


def test_groups_are_routed_through_grid_search_and_cross_val_score(tiny_params, split_spy):
    X, y, groups = _grouped(10)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = SentimentClassifier(**{**tiny_params, "epochs": 1},
                                  validation_fraction=0.3).set_fit_request(groups=True)
        GridSearchCV(clf, {"lr": [1e-3, 2e-3]}, cv=GroupKFold(2)).fit(X, y, groups=groups)
        assert split_spy and all(g is not None for g, _ in split_spy)
        n_search = len(split_spy)
        cross_val_score(clf, X, y, cv=GroupKFold(2), params={"groups": groups})
    assert len(split_spy) == n_search + 2
    for passed, (train, held) in split_spy:
        assert not set(passed[train]) & set(passed[held])


# -------------------------------------------------------------------------------- the ensemble
def test_ensemble_routes_groups_and_uses_the_same_decision_rule(tiny_params, split_spy):
    X, y = _noise(120, minority=30)
    groups = np.arange(120) // 2
    members = [(f"m{i}", SentimentClassifier(**{**tiny_params, "random_state": i},
                                             class_weight="balanced", validation_fraction=0.25))
               for i in range(2)]
    ens = SentimentEnsemble(members, verbose=0).fit(X, y, groups=groups)
    assert len(split_spy) == 2 and all(g is not None for g, _ in split_spy)
    np.testing.assert_allclose(ens.class_prior_, [0.25, 0.75])
    X_test, _ = _noise(100, minority=25, seed=2)
    proba = ens.predict_proba(X_test)
    balanced = ens.predict(X_test)
    assert balanced.tolist() == ens.classes_[(proba / ens.class_prior_).argmax(1)].tolist()
    argmax = ens.set_params(decision="argmax").predict(X_test)
    assert argmax.tolist() == ens.classes_[proba.argmax(1)].tolist()
    np.testing.assert_array_equal(ens.predict_proba(X_test), proba)


# ------------------------------------------------------------------------------- saving
def test_calibration_survives_save_and_load(balanced_on_noise, tmp_path):
    clf, (X_test, _) = balanced_on_noise
    loaded = wjsentiment.load(clf.save(tmp_path / "model"))
    assert loaded.temperature_ == clf.temperature_
    np.testing.assert_array_equal(loaded.logit_adjustment_, clf.logit_adjustment_)
    np.testing.assert_allclose(loaded.predict_proba(X_test[:8]), clf.predict_proba(X_test[:8]))
    assert loaded.predict(X_test[:8]).tolist() == clf.predict(X_test[:8]).tolist()


def test_models_saved_by_0_1_0_still_load_and_predict_the_same():
    expected = np.load(SAVED_V1 / "expected_v1.npz")
    model = wjsentiment.load(SAVED_V1 / "model_v1")
    assert isinstance(model, SentimentClassifier) and model.calibration is None
    model.set_params(verbose=0)
    np.testing.assert_allclose(model.predict_proba(expected["X"]), expected["model"],
                               atol=1e-6)
    assert model.predict(expected["X"]).tolist() == expected["model_pred"].tolist()
    ensemble = wjsentiment.load(SAVED_V1 / "ensemble_v1")
    assert isinstance(ensemble, SentimentEnsemble)
    for member in ensemble.estimators_:
        member.set_params(verbose=0)
    np.testing.assert_allclose(ensemble.set_params(verbose=0).predict_proba(expected["X"]),
                               expected["ensemble"], atol=1e-6)
