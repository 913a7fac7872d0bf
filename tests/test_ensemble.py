"""SentimentEnsemble: soft vote, calibration, fitted weights, parameters, save/load."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bright_dark
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from sklearn.utils.validation import check_is_fitted

from wjsentiment import SentimentClassifier
from wjsentiment.calibration import apply_temperature, fit_weights
from wjsentiment.calibration import fit_proba_temperature as fit_temperature
from wjsentiment.ensemble import (
    DEFAULT_HOLDOUT_SEED,
    ENSEMBLE_FILE,
    SentimentEnsemble,
    default_estimators,
)
from wjsentiment.evaluation import evaluate
from wjsentiment.holdout import holdout_split

TINY = dict(backbone="test_resnet", weights=None, image_size=32, epochs=1, batch_size=8,
            augment=False, verbose=0)


class TableClassifier(ClassifierMixin, BaseEstimator):
    """A real scikit-learn classifier whose probabilities are fixed rows of ``table``.

    Row ``X[i, 0]`` of the table is the prediction for sample ``i``.
    """

    def __init__(self, table=None, classes=None, device="cpu", random_state=None):
        self.table = table
        self.classes = classes
        self.device = device
        self.random_state = random_state

    def fit(self, X, y):
        self.classes_ = np.asarray(self.classes) if self.classes is not None else np.unique(y)
        self.n_fit_ = len(y)
        self.fit_device_ = self.device
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return np.asarray(self.table, dtype=float)[np.asarray(X)[:, 0].astype(int)]


class ConstantClassifier(ClassifierMixin, BaseEstimator):
    """Predicts the same probabilities for any input (images included)."""

    def __init__(self, proba=(0.5, 0.5)):
        self.proba = proba

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return np.tile(np.asarray(self.proba, dtype=float), (len(X), 1))


def _tables(draw, n_members, n, k):
    raw = draw(arrays(np.float64, (n_members, n, k), elements=st.floats(0.01, 1.0)))
    return raw / raw.sum(axis=2, keepdims=True)


# ------------------------------------------------------------------------------ soft vote
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_soft_vote_is_the_weighted_mean_of_member_probabilities(data):
    n_members = data.draw(st.integers(1, 4))
    n = data.draw(st.integers(2, 8))
    k = data.draw(st.integers(2, 4))
    tables = _tables(data.draw, n_members, n, k)
    weights = data.draw(st.one_of(
        st.none(),
        st.lists(st.floats(0.0, 10.0), min_size=n_members, max_size=n_members)
        .filter(lambda w: sum(w) > 1e-3)))
    X = np.arange(n)[:, None]
    y = np.arange(n) % k
    members = [(f"m{i}", TableClassifier(table=t, classes=list(range(k))))
               for i, t in enumerate(tables)]
    ens = SentimentEnsemble(members, weights=weights, verbose=0).fit(X, y)
    expected = np.average(tables, axis=0, weights=weights)
    np.testing.assert_allclose(ens.predict_proba(X), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ens.predict(X), np.argmax(expected, axis=1))
    assert ens.weights_.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(ens.temperatures_, np.ones(n_members))
    assert ens.validation_log_loss_ is None


def test_members_are_cloned_and_exposed_by_name():
    spec = TableClassifier(table=np.eye(2))
    ens = SentimentEnsemble([("a", spec), ("b", TableClassifier(table=np.eye(2)))],
                            verbose=0).fit(np.array([[0], [1]]), [0, 1])
    assert not hasattr(spec, "classes_")
    assert ens.named_estimators_["a"] is ens.estimators_[0]
    assert ens.named_estimators_.b.n_fit_ == 2
    np.testing.assert_array_equal(ens.classes_, [0, 1])
    assert ens.score(np.array([[0], [1]]), [0, 1]) == 1.0


# ------------------------------------------------------------------- weights and calibration
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_fit_weights_is_never_worse_than_equal_weights(data):
    n_members = data.draw(st.integers(1, 4))
    n = data.draw(st.integers(1, 30))
    k = data.draw(st.integers(2, 4))
    tables = _tables(data.draw, n_members, n, k)
    y = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    w = fit_weights(list(tables), y)
    assert w.shape == (n_members,)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    labels = list(range(k))
    fitted = log_loss(y, np.average(tables, axis=0, weights=w), labels=labels)
    equal = log_loss(y, tables.mean(axis=0), labels=labels)
    assert fitted <= equal + 1e-9


def test_fit_weights_favours_the_informative_member():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    good = np.full((200, 3), 0.05)
    good[np.arange(200), y] = 0.9
    noise = rng.dirichlet(np.ones(3), 200)
    w = fit_weights([noise, good], y)
    assert w[1] > 0.8


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_temperature_scaling_never_raises_log_loss(data):
    n = data.draw(st.integers(1, 40))
    k = data.draw(st.integers(2, 5))
    logits = data.draw(arrays(np.float64, (n, k), elements=st.floats(-8.0, 8.0)))
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    y = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    t = fit_temperature(proba, y)
    assert 0.01 <= t <= 100
    scaled = apply_temperature(proba, t)
    np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
    labels = list(range(k))
    assert log_loss(y, scaled, labels=labels) <= log_loss(y, proba, labels=labels) + 1e-9


def test_temperature_softens_overconfident_and_sharpens_timid_probabilities():
    y = np.array([0, 1] * 20)
    overconfident = np.where(np.arange(40)[:, None] % 4 == 0, [[0.01, 0.99]], [[0.99, 0.01]])
    overconfident[1::2] = overconfident[1::2, ::-1]
    assert fit_temperature(overconfident, y) > 1.5
    timid = np.tile([[0.55, 0.45], [0.45, 0.55]], (20, 1))
    assert fit_temperature(timid, y) < 0.5
    np.testing.assert_array_equal(apply_temperature(timid, 1.0), timid)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "2"])
def test_apply_temperature_rejects_bad_temperatures(bad):
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature([[0.5, 0.5]], bad)


def test_fit_temperature_rejects_bad_targets():
    with pytest.raises(ValueError, match="column indices"):
        fit_temperature([[0.5, 0.5]], [2])
    with pytest.raises(ValueError, match="one class index per row"):
        fit_temperature([[0.5, 0.5]], [0, 1])


def _holdout(n, y, fraction=0.15, seed=DEFAULT_HOLDOUT_SEED):
    _, val = holdout_split(np.asarray(y), fraction, random_state=seed)
    assert len(val) > 0
    return val


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), calibrate=st.booleans())
def test_auto_weights_beat_equal_weights_on_the_holdout(data, calibrate):
    n, k = 40, 2
    tables = _tables(data.draw, 3, n, k)
    X = np.arange(n)[:, None]
    y = np.arange(n) % k
    ens = SentimentEnsemble([(f"m{i}", TableClassifier(table=t)) for i, t in enumerate(tables)],
                            weights="auto", calibrate=calibrate, verbose=0).fit(X, y)
    val = _holdout(n, y)
    assert all(m.n_fit_ == n - len(val) for m in ens.estimators_)
    scaled = [apply_temperature(t[val], float(temp))
              for t, temp in zip(tables, ens.temperatures_)]
    equal = log_loss(y[val], np.mean(scaled, axis=0), labels=[0, 1])
    fitted = log_loss(y[val], ens.predict_proba(X[val]), labels=[0, 1])
    assert fitted <= equal + 1e-9
    assert ens.validation_log_loss_["ensemble"] == pytest.approx(fitted, abs=1e-6)
    assert ens.validation_log_loss_["equal_weights"] == pytest.approx(equal, abs=1e-6)
    if not calibrate:
        np.testing.assert_array_equal(ens.temperatures_, 1.0)


def test_calibration_lowers_each_members_holdout_log_loss():
    rng = np.random.default_rng(1)
    n = 60
    y = np.arange(n) % 3
    sharp = np.full((n, 3), 0.005)
    right = rng.random(n) < 0.7
    sharp[np.arange(n), np.where(right, y, (y + 1) % 3)] = 0.99
    X = np.arange(n)[:, None]
    ens = SentimentEnsemble([("a", TableClassifier(table=sharp)),
                             ("b", TableClassifier(table=sharp[:, ::-1].copy()))],
                            calibrate=True, validation_fraction=0.3, verbose=0).fit(X, y)
    val = _holdout(n, y, 0.3)
    assert ens.temperatures_[0] > 1
    for member, t in zip(ens.estimators_, ens.temperatures_):
        raw = member.predict_proba(X[val])
        assert log_loss(y[val], apply_temperature(raw, t), labels=[0, 1, 2]) <= \
            log_loss(y[val], raw, labels=[0, 1, 2]) + 1e-9
    np.testing.assert_array_equal(ens.weights_, [0.5, 0.5])


def test_holdout_seed_comes_from_the_members():
    n = 40
    y = np.arange(n) % 2
    X = np.arange(n)[:, None]
    tables = np.full((n, 2), 0.5)
    ens = SentimentEnsemble([("a", TableClassifier(table=tables)),
                             ("b", TableClassifier(table=tables, random_state=7))],
                            weights="auto", verbose=0)
    ens.fit(X, y)
    assert ens.estimators_[0].n_fit_ == n - len(_holdout(n, y, seed=7))


def test_holdout_that_cannot_be_stratified_is_a_clear_error():
    X = np.arange(3)[:, None]
    with pytest.raises(ValueError, match="validation_fraction"):
        SentimentEnsemble([("a", TableClassifier(table=np.eye(3)))], calibrate=True,
                          verbose=0).fit(X, [0, 1, 2])


# ------------------------------------------------------------------------------ checks
def test_members_that_disagree_on_classes_are_named():
    X = np.arange(4)[:, None]
    ens = SentimentEnsemble([("first", TableClassifier(table=np.eye(4)[:, :2])),
                             ("second", TableClassifier(table=np.eye(4)[:, :2],
                                                        classes=["x", "y"]))], verbose=0)
    with pytest.raises(ValueError, match=r"disagree on classes_.*'first'.*'second'"):
        ens.fit(X, [0, 1, 0, 1])


@pytest.mark.parametrize("weights, match", [
    ([1.0], "one weight per member"),
    ([1.0, 2.0, 3.0], "one weight per member"),
    ([1.0, -1.0], "non-negative"),
    ([0.0, 0.0], "not all zero"),
    ("best", "'auto'"),
])
def test_bad_weights_are_rejected(weights, match):
    ens = SentimentEnsemble([("a", TableClassifier(table=np.eye(2))),
                             ("b", TableClassifier(table=np.eye(2)))], weights=weights)
    with pytest.raises(ValueError, match=match):
        ens.fit(np.array([[0], [1]]), [0, 1])


@pytest.mark.parametrize("params, match", [
    (dict(estimators=[]), "non-empty"),
    (dict(estimators=[("a", TableClassifier()), ("a", TableClassifier())]), "unique"),
    (dict(estimators=[("weights", TableClassifier())]), "conflict"),
    (dict(estimators=[("a", object())]), "predict_proba"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(calibrate="yes"), "calibrate"),
    (dict(n_jobs=0), "n_jobs"),
])
def test_bad_parameters_are_rejected(params, match):
    params.setdefault("estimators", [("a", TableClassifier(table=np.eye(2)))])
    with pytest.raises(ValueError, match=match):
        SentimentEnsemble(**params).fit(np.array([[0], [1]]), [0, 1])


def test_not_fitted_and_length_mismatch():
    ens = SentimentEnsemble([("a", TableClassifier(table=np.eye(2)))])
    with pytest.raises(NotFittedError):
        ens.predict_proba(np.array([[0]]))
    with pytest.raises(NotFittedError):
        ens.save("nowhere")
    with pytest.raises(ValueError, match="must match"):
        ens.fit(np.array([[0], [1]]), [0, 1, 1])


# ------------------------------------------------------------------- parameters of members
def test_default_members_are_the_reference_pair_and_reachable_as_params():
    ens = SentimentEnsemble()
    assert ens.estimators is None
    params = ens.get_params()
    assert params["resnet18__backbone"] == "resnet18"
    assert params["resnet18__head"] == "mlp"
    assert params["resnet18__sampling"] == "undersample"
    assert params["resnet152__grayscale"] is True
    assert clone(ens).estimators is None
    ens.set_params(resnet18__lr=0.01)
    assert [name for name, _ in ens.estimators] == ["resnet18", "resnet152"]
    assert ens.named_estimators.resnet18.lr == 0.01
    assert ens.named_estimators.resnet152.lr == 1e-3
    assert [type(e).__name__ for _, e in default_estimators()] == ["SentimentClassifier"] * 2


def test_set_params_replaces_a_member():
    ens = SentimentEnsemble([("a", TableClassifier()), ("b", TableClassifier())])
    replacement = ConstantClassifier()
    ens.set_params(b=replacement, a__classes=["u", "v"], weights="auto")
    assert ens.named_estimators.b is replacement
    assert ens.named_estimators.a.classes == ["u", "v"]
    assert ens.weights == "auto"


def test_members_spread_over_gpus_in_threads_when_several_exist(monkeypatch):
    monkeypatch.setattr(SentimentEnsemble, "_n_gpus", staticmethod(lambda: 2))
    table = np.eye(3)
    X = np.arange(3)[:, None]
    ens = SentimentEnsemble([(f"m{i}", TableClassifier(table=table, device=d))
                             for i, d in enumerate(["auto", "auto", "cpu", "auto"])],
                            verbose=0).fit(X, [0, 1, 2])
    assert [m.fit_device_ for m in ens.estimators_] == ["cuda:0", "cuda:1", "cpu", "cuda:1"]
    np.testing.assert_allclose(ens.predict_proba(X), table)


def test_verbose_zero_is_silent(capsys):
    SentimentEnsemble([("a", TableClassifier(table=np.eye(2)))], verbose=0).fit(
        np.array([[0], [1]]), [0, 1]).predict(np.array([[0]]))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ---------------------------------------------------------- real SentimentClassifier members
@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 90, (12, 32, 32, 3))
    bright = rng.integers(165, 256, (12, 32, 32, 3))
    X = np.concatenate([dark, bright]).astype(np.uint8)
    y = np.array(["Negative"] * 12 + ["Positive"] * 12)
    return X, y


@pytest.fixture(scope="module")
def fitted_pair(images):
    X, y = images
    members = [("a", SentimentClassifier(finetune="head", random_state=0, **TINY)),
               ("b", SentimentClassifier(head="mlp", grayscale=True, random_state=1, **TINY))]
    return SentimentEnsemble(members, weights=[1.0, 3.0], verbose=0).fit(X, y)


def test_real_members_vote_by_weighted_mean(fitted_pair, images):
    X, y = images
    a, b = fitted_pair.estimators_
    expected = 0.25 * a.predict_proba(X) + 0.75 * b.predict_proba(X)
    np.testing.assert_allclose(fitted_pair.predict_proba(X), expected, rtol=1e-12)
    assert list(fitted_pair.classes_) == ["Negative", "Positive"]
    report = evaluate(fitted_pair, X, y)
    assert report.n_samples == len(y)


def test_save_load_round_trip_predicts_identically(fitted_pair, images, tmp_path):
    X, _ = images
    path = tmp_path / "ens"
    assert fitted_pair.save(path) == str(path)
    assert sorted(os.listdir(path)) == ["a", "b", ENSEMBLE_FILE]
    config = json.loads((path / ENSEMBLE_FILE).read_text())
    assert config["weights"] == [0.25, 0.75]
    loaded = SentimentEnsemble.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted_pair.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, fitted_pair.classes_)
    assert loaded.get_params()["weights"] == [1.0, 3.0]
    assert loaded.named_estimators.b.grayscale is True
    on_cpu = SentimentEnsemble.load(path, device="cpu")
    assert [m.device for m in on_cpu.estimators_] == ["cpu", "cpu"]

    fitted_pair.save(path)  # replacing an existing save leaves no temporary folder behind
    assert sorted(os.listdir(tmp_path)) == ["ens"]
    with pytest.raises(FileNotFoundError, match=ENSEMBLE_FILE):
        SentimentEnsemble.load(tmp_path / "missing")


def test_save_refuses_members_it_cannot_store(tmp_path):
    ens = SentimentEnsemble([("a", TableClassifier(table=np.eye(2)))], verbose=0).fit(
        np.array([[0], [1]]), [0, 1])
    with pytest.raises(TypeError, match="TableClassifier"):
        ens.save(tmp_path / "ens")
    assert os.listdir(tmp_path) == []


def test_grid_search_over_member_parameters(images):
    X, y = images
    ens = SentimentEnsemble([("a", SentimentClassifier(finetune="head", random_state=0, **TINY)),
                             ("b", ConstantClassifier())], verbose=0)
    search = GridSearchCV(ens, {"a__lr": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    best = search.best_estimator_
    assert best.named_estimators_["a"].lr == search.best_params_["a__lr"]
    assert best.predict_proba(X[:3]).shape == (3, 2)


def test_holdout_keeps_groups_together(monkeypatch):
    """With groups, no group has samples on both sides of the calibration holdout."""
    import wjsentiment.ensemble as ensemble_module

    seen = {}
    original = ensemble_module.holdout_split

    def spy(y, fraction, **kwargs):
        seen["fit"], seen["val"] = original(y, fraction, **kwargs)
        return seen["fit"], seen["val"]

    monkeypatch.setattr(ensemble_module, "holdout_split", spy)
    X, y = make_bright_dark(12)
    groups = np.repeat(np.arange(12), 2)  # pairs of images, like the two emoji styles
    params = dict(weights=None, image_size=32, epochs=1, batch_size=8, verbose=0,
                  random_state=0)
    SentimentEnsemble([("a", SentimentClassifier(**params))], weights="auto",
                      validation_fraction=0.25, verbose=0).fit(X, y, groups=groups)
    assert set(groups[seen["fit"]]).isdisjoint(groups[seen["val"]])
    assert len(seen["val"]) > 0


# ------------------------------------------------------------------ clear errors (issue 11)
def test_predict_before_fit_raises_not_fitted():
    ens = SentimentEnsemble([("a", TableClassifier(table=np.eye(2)))])
    with pytest.raises(NotFittedError):
        ens.predict(np.array([[0]]))


def test_labels_that_cannot_be_ordered_are_a_clear_value_error():
    ens = SentimentEnsemble([("a", TableClassifier(table=np.eye(2)))], weights="auto",
                            verbose=0)
    with pytest.raises(ValueError, match=r"missing label\(s\)"):
        ens.fit(np.arange(8)[:, None] % 2, np.array(["x", None] * 4, dtype=object))


def test_disagreeing_classes_are_printed_as_plain_strings():
    members = [("a", TableClassifier(table=np.eye(2), classes=np.array(["Neg", "Pos"]))),
               ("b", TableClassifier(table=np.eye(2), classes=np.array(["Bad", "Good"])))]
    with pytest.raises(ValueError) as info:
        SentimentEnsemble(members, verbose=0).fit(np.array([[0], [1]]), ["Neg", "Pos"])
    assert "'a' has ['Neg', 'Pos']; 'b' has ['Bad', 'Good']" in str(info.value)


def _damaged_copy(fitted_pair, tmp_path, damage) -> Path:
    path = Path(fitted_pair.save(tmp_path / "ens"))
    damage(path)
    return path


def _edit_ensemble_json(change):
    def damage(path):
        config = json.loads((path / ENSEMBLE_FILE).read_text())
        change(config)
        (path / ENSEMBLE_FILE).write_text(json.dumps(config))
    return damage


@pytest.mark.parametrize("damage, file, problem", [
    (lambda p: (p / ENSEMBLE_FILE).write_text('{"format_version": 1,'), ENSEMBLE_FILE,
     "not valid JSON"),
    (lambda p: (p / ENSEMBLE_FILE).write_text(""), ENSEMBLE_FILE, "it is empty"),
    (_edit_ensemble_json(lambda c: c.update(format_version=7)), ENSEMBLE_FILE,
     "newer wjsentiment (format 7"),
    (_edit_ensemble_json(lambda c: c.update(estimator="SentimentClassifier")), ENSEMBLE_FILE,
     "holds a SentimentClassifier, not a SentimentEnsemble"),
    (_edit_ensemble_json(lambda c: c.pop("temperatures")), ENSEMBLE_FILE,
     "the key 'temperatures' is missing"),
    (_edit_ensemble_json(lambda c: c["members"][0].update(name=3)), ENSEMBLE_FILE,
     "members[0].name must be a string"),
    (_edit_ensemble_json(lambda c: c.update(weights=[1.0])), ENSEMBLE_FILE,
     "it has 1 weights for 2 members"),
    (_edit_ensemble_json(lambda c: c.update(temperatures=[1.0, -1.0])), ENSEMBLE_FILE,
     "temperatures [1.0, -1.0] are not all finite and positive"),
    (_edit_ensemble_json(lambda c: c["classes"].update(values=["Negative", "Happy"])),
     ENSEMBLE_FILE, "classes ['Negative', 'Happy'] differ from member 'a'"),
    (_edit_ensemble_json(lambda c: c["params"].update(validation_fraction=2.0)),
     ENSEMBLE_FILE, "validation_fraction must be in (0, 1)"),
    (_edit_ensemble_json(lambda c: c["members"][1].update(folder="../b")), ENSEMBLE_FILE,
     "cannot be loaded"),
    (lambda p: shutil.rmtree(p / "b"), ENSEMBLE_FILE,
     "its member 'b' should be in the sub-folder 'b', which is missing"),
    (lambda p: (p / "b" / "model.safetensors").write_bytes(b"\0" * 7), "b/model.safetensors",
     "truncated"),
    (lambda p: (p / "a" / "config.json").write_text("nonsense"), "a/config.json",
     "not valid JSON"),
])
def test_damaged_ensemble_is_one_model_file_error(fitted_pair, tmp_path, damage, file, problem):
    from wjsentiment.persistence import ModelFileError

    path = _damaged_copy(fitted_pair, tmp_path, damage)
    with pytest.raises(ModelFileError) as info:
        SentimentEnsemble.load(path)
    assert info.value.path == str(path / file)
    assert problem in str(info.value)
