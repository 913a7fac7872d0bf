"""Each parameter of the estimators, declared once.

A :class:`Param` holds a parameter's name, default, scikit-learn constraints, one-line help
and how the command line exposes it. From :data:`CLASSIFIER_PARAMS` come
:class:`~wjsentiment.SentimentClassifier`'s ``_parameter_constraints``, the defaults its
``__init__`` must have (a test compares them), the training configuration
(:class:`~wjsentiment.training.loop.TrainConfig` takes the parameters of the same names) and
the options of ``wjsentiment fit`` with their types, choices and defaults.
:data:`ENSEMBLE_PARAMS` does the same for :class:`~wjsentiment.SentimentEnsemble`.
Adding a parameter is one declaration here plus the code that uses it.

The lists of allowed values (:data:`HEADS`, :data:`OPTIMIZERS`, ...) are declared here too,
and the modules that act on them import them from here.

This module imports only the standard library, numpy and scikit-learn, so the command line
can build its options without importing torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np

# scikit-learn's constraint classes and their error have no public import path; its own
# estimators and third-party ones that use ``_parameter_constraints`` import them from here.
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    make_constraint,
    validate_parameter_constraints,
)

__all__ = ["CLASSIFIER_PARAMS", "ENSEMBLE_PARAMS", "Cli", "Param", "check_params", "defaults",
           "describe"]

#: Classification heads (see :func:`wjsentiment.models.build_head`).
HEADS = ("linear", "mlp")
#: What ``finetune`` trains: every layer, or the head on frozen-backbone features.
FINETUNES = ("full", "head")
#: Optimizers (see :func:`wjsentiment.training.optim.make_optimizer`).
OPTIMIZERS = ("adamw", "sgd")
#: Learning-rate schedules (see :func:`wjsentiment.training.optim.lr_factor`).
LR_SCHEDULES = ("cosine", "constant")
#: Class-balanced sampling of each epoch's images.
SAMPLINGS = (None, "undersample", "oversample")
#: Calibration of the probabilities after training.
CALIBRATIONS = ("temperature", None)
#: How ``predict`` picks a class: "auto" is "balanced" after class-balanced training.
DECISIONS = ("auto", "balanced", "argmax")
#: Weight averaging during training: None, or an exponential moving average.
AVERAGING = (None, "ema")
#: Test-time augmentation: None, or the mean logits of an image and its mirror.
TTA = (None, "flip")
#: Precisions the training loop and prediction run in.
PRECISIONS = ("auto", "fp32", "bf16")
#: What ``fit`` does with an image it cannot decode.
ON_BAD_IMAGE = ("raise", "skip")
#: What training does when the loss or the weights become non-finite.
ON_DIVERGENCE = ("raise", "restore")

_POSITIVE_INT = Interval(Integral, 1, None, closed="left")
_NO_VALUE: Any = object()


@dataclass(frozen=True)
class Cli:
    """How ``wjsentiment fit`` exposes a parameter: as ``--<name-with-dashes>`` (a boolean
    that defaults to True as ``--no-<name>``) in the help ``group``, with ``metavar``."""

    group: str
    metavar: str | None = None


@dataclass(frozen=True)
class Param:
    """One estimator parameter: name, default, constraints, help, and its command-line form.

    ``choices`` declares a parameter whose values form a list (its constraints then come
    from it, in that order for messages and the command line). ``cli`` is None for
    parameters the command line does not expose.
    """

    name: str
    default: Any
    help: str
    constraints: list = field(default_factory=list)
    choices: tuple | None = None
    cli: Cli | None = None

    def __post_init__(self) -> None:
        if self.choices is not None and not self.constraints:
            object.__setattr__(self, "constraints", _choice_constraints(self.choices))

    @property
    def option(self) -> str:
        """The command-line option, e.g. ``--batch-size`` or ``--no-augment``."""
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.default is True else f"--{dashed}"

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` satisfies one of the constraints."""
        return any(make_constraint(c).is_satisfied_by(value) for c in self.constraints)


def _choice_constraints(choices: tuple) -> list:
    strings = {c for c in choices if isinstance(c, str)}
    return ([StrOptions(strings)] if strings else []) + \
        ([None] if None in choices else []) + (["boolean"] if True in choices else [])


def _choice(name: str, default: Any, choices: tuple, help: str,
            cli: Cli | None = None) -> Param:
    return Param(name, default, help, choices=choices, cli=cli)


_MODEL, _TRAINING, _HARDWARE = Cli("model"), Cli("training"), Cli("hardware")

