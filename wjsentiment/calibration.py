"""Calibration and the decision rule, for both estimators: one module for both.

**The classifier** (:class:`~wjsentiment.SentimentClassifier`) works on logits.
A fine-tuned network's softmax is too confident on images it has not seen (fitted temperatures
of 3-9 on the emoji set), and training with ``class_weight="balanced"`` or ``sampling`` shifts
it towards rare classes. :func:`calibrated_proba` undoes both: the logits are divided by a
temperature fitted on held-out images (:func:`fit_temperature`), then shifted by
:func:`logit_adjustment`, the log-ratio of the real class frequencies to the ones training
saw. The result estimates the real class frequencies.

What to predict from those probabilities is a separate choice (:func:`decide`): the most
probable class (``"argmax"``, best for accuracy), or the class with the highest probability
relative to its frequency (``"balanced"``, which targets macro-F1 and balanced accuracy).

**The ensemble** (:class:`~wjsentiment.SentimentEnsemble`) works on its members'
probabilities: :func:`fit_proba_temperature` and :func:`apply_temperature` scale each member's,
:func:`fit_weights` weighs the members, :func:`fit_soft_vote` does both on a holdout and
:func:`soft_vote` combines them. scikit-learn's
``CalibratedClassifierCV(FrozenEstimator(member), method="temperature")`` fits the same kind
of temperature, but the fitted temperature can be read back only from private attributes of
its calibrators, and the ensemble needs it (``temperatures_``, saved with the model and
exported to ONNX); so the ensemble keeps this module's fitting, which is also never worse
than ``T = 1`` on the data it was fitted on.

Nothing here imports torch: it works on numpy arrays of logits or probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import TransformerMixin
from sklearn.metrics import log_loss
from sklearn.utils.validation import check_is_fitted

from .exceptions import InputError
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
           "SoftVote", "apply_temperature", "calibrated_proba", "decide", "fit_proba_temperature",
           "fit_soft_vote", "fit_temperature", "fit_weights", "log_loss_of", "logit_adjustment",
           "resolve_decision", "soft_vote", "too_few_to_calibrate", "trains_balanced"]


def _check_scores(scores: Any, y: Any, name: str,
                  probabilities: bool = False) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] < 2:
        raise InputError(f"{name} must be a 2-D array (n_samples, n_classes) with at least one "
                         f"row and two columns, got shape {scores.shape}.")
    if probabilities and (not np.all(np.isfinite(scores)) or np.any(scores < 0)):
        raise InputError(f"{name} must hold finite, non-negative probabilities.")
    if not np.all(np.isfinite(scores)):
        raise InputError(f"{name} must be finite; it holds NaN or infinity.")
    y = np.asarray(y)
    if y.shape != (scores.shape[0],):
        raise InputError(f"y must be 1-D with one class index per row of {name} "
                         f"({scores.shape[0]}), got shape {y.shape}.")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= scores.shape[1]:
        raise InputError(f"y must hold integer column indices of {name} in [0, "
                         f"{scores.shape[1] - 1}]; encode labels with their position in "
                         "classes_.")
    return scores, y.astype(np.intp)


def too_few_to_calibrate(n_images: int, n_held: int, validation_fraction: float,
                         n_classes: int) -> str:
    """The calibration warning, in one line: why too few images were held out, and what to
    pass instead.

    Examples
    --------
    >>> too_few_to_calibrate(40, 4, 0.0, 2)
    'calibration needs at least 20 held-out images, but with validation_fraction=0 it holds \
out 10% of each class, which is 4 of these 40 images, so the temperature stays 1: pass \
validation_fraction=0.55 or more, use more images, or pass calibration=None.'
    """
    held = (f"validation_fraction={validation_fraction:g} held out {n_held} of the "
            f"{n_images} images" if validation_fraction > 0 else
            f"with validation_fraction=0 it holds out {CALIBRATION_FRACTION:.0%} of each "
            f"class, which is {n_held} of these {n_images} images")
    enough = MIN_CALIBRATION_SAMPLES + n_classes  # a class may hold out one image less
    needed = math.ceil(enough / n_images * 20) / 20
    # With groups, whole groups go to one side, so the holdout may be smaller than the
    # fraction: advise a fraction only where it is larger than the one given.
    fix = (f"pass validation_fraction={needed:g} or more, "
           if validation_fraction < needed <= 0.6 else "")
    return (f"calibration needs at least {MIN_CALIBRATION_SAMPLES} held-out images, but "
            f"{held}, so the temperature stays 1: {fix}use more images, or pass "
            "calibration=None.")


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
    if isinstance(temperature, bool) or not isinstance(temperature, Real) \
            or not np.isfinite(temperature) or temperature <= 0:
        raise InputError(f"temperature must be a positive number, got {temperature!r}.")
    return np.exp(_log_proba(logits, temperature, adjustment))


def _log_proba(logits: Any, temperature: float, adjustment: Any) -> np.ndarray:
    """``log_softmax(logits / temperature + adjustment)`` per row, in float64."""
    z = np.asarray(logits, dtype=float) / float(temperature)
    return log_softmax(z if adjustment is None else z + np.asarray(adjustment, dtype=float),
                       axis=1)


def log_loss_of(logits: Any, y: Any, temperature: float = 1.0, adjustment: Any = None,
                sample_weight: Any = None) -> float:
    """Mean negative log-likelihood of the true classes under :func:`calibrated_proba`
    (weighted by ``sample_weight``).

    Examples
    --------
    >>> round(log_loss_of([[0.0, 0.0]], [1]), 4)  # log(2)
    0.6931
    """
    y = np.asarray(y, dtype=np.intp)
    log_p = _log_proba(logits, temperature, adjustment)[np.arange(len(y)), y]
    return float(-np.average(log_p, weights=sample_weight))


def fit_temperature(logits: Any, y: Any, adjustment: Any = None, *,
                    sample_weight: Any = None) -> float:
    """The temperature that minimises the held-out log-loss of :func:`calibrated_proba`
    (weighted by ``sample_weight``).

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
    sample_weight : array-like of shape (n_samples,), optional
        Finite, non-negative weight of each row, not all 0 (the estimators check it).

    Returns
    -------
    float
        The temperature (1.0 when no other lowers the log-loss).

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
    baseline = log_loss_of(logits, y, 1.0, adjustment, sample_weight)
    lo, hi = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(lambda log_t: log_loss_of(logits, y, float(np.exp(log_t)),
                                                       adjustment, sample_weight),
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
    shift = _log(prior / prior.sum()) - _log(trained / trained.sum())
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
        raise InputError(f"decision must be one of {list(DECISIONS)}, got {decision!r}.")
    if decision == "auto":
        return "balanced" if balanced_training else "argmax"
    return decision


def trains_balanced(estimator: Any) -> bool:
    """Whether ``estimator`` trains with ``class_weight="balanced"`` or ``sampling`` (read from
    its parameters): then its ``decision="auto"`` is "balanced", and an ensemble's too.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> trains_balanced(LogisticRegression(class_weight="balanced"))
    True
    """
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    return params.get("class_weight") == "balanced" or params.get("sampling") is not None


def decide(proba: Any, rule: str, class_prior: Any = None) -> np.ndarray:
    """Column index of the predicted class of each row of ``proba``.

    ``"argmax"``: the most probable class, which maximises accuracy. ``"balanced"``: the
    class with the largest ``proba / class_prior``, which maximises balanced accuracy (and
    tends to raise macro-F1) when the probabilities are calibrated: rare classes are
    predicted whenever they are more likely than usual, not only when they are the likeliest.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities, one row per sample.
    rule : {"argmax", "balanced"}
        The decision rule (a model's ``decision_rule_``).
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
        raise InputError(f"rule must be 'argmax' or 'balanced', got {rule!r}.")
    if class_prior is None:
        raise InputError("decision='balanced' needs the training class frequencies.")
    prior = np.clip(np.asarray(class_prior, dtype=float), EPS, None)
    return np.argmax(proba / prior, axis=1)


class DecisionMixin(TransformerMixin):
    """What both estimators derive from their probabilities and parameters:
    ``decision_rule_`` (what their ``decision`` stands for), ``predict`` and
    ``predict_from_proba`` (that rule over the probabilities), and ``transform`` with
    ``get_feature_names_out`` (the probabilities as features for another estimator; as a
    scikit-learn transformer, with ``fit_transform`` and ``set_output``, as
    ``VotingClassifier`` is).

    The estimator provides ``predict_proba``, ``classes_``, ``class_prior_``, ``members_``
    and the ``decision`` parameter, and names in ``_fitted_attribute`` the attribute that
    ``fit`` sets.
    """

    _fitted_attribute = "classes_"

    @property
    def decision_rule_(self) -> str:
        """The rule ``predict`` applies: "balanced" or "argmax" (what ``decision`` stands
        for: "auto" is "balanced" when a member trains balanced, see :func:`trains_balanced`
        and :func:`decide`)."""
        balanced = any(trains_balanced(member.classifier) for member in self.members_)
        return resolve_decision(self.decision, balanced)  # (members_ checks it is fitted)

    def predict(self, X: Any) -> np.ndarray:
        """The class of each sample, by the ``decision`` rule over ``predict_proba(X)``.

        Parameters
        ----------
        X : ImageInputs
            What ``predict_proba`` takes.

        Returns
        -------
        numpy.ndarray of shape (n,)
            Labels from ``classes_``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        """
        return self.predict_from_proba(self.predict_proba(X))

    def predict_from_proba(self, proba: Any) -> np.ndarray:
        """The labels ``predict`` gives for probabilities already computed.

        Applies the ``decision`` rule, so a caller that needs both the probabilities and the
        labels predicts once.

        Parameters
        ----------
        proba : array-like of shape (n, n_classes)
            Probabilities from ``predict_proba``.

        Returns
        -------
        numpy.ndarray of shape (n,)
            Labels from ``classes_``.
        """
        check_is_fitted(self, self._fitted_attribute)
        return self.classes_[decide(proba, self.decision_rule_, self.class_prior_)]

    def transform(self, X: Any) -> np.ndarray:
        """The calibrated probabilities ``predict_proba(X)``, as features.

        So a fitted model can sit in a scikit-learn ``Pipeline`` or ``ColumnTransformer``
        before another estimator (stacking). Probabilities of the images a model was trained
        on are overconfident: fit the next estimator on other images, or use scikit-learn's
        ``StackingClassifier``, which trains it on cross-validated probabilities.

        Parameters
        ----------
        X : ImageInputs
            What ``predict_proba`` takes.

        Returns
        -------
        numpy.ndarray of shape (n, n_classes)
            Columns in the order of ``classes_``, named by :meth:`get_feature_names_out`.
        """
        return self.predict_proba(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The names of the columns of :meth:`transform`: ``proba_<class>``.

        Parameters
        ----------
        input_features : ignored
            Present for scikit-learn's API.

        Returns
        -------
        numpy.ndarray of str
            One name per class, in the order of ``classes_``.
        """
        check_is_fitted(self, self._fitted_attribute)
        return np.asarray([f"proba_{c}" for c in self.classes_], dtype=object)


# ------------------------------------------------------- the ensemble's members' probabilities
def _log(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(proba, EPS, None))


def apply_temperature(proba: Any, temperature: float) -> np.ndarray:
    """Temperature-scale probabilities: ``softmax(log(proba) / temperature)`` per row.

    A temperature above 1 softens the probabilities, below 1 sharpens them; 1 returns them
    unchanged. See :func:`calibrated_proba`, which does the same on logits.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Probabilities (rows summing to 1).
    temperature : float
        Positive temperature.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_classes)
        Rows sum to 1.

    Raises
    ------
    ValueError
        If ``temperature`` is not a positive finite number.

    Examples
    --------
    >>> apply_temperature([[0.8, 0.2]], 2.0).round(3)
    array([[0.667, 0.333]])
    """
    proba = np.asarray(proba, dtype=float)
    if temperature == 1.0 and not isinstance(temperature, bool):
        return proba
    return calibrated_proba(_log(proba), temperature)  # which checks the temperature


def fit_proba_temperature(proba: Any, y: Any, sample_weight: Any = None) -> float:
    """Fit the temperature that minimises the log-loss of :func:`apply_temperature`.

    :func:`fit_temperature` on the log-probabilities: never worse than ``T = 1`` on the data
    it was fitted on. ``wjsentiment.ensemble.fit_temperature`` is this function.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Held-out probabilities of one classifier.
    y : array-like of int, shape (n_samples,)
        The true class of each row, as a column index of ``proba``.
    sample_weight : array-like of shape (n_samples,), optional
        Weight of each row in the log-loss.

    Returns
    -------
    float
        The temperature.

    Raises
    ------
    ValueError
        If ``proba`` is not a 2-D probability array or ``y`` not matching column indices.

    Examples
    --------
    >>> proba = [[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.4, 0.6]]
    >>> fit_proba_temperature(proba, [0, 1, 0, 1]) < 1.0  # right but timid: sharpen
    True
    """
    proba, y = _check_scores(proba, y, "proba", probabilities=True)
    return fit_temperature(_log(proba), y, sample_weight=sample_weight)


def fit_weights(probas: Sequence[Any], y: Any, sample_weight: Any = None) -> np.ndarray:
    """Fit non-negative member weights, summing to 1, that minimise the soft vote's log-loss.

    The weights are a softmax of free parameters, fitted by L-BFGS from equal weights. The
    result is never worse than equal weights on the data it was fitted on: if the optimiser
    does not improve on them, equal weights are returned.

    Parameters
    ----------
    probas : sequence of array-like of shape (n_samples, n_classes)
        Held-out probabilities of each member, columns in the same class order.
    y : array-like of int, shape (n_samples,)
        The true class of each row, as a column index.
    sample_weight : array-like of shape (n_samples,), optional
        Weight of each row in the log-loss.

    Returns
    -------
    numpy.ndarray of shape (n_members,)
        Non-negative weights summing to 1.

    Raises
    ------
    ValueError
        If ``probas`` is empty or its arrays differ in shape.

    Examples
    --------
    >>> good = [[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]
    >>> noise = [[0.5, 0.5], [0.7, 0.3], [0.2, 0.8], [0.5, 0.5]]
    >>> w = fit_weights([good, noise], [0, 1, 0, 1])
    >>> bool(w[0] > 0.9), float(w.sum())
    (True, 1.0)
    """
    if len(probas) == 0:
        raise InputError("probas is empty: pass one probability array per member.")
    checked = [_check_scores(p, y, f"probas[{i}]", probabilities=True)
               for i, p in enumerate(probas)]
    shapes = {p.shape for p, _ in checked}
    if len(shapes) != 1:
        raise InputError(f"Every array of probas must have the same shape, got {sorted(shapes)}.")
    y = checked[0][1]
    n_members = len(checked)
    equal = np.full(n_members, 1.0 / n_members)
    if n_members == 1:
        return equal
    # Probability each member gives the true class: (n_members, n_samples).
    q = np.stack([p[np.arange(len(y)), y] for p, _ in checked])
    share = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    share = share / share.sum()  # of each row in the mean log-loss

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The log-loss of the weights ``softmax(theta)``, and its gradient."""
        w = softmax(theta)
        mix = np.clip(w @ q, EPS, None)
        grad_w = -(q / mix) @ share
        return float(-np.log(mix) @ share), w * (grad_w - w @ grad_w)

    start = np.zeros(n_members)  # equal weights
    result = minimize(objective, start, jac=True, method="L-BFGS-B")
    if not np.all(np.isfinite(result.x)) or objective(result.x)[0] >= objective(start)[0]:
        return equal
    return softmax(result.x)


def normalised_weights(weights: Any, n_members: int) -> np.ndarray:
    """Fixed member weights scaled to sum to 1; None gives equal weights.

    Examples
    --------
    >>> normalised_weights([1, 3], 2).tolist(), normalised_weights(None, 2).tolist()
    ([0.25, 0.75], [0.5, 0.5])
    """
    if weights is None:
        return np.full(n_members, 1.0 / n_members)
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


class SoftVote(NamedTuple):
    """What :func:`fit_soft_vote` fits on a holdout."""

    temperatures: np.ndarray  #: one per member (1.0 without calibration)
    weights: np.ndarray  #: one per member, summing to 1
    log_loss: dict  #: the holdout's log-loss: "members" (a list), "equal_weights", "ensemble"


def fit_soft_vote(probas: Sequence[Any], y: Any, *, calibrate: bool,
                  weights: str | Sequence[float] | None,
                  sample_weight: Any = None) -> SoftVote:
    """Fit the members' temperatures (``calibrate``) and, with ``weights="auto"``, their
    weights on held-out probabilities.

    Parameters
    ----------
    probas : sequence of array-like of shape (n_samples, n_classes)
        Held-out probabilities of each member.
    y : array-like of int, shape (n_samples,)
        The true class of each row, as a column index.
    calibrate : bool
        Fit one temperature per member (:func:`fit_proba_temperature`).
    weights : None, "auto" or sequence of float
        "auto": :func:`fit_weights` on the (scaled) probabilities; otherwise
        :func:`normalised_weights`.
    sample_weight : array-like of shape (n_samples,), optional
        Weight of each row in the fits and the log-losses.

    Returns
    -------
    SoftVote
        The temperatures, the weights and the holdout's log-losses.

    Examples
    --------
    >>> good = [[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]
    >>> noise = [[0.5, 0.5], [0.7, 0.3], [0.2, 0.8], [0.5, 0.5]]
    >>> vote = fit_soft_vote([good, noise], [0, 1, 0, 1], calibrate=False, weights="auto")
    >>> vote.log_loss["ensemble"] <= vote.log_loss["equal_weights"]
    True
    """
    n = len(probas)
    temperatures = (np.array([fit_proba_temperature(p, y, sample_weight) for p in probas])
                    if calibrate else np.ones(n))
    scaled = [apply_temperature(p, t) for p, t in zip(probas, temperatures)]
    fitted = (fit_weights(scaled, y, sample_weight) if isinstance(weights, str)
              else normalised_weights(weights, n))
    labels = np.arange(np.shape(scaled[0])[1])  # every column, whether y has it or not

    def nll(proba: np.ndarray) -> float:
        return float(log_loss(y, proba, labels=labels, sample_weight=sample_weight))

    log_loss_of_vote = {
        "members": [nll(p) for p in scaled],
        "equal_weights": nll(np.mean(scaled, axis=0)),
        "ensemble": nll(np.average(scaled, axis=0, weights=fitted)),
    }
    return SoftVote(temperatures, fitted, log_loss_of_vote)


def soft_vote(probas: Sequence[Any], temperatures: Sequence[float],
              weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of the members' temperature-scaled probabilities.

    Examples
    --------
    >>> soft_vote([[[1.0, 0.0]], [[0.0, 1.0]]], [1.0, 1.0], [0.75, 0.25]).tolist()
    [[0.75, 0.25]]
    """
    scaled = [apply_temperature(p, float(t)) for p, t in zip(probas, temperatures)]
    return np.average(np.stack(scaled), axis=0, weights=weights)
