"""ONNX export (wjsentiment.export): the graph predicts what predict_proba predicts."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from wjsentiment import SentimentClassifier, SentimentEnsemble, __version__
from wjsentiment.export import export_onnx, load_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZE = 64
TOLERANCE = 1e-4
CLASSES = ["Highly negative", "Negative", "Neutral", "Positive"]


def colourful(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """Random images whose channels differ (so a wrong grayscale conversion shows)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    X[: n // 2, :, :, 0] //= 3  # some images with little red
    return X


@pytest.fixture(scope="module")
def train():
    X = colourful(16, seed=0)
    return X, np.array(CLASSES * 4)


def fitted(train, **params) -> SentimentClassifier:
    X, y = train
    settings = dict(weights=None, image_size=SIZE, epochs=1, batch_size=8, verbose=0,
                    random_state=0)
    return SentimentClassifier(**{**settings, **params}).fit(X, y)


@pytest.fixture(scope="module")
def resnet18(train):
    return fitted(train)


@pytest.fixture(scope="module")
def resnet18_onnx(resnet18, tmp_path_factory):
    """The resnet18 exported once, through the estimator's method."""
    return resnet18.export_onnx(tmp_path_factory.mktemp("onnx") / "model.onnx")


def max_gap(model, estimator, X) -> float:
    return float(np.abs(model.predict_proba(X) - estimator.predict_proba(X)).max())


# ------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("backbone", ["resnet18", "tf_efficientnet_lite0"])
def test_onnx_matches_predict_proba(backbone, train, resnet18, resnet18_onnx, tmp_path):
    if backbone == "resnet18":
        clf, path = resnet18, resnet18_onnx
    else:
        clf = fitted(train, backbone=backbone)
        path = export_onnx(clf, tmp_path / "model.onnx")
    model = load_onnx(path)
    X = colourful(7, seed=5)
    for n in (1, 7):
        proba = model.predict_proba(X[:n])
        assert proba.shape == (n, len(CLASSES)) and proba.dtype == np.float32
        assert max_gap(model, clf, X[:n]) <= TOLERANCE
    np.testing.assert_array_equal(model.predict(X), clf.predict(X))


def test_graph_takes_uint8_nhwc_with_a_dynamic_batch(resnet18, resnet18_onnx):
    import onnxruntime

    session = onnxruntime.InferenceSession(resnet18_onnx, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("images", "tensor(uint8)", [SIZE, SIZE, 3])
    assert isinstance(inp.shape[0], str)  # a named, dynamic batch dimension
    assert (out.name, out.type, out.shape[1]) == ("probabilities", "tensor(float)",
                                                    len(CLASSES))
    X = colourful(3, seed=9)
    (proba,) = session.run(None, {"images": X})
    np.testing.assert_allclose(proba, resnet18.predict_proba(X), atol=TOLERANCE)


def test_grayscale_model_converts_as_pil_does(train, tmp_path):
    clf = fitted(train, backbone="test_resnet", grayscale=True)
    model = load_onnx(clf.export_onnx(tmp_path / "gray.onnx"))
    X = colourful(7, seed=6)
    for n in (1, 7):
        assert max_gap(model, clf, X[:n]) <= TOLERANCE
    # The graph's luminance is PIL's "L", bit for bit: a colour image and its PIL grayscale
    # version (three equal channels) get the same probabilities.
    gray = np.stack([np.repeat(np.asarray(Image.fromarray(x).convert("L"))[..., None], 3, 2)
                     for x in X])
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(gray))
    assert model.grayscale is True


def test_paths_are_decoded_and_resized_as_the_estimator_does(resnet18, resnet18_onnx,
                                                           tmp_path):
    paths = []
    for i, pixels in enumerate(colourful(4, seed=7, size=90)):
        paths.append(str(tmp_path / f"{i}.{'jpg' if i % 2 else 'png'}"))
        Image.fromarray(pixels[:, : 70 + i]).save(paths[-1])
    model = load_onnx(resnet18_onnx)
    assert max_gap(model, resnet18, paths) <= TOLERANCE


def test_head_only_model_matches_its_feature_path(train, tmp_path):
    clf = fitted(train, backbone="test_resnet", finetune="head", head="mlp")
    model = load_onnx(clf.export_onnx(tmp_path / "head.onnx"))
    assert max_gap(model, clf, colourful(7, seed=11)) <= TOLERANCE


def test_temperature_and_logit_adjustment_are_in_the_graph(train, tmp_path):
    clf = fitted(train, backbone="test_resnet")
    X = colourful(5, seed=8)
    with torch.no_grad():
        logits = clf.model_(torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255.0)
    adjustment = np.linspace(-0.4, 0.4, clf.n_classes_)
    clf.temperature_, clf.logit_adjustment_ = 2.5, adjustment
    model = load_onnx(clf.export_onnx(tmp_path / "t.onnx"))
    expected = torch.softmax(logits.double() / 2.5 + torch.from_numpy(adjustment),
                             dim=1).numpy()
    np.testing.assert_allclose(model.predict_proba(X), expected, atol=TOLERANCE)
    assert json.loads(model.metadata["members"])[0]["logit_temperature"] == 2.5


def test_predict_follows_the_decision_rule(train, tmp_path):
    clf = fitted(train, backbone="test_resnet")
    X = colourful(16, seed=9)
    clf.class_prior_ = np.linspace(1, 3, clf.n_classes_) / np.linspace(1, 3, clf.n_classes_).sum()
    for decision in ("argmax", "balanced"):
        clf.set_params(decision=decision)
        model = load_onnx(clf.export_onnx(tmp_path / f"{decision}.onnx"))
        assert model.metadata["decision"] == decision
        np.testing.assert_array_equal(model.predict(X), clf.predict(X))


# ------------------------------------------------------------------------------ ensembles
@pytest.fixture(scope="module")
def ensemble(train):
    X, y = train
    X, y = np.concatenate([X, colourful(16, seed=1)]), np.concatenate([y, y])
    member = dict(backbone="test_resnet", weights=None, image_size=SIZE, epochs=1,
                  batch_size=8, verbose=0)
    return SentimentEnsemble([
        ("colour", SentimentClassifier(random_state=0, **member)),
        ("gray", SentimentClassifier(grayscale=True, random_state=1, **member)),
    ], weights="auto", calibrate=True, validation_fraction=0.5, verbose=0).fit(X, y)


def test_ensemble_export_is_the_whole_soft_vote(ensemble, tmp_path):
    X = colourful(7, seed=10)
    original = (ensemble.weights_.copy(), ensemble.temperatures_.copy())
    # Fitted values, then ones far from 1 and equal weights, so every term of the vote shows.
    settings = [original, (np.array([0.3, 0.9]), np.array([0.4, 3.0]))]
    try:
        for weights, temperatures in settings:
            ensemble.weights_, ensemble.temperatures_ = weights, temperatures
            model = load_onnx(ensemble.export_onnx(tmp_path / "ensemble.onnx"))
            for n in (1, 7):
                assert max_gap(model, ensemble, X[:n]) <= TOLERANCE
            members = json.loads(model.metadata["members"])
            assert [m["name"] for m in members] == ["colour", "gray"]
            np.testing.assert_allclose([m["weight"] for m in members], weights / weights.sum())
            np.testing.assert_allclose([m["vote_temperature"] for m in members], temperatures)
            assert model.grayscale == [False, True]
    finally:
        ensemble.weights_, ensemble.temperatures_ = original


def test_ensemble_members_must_share_a_size_and_be_classifiers(train, tmp_path):
    X, y = train
    member = dict(backbone="test_resnet", weights=None, epochs=1, verbose=0, random_state=0)
    ens = SentimentEnsemble([
        ("a", SentimentClassifier(image_size=32, **member)),
        ("b", SentimentClassifier(image_size=48, **member)),
    ], verbose=0).fit(X, y)
    with pytest.raises(ValueError, match=r"different sizes \(\{'a': 32, 'b': 48\}\)"):
        ens.export_onnx(tmp_path / "x.onnx")
    flat = X.reshape(len(X), -1)[:, :5].astype(float)
    other = SentimentEnsemble([("lr", LogisticRegression())], verbose=0).fit(flat, y)
    with pytest.raises(TypeError, match="member 'lr' is a LogisticRegression"):
        other.export_onnx(tmp_path / "x.onnx")
    assert not os.listdir(tmp_path)


# ------------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("labels", [CLASSES, [0, 2, 4, 7]])
def test_metadata_round_trips(train, labels, tmp_path):
    X, _ = train
    clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=32, epochs=1,
                              verbose=0, random_state=0).fit(X, np.array(labels * 4))
    path = export_onnx(clf, tmp_path / "sub" / "model.onnx")
    model = load_onnx(path)
    np.testing.assert_array_equal(model.classes_, clf.classes_)
    assert model.classes_.dtype.kind == clf.classes_.dtype.kind
    assert model.image_size == 32 and model.grayscale is False
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["classes"]) == sorted(labels)
    assert props["wjsentiment_version"] == __version__
    assert props["image_size"] == "32" and props["estimator"] == "SentimentClassifier"
    assert set(model.predict(X[:3])) <= set(labels)
    assert os.listdir(tmp_path / "sub") == ["model.onnx"]  # no temporary file left


