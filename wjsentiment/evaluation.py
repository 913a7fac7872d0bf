"""evaluate(): accuracy, per-class and ordinal metrics, and the 3-way polarity view, in one report.

:func:`report_from_predictions` builds the report from probabilities already computed, so the
command line and the ensemble can report without predicting twice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)
from sklearn.utils.validation import check_is_fitted

from .exceptions import InputError
from .labels import SENTIMENT_LABELS, normalize_label, ordinal_labels, sentiment_positions

#: The 3-way polarity of each sentiment label.
POLARITY: dict[str, str] = dict(zip(SENTIMENT_LABELS, ("negative", "negative", "neutral",
                                                       "positive", "positive")))
#: The polarity classes, in order.
POLARITY_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
#: Equal-width confidence bins of the expected calibration error and the reliability diagram.
CALIBRATION_BINS = 10


def to_polarity(labels: Any) -> np.ndarray:
    """Map sentiment labels to polarity: negative, neutral or positive.

    Highly negative and Negative become "negative", Positive and Highly positive "positive".

    Parameters
    ----------
    labels : array-like of str
        Sentiment labels (any spelling :func:`~wjsentiment.labels.normalize_label` accepts).

    Returns
    -------
    numpy.ndarray of str
        "negative", "neutral" or "positive" for each label.

    Raises
    ------
    ValueError
        If a label is not a sentiment label.

    Examples
    --------
    >>> to_polarity(["Highly negative", "Neutral", "positive"]).tolist()
    ['negative', 'neutral', 'positive']
    """
    return np.array([POLARITY[normalize_label(v)] for v in np.asarray(labels).tolist()], dtype=str)


@dataclass
class PolarityReport:
    """Metrics after mapping labels to negative / neutral / positive.

    Attributes
    ----------
    labels : list of str
        The polarity classes present among the report's labels, in order.
    accuracy : float
        Share of the samples whose polarity is predicted right.
    macro_f1 : float
        Unweighted mean of the F1 scores of the polarity classes.
    confusion_matrix : numpy.ndarray
        Rows: true polarity, columns: predicted polarity, in the order of ``labels``.
    """

    labels: list[str]
    accuracy: float
    macro_f1: float
    confusion_matrix: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"labels": list(self.labels), "accuracy": _num(self.accuracy),
                "macro_f1": _num(self.macro_f1),
                "confusion_matrix": self.confusion_matrix.tolist()}


@dataclass
class EvaluationReport:
    """Classification metrics of one model on one labelled set.

    Attributes
    ----------
    labels : list
        Classes, in ordinal order for sentiment labels; the order of every per-class array and
        of the confusion matrix.
    n_samples : int
        Number of labelled samples.
    accuracy : float
        Share of the samples predicted right.
    macro_f1 : float
        Unweighted mean of the per-class F1 scores, over every label.
    precision, recall, f1 : numpy.ndarray of shape (n_labels,)
        Per class.
    support : numpy.ndarray of shape (n_labels,)
        True samples per class.
    confusion_matrix : numpy.ndarray of shape (n_labels, n_labels)
        Rows: true class, columns: predicted class.
    log_loss : float
        Cross-entropy of the probabilities (a label the model does not know has probability 0).
    expected_calibration_error : float
        Top-label ECE over :data:`CALIBRATION_BINS` equal-width confidence bins; see
        :func:`expected_calibration_error`.
    mean_absolute_error : float or None
        For sentiment labels: mean distance, in classes of the five-point scale, between the
        true and predicted class.
    quadratic_kappa : float or None
        For sentiment labels: quadratic-weighted Cohen's kappa.
    polarity : PolarityReport or None
        For sentiment labels: the negative / neutral / positive view.
    decision_rule : str or None
        The rule that chose the predicted labels ("balanced" or "argmax", see
        :func:`wjsentiment.calibration.decide`), when known. The text form and
        :func:`~wjsentiment.plotting.plot_confusion_matrix` name it.
    """

    labels: list[Any]
    n_samples: int
    accuracy: float
    macro_f1: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    confusion_matrix: np.ndarray
    log_loss: float
    expected_calibration_error: float = float("nan")
    mean_absolute_error: float | None = None
    quadratic_kappa: float | None = None
    polarity: PolarityReport | None = field(default=None)
    decision_rule: str | None = None

    def to_frame(self) -> pd.DataFrame:
        """Per-class precision, recall, F1 and support, one row per label.

        Returns
        -------
        pandas.DataFrame
            Indexed by label.
        """
        return pd.DataFrame(
            {"precision": self.precision, "recall": self.recall, "f1": self.f1,
             "support": self.support},
            index=pd.Index(self.labels, name="label"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (NaN becomes None).

        Returns
        -------
        dict
            The report's fields as plain numbers, lists and strings.
        """
        return {
            "n_samples": int(self.n_samples),
            "labels": np.asarray(self.labels).tolist(),
            "accuracy": _num(self.accuracy),
            "macro_f1": _num(self.macro_f1),
            "log_loss": _num(self.log_loss),
            "expected_calibration_error": _num(self.expected_calibration_error),
            "per_class": {str(label): scores
                          for label, scores in self.to_frame().to_dict("index").items()},
            "confusion_matrix": self.confusion_matrix.tolist(),
            "mean_absolute_error": _num(self.mean_absolute_error),
            "quadratic_kappa": _num(self.quadratic_kappa),
            "polarity": None if self.polarity is None else self.polarity.to_dict(),
            "decision_rule": self.decision_rule,
        }

    def __str__(self) -> str:
        rule = f", labels by the {self.decision_rule!r} rule" if self.decision_rule else ""
        lines = [f"Evaluation on {self.n_samples} samples{rule}",
                 f"accuracy  {self.accuracy:.4f}    macro-F1  {self.macro_f1:.4f}    "
                 f"log-loss  {self.log_loss:.4f}    "
                 f"ECE  {_fmt(self.expected_calibration_error)}"]
        if self.mean_absolute_error is not None:
            lines.append(f"mean absolute error (classes)  {self.mean_absolute_error:.4f}    "
                         f"quadratic kappa  {_fmt(self.quadratic_kappa)}")
        lines += ["", self.to_frame().to_string(float_format=lambda v: f"{v:.4f}"), "",
                  "confusion matrix (rows: true, columns: predicted)",
                  _matrix_text(self.confusion_matrix, self.labels)]
        if self.polarity is not None:
            p = self.polarity
            lines += ["", f"polarity  accuracy  {p.accuracy:.4f}    macro-F1  {p.macro_f1:.4f}",
                      _matrix_text(p.confusion_matrix, p.labels)]
        return "\n".join(lines)