#: The parameters of :class:`~wjsentiment.SentimentClassifier`, in the order of its signature.
CLASSIFIER_PARAMS: tuple[Param, ...] = (
    Param("backbone", "resnet18", "any timm model name, e.g. resnet18, resnet152, "
          "tf_efficientnet_lite0", [str], cli=Cli("model", "NAME")),
    Param("weights", "imagenet", "'imagenet' (pretrained, from the cache or downloaded), "
          "'none' (random initialisation) or a .pth/.safetensors file",
          [None, str, os.PathLike], cli=Cli("model", "SOURCE")),
    _choice("head", "linear", HEADS, "classification head", _MODEL),
    _choice("finetune", "full", FINETUNES,
            "'full' trains every layer; 'head' freezes the backbone (fast)", _MODEL),
    Param("image_size", 224, "side of the square the images are resized to",
          [Interval(Integral, 8, 4096, closed="both")], cli=Cli("model", "PX")),
    Param("grayscale", False, "train on grayscale images", ["boolean"], cli=_MODEL),
    Param("augment", True, "random resized crops and flips of the training batches",
          ["boolean"], cli=_MODEL),
    Param("epochs", 10, "passes over the training images", [_POSITIVE_INT],
          cli=Cli("training", "N")),
    Param("batch_size", 32, "images per training step", [_POSITIVE_INT],
          cli=Cli("training", "N")),
    Param("lr", 1e-3, "peak learning rate", [Interval(Real, 0, None, closed="neither")],
          cli=Cli("training", "LR")),
    Param("weight_decay", 1e-4, "weight decay of the optimizer",
          [Interval(Real, 0, None, closed="left")], cli=Cli("training", "WD")),
    _choice("optimizer", "adamw", OPTIMIZERS, "optimizer", _TRAINING),
    _choice("lr_schedule", "cosine", LR_SCHEDULES,
            "'cosine': linear warm-up, then cosine decay to 0", _TRAINING),
    Param("label_smoothing", 0.0, "label smoothing of the loss",
          [Interval(Real, 0, 1, closed="left")], cli=Cli("training", "EPS")),
    Param("class_weight", None, "'balanced' weighs classes inversely to their frequency in "
          "the loss (a dict {class: weight} from Python)",
          [None, StrOptions({"balanced"}), dict], choices=(None, "balanced"), cli=_TRAINING),
    _choice("sampling", None, SAMPLINGS,
            "draw the same number of images of every class per epoch", _TRAINING),
    Param("validation_fraction", 0.0, "stratified holdout for validation curves, early "
          "stopping and calibration", [Interval(Real, 0, 1, closed="left")],
          cli=Cli("training", "F")),
    Param("early_stopping", False, "stop when validation macro-F1 stops improving (needs a "
          "validation fraction)", ["boolean"], cli=_TRAINING),
    Param("n_iter_no_change", 5, "patience of early stopping, in epochs", [_POSITIVE_INT],
          cli=Cli("training", "N")),
    _choice("calibration", "temperature", CALIBRATIONS,
            "fit a temperature on held-out images so probabilities are calibrated, or not",
            _TRAINING),
    _choice("decision", "auto", DECISIONS,
            "how predict picks a class: 'balanced' divides the probabilities by the class "
            "frequencies (macro-F1), 'argmax' does not (accuracy)", _TRAINING),
    _choice("averaging", None, AVERAGING,
            "'ema': use an exponential moving average of the weights", _TRAINING),
    _choice("tta", None, TTA, "'flip': average the logits of each image and its mirror",
            _TRAINING),
    Param("device", "auto", "auto, cpu, cuda, cuda:1, ...", [str], cli=_HARDWARE),
    _choice("precision", "auto", PRECISIONS, "'auto': bf16 autocast on CUDA, fp32 on CPU",
            _HARDWARE),
    Param("num_workers", "auto", "image decoding threads ('auto': see "
          "wjsentiment.set_config(decode_threads=...))",
          [StrOptions({"auto"}), _POSITIVE_INT], cli=Cli("hardware", "N")),
    _choice("on_bad_image", "raise", ON_BAD_IMAGE,
            "stop at an unreadable image, or skip it with a warning", _TRAINING),
    _choice("on_divergence", "raise", ON_DIVERGENCE,
            "when the loss becomes NaN/inf: stop with an error, or keep the last good "
            "epoch's weights", _TRAINING),
    Param("cuda_graphs", "auto", "replay the CUDA train step from a graph",
          ["boolean", StrOptions({"auto"})]),
    Param("random_state", None, "seed for reproducible training", ["random_state"],
          cli=Cli("training", "SEED")),
    Param("verbose", 1, "0 is silent; 1 shows progress",
          [Interval(Integral, 0, None, closed="left")]),
)