def test_opset_is_chosen(train, tmp_path):
    X, y = train
    clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=32, epochs=1,
                              verbose=0, random_state=0).fit(X, y)
    path = export_onnx(clf, tmp_path / "model.onnx", opset=17)
    assert {o.version for o in onnx.load(path).opset_import if o.domain in ("", "ai.onnx")} \
        == {17}
    assert load_onnx(path).predict_proba(X[:2]).shape == (2, len(CLASSES))


def test_unfitted_and_wrong_estimators_are_refused(tmp_path):
    with pytest.raises(NotFittedError):
        export_onnx(SentimentClassifier(), tmp_path / "m.onnx")
    with pytest.raises(NotFittedError):
        SentimentClassifier().export_onnx(tmp_path / "m.onnx")
    with pytest.raises(NotFittedError):
        SentimentEnsemble([("a", SentimentClassifier())]).export_onnx(tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="takes a SentimentClassifier or a SentimentEnsemble"):
        export_onnx(LogisticRegression(), tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


def test_load_onnx_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No ONNX file at"):
        load_onnx(tmp_path / "missing.onnx")
    foreign = tmp_path / "foreign.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(foreign),
                          dynamo=False)
    with pytest.raises(ValueError, match="not written by wjsentiment"):
        load_onnx(foreign)


@pytest.mark.parametrize("content", [b"garbage, not a model", b""])
def test_load_onnx_names_a_file_that_is_not_onnx(tmp_path, content):
    from wjsentiment.exceptions import ModelFileError

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(content)
    with pytest.raises(ModelFileError, match="it is not an ONNX model onnxruntime can load") \
            as info:
        load_onnx(garbage)
    assert info.value.path == str(garbage)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_load_onnx_refuses_a_batch_size_that_is_not_positive(tmp_path, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        load_onnx(tmp_path / "model.onnx", batch_size=batch_size)
