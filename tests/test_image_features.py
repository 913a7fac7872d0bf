"""ImageFeatures: a backbone's features as a scikit-learn transformer, in pipelines, through the
shared caches."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from test_params import docstring_parameters

from wjsentiment import ImageFeatures, SentimentClassifier
from wjsentiment.image_features import IMAGE_FEATURES_PARAMS
from wjsentiment.images import BadImageError
from wjsentiment.models import clear_feature_cache
from wjsentiment.params import CLASSIFIER_PARAMS

#: A tiny random backbone (timm's test_resnet) at 32 px: features in milliseconds.
TINY = dict(backbone="test_resnet", weights=None, image_size=32, random_state=0, verbose=0)


@pytest.fixture
def table(image_files):
    """Twelve image files (six dark, six bright) with a text column and six groups of two."""
    paths, y = image_files
    words = {"Negative": "sad gloomy", "Positive": "happy sunny"}
    text = [f"{words[label]} post {i}" for i, label in enumerate(y)]
    return pd.DataFrame({"path": paths, "text": text}), y, np.repeat(np.arange(6), 2)


def count_backbone_calls(features: ImageFeatures) -> list:
    calls = []
    features.model_.backbone.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_in_a_column_transformer_under_cross_val_score(table):
    X, y, groups = table
    joined = ColumnTransformer([("image", ImageFeatures(**TINY), "path"),
                                ("text", TfidfVectorizer(), "text")])
    model = make_pipeline(joined, LogisticRegression(max_iter=200))
    scores = cross_val_score(model, X, y, groups=groups, cv=GroupKFold(3), scoring="accuracy")
    assert scores.shape == (3,) and np.isfinite(scores).all()
    names = model.fit(X, y)[0].get_feature_names_out()
    n_image = model[0].named_transformers_["image"].n_features_out_
    assert names[:2].tolist() == ["image__imagefeatures0", "image__imagefeatures1"]
    assert sum(n.startswith("image__") for n in names) == n_image
    assert any(n == "text__happy" for n in names)
    # The image features alone separate dark from bright images, even from a random backbone.
    image_only = make_pipeline(ColumnTransformer([("image", ImageFeatures(**TINY), ["path"])]),
                               LogisticRegression(max_iter=500))
    assert cross_val_score(image_only, X, y, groups=groups, cv=GroupKFold(3)).mean() > 0.8


def test_clone_and_get_params_round_trip():
    features = ImageFeatures(backbone="resnet18", weights=None, image_size=48, grayscale=True,
                             batch_size=5, num_workers=2, random_state=3, verbose=0)
    copy = clone(features)
    assert copy.get_params() == features.get_params()
    assert ImageFeatures(**copy.get_params()).get_params() == features.get_params()
    assert copy.set_params(image_size=64).image_size == 64 and features.image_size == 48


def test_parameters_are_the_declared_ones_and_checked():
    signature = inspect.signature(ImageFeatures.__init__).parameters
    assert list(signature)[1:] == [p.name for p in IMAGE_FEATURES_PARAMS]
    documented = docstring_parameters(ImageFeatures)
    shared = {p.name: p for p in CLASSIFIER_PARAMS}
    for p in IMAGE_FEATURES_PARAMS:
        assert signature[p.name].default == p.default
        assert ast.literal_eval(documented[p.name]) == p.default, p.name
        assert p.specs == shared[p.name].specs, p.name  # the classifier's constraints
    assert ImageFeatures._parameter_constraints == {
        p.name: p.constraints for p in IMAGE_FEATURES_PARAMS}
    with pytest.raises(InvalidParameterError, match="image_size must be in"):
        ImageFeatures(**{**TINY, "image_size": 2}).fit(["a.png"])
    with pytest.raises(ValueError, match="not a timm model name"):
        ImageFeatures(**{**TINY, "backbone": "resnet_18"}).fit(["a.png"])


def test_features_are_float32_one_row_per_image_whatever_the_form_of_x(table):
    X, _, _ = table
    features = ImageFeatures(**TINY).fit(X[["path"]])
    out = features.transform(X[["path"]])
    assert out.dtype == np.float32 and out.shape == (12, features.n_features_out_)
    assert features.get_feature_names_out().shape == (features.n_features_out_,)
    assert np.array_equal(features.transform(X["path"]), out)
    assert np.array_equal(features.transform(X["path"].tolist()[::-1]), out[::-1])
    assert not np.allclose(out[0], out[1])  # a dark and a bright image
    with pytest.raises(ValueError, match="2 columns"):
        features.transform(X)


def test_repeated_transforms_and_clones_reuse_the_features(table):
    X, _, _ = table
    features = ImageFeatures(**TINY).fit(X["path"])
    calls = count_backbone_calls(features)
    first = features.transform(X["path"])
    assert len(calls) >= 1
    before = len(calls)
    again = features.transform(X["path"][:5])
    assert len(calls) == before and np.array_equal(again, first[:5])
    twin = clone(features).fit(X["path"])
    twin_calls = count_backbone_calls(twin)
    assert np.array_equal(twin.transform(X["path"]), first) and twin_calls == []


def test_shares_the_frozen_features_of_a_head_only_classifier(table):
    X, y, _ = table
    SentimentClassifier(**TINY, finetune="head", epochs=1, batch_size=4,
                        calibration=None).fit(X["path"], y)
    features = ImageFeatures(**TINY).fit(X["path"])
    calls = count_backbone_calls(features)
    shared = features.transform(X["path"])
    assert calls == []
    clear_feature_cache()  # the same backbone: computed afresh, the features are the same
    assert np.allclose(features.transform(X["path"]), shared, atol=1e-6) and calls


def test_unseeded_random_weights_are_fixed_at_fit(table):
    X, _, _ = table
    features = ImageFeatures(**{**TINY, "random_state": None}).fit(X["path"])
    assert np.array_equal(features.transform(X["path"]), features.transform(X["path"]))


def test_a_bad_image_gives_a_named_error(table, tmp_path):
    X, _, _ = table
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    features = ImageFeatures(**TINY).fit(X["path"])
    with pytest.raises(BadImageError, match=r"broken\.jpg.*1 more bad image"):
        features.transform([*X["path"], str(broken), str(tmp_path / "missing.png")])
    Image.new("RGB", (8, 8)).save(broken, format="PNG")  # fixed: the new file is read
    assert features.transform([str(broken)]).shape == (1, features.n_features_out_)