def reliability_table(y_true: Any, proba: Any, classes: Sequence[Any], *,
                      n_bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Accuracy against confidence, in equal-width bins of the top predicted probability.

    The confidence of a prediction is its largest probability; it is right when that class
    is the true one. A calibrated model is right as often as it is confident, in every bin.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels.
    proba : array-like of shape (n, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : sequence
        The model's ``classes_``.
    n_bins : int, default=10
        Bins of equal width over [0, 1].

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``lower``, ``upper``, ``count``, ``confidence`` (mean top
        probability) and ``accuracy`` (NaN in empty bins).

    Examples
    --------
    >>> table = reliability_table(["a", "b"], [[0.9, 0.1], [0.7, 0.3]], ["a", "b"], n_bins=2)
    >>> table[["count", "confidence", "accuracy"]].values.tolist()
    [[0.0, nan, nan], [2.0, 0.8, 0.5]]
    """
    classes, proba, y_true = _checked_predictions(classes, proba, y_true)
    confidence = proba.max(axis=1)
    correct = (np.asarray(classes)[proba.argmax(axis=1)] == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.digitize(confidence, edges[1:-1], right=True)  # 0 .. n_bins - 1
    count = np.bincount(which, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=n_bins) / count
        accuracy = np.bincount(which, correct, minlength=n_bins) / count
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count,
                         "confidence": mean_conf, "accuracy": accuracy})


def expected_calibration_error(y_true: Any, proba: Any, classes: Sequence[Any], *,
                               n_bins: int = CALIBRATION_BINS) -> float:
    """Top-label expected calibration error (ECE).

    The mean, over equal-width bins of confidence weighted by their share of the samples,
    of ``|accuracy - confidence|`` (see :func:`reliability_table`). 0 is perfectly calibrated.
    On a few hundred samples binning noise alone gives a few hundredths.

    Examples
    --------
    >>> expected_calibration_error(["a", "b"], [[0.9, 0.1], [0.7, 0.3]], ["a", "b"])
    0.4
    """
    table = reliability_table(y_true, proba, classes, n_bins=n_bins)
    gaps = (table["accuracy"] - table["confidence"]).abs() * table["count"]  # NaN: empty bin
    return float(round(gaps.sum() / table["count"].sum(), 12))  # pandas' sum skips NaN


def report_from_predictions(y_true: Any, proba: Any, classes: Sequence[Any], *,
                            labels: Sequence[Any] | None = None, y_pred: Any = None,
                            decision_rule: str | None = None) -> EvaluationReport:
    """Build an :class:`EvaluationReport` from true labels and predicted probabilities.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels, each one of ``labels``.
    proba : array-like of shape (n, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : sequence
        The model's ``classes_``.
    labels : sequence, optional
        The labels to report, in order: every class of ``classes``, plus any the model does not
        know (e.g. all of :data:`~wjsentiment.labels.SENTIMENT_LABELS` for a model trained on
        four of them; it gives them probability 0). Default: ``classes`` in ordinal sentiment
        order when every class is a sentiment label, else in the order of ``classes``.
    y_pred : array-like of shape (n,), optional
        The predicted labels, when the model picks classes by another rule than the most
        probable one (``decision="balanced"``). Default: the most probable class.
    decision_rule : str, optional
        The rule that chose ``y_pred`` (a model's ``decision_rule_``), recorded in the report
        so that what shows its labels can name it. Default: "argmax" without ``y_pred``,
        else unknown (None).

    Returns
    -------
    EvaluationReport
        The metrics, with ``decision_rule`` recorded.

    Raises
    ------
    ValueError
        If shapes disagree, ``y_true`` holds labels outside ``labels``, or ``labels`` misses
        a class of ``classes``.

    Examples
    --------
    >>> report = report_from_predictions(
    ...     ["Positive", "Negative", "Neutral"],
    ...     [[0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.3, 0.4, 0.3]],
    ...     ["Negative", "Neutral", "Positive"])
    >>> report.accuracy, report.labels
    (1.0, ['Negative', 'Neutral', 'Positive'])
    """
    class_list, proba, y_true = _checked_predictions(classes, proba, y_true)
    labels = _report_labels(labels, class_list, y_true)
    if y_pred is None:
        y_pred = np.asarray(class_list)[np.argmax(proba, axis=1)]
        decision_rule = "argmax"
    y_pred = np.asarray(y_pred)
    if y_pred.shape != y_true.shape:
        raise InputError(f"y_pred must have one label per sample ({len(y_true)}), got shape "
                         f"{y_pred.shape}.")
    # Labels the model does not know get probability 0; log_loss reads columns in sorted order.
    every = pd.DataFrame(proba, columns=class_list).reindex(columns=np.unique(labels),
                                                            fill_value=0.0)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return EvaluationReport(
        labels=labels,
        n_samples=len(y_true),
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(np.mean(f1)),  # over every label, as f1_score(average="macro")
        precision=precision, recall=recall, f1=f1, support=support,
        confusion_matrix=matrix,
        log_loss=float(log_loss(y_true, every.to_numpy(), labels=every.columns)),
        expected_calibration_error=expected_calibration_error(y_true, every.to_numpy(),
                                                              every.columns),
        decision_rule=decision_rule,
        **_ordinal_scores(labels, matrix, y_true, y_pred),
    )


def _checked_predictions(classes: Sequence[Any], proba: Any,
                         y_true: Any) -> tuple[list, np.ndarray, np.ndarray]:
    """The classes as a list, and ``proba`` and ``y_true`` as arrays, their shapes checked."""
    classes_arr = np.asarray(classes)
    if classes_arr.ndim != 1 or len(classes_arr) < 2:
        raise InputError(f"classes must list at least two classes, got {classes_arr.tolist()}.")
    if len(set(classes_arr.tolist())) != len(classes_arr):
        raise InputError(f"classes has duplicates: {classes_arr.tolist()}.")
    proba = np.asarray(proba, dtype=float)
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) == 0:
        raise InputError(f"y must be a non-empty 1-D array of labels, got shape {y_true.shape}.")
    if proba.shape != (len(y_true), len(classes_arr)):
        raise InputError(f"proba must have shape (n_samples, n_classes) = ({len(y_true)}, "
                         f"{len(classes_arr)}), got {proba.shape}.")
    return classes_arr.tolist(), proba, y_true


def _report_labels(labels: Sequence[Any] | None, class_list: list,
                   y_true: np.ndarray) -> list:
    """The labels to report (see :func:`report_from_predictions`), checked against the
    classes and the true labels."""
    if labels is None:
        labels = ordinal_labels(class_list)
    else:
        labels = np.asarray(labels).tolist()
        if not set(class_list) <= set(labels) or len(set(labels)) != len(labels):
            raise InputError(f"labels must list every class of the model once (it may add "
                             f"more); got {labels}, classes are {class_list}.")
    allowed = set(labels)
    unknown = sorted({str(v) for v in y_true.tolist() if v not in allowed})
    if unknown:
        raise InputError(f"y has labels {unknown} that are not classes of the model "
                         f"({class_list}); evaluate on labels the model was trained on, or "
                         "list them in labels.")
    return labels


def _ordinal_scores(labels: list, matrix: np.ndarray, y_true: np.ndarray,
                    y_pred: np.ndarray) -> dict[str, Any]:
    """With sentiment labels: the mean absolute error in classes, the quadratic kappa and
    the polarity report (none for other labels)."""
    positions = sentiment_positions(labels)
    if positions is None:
        return {}
    distance = np.abs(np.subtract.outer(positions, positions))  # true class x predicted class
    with warnings.catch_warnings():  # one class only: kappa is undefined (NaN, shown n/a)
        warnings.simplefilter("ignore")
        kappa = cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic")
    polarity_labels = [p for p in POLARITY_LABELS if p in to_polarity(labels)]
    true, predicted = to_polarity(y_true), to_polarity(y_pred)
    polarity = PolarityReport(
        labels=polarity_labels,
        accuracy=float(accuracy_score(true, predicted)),
        macro_f1=float(f1_score(true, predicted, labels=polarity_labels, average="macro",
                                zero_division=0)),
        confusion_matrix=confusion_matrix(true, predicted, labels=polarity_labels),
    )
    return {"mean_absolute_error": float((matrix * distance).sum() / len(y_true)),
            "quadratic_kappa": float(kappa), "polarity": polarity}


def evaluate(estimator: Any, X: Any, y: Any, *,
             labels: Sequence[Any] | None = None) -> EvaluationReport:
    """Evaluate a fitted classifier on images X with true labels y.

    The probabilities are predicted once. The labels follow the estimator's own decision
    rule (its ``predict_from_proba``, and ``decision_rule_``, which the report records), or
    for other classifiers the most probable class ("argmax"), as scikit-learn's predict.

    Parameters
    ----------
    estimator : fitted classifier with ``predict_proba`` and ``classes_``
        E.g. a :class:`~wjsentiment.SentimentClassifier` or
        :class:`~wjsentiment.ensemble.SentimentEnsemble`.
    X : ImageInputs or array-like
        What the estimator takes: for wjsentiment's estimators, a sequence of image paths or
        PIL images, or a uint8 array of shape ``(n, height, width, 3)``.
    y : array-like of shape (n,)
        True labels.
    labels : sequence, optional
        The classes in the order to report them; see :func:`report_from_predictions`.

    Returns
    -------
    EvaluationReport
        ``print(report)`` shows a table; ``report.to_dict()`` and ``report.to_frame()`` give
        the numbers.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If y holds labels the estimator was not trained on.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = ["Negative", "Negative", "Positive", "Positive"]
    >>> report = evaluate(LogisticRegression().fit(X, y), X, y)
    >>> report.accuracy, report.polarity.labels
    (1.0, ['negative', 'positive'])
    """
    check_is_fitted(estimator)
    proba = estimator.predict_proba(X)
    rule = getattr(estimator, "decision_rule_", None) \
        if hasattr(estimator, "predict_from_proba") else "argmax"  # scikit-learn's rule
    return report_from_predictions(y, proba, estimator.classes_, labels=labels,
                                   y_pred=predictions_from_proba(estimator, proba),
                                   decision_rule=rule)


def predictions_from_proba(estimator: Any, proba: Any) -> np.ndarray:
    """The labels ``estimator.predict`` would give, from probabilities already computed.

    Uses the estimator's ``predict_from_proba`` (its decision rule) when it has one, else the
    most probable class, as scikit-learn's classifiers predict.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> model = DummyClassifier().fit([[0], [1]], ["a", "b"])
    >>> predictions_from_proba(model, np.array([[0.2, 0.8]])).tolist()
    ['b']
    """
    if hasattr(estimator, "predict_from_proba"):
        return np.asarray(estimator.predict_from_proba(proba))
    return np.asarray(estimator.classes_)[np.argmax(np.asarray(proba), axis=1)]


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _matrix_text(matrix: np.ndarray, labels: Sequence[Any]) -> str:
    names = [str(v) for v in labels]
    return pd.DataFrame(matrix, index=names, columns=names).to_string()


__all__ = ["CALIBRATION_BINS", "POLARITY", "POLARITY_LABELS", "EvaluationReport",
           "PolarityReport", "evaluate", "expected_calibration_error", "predictions_from_proba",
           "reliability_table", "report_from_predictions", "to_polarity"]
