"""``sample_weight`` in both estimators' ``fit`` and in ``wjsentiment fit``, and ``transform``
for stacking (issue 21, items 12 and 13)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from conftest import make_bright_dark
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from wjsentiment import SentimentClassifier, SentimentEnsemble, cli
from wjsentiment import estimator as estimator_module
from wjsentiment.batches import FeatureBatches
from wjsentiment.calibration import fit_soft_vote, fit_temperature
from wjsentiment.datasets import crowdflower
from wjsentiment.exceptions import InputError
from wjsentiment.params import CLASSIFIER_PARAMS, defaults
from wjsentiment.training.loop import TrainConfig, train_model, weighted_cross_entropy

TINY = dict(weights=None, image_size=32, epochs=1, batch_size=8, verbose=0, random_state=0)


def _three_classes(n: int, seed: int = 0):
    """Dark, grey and bright noisy images: "Negative", "Neutral", "Positive"."""
    X, y = make_bright_dark(n, seed=seed)
    grey = np.random.default_rng(seed).integers(100, 156, (n, 32, 32, 3)).astype(np.uint8)
    return np.concatenate([X, grey]), np.concatenate([y, ["Neutral"] * n])


def _fitted(est: SentimentClassifier) -> dict:
    """What a fit leaves that the weights may change (the history without its timings)."""
    fitted = {key: getattr(est, key) for key in ("classes_", "class_prior_", "temperature_",
                                                 "logit_adjustment_")}
    fitted["history_"] = [{k: v for k, v in record.items() if "second" not in k}
                          for record in est.history_]
    return fitted


# ----------------------------------------------------------------------------- checking
@pytest.mark.parametrize("weights, match", [
    ([1.0] * 5, "one weight per sample: got shape \\(5,\\) for 6"),
    ([[1.0]] * 6, "one weight per sample: got shape \\(6, 1\\)"),
    (["heavy"] * 6, "must hold numbers"),
    ([1, 1, 1, 1, 1, np.nan], "finite and non-negative"),
    ([1, 1, 1, 1, 1, -1], "finite and non-negative"),
    ([0] * 6, "at least one\\s+weight above 0"),
])
def test_bad_sample_weight_is_refused_naming_it(weights, match):
    X, y = make_bright_dark(3)
    for est in (SentimentClassifier(**TINY),
                SentimentEnsemble([("lr", LogisticRegression())], verbose=0)):
        with pytest.raises(InputError, match=f"sample_weight.*{match}"):
            est.fit(X, y, sample_weight=weights)


# ---------------------------------------------------------------------- the weighted fits
def test_integer_weights_fit_as_repeated_rows():
    """The loss, the temperature and the soft vote weigh a row of weight k as k copies."""
    rng = np.random.default_rng(0)
    logits, y = rng.normal(0, 3, (30, 3)), rng.integers(0, 3, 30)
    k = rng.integers(1, 4, 30)
    rows = np.repeat(np.arange(30), k)
    class_weights = torch.tensor([0.5, 2.0, 1.3])
    weighted = weighted_cross_entropy(class_weights, 0.1)(
        torch.tensor(logits).float(), torch.tensor(y), torch.tensor(k).float())
    repeated = torch.nn.CrossEntropyLoss(weight=class_weights, label_smoothing=0.1)(
        torch.tensor(logits[rows]).float(), torch.tensor(y[rows]))
    assert float(weighted) == pytest.approx(float(repeated), rel=1e-6)
    assert fit_temperature(logits, y, sample_weight=k) == pytest.approx(
        fit_temperature(logits[rows], y[rows]), rel=1e-3)
    probas = [np.exp(logits) / np.exp(logits).sum(1, keepdims=True), np.full((30, 3), 1 / 3)]
    vote = fit_soft_vote(probas, y, calibrate=True, weights="auto", sample_weight=k)
    copies = fit_soft_vote([p[rows] for p in probas], y[rows], calibrate=True, weights="auto")
    np.testing.assert_allclose(vote.temperatures, copies.temperatures, rtol=1e-3)
    np.testing.assert_allclose(vote.weights, copies.weights, atol=1e-4)
    assert vote.log_loss["ensemble"] == pytest.approx(copies.log_loss["ensemble"], rel=1e-4)


def test_the_training_loop_follows_the_weights():
    """Each point twice, once with each label: the light copies barely count."""
    rng = np.random.default_rng(0)
    points = np.r_[rng.normal(-2, 1, (32, 2)), rng.normal(2, 1, (32, 2))]
    y = np.repeat([0, 1], 32)
    features = torch.tensor(np.r_[points, points], dtype=torch.float32)
    labels, weights = np.r_[y, 1 - y], np.r_[np.ones(64), np.full(64, 0.01)]
    config = TrainConfig.from_params(defaults(CLASSIFIER_PARAMS), lr=0.05, verbose=0)
    right = []
    for sample_weight in (None, weights):
        torch.manual_seed(0)
        head = torch.nn.Linear(2, 2)
        train_model(head, FeatureBatches(features, "cpu"), labels, config, torch.device("cpu"),
                    2, sample_weight=sample_weight)
        with torch.no_grad():
            right.append(head(features[:64]).softmax(1)[np.arange(64), y].mean().item())
    assert right[0] < 0.6 and right[1] > 0.85


def test_zero_weights_are_as_if_those_images_were_absent(monkeypatch):
    X, y = _three_classes(24)  # 72 images
    items = list(X)
    items[7] = "missing.png"  # unreadable: skipped, and named by its position in X
    weights = np.random.default_rng(1).uniform(0.2, 3.0, len(y))
    weights[y == "Neutral"] = 0.0  # a class of weight 0 is left out of classes_
    weights[[0, 3, 45]] = 0.0
    present = np.flatnonzero(weights)
    splits = []
    real_split = estimator_module.holdout_split

    def split_spy(y, *args, **kwargs):
        splits.append((y, real_split(y, *args, **kwargs)))
        return splits[-1][1]

    monkeypatch.setattr(estimator_module, "holdout_split", split_spy)
    params = dict(TINY, validation_fraction=0.5, on_bad_image="skip", class_weight="balanced",
                  finetune="head", epochs=2)
    with pytest.warns(UserWarning, match="Skipped 1 of"):
        full = SentimentClassifier(**params).fit(items, y, sample_weight=weights)
        absent = SentimentClassifier(**params).fit([items[i] for i in present], y[present],
                                                   sample_weight=weights[present])
    assert full.classes_.tolist() == ["Negative", "Positive"]
    assert full.skipped_[0].index == 7 and absent.skipped_[0].index == 7 - 2
    (y_full, split_full), (y_absent, split_absent) = splits
    np.testing.assert_array_equal(y_full, y_absent)
    for part_full, part_absent in zip(split_full, split_absent):
        np.testing.assert_array_equal(part_full, part_absent)
    assert full.temperature_ != 1.0  # 21 held-out images: the temperature was fitted
    for key, value in _fitted(full).items():
        np.testing.assert_equal(_fitted(absent)[key], value)
    np.testing.assert_array_equal(full.predict_proba(X[:6]), absent.predict_proba(X[:6]))


@pytest.mark.parametrize("params", [
    dict(class_weight="balanced", finetune="head", epochs=3),
    dict(sampling="undersample", finetune="head", label_smoothing=0.1, epochs=3),
])
def test_equal_weights_change_nothing_but_float_noise(params):
    X, y = make_bright_dark(24, seed=2)
    X, y = X[4:], y[4:]  # 20 dark, 24 bright: 22 held out, to fit the temperature
    params = {**TINY, "validation_fraction": 0.5, **params}
    plain = SentimentClassifier(**params).fit(X, y)
    weighted = SentimentClassifier(**params).fit(X, y, sample_weight=np.full(44, 2.5))
    expected, got = _fitted(plain), _fitted(weighted)
    assert got.pop("history_") == [pytest.approx(record, rel=1e-4)
                                   for record in expected.pop("history_")]
    np.testing.assert_array_equal(got.pop("classes_"), expected.pop("classes_"))
    for key, value in got.items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(weighted.predict_proba(X), plain.predict_proba(X), atol=1e-5)
    assert plain.temperature_ != 1.0


def test_sample_weight_is_routed_through_grid_search_and_cross_val_score():
    X, y = _three_classes(8)
    weights = np.where(y == "Negative", 3.0, 1.0)
    weights[y == "Neutral"] = 0.0
    with sklearn.config_context(enable_metadata_routing=True):
        clf = SentimentClassifier(**TINY, finetune="head", calibration=None)
        clf.set_fit_request(sample_weight=True)
        clf.set_score_request(sample_weight=False)
        with pytest.raises(InputError, match="sample_weight must be finite"):
            GridSearchCV(clf, {"lr": [1e-3]}, cv=2, error_score="raise").fit(
                X, y, sample_weight=-weights)
        with pytest.raises(InputError, match="sample_weight must be finite"):
            cross_val_score(clf, X, y, cv=2, params={"sample_weight": -weights},
                            error_score="raise")
        search = GridSearchCV(clf, {"lr": [1e-3]}, cv=2).fit(X, y, sample_weight=weights)
    best = search.best_estimator_
    assert best.classes_.tolist() == ["Negative", "Positive"]
    np.testing.assert_allclose(best.class_prior_, [0.75, 0.25])  # 3 x 8 against 8


# ---------------------------------------------------------------------------- the ensemble
def _points(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(-1, 1.5, (n // 2, 2)), rng.normal(1, 1.5, (n // 2, 2))]
    return X, np.array(["Negative"] * (n // 2) + ["Positive"] * (n // 2))


def test_the_ensemble_weights_its_members_and_its_holdout():
    X, y = _points()
    weights = np.random.default_rng(3).uniform(0.2, 3.0, len(y))
    members = [("a", LogisticRegression()), ("b", LogisticRegression(C=0.01))]
    ens = SentimentEnsemble(members, verbose=0).fit(X, y, sample_weight=weights)
    np.testing.assert_allclose(ens.estimators_[0].coef_,
                               LogisticRegression().fit(X, y, sample_weight=weights).coef_)
    negative = weights[y == "Negative"].sum() / weights.sum()
    np.testing.assert_allclose(ens.class_prior_, [negative, 1 - negative])
    # members whose fit weighs as the ensemble does (LogisticRegression's penalty does not
    # scale with the weights), so that equal weights change nothing in them either
    voting = SentimentEnsemble([("a", GaussianNB()), ("b", GaussianNB(var_smoothing=3.0))],
                               weights="auto", calibrate=True, verbose=0)
    weights[::7] = 0.0
    present = np.flatnonzero(weights)
    for ensemble in (voting, SentimentEnsemble(members, verbose=0)):  # with a holdout, without
        full = clone(ensemble).fit(X, y, sample_weight=weights)
        absent = clone(ensemble).fit(X[present], y[present], sample_weight=weights[present])
        for key in ("weights_", "temperatures_", "class_prior_"):
            np.testing.assert_array_equal(getattr(full, key), getattr(absent, key))
        np.testing.assert_array_equal(full.predict_proba(X), absent.predict_proba(X))
    equal = clone(voting).fit(X, y, sample_weight=np.full(len(y), 2.5))
    plain = clone(voting).fit(X, y)
    for key in ("weights_", "temperatures_", "class_prior_"):
        np.testing.assert_allclose(getattr(equal, key), getattr(plain, key), rtol=1e-4)
    with pytest.raises(InputError, match=r"member\(s\) \['knn'\] takes none"):
        SentimentEnsemble([*members, ("knn", KNeighborsClassifier())], verbose=0).fit(
            X, y, sample_weight=weights)


# ------------------------------------------------------------------ transform, for stacking
def test_transform_gives_the_probabilities_for_the_next_estimator():
    X, y = make_bright_dark(8)
    pipe = make_pipeline(SentimentClassifier(**TINY, finetune="head", calibration=None),
                         LogisticRegression()).fit(X, y)
    proba = pipe[0].predict_proba(X)
    np.testing.assert_array_equal(pipe[:-1].transform(X), proba)
    np.testing.assert_allclose(pipe.predict_proba(X), pipe[-1].predict_proba(proba))
    assert pipe[:-1].get_feature_names_out().tolist() == ["proba_Negative", "proba_Positive"]
    X2, y2 = _points()
    ens = SentimentEnsemble([("lr", LogisticRegression())], verbose=0).fit(X2, y2)
    np.testing.assert_array_equal(ens.transform(X2), ens.predict_proba(X2))
    assert ens.get_feature_names_out().tolist() == ["proba_Negative", "proba_Positive"]


def test_pipelines_with_pandas_output_take_both_estimators():
    X, y = make_bright_dark(8)
    pipe = make_pipeline(SentimentClassifier(**TINY, finetune="head", calibration=None),
                         LogisticRegression()).set_output(transform="pandas").fit(X, y)
    table = pipe[:-1].transform(X)
    assert table.columns.tolist() == ["proba_Negative", "proba_Positive"]
    np.testing.assert_array_equal(table.to_numpy(), pipe[0].predict_proba(X))
    X2, y2 = _points()
    ens = SentimentEnsemble([("lr", LogisticRegression())], verbose=0).set_output(
        transform="pandas")
    assert ens.fit_transform(X2, y2).columns.tolist() == ["proba_Negative", "proba_Positive"]


# ------------------------------------------------------------------------- the command line
def test_fit_crowdflower_weight_by_confidence_passes_the_confidence(monkeypatch, tmp_path):
    X, y = make_bright_dark(4)
    folder = tmp_path / "crowdflower" / "images"
    folder.mkdir(parents=True)
    for i, pixels in enumerate(X):
        Image.fromarray(pixels).save(folder / f"{i + 1}.jpg")
    confidence = np.linspace(0.4, 1.0, 9)  # the 9th image is not on disk
    frame = pd.DataFrame({"unit_id": np.arange(1, 10), "label": [*y, "Positive"],
                          "confidence": confidence, "golden": False, "judgments": 3,
                          "url": "http://127.0.0.1/unused.jpg"})
    monkeypatch.setattr(crowdflower, "_load_metadata", lambda: frame.copy())
    passed = []
    real_fit = SentimentClassifier.fit

    def spy(self, X, y, groups=None, sample_weight=None):
        passed.append(sample_weight)
        return real_fit(self, X, y, groups, sample_weight)

    monkeypatch.setattr(SentimentClassifier, "fit", spy)
    command = ["fit", "--crowdflower", "--data-home", str(tmp_path), "--weights", "none",
               "--image-size", "32", "--epochs", "1", "--calibration", "none", "--finetune",
               "head", "-q"]
    assert cli.main([*command, "--weight-by-confidence", "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*command, "--out", str(tmp_path / "b")]) == 0
    np.testing.assert_array_equal(passed[0], confidence[:8])
    assert passed[1] is None
    with pytest.raises(SystemExit) as info:
        cli.main(["fit", "--folder", str(tmp_path), "--weight-by-confidence", "--out", "x"])
    assert info.value.code == 2