#: The parameters of :class:`~wjsentiment.SentimentEnsemble`, in the order of its signature.
ENSEMBLE_PARAMS: tuple[Param, ...] = (
    Param("estimators", None, "the members, as (name, estimator) pairs", [list, tuple, None]),
    Param("weights", None, "None (equal), 'auto' (fitted) or one weight per member",
          [None, StrOptions({"auto"}), "array-like"]),
    Param("calibrate", False, "fit one temperature per member on the holdout", ["boolean"]),
    Param("validation_fraction", 0.15, "share of the data held out for calibrate and "
          "weights='auto'", [Interval(Real, 0, 1, closed="neither")]),
    Param("n_jobs", None, "threads running members on separate GPUs",
          [None, _POSITIVE_INT, Interval(Integral, None, -1, closed="right")]),
    Param("verbose", 1, "0 is silent; 1 shows progress over members",
          [Interval(Integral, 0, None, closed="left")]),
    _choice("decision", "auto", DECISIONS, "how predict picks a class from the soft vote"),
)


def defaults(params: Sequence[Param]) -> dict[str, Any]:
    """The default of each parameter, by name.

    Examples
    --------
    >>> defaults(CLASSIFIER_PARAMS)["batch_size"]
    32
    """
    return {p.name: p.default for p in params}


def constraints(params: Sequence[Param]) -> dict[str, list]:
    """The ``_parameter_constraints`` of an estimator with these parameters."""
    return {p.name: p.constraints for p in params}


# ------------------------------------------------------------------------ what is allowed
def _interval_text(interval: Interval) -> str:
    left = "-inf" if interval.left is None else f"{interval.left}"
    right = "inf" if interval.right is None else f"{interval.right}"
    opening = "[" if interval.closed in ("left", "both") else "("
    closing = "]" if interval.closed in ("right", "both") else ")"
    return f"{opening}{left}, {right}{closing}"


def _constraint_text(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, StrOptions):
        return ", ".join(repr(o) for o in sorted(constraint.options))
    if isinstance(constraint, Interval):
        kind = "an int" if constraint.type is Integral else "a number"
        return f"{kind} in {_interval_text(constraint)}"
    if constraint == "random_state":
        return "None, an int in [0, 2**32 - 1] or a numpy RandomState"
    if constraint == "boolean":
        return "True or False"
    if constraint == "array-like":
        return "a list of numbers"
    if isinstance(constraint, type):
        article = "an" if constraint.__name__[0] in "aeiou" else "a"
        return f"{article} {constraint.__name__}"
    return str(constraint)


def _joined(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def describe(param: Param, value: Any = _NO_VALUE) -> str:
    """What ``param`` allows, as the end of "``<name> must be ...``".

    Given the refused ``value``, a non-finite number or a value of the wrong type is named
    as such.

    Examples
    --------
    >>> by_name = {p.name: p for p in CLASSIFIER_PARAMS}
    >>> describe(by_name["head"])
    "one of ['linear', 'mlp']"
    >>> describe(by_name["label_smoothing"])
    'in [0, 1)'
    >>> describe(by_name["lr"], float("nan")), describe(by_name["lr"], "fast")
    ('a finite number', 'a number')
    """
    intervals = [c for c in param.constraints if isinstance(c, Interval)]
    number = isinstance(value, Real) and not isinstance(value, bool)
    if intervals and number and not np.isfinite(value):
        return "a finite number"
    if param.constraints == intervals[:1] and value is not _NO_VALUE \
            and not isinstance(value, intervals[0].type):
        return "an int" if intervals[0].type is Integral else "a number"
    options_only = all(c is None or c == "boolean" or isinstance(c, StrOptions)
                       for c in param.constraints)
    if param.choices is not None and options_only:
        return f"one of {list(param.choices)}"
    if len(param.constraints) == 1 and intervals:
        return f"in {_interval_text(intervals[0])}"
    return _joined([_constraint_text(c) for c in param.constraints])


def check_params(params: Sequence[Param], values: Mapping[str, Any], caller: str) -> None:
    """Check ``values`` against the constraints of ``params``, in their order.

    The error is scikit-learn's :class:`~sklearn.utils._param_validation.InvalidParameterError`
    (a ValueError) with scikit-learn's message, followed by what the parameter allows in
    the words of :func:`describe`.

    Raises
    ------
    InvalidParameterError
        For the first parameter whose value satisfies none of its constraints.

    Examples
    --------
    >>> check_params(CLASSIFIER_PARAMS, {"head": "big"}, "SentimentClassifier")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'head' parameter of \
SentimentClassifier must be a str among {'linear', 'mlp'}. Got 'big' instead. head must be \
one of ['linear', 'mlp'].
    """
    for param in params:
        if param.name not in values:
            continue
        try:
            validate_parameter_constraints({param.name: param.constraints},
                                           {param.name: values[param.name]}, caller_name=caller)
        except InvalidParameterError as exc:
            value = values[param.name]
            raise InvalidParameterError(
                f"{exc} {param.name} must be {describe(param, value)}.") from None
