"""evaluate() and its report, checked against scikit-learn's metrics computed directly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)
from sklearn.utils.validation import check_is_fitted

from wjsentiment.evaluation import (
    POLARITY_LABELS,
    EvaluationReport,
    evaluate,
    ordinal_labels,
    report_from_predictions,
    to_polarity,
)
from wjsentiment.labels import SENTIMENT_LABELS

ALPHABETICAL = np.array(sorted(SENTIMENT_LABELS))  # how np.unique orders them: not ordinal


class FixedProba(ClassifierMixin, BaseEstimator):
    """Returns row ``X[i, 0]`` of ``table``; classes sorted like any scikit-learn classifier."""

    def __init__(self, table=None):
        self.table = table

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return np.asarray(self.table)[np.asarray(X)[:, 0].astype(int)]


def _random_case(seed, n=60):
    rng = np.random.default_rng(seed)
    y = rng.choice(ALPHABETICAL, n)
    proba = rng.dirichlet(np.ones(5) * 0.7, n)
    return y, proba


def test_evaluate_matches_sklearn_metrics():
    y, proba = _random_case(0)
    X = np.arange(len(y))[:, None]
    est = FixedProba(table=proba).fit(X, np.r_[y, ALPHABETICAL])
    report = evaluate(est, X, y)
    y_pred = ALPHABETICAL[proba.argmax(axis=1)]
    labels = list(SENTIMENT_LABELS)
    assert report.labels == labels
    assert report.n_samples == len(y)
    assert report.accuracy == pytest.approx(accuracy_score(y, y_pred))
    assert report.macro_f1 == pytest.approx(f1_score(y, y_pred, average="macro"))
    p, r, f, s = precision_recall_fscore_support(y, y_pred, labels=labels, zero_division=0)
    np.testing.assert_allclose(report.precision, p)
    np.testing.assert_allclose(report.recall, r)
    np.testing.assert_allclose(report.f1, f)
    np.testing.assert_array_equal(report.support, s)
    np.testing.assert_array_equal(report.confusion_matrix,
                                  confusion_matrix(y, y_pred, labels=labels))
    assert report.log_loss == pytest.approx(log_loss(y, proba, labels=ALPHABETICAL))
    assert report.quadratic_kappa == pytest.approx(
        cohen_kappa_score(y, y_pred, labels=labels, weights="quadratic"))
    position = {label: i for i, label in enumerate(SENTIMENT_LABELS)}
    mae = np.mean([abs(position[a] - position[b]) for a, b in zip(y, y_pred)])
    assert report.mean_absolute_error == pytest.approx(mae)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_report_from_predictions_agrees_with_sklearn(data):
    n = data.draw(st.integers(1, 30))
    y = np.array(data.draw(st.lists(st.sampled_from(list(ALPHABETICAL)), min_size=n,
                                    max_size=n)))
    raw = data.draw(arrays(np.float64, (n, 5), elements=st.floats(0.01, 1.0)))
    proba = raw / raw.sum(axis=1, keepdims=True)
    report = report_from_predictions(y, proba, ALPHABETICAL)
    y_pred = ALPHABETICAL[proba.argmax(axis=1)]
    labels = list(SENTIMENT_LABELS)
    assert report.accuracy == pytest.approx(accuracy_score(y, y_pred))
    assert report.macro_f1 == pytest.approx(
        f1_score(y, y_pred, labels=labels, average="macro", zero_division=0))
    np.testing.assert_array_equal(report.confusion_matrix,
                                  confusion_matrix(y, y_pred, labels=labels))
    assert report.log_loss == pytest.approx(log_loss(y, proba, labels=ALPHABETICAL))
    assert report.polarity.accuracy == pytest.approx(
        accuracy_score(to_polarity(y), to_polarity(y_pred)))
    assert report.confusion_matrix.sum() == n
    json.dumps(report.to_dict(), allow_nan=False)


def test_polarity_mapping_and_view():
    assert to_polarity(list(SENTIMENT_LABELS)).tolist() == [
        "negative", "negative", "neutral", "positive", "positive"]
    assert to_polarity(["HIGHLY_POSITIVE"]).tolist() == ["positive"]
    with pytest.raises(ValueError, match="Unknown sentiment label"):
        to_polarity(["Great"])
    # Highly negative predicted as Negative is right in the polarity view.
    y = ["Highly negative", "Negative", "Neutral", "Positive", "Highly positive", "Neutral"]
    pred = ["Negative", "Highly negative", "Neutral", "Highly positive", "Neutral", "Positive"]
    classes = np.array(SENTIMENT_LABELS)
    proba = np.eye(5)[[list(classes).index(p) for p in pred]]
    report = report_from_predictions(y, proba, classes)
    assert report.accuracy == pytest.approx(1 / 6)
    polarity = report.polarity
    assert polarity.labels == list(POLARITY_LABELS)
    assert polarity.accuracy == pytest.approx(4 / 6)
    np.testing.assert_array_equal(polarity.confusion_matrix,
                                  [[2, 0, 0], [0, 1, 1], [0, 1, 1]])
    assert polarity.macro_f1 == pytest.approx(
        f1_score(to_polarity(y), to_polarity(pred), average="macro"))


def test_two_sentiment_classes_get_a_two_way_polarity_view():
    report = report_from_predictions(["Negative", "Positive"], [[0.9, 0.1], [0.4, 0.6]],
                                     ["Negative", "Positive"])
    assert report.polarity.labels == ["negative", "positive"]
    assert report.mean_absolute_error == 0.0


def test_other_labels_keep_class_order_and_have_no_ordinal_metrics():
    report = report_from_predictions(["cat", "dog", "dog"], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]],
                                     ["cat", "dog"])
    assert report.labels == ["cat", "dog"]
    assert report.mean_absolute_error is None
    assert report.quadratic_kappa is None and report.polarity is None
    assert report.accuracy == pytest.approx(2 / 3)
    d = report.to_dict()
    assert d["polarity"] is None and d["per_class"]["dog"]["support"] == 2


def test_labels_reorder_the_report():
    y, proba = _random_case(1, n=30)
    report = report_from_predictions(y, proba, ALPHABETICAL, labels=ALPHABETICAL[::-1])
    assert report.labels == list(ALPHABETICAL[::-1])
    y_pred = ALPHABETICAL[proba.argmax(axis=1)]
    np.testing.assert_array_equal(report.confusion_matrix,
                                  confusion_matrix(y, y_pred, labels=ALPHABETICAL[::-1]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(y_true=["Negative", "Happy"]), "not classes of the model"),
    (dict(proba=[[1.0, 0.0]]), "shape"),
    (dict(labels=["Negative", "Neutral"]), "every class of the model"),
    (dict(labels=["Negative", "Positive", "Negative"]), "every class of the model"),
    (dict(classes=["Negative"], proba=[[1.0], [1.0]]), "at least two"),
    (dict(y_true=[]), "non-empty"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    args = dict(y_true=["Negative", "Positive"], proba=[[0.9, 0.1], [0.2, 0.8]],
                classes=["Negative", "Positive"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        report_from_predictions(**args)


def test_labels_may_add_classes_the_model_never_saw():
    y = ["Negative", "Positive", "Neutral"]
    proba = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]
    report = report_from_predictions(y, proba, ["Negative", "Positive"],
                                     labels=list(SENTIMENT_LABELS))
    assert report.labels == list(SENTIMENT_LABELS)
    np.testing.assert_array_equal(report.support, [0, 1, 1, 1, 0])
    assert report.accuracy == pytest.approx(2 / 3)
    expected = log_loss(y, [[0.9, 0.0, 0.1], [0.2, 0.0, 0.8], [0.6, 0.0, 0.4]],
                        labels=["Negative", "Neutral", "Positive"])
    assert report.log_loss == pytest.approx(expected)
    assert report.confusion_matrix[2].tolist() == [0, 1, 0, 0, 0]


def test_evaluate_needs_a_fitted_estimator():
    with pytest.raises(NotFittedError):
        evaluate(LogisticRegression(), [[0.0]], ["Negative"])


def test_report_renders_as_text_dict_and_frame():
    y, proba = _random_case(2)
    report = report_from_predictions(y, proba, ALPHABETICAL)
    text = str(report)
    for label in SENTIMENT_LABELS:
        assert label in text
    assert "accuracy" in text and "quadratic kappa" in text and "polarity" in text
    assert text.index("Highly negative") < text.index("Neutral") < text.index("Highly positive")
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["labels"] == list(SENTIMENT_LABELS)
    assert d["accuracy"] == pytest.approx(report.accuracy)
    assert d["confusion_matrix"] == report.confusion_matrix.tolist()
    assert set(d["polarity"]) == {"labels", "accuracy", "macro_f1", "confusion_matrix"}
    frame = report.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == list(SENTIMENT_LABELS)
    assert list(frame.columns) == ["precision", "recall", "f1", "support"]
    assert frame["support"].sum() == len(y)
    assert isinstance(report, EvaluationReport)


def test_undefined_kappa_becomes_none_in_dict():
    report = report_from_predictions(["Neutral", "Neutral"], [[0.2, 0.8], [0.1, 0.9]],
                                     ["Negative", "Neutral"])
    assert report.accuracy == 1.0
    d = report.to_dict()
    assert np.isnan(report.quadratic_kappa)  # one class only: kappa is undefined
    assert d["quadratic_kappa"] is None
    assert "n/a" in str(report)
    json.dumps(d, allow_nan=False)


def test_ordinal_labels():
    assert ordinal_labels(["Positive", "Highly negative", "neutral"]) == [
        "Highly negative", "neutral", "Positive"]
    assert ordinal_labels([2, 1]) == [2, 1]


def test_report_records_the_decision_rule():
    y, proba = _random_case(3, n=20)
    assert report_from_predictions(y, proba, ALPHABETICAL).decision_rule == "argmax"
    balanced = report_from_predictions(y, proba, ALPHABETICAL, y_pred=y,
                                       decision_rule="balanced")
    assert balanced.decision_rule == "balanced" and balanced.accuracy == 1.0
    assert str(balanced).splitlines()[0] == "Evaluation on 20 samples, labels by the " \
        "'balanced' rule"
    assert balanced.to_dict()["decision_rule"] == "balanced"
    unknown = report_from_predictions(y, proba, ALPHABETICAL, y_pred=y)
    assert unknown.decision_rule is None and "rule" not in str(unknown).splitlines()[0]
    X = np.arange(len(y))[:, None]  # a scikit-learn classifier predicts the most probable
    assert evaluate(FixedProba(table=proba).fit(X, np.r_[y, ALPHABETICAL]), X,
                    y).decision_rule == "argmax"
