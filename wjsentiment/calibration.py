"""Calibrated probabilities and the decision rule, shared by the estimator and the ensemble.

A fine-tuned network's softmax is too confident on images it has not seen (fitted temperatures
of 3-9 on the emoji set), and training with ``class_weight="balanced"`` or ``sampling`` shifts
it towards rare classes. :func:`calibrated_proba` undoes both: the logits are divided by a
temperature fitted on held-out images (:func:`fit_temperature`), then shifted by
:func:`logit_adjustment`, the log-ratio of the real class frequencies to the ones training
saw. The result estimates the real class frequencies.

What to predict from those probabilities is a separate choice (:func:`decide`): the most
probable class (``"argmax"``, best for accuracy), or the class with the highest probability
relative to its frequency (``"balanced"``, which targets macro-F1 and balanced accuracy).

Nothing here imports torch: it works on numpy arrays of logits or probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from .params import CALIBRATIONS, DECISIONS

#: Share of the training images held out to fit the temperature when ``validation_fraction``
#: is 0.
CALIBRATION_FRACTION = 0.1
#: Fewer held-out images than this fit no temperature (the fit would be noise): it stays 1.
MIN_CALIBRATION_SAMPLES = 20
#: Range searched for the temperature.
TEMPERATURE_BOUNDS = (1e-2, 1e2)
#: Floor of probabilities before a logarithm.
EPS = 1e-12

__all__ = ["CALIBRATIONS", "CALIBRATION_FRACTION", "DECISIONS", "MIN_CALIBRATION_SAMPLES",
           "calibrated_proba", "decide", "fit_temperature", "log_loss_of", "logit_adjustment",
           "resolve_decision"]


def _check_scores(scores: Any, y: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] < 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_classes) with at least one "
                         f"row and two columns, got shape {scores.shape}.")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} must be finite; it holds NaN or infinity.")
    y = np.asarray(y)
    if y.shape != (scores.shape[0],):
        raise ValueError(f"y must be 1-D with one class index per row of {name} "
                         f"({scores.shape[0]}), got shape {y.shape}.")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= scores.shape[1]:
        raise ValueError(f"y must hold integer column indices of {name} in [0, "
                         f"{scores.shape[1] - 1}]; encode labels with their position in "
                         "classes_.")
    return scores, y.astype(np.intp)


def calibrated_proba(logits: Any, temperature: float = 1.0,
                     adjustment: Any = None) -> np.ndarray:
    """``softmax(logits / temperature + adjustment)`` per row, in float64.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Scores of a classifier (log-probabilities work too).
    temperature : float, default=1.0
        Positive; above 1 softens the probabilities, below 1 sharpens them.
    adjustment : array-like of shape (n_classes,), optional
        Added after scaling; see :func:`logit_adjustment`.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_classes)
        Rows sum to 1.

    Examples
    --------
    >>> calibrated_proba([[2.0, 0.0]], temperature=2.0).round(3)
    array([[0.731, 0.269]])
    """
    if isinstance(temperature, bool) or not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}.")
    z = np.asarray(logits, dtype=float) / float(temperature)
    if adjustment is not None:
        z = z + np.asarray(adjustment, dtype=float)
    return np.exp(log_softmax(z, axis=1))


def log_loss_of(logits: Any, y: Any, temperature: float = 1.0, adjustment: Any = None) -> float:
    """Mean negative log-likelihood of the true classes under :func:`calibrated_proba`.

    Examples
    --------
    >>> round(log_loss_of([[0.0, 0.0]], [1]), 4)  # log(2)
    0.6931
    """
    z = np.asarray(logits, dtype=float) / float(temperature)
    if adjustment is not None:
        z = z + np.asarray(adjustment, dtype=float)
    y = np.asarray(y, dtype=np.intp)
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(y)), y]))


def fit_temperature(logits: Any, y: Any, adjustment: Any = None) -> float:
    """The temperature that minimises the held-out log-loss of :func:`calibrated_proba`.

    The search runs over ``log T`` in :data:`TEMPERATURE_BOUNDS`. The result is never worse
    than ``T = 1`` on the data it was fitted on: if the search finds nothing better, 1.0 is
    returned.

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Held-out scores of one classifier (log-probabilities work too).
    y : array-like of int, shape (n_samples,)
        The true class of each row, as a column index.
    adjustment : array-like of shape (n_classes,), optional
        The :func:`logit_adjustment` applied after scaling, as in prediction.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``logits`` is not a finite 2-D array or ``y`` not matching column indices.

    Examples
    --------
    >>> logits = [[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [3.0, 0.0]]
    >>> fit_temperature(logits, [0, 1, 1, 0]) > 1.0  # confident and often wrong: soften
    True
    """
    logits, y = _check_scores(logits, y, "logits")
    baseline = log_loss_of(logits, y, 1.0, adjustment)
    lo, hi = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: log_loss_of(logits, y, float(np.exp(log_t)),
                                                       adjustment),
                             bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    if not np.isfinite(result.fun) or result.fun >= baseline:
        return 1.0
    return float(np.exp(result.x))


def logit_adjustment(class_prior: Any, trained_prior: Any) -> np.ndarray:
    """What to add to a model's logits so it predicts the real class frequencies.

    A model trained on classes in proportions ``trained_prior`` (after class weights and
    class-balanced sampling) learns probabilities proportional to
    ``p(class | image) * trained_prior / class_prior``; adding
    ``log(class_prior) - log(trained_prior)`` to its logits undoes that.

    Parameters
    ----------
    class_prior : array-like of shape (n_classes,)
        The real class frequencies (those of the training labels).
    trained_prior : array-like of shape (n_classes,)
        The frequencies training saw, e.g. equal for ``class_weight="balanced"``.

    Returns
    -------
    numpy.ndarray of shape (n_classes,)
        Centred on 0 (a constant added to every logit changes nothing).

    Examples
    --------
    >>> logit_adjustment([0.75, 0.25], [0.5, 0.5]).round(3)  # balanced training
    array([ 0.549, -0.549])
    """
    prior = np.asarray(class_prior, dtype=float)
    trained = np.asarray(trained_prior, dtype=float)
    shift = np.log(np.clip(prior / prior.sum(), EPS, None)) \
        - np.log(np.clip(trained / trained.sum(), EPS, None))
    return shift - shift.mean()


def resolve_decision(decision: str, balanced_training: bool) -> str:
    """The rule ``decision="auto"`` stands for: "balanced" after balanced training.

    Examples
    --------
    >>> resolve_decision("auto", balanced_training=True)
    'balanced'
    >>> resolve_decision("auto", balanced_training=False)
    'argmax'
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {list(DECISIONS)}, got {decision!r}.")
    if decision == "auto":
        return "balanced" if balanced_training else "argmax"
    return decision


def decide(proba: Any, rule: str, class_prior: Any = None) -> np.ndarray:
    """Column index of the predicted class of each row of ``proba``.

    ``"argmax"``: the most probable class, which maximises accuracy. ``"balanced"``: the
    class with the largest ``proba / class_prior``, which maximises balanced accuracy (and
    tends to raise macro-F1) when the probabilities are calibrated: rare classes are
    predicted whenever they are more likely than usual, not only when they are the likeliest.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
    rule : {"argmax", "balanced"}
    class_prior : array-like of shape (n_classes,), optional
        Needed by "balanced": the training class frequencies.

    Examples
    --------
    >>> proba = [[0.6, 0.4]]
    >>> decide(proba, "argmax").tolist(), decide(proba, "balanced", [0.8, 0.2]).tolist()
    ([0], [1])
    """
    proba = np.asarray(proba, dtype=float)
    if rule == "argmax":
        return np.argmax(proba, axis=1)
    if rule != "balanced":
        raise ValueError(f"rule must be 'argmax' or 'balanced', got {rule!r}.")
    if class_prior is None:
        raise ValueError("decision='balanced' needs the training class frequencies.")
    prior = np.clip(np.asarray(class_prior, dtype=float), EPS, None)
    return np.argmax(proba / prior, axis=1)
