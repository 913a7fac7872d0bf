"""SentimentEnsemble: a soft vote over fitted classifiers, with optional calibration and weights.

The ensemble averages its members' class probabilities. With ``calibrate=True`` each member's
probabilities are first sharpened or softened by a temperature fitted on a held-out set; with
``weights="auto"`` the members' weights are fitted on that set too (the fitting lives in
:mod:`wjsentiment.calibration`). Members are fitted one after the other, or in threads on
separate GPUs when several exist.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import ArrayLike
from sklearn.base import ClassifierMixin, _fit_context, clone
from sklearn.utils import Bunch, get_tags
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted, has_fit_parameter

from .calibration import DecisionMixin, fit_soft_vote, normalised_weights, soft_vote
from .estimator import SentimentClassifier, _from_saved, _saved_state
from .exceptions import InputError
from .holdout import holdout_split
from .inference import Member
from .inputs import ImageInputs, check_fit_inputs, take
from .params import ENSEMBLE_PARAMS, check_params, constraints
from .persistence import ENSEMBLE_FILE, load_ensemble, save_ensemble
from .persistence.model_files import model_file_errors
from .progress import carried, progress

#: Seed of the calibration/weighting holdout split when no member has an int random_state.
DEFAULT_HOLDOUT_SEED = 0

def default_estimators() -> list[tuple[str, SentimentClassifier]]:
    """The reference study's pair of members, unfitted.

    A ResNet-18 with the MLP head trained on class-balanced (undersampled) epochs, and a
    ResNet-152 with a linear head trained on grayscale images.

    Returns
    -------
    list of (str, SentimentClassifier)
        ``[("resnet18", ...), ("resnet152", ...)]``.

    Examples
    --------
    >>> [name for name, _ in default_estimators()]
    ['resnet18', 'resnet152']
    >>> default_estimators()[1][1].grayscale
    True
    """
    return [
        ("resnet18", SentimentClassifier(backbone="resnet18", head="mlp", sampling="undersample")),
        ("resnet152", SentimentClassifier(backbone="resnet152", grayscale=True, head="linear")),
    ]


# ------------------------------------------------------------------------------ the ensemble
# scikit-learn has no public base for estimators made of named sub-estimators: its own
# VotingClassifier and StackingClassifier use _BaseComposition for get_params/set_params of
# "name__param" and for checking member names, which is what this class needs.
class SentimentEnsemble(DecisionMixin, ClassifierMixin, _BaseComposition):
    """Soft vote over classifiers: the (weighted) mean of their class probabilities.

    Members are cloned and fitted in :meth:`fit`. With ``calibrate=True`` or ``weights="auto"``
    a stratified ``validation_fraction`` of the data is held out: members are fitted on the
    rest, then each member gets a temperature (``calibrate``) and the members get weights
    (``"auto"``) that minimise the log-loss on the holdout. Members are not refitted on the
    holdout afterwards.

    Any scikit-learn classifier with ``predict_proba`` can be a member; all members must end up
    with the same ``classes_``. Member parameters are reachable as ``<name>__<param>`` (e.g. for
    ``GridSearchCV``: ``{"resnet18__lr": [1e-3, 1e-4]}``).

    Parameters
    ----------
    estimators : list of (str, estimator), default=None
        The members, by name. None: the reference study's pair, see :func:`default_estimators`
        (a ResNet-18 with an MLP head on undersampled epochs and a grayscale ResNet-152 with a
        linear head).
    weights : None, "auto" or array-like of shape (n_members,), default=None
        None: equal weights. "auto": fitted on the holdout to minimise its log-loss (never
        worse there than equal weights). A list: fixed non-negative weights (normalised to
        sum to 1).
    calibrate : bool, default=False
        Fit one temperature per member on the holdout (temperature scaling). Not needed for
        :class:`~wjsentiment.SentimentClassifier` members, which calibrate themselves by
        default (their ``calibration`` parameter).
    validation_fraction : float, default=0.15
        Size of the stratified holdout used by ``calibrate`` and ``weights="auto"``. Its seed is
        the first int ``random_state`` among the members, else 0.
    n_jobs : int, default=None
        Threads that fit and run members side by side, used only when several CUDA devices
        exist: then member ``i`` whose ``device`` is "auto" runs on ``cuda:{i % n_gpus}``.
        None means one thread per GPU. With one or no GPU members run one after the other.
    verbose : int, default=1
        0 is silent; 1 shows progress over members. The members' own progress does not show
        inside it (see :mod:`wjsentiment.progress`).
    decision : {"auto", "balanced", "argmax"}, default="auto"
        How ``predict`` picks a class from the soft vote, as
        :class:`~wjsentiment.SentimentClassifier`'s ``decision``: "balanced" divides by the
        training class frequencies (``class_prior_``), "argmax" does not; "auto" is
        "balanced" when a member trains with ``class_weight="balanced"`` or ``sampling``.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted members.
    named_estimators_ : Bunch
        The fitted members by name.
    classes_ : numpy.ndarray
        The class labels, shared by all members.
    weights_ : numpy.ndarray of shape (n_members,)
        Member weights used by the vote; they sum to 1.
    temperatures_ : numpy.ndarray of shape (n_members,)
        Member temperatures (all 1.0 without ``calibrate``).
    class_prior_ : numpy.ndarray of shape (n_classes,)
        Class frequencies of the labels ``fit`` saw (weighted by its ``sample_weight``), used
        by ``decision="balanced"``.
    validation_log_loss_ : dict or None
        With a holdout: its log-loss for each member (``"members"``, after calibration), for
        equal weights (``"equal_weights"``) and for the fitted vote (``"ensemble"``).

    Examples
    --------
    Any probabilistic classifiers can vote:

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-1, 1, (30, 2)), rng.normal(1, 1, (30, 2))]
    >>> y = np.array(["Negative"] * 30 + ["Positive"] * 30)
    >>> ens = SentimentEnsemble([("lr", LogisticRegression()), ("nb", GaussianNB())],
    ...                         weights="auto", calibrate=True, verbose=0).fit(X, y)
    >>> ens.predict_proba(X[:3]).shape, round(float(ens.weights_.sum()), 6)
    ((3, 2), 1.0)

    The reference study's pair on images (slow: two ImageNet backbones):

    >>> ens = SentimentEnsemble(weights="auto").fit(paths, labels)  # doctest: +SKIP
    """

    _fitted_attribute = "estimators_"

    def __init__(
        self,
        estimators: list[tuple[str, Any]] | None = None,
        *,
        weights: str | Sequence[float] | None = None,
        calibrate: bool = False,
        validation_fraction: float = 0.15,
        n_jobs: int | None = None,
        verbose: int = 1,
        decision: str = "auto",
    ) -> None:
        self.estimators = estimators
        self.weights = weights
        self.calibrate = calibrate
        self.validation_fraction = validation_fraction
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.decision = decision

    # --------------------------------------------------------------- parameters of members
    def _members_spec(self) -> list[tuple[str, Any]]:
        return default_estimators() if self.estimators is None else self.estimators

    @property
    def named_estimators(self) -> Bunch:
        """The unfitted members by name (the defaults when ``estimators`` is None)."""
        return Bunch(**dict(self._members_spec()))

    def get_params(self, deep: bool = True) -> dict:
        """Parameters of the ensemble and, with ``deep``, of its members as ``name__param``.

        Parameters
        ----------
        deep : bool, default=True
            Include the members and their parameters.

        Returns
        -------
        dict
            Parameter names mapped to their values.
        """
        if deep and self.estimators is None:
            out = super().get_params(deep=False)
            for name, est in default_estimators():
                out[name] = est
                out.update({f"{name}__{k}": v for k, v in est.get_params(deep=True).items()})
            return out
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params: Any) -> SentimentEnsemble:
        """Set parameters of the ensemble or of its members (``name__param``).

        With ``estimators=None``, setting a parameter of a default member first replaces
        ``estimators`` by :func:`default_estimators`.

        Returns
        -------
        self : SentimentEnsemble
            This ensemble, with the new parameters.
        """
        if self.estimators is None and "estimators" not in params:
            names = {name for name, _ in default_estimators()}
            if any(key.split("__", 1)[0] in names for key in params):
                self.estimators = default_estimators()
        return self._set_params("estimators", **params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        with contextlib.suppress(Exception):
            member_tags = [get_tags(est) for _, est in self._members_spec()]
            tags.input_tags = member_tags[0].input_tags
            tags.non_deterministic = any(t.non_deterministic for t in member_tags)
            tags.classifier_tags.poor_score = any(t.classifier_tags.poor_score
                                                  for t in member_tags)
        return tags

    # ---------------------------------------------------------------------------- checks
    _parameter_constraints: dict = constraints(ENSEMBLE_PARAMS)

    def _validate_params(self) -> None:
        """Check every parameter: scikit-learn's constraints (from
        :data:`~wjsentiment.params.ENSEMBLE_PARAMS`), then the members and the weights."""
        check_params(ENSEMBLE_PARAMS, self.get_params(deep=False), type(self).__name__)
        names, members = self._members()
        if self.weights is not None and not isinstance(self.weights, str):
            w = np.asarray(self.weights, dtype=float) if _is_numeric_list(self.weights) else None
            if w is None or w.ndim != 1:
                raise InputError(f"weights must be None, 'auto' or a list of numbers, got "
                                 f"{self.weights!r}.")
            if len(w) != len(members):
                raise InputError(f"weights has {len(w)} values but there are {len(members)} "
                                 f"members ({names}); give one weight per member.")
            if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise InputError(f"weights must be finite, non-negative and not all zero, got "
                                 f"{list(w)}.")

    def _members(self) -> tuple[list[str], list[Any]]:
        """The names and (unfitted) members, checked: named pairs of probabilistic
        classifiers with unique names."""
        spec = self._members_spec()
        if len(spec) == 0:
            raise InputError("estimators must be a non-empty list of (name, estimator) pairs, "
                             f"got {spec!r}; or None for the default pair.")
        if not all(isinstance(pair, tuple) and len(pair) == 2 for pair in spec):
            raise InputError("estimators must be a list of (name, estimator) tuples, e.g. "
                             "[('a', SentimentClassifier()), ('b', SentimentClassifier())].")
        names, members = (list(part) for part in zip(*spec))
        if not all(isinstance(name, str) and name for name in names):
            raise InputError(f"Member names must be non-empty strings, got {names!r}.")
        self._validate_names(names)
        self._check_estimators_are_instances(members)
        for name, est in zip(names, members):
            if not (hasattr(est, "fit") and hasattr(est, "predict_proba")):
                raise InputError(f"Member {name!r} ({type(est).__name__}) has no fit/"
                                 "predict_proba; every member must be a probabilistic "
                                 "classifier.")
        return names, members

    # ---------------------------------------------------------------- running the members
    @staticmethod
    def _n_gpus() -> int:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def _spread_over_gpus(self, members: list[Any]) -> dict[int, Any]:
        """Put members with device="auto" on separate GPUs; return their original devices."""
        n_gpus = self._n_gpus()
        moved = {}
        for i, est in enumerate(members if n_gpus > 1 else []):
            if hasattr(est, "get_params") and est.get_params(deep=False).get("device") == "auto":
                est.set_params(device=f"cuda:{i % n_gpus}")
                moved[i] = "auto"
        return moved

    def _run(self, fn: Callable[[Any], Any], members: list[Any], desc: str) -> list[Any]:
        """``fn`` of every member, in order: in threads (``n_jobs``, one per GPU by default)
        when several GPUs exist, else one after the other."""
        n_gpus = self._n_gpus()
        n_jobs = (n_gpus if self.n_jobs is None else self.n_jobs) if n_gpus > 1 else 1
        results = []
        with progress(len(members), desc, "member", self.verbose) as bar:
            in_this_call = carried(fn)  # (made here: joblib may dispatch from a thread)
            for result in Parallel(n_jobs=n_jobs, backend="threading", return_as="generator")(
                    delayed(in_this_call)(est) for est in members):
                results.append(result)
                bar.update()
        return results

    def _member_probas(self, X: Any) -> list[np.ndarray]:
        """Each fitted member's probabilities of X, checked to have a column per class."""
        probas = self._run(lambda est: np.asarray(est.predict_proba(X), dtype=float),
                           self.estimators_, desc="Predicting members")
        n_classes = len(self.classes_)
        for name, proba in zip(self.named_estimators_, probas):
            if proba.ndim != 2 or proba.shape[1] != n_classes:
                raise InputError(f"Member {name!r} returned probabilities of shape "
                                 f"{proba.shape}; expected (n_samples, {n_classes}).")
        return probas

    # --------------------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=False)  # members' parameters are checked too
    def fit(self, X: ImageInputs | ArrayLike, y: ArrayLike, groups: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> SentimentEnsemble:
        """Clone and fit every member; with a holdout, fit temperatures and/or weights.

        Parameters
        ----------
        X : ImageInputs or array-like
            What the members take: for :class:`~wjsentiment.SentimentClassifier` members,
            a sequence of image paths or PIL images, or a uint8 array of shape
            ``(n, height, width, 3)``.
        y : array-like of shape (n,)
            Class labels.
        groups : array-like of shape (n,), optional
            Group of each sample (e.g. the emoji of the emoji set, whose two drawings must
            stay together). When given, the holdout keeps whole groups out, so the weights and
            temperatures are fitted on groups the members have not seen; members whose
            ``fit`` takes ``groups`` get theirs too (their own validation and calibration
            splits then keep groups whole).
        sample_weight : array-like of shape (n,), optional
            Weight of each sample, finite and non-negative; every member's ``fit`` must take
            it. Samples of weight 0 are left out first, as if absent (see
            :meth:`SentimentClassifier.fit <wjsentiment.SentimentClassifier.fit>`); the
            members get the weights of their part, and the temperatures, weights and
            ``class_prior_`` are fitted on weighted log-losses and frequencies. Route it
            like ``groups``, with ``set_fit_request(sample_weight=True)``.

        Returns
        -------
        self : SentimentEnsemble
            This ensemble, fitted.

        Raises
        ------
        ValueError
            For bad parameters, an X/y length mismatch, a holdout that cannot be stratified,
            members that disagree on ``classes_``, or ``sample_weight`` for a member whose
            ``fit`` does not take it.
        """
        names, specs = self._members()
        X, y, groups, weights, _ = check_fit_inputs(X, y, groups, sample_weight, unit="sample")
        unweighted = [name for name, est in zip(names, specs)
                      if not has_fit_parameter(est, "sample_weight")]
        if sample_weight is not None and unweighted:
            raise InputError(f"sample_weight was given but the fit of member(s) {unweighted} "
                             "takes none; use members that take sample_weight, or no weights.")
        members = [clone(est) for est in specs]
        self._moved_devices = self._spread_over_gpus(members)
        holdout = isinstance(self.weights, str) or bool(self.calibrate)
        fit_idx, val_idx = (self._holdout_split(y, groups, specs) if holdout
                            else (np.arange(len(y)), None))
        X_fit = take(X, fit_idx) if holdout else X
        metadata = {"groups": None if groups is None else groups[fit_idx],
                    "sample_weight": None if sample_weight is None else weights[fit_idx]}
        fitted = self._run(lambda est: _fit_member(est, X_fit, y[fit_idx], **metadata),
                           members, desc="Fitting members")
        self.estimators_ = fitted
        self.named_estimators_ = Bunch(**dict(zip(names, fitted)))
        self.classes_ = _shared_classes(names, fitted)
        self.class_prior_ = _frequencies(y, self.classes_, weights)
        self.temperatures_ = np.ones(len(fitted))
        self.validation_log_loss_ = None
        if holdout:
            self._fit_vote(take(X, val_idx), y[val_idx], weights[val_idx])
        else:
            self.weights_ = normalised_weights(self.weights, len(fitted))
        return self

    def _holdout_split(self, y: np.ndarray, groups: np.ndarray | None,
                       specs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """The members' training part and the holdout of ``calibrate``/``weights="auto"``,
        seeded by the first int ``random_state`` among the members (else
        :data:`DEFAULT_HOLDOUT_SEED`)."""
        seeds = [est.get_params(deep=False).get("random_state") for est in specs
                 if hasattr(est, "get_params")]
        seed = next((int(seed) for seed in seeds
                     if isinstance(seed, Integral) and not isinstance(seed, bool)),
                    DEFAULT_HOLDOUT_SEED)
        fit_idx, val_idx = holdout_split(y, self.validation_fraction, groups=groups,
                                         random_state=seed)
        if len(val_idx) == 0:
            raise InputError(
                f"validation_fraction={self.validation_fraction} holds out no sample for "
                "calibrate/weights='auto': every class is too small. Use more samples per "
                "class, a larger fraction, or weights=None with calibrate=False."
            )
        return fit_idx, val_idx

    def _fit_vote(self, X_val: Any, y_val: np.ndarray, sample_weight: np.ndarray) -> None:
        """Fit ``temperatures_`` and ``weights_`` on the (weighted) holdout; set
        ``validation_log_loss_``."""
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        unknown = sorted({str(v) for v in y_val.tolist() if v not in index})
        if unknown:
            raise InputError(f"y has labels {unknown} that are not in the members' classes_ "
                             f"({self.classes_.tolist()}).")
        y_idx = np.array([index[v] for v in y_val.tolist()], dtype=np.intp)
        probas = self._member_probas(X_val)
        vote = fit_soft_vote(probas, y_idx, calibrate=bool(self.calibrate), weights=self.weights,
                             sample_weight=sample_weight)
        self.temperatures_, self.weights_ = vote.temperatures, vote.weights
        self.validation_log_loss_ = {
            **vote.log_loss, "members": dict(zip(self.named_estimators_, vote.log_loss["members"]))}

    # ------------------------------------------------------------------------ predicting
    def predict_proba(self, X: ImageInputs | ArrayLike) -> np.ndarray:
        """Weighted mean of the members' (temperature-scaled) class probabilities.

        Parameters
        ----------
        X : ImageInputs or array-like
            What the members take (see :meth:`fit`).

        Returns
        -------
        numpy.ndarray of shape (n, n_classes)
            Columns in the order of ``classes_``; rows sum to 1.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        """
        check_is_fitted(self, "estimators_")
        return soft_vote(self._member_probas(X), self.temperatures_, self.weights_)

    # ------------------------------------------------------------------ the inference seam
    @property
    def members_(self) -> list[Member]:
        """The fitted members that vote, with their weights and temperatures.

        The same accessor as :attr:`SentimentClassifier.members_
        <wjsentiment.SentimentClassifier.members_>` (see :mod:`wjsentiment.inference`).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> X, y = np.r_[np.zeros((4, 2)), np.ones((4, 2))], [0] * 4 + [1] * 4
        >>> ens = SentimentEnsemble([("a", LogisticRegression()), ("b", LogisticRegression())],
        ...                         verbose=0).fit(X, y)
        >>> [(m.name, m.weight, m.temperature) for m in ens.members_]
        [('a', 0.5, 1.0), ('b', 0.5, 1.0)]
        """
        check_is_fitted(self, "estimators_")
        weights = normalised_weights(self.weights_, len(self.estimators_))
        return [Member(name, est, float(w), float(t)) for name, est, w, t in zip(
            self.named_estimators_, self.estimators_, weights, self.temperatures_)]

    def check_params(self) -> SentimentEnsemble:
        """Check the ensemble's and its members' parameters now, without fitting.

        Returns
        -------
        self : SentimentEnsemble
            This ensemble, unchanged.

        Raises
        ------
        ValueError
            For a bad value, naming the parameter.
        """
        self._validate_params()
        for _, est in self._members_spec():
            if hasattr(est, "check_params"):
                est.check_params()
        return self

    # ------------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> str:
        """Save the fitted ensemble to a folder: one sub-folder per member and a JSON file.

        Each member is saved as :meth:`SentimentClassifier.save
        <wjsentiment.SentimentClassifier.save>` would; ``ensemble.json`` holds the
        ensemble's parameters, member names, ``weights_``, ``temperatures_``,
        ``class_prior_`` and classes. The folder is built beside ``path``, synced to disk
        and swapped into place in one step, so a reader finds the old ensemble or the new
        one, never a part.

        Parameters
        ----------
        path : path-like
            Folder to write: a path that does not exist yet, an empty folder, or the folder
            of a model saved before (which the new one replaces).

        Returns
        -------
        str
            The folder written.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        TypeError
            If a member is not a :class:`~wjsentiment.SentimentClassifier` (pickle or joblib
            can store such ensembles).
        FileExistsError
            If ``path`` is a file, a symbolic link, or a folder that holds anything but a
            saved model; nothing is written.
        """
        check_is_fitted(self, "estimators_")
        members = []
        for i, (name, est) in enumerate(self.named_estimators_.items()):
            if type(est) is not SentimentClassifier:
                raise TypeError(f"Member {name!r} is a {type(est).__name__}; save() stores only "
                                "SentimentClassifier members. Use joblib.dump for other "
                                "ensembles.")
            state = _saved_state(est)
            # the device the member was given, not the GPU that fit spread it to
            state["params"]["device"] = getattr(self, "_moved_devices", {}).get(i, est.device)
            members.append((name, state, est.model_.state_dict()))
        params = self.get_params(deep=False)
        del params["estimators"]
        config = {
            "params": params,
            "default_estimators": self.estimators is None,
            "classes": self.classes_,
            "weights": self.weights_,
            "temperatures": self.temperatures_,
            "class_prior": self.class_prior_,
            "validation_log_loss": self.validation_log_loss_,
        }
        return str(save_ensemble(path, config, members))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> SentimentEnsemble:
        """Load an ensemble written by :meth:`save`. Nothing is unpickled or executed.

        Parameters
        ----------
        path : path-like
            Folder written by :meth:`save`.
        device : str, optional
            Override every member's saved ``device`` (e.g. "cpu").

        Returns
        -------
        SentimentEnsemble
            Fitted, predicting exactly as the saved one.

        Raises
        ------
        FileNotFoundError
            If ``path`` holds no saved ensemble.
        ModelFileError
            If ``ensemble.json`` or a member's files are damaged, edited into something
            invalid, of another kind of model or of a newer format; the message names the file.
        """
        config, saved = load_ensemble(path)
        names = [name for name, _ in saved]
        members = [_from_saved(SentimentClassifier, member, device) for _, member in saved]
        with model_file_errors(Path(path) / ENSEMBLE_FILE):
            estimators = None if config["default_estimators"] else \
                [(name, clone(est)) for name, est in zip(names, members)]
            ens = cls(estimators, **config["params"])
            ens._validate_params()
        ens.estimators_, ens.named_estimators_ = members, Bunch(**dict(zip(names, members)))
        ens.classes_ = config["classes"]
        ens.weights_ = np.array(config["weights"], dtype=float)
        ens.temperatures_ = np.array(config["temperatures"], dtype=float)
        ens.class_prior_ = np.array(config["class_prior"], dtype=float)
        ens.validation_log_loss_ = config["validation_log_loss"]
        return ens

    def export_onnx(self, path: str | os.PathLike, *, opset: int | None = None) -> str:
        """Write the whole soft vote (each member's network and temperature, and the
        weights) to one ONNX file; see :func:`wjsentiment.export.export_onnx`.

        Returns
        -------
        str
            The file written.
        """
        from .export import export_onnx

        return export_onnx(self, path, opset=opset)


# ---------------------------------------------------------------------------------- helpers
def _is_numeric_list(value: Any) -> bool:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return False
    return arr.dtype.kind in "iuf"  # (booleans are kind "b")


def _fit_member(est: Any, X: Any, y: np.ndarray, **metadata: np.ndarray | None) -> Any:
    """Fit one member, passing it those of ``groups`` and ``sample_weight`` its ``fit``
    takes."""
    taken = {k: v for k, v in metadata.items() if v is not None and has_fit_parameter(est, k)}
    return est.fit(X, y, **taken)


def _frequencies(y: np.ndarray, classes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each of ``classes``' share of the ``weights`` of ``y``."""
    mass = np.array([weights[np.asarray(y) == c].sum() for c in classes], dtype=float)
    return mass / mass.sum() if mass.sum() > 0 else mass


def _shared_classes(names: list[str], members: list[Any]) -> np.ndarray:
    ref, *classes = [np.asarray(est.classes_) for est in members]
    differ = [(name, c) for name, c in zip(names[1:], classes) if not np.array_equal(c, ref)]
    if differ:
        others = "; ".join(f"{name!r} has {c.tolist()}" for name, c in differ)
        raise InputError(f"The members disagree on classes_: {names[0]!r} has {ref.tolist()}; "
                         f"{others}. Every member must be fitted on the same labels.")
    return ref


__all__ = ["SentimentEnsemble", "default_estimators"]
