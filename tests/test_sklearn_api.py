"""SentimentClassifier inside scikit-learn: estimator checks, model selection, composition."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_bright_dark
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks as checks
from sklearn.utils import get_tags

from wjsentiment import SentimentClassifier, SentimentEnsemble

API_CHECKS = [
    checks.check_no_attributes_set_in_init,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_parameters_default_constructible,
    checks.check_estimator_repr,
    checks.check_estimator_cloneable,
    checks.check_estimator_tags_renamed,
    checks.check_valid_tag_types,
    checks.check_estimator_sparse_tag,
]


@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_scikit_learn_api_checks(check):
    check("SentimentClassifier", SentimentClassifier())


def test_tags_declare_image_inputs():
    tags = get_tags(SentimentClassifier())
    assert tags.estimator_type == "classifier"
    assert tags.input_tags.two_d_array is False and tags.input_tags.one_d_array is True
    assert tags.input_tags.string is True


def test_fit_returns_self_and_unfitted_raises(tiny_params):
    X, y = make_bright_dark(6)
    clf = SentimentClassifier(**tiny_params)
    for method in ("predict", "predict_proba", "score"):
        with pytest.raises(NotFittedError):
            getattr(clf, method)(*([X, y] if method == "score" else [X]))
    assert clf.fit(X, y) is clf


def test_clone_of_a_fitted_estimator_is_unfitted(tiny_params):
    X, y = make_bright_dark(6)
    fitted = SentimentClassifier(**tiny_params).fit(X, y)
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "model_") and not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError):
        copy.predict(X)


def test_grid_search_over_lr(tiny_params):
    X, y = make_bright_dark(12)
    search = GridSearchCV(SentimentClassifier(**tiny_params), {"lr": [1e-3, 1e-2]}, cv=2)
    search.fit(X, y)
    assert set(search.cv_results_["param_lr"]) == {1e-3, 1e-2}
    assert search.best_estimator_.lr in (1e-3, 1e-2)
    assert search.predict(X).shape == (24,)


def test_cross_val_score(tiny_params):
    X, y = make_bright_dark(12)
    scores = cross_val_score(SentimentClassifier(**tiny_params), X, y, cv=2)
    assert scores.shape == (2,) and ((0 <= scores) & (scores <= 1)).all()


def test_pipeline_with_a_preprocessing_step(tiny_params):
    X, y = make_bright_dark(8)
    invert = FunctionTransformer(lambda images: 255 - images)  # bright <-> dark
    pipe = Pipeline([("invert", invert), ("clf", SentimentClassifier(**tiny_params))])
    pipe.fit(X, y)
    assert pipe.predict_proba(X).shape == (16, 2)
    assert pipe.get_params()["clf__image_size"] == 32


def test_soft_voting_of_two_classifiers(tiny_params):
    X, y = make_bright_dark(8)
    voting = VotingClassifier(
        [("a", SentimentClassifier(**tiny_params)),
         ("b", SentimentClassifier(**{**tiny_params, "head": "mlp", "random_state": 1}))],
        voting="soft",
    ).fit(X, y)
    a, b = (est.predict_proba(X) for est in voting.estimators_)
    np.testing.assert_allclose(voting.predict_proba(X), (a + b) / 2, atol=1e-12)


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(6, 14),
    labels=st.lists(st.sampled_from(["Highly negative", "Negative", "Neutral", "Positive",
                                     "Highly positive"]), min_size=2, max_size=5, unique=True),
    seed=st.integers(0, 2**16),
)
def test_predictions_are_well_formed_and_reproducible(n, labels, seed):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, 24, 24, 3)).astype(np.uint8)
    y = np.array([labels[i % len(labels)] for i in range(n)])
    params = dict(weights=None, image_size=32, epochs=1, batch_size=4, verbose=0,
                  random_state=seed)
    clf = SentimentClassifier(**params).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (n, len(set(y)))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert (proba >= 0).all()
    assert set(clf.predict(X)) <= set(clf.classes_)
    again = SentimentClassifier(**params).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(proba, again)


@pytest.mark.parametrize("estimator", [SentimentClassifier(), SentimentEnsemble()],
                         ids=lambda est: type(est).__name__)
def test_parameters_are_validated_the_scikit_learn_way(estimator):
    """Every parameter has a constraint, and a bad value raises InvalidParameterError with
    scikit-learn's message, before any data is looked at."""
    checks.check_param_validation(type(estimator).__name__, estimator)
