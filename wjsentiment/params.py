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

This module imports only the standard library and numpy, so the command line builds its
options (and ``--help``) without importing torch or scikit-learn: constraints are declared as
plain data (:class:`Range`, a frozenset of strings or of booleans, or scikit-learn's
constraint strings and types) and turned into scikit-learn's constraint objects on first use
(:attr:`Param.constraints`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["CLASSIFIER_PARAMS", "ENSEMBLE_PARAMS", "Cli", "Param", "Range", "check_params",
           "defaults", "describe"]

#: Classification heads (see :func:`wjsentiment.models.build_head`).
HEADS = ("linear", "mlp")
#: What ``finetune`` trains: every layer, or the head on frozen-backbone features.
FINETUNES = ("full", "head")
#: Optimizers (see :func:`wjsentiment.training.optim.make_optimizer`).
OPTIMIZERS = ("adamw", "sgd")
#: Learning-rate schedules (see :func:`wjsentiment.training.optim.lr_factor_schedule`).
LR_SCHEDULES = ("cosine", "constant")
#: Class-balanced sampling of each epoch's images.
SAMPLINGS = (None, "undersample", "oversample")
#: Calibration of the probabilities after training.
CALIBRATIONS = ("temperature", None)
#: How ``predict`` picks a class: "auto" is "balanced" after class-balanced training.
DECISIONS = ("auto", "balanced", "argmax")
#: Precisions the training loop and prediction run in.
PRECISIONS = ("auto", "fp32", "bf16")
#: Where images are decoded: "auto" (on the model's device when it is a CUDA device, for the
#: baseline JPEG files that nvJPEG decodes; on the host otherwise), "cpu" (always on the
#: host) or "cuda" (on the GPU for those files even when the model runs on the CPU).
DECODERS = ("auto", "cpu", "cuda")
#: What ``fit`` does with an image it cannot decode.
ON_BAD_IMAGE = ("raise", "skip")
#: What training does when the loss or the weights become non-finite.
ON_DIVERGENCE = ("raise", "restore")
#: Data-parallel training: "auto" (when torchrun started the process) or never.
DISTRIBUTED = ("auto", False)

#: The most decoding threads ``num_workers`` may ask for.
MAX_WORKERS = 256

_NO_VALUE: Any = object()


@dataclass(frozen=True)
class Range:
    """An interval of numbers: scikit-learn's ``Interval(type, left, right, closed=closed)``,
    declared without importing scikit-learn. ``None`` bounds are unbounded; an open bound at
    infinity refuses infinity (and every interval refuses NaN)."""

    type: type
    left: float | None
    right: float | None
    closed: str = "left"

    def __str__(self) -> str:
        opening, closing = _BRACKETS[self.closed]
        left = "-inf" if self.left is None else self.left
        right = "inf" if self.right is None else self.right
        return f"{opening}{left}, {right}{closing}"


#: The brackets of a :class:`Range` by its ``closed``.
_BRACKETS = {"left": "[)", "right": "(]", "both": "[]", "neither": "()"}


_POSITIVE_INT = Range(Integral, 1, None, closed="left")


@functools.cache
def _sklearn_constraints(specs: tuple) -> list:
    """scikit-learn's constraint objects for declared ``specs`` (one list per specs, reused, so
    ``_parameter_constraints`` compare equal however often they are asked for)."""
    # scikit-learn's constraint classes have no public import path; its own estimators and
    # third-party ones that use _parameter_constraints import them from here.
    from sklearn.utils._param_validation import Interval, Options, StrOptions

    def convert(spec: Any) -> Any:
        if isinstance(spec, Range):
            return Interval(spec.type, spec.left, spec.right, closed=spec.closed)
        if isinstance(spec, frozenset) and all(isinstance(o, bool) for o in spec):
            return Options(bool, set(spec))  # e.g. False alone, beside a string option
        if isinstance(spec, frozenset):
            return StrOptions(set(spec))
        return spec

    return [convert(spec) for spec in specs]


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
    specs: tuple = ()
    choices: tuple | None = None
    cli: Cli | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "specs", tuple(self.specs) or _choice_specs(self.choices or ()))

    @property
    def constraints(self) -> list:
        """The scikit-learn constraints (what ``_parameter_constraints`` holds)."""
        return _sklearn_constraints(self.specs)

    @property
    def option(self) -> str:
        """The command-line option, e.g. ``--batch-size`` or ``--no-augment``."""
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.default is True else f"--{dashed}"

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` satisfies one of the constraints."""
        from sklearn.utils._param_validation import make_constraint

        return any(make_constraint(c).is_satisfied_by(value) for c in self.constraints)


def _choice_specs(choices: tuple) -> tuple:
    strings = frozenset(c for c in choices if isinstance(c, str))
    flags = frozenset(c for c in choices if isinstance(c, bool))
    return ((strings,) if strings else ()) + ((None,) if None in choices else ()) + \
        (("boolean",) if True in flags else (flags,) if flags else ())


_MODEL, _TRAINING, _HARDWARE = Cli("model"), Cli("training"), Cli("hardware")

#: The parameters of :class:`~wjsentiment.SentimentClassifier`, in the order of its signature.
CLASSIFIER_PARAMS: tuple[Param, ...] = (
    Param("backbone", "resnet18", "any timm model name, e.g. resnet18, resnet152, "
          "tf_efficientnet_lite0", [str], cli=Cli("model", "NAME")),
    Param("weights", "imagenet", "'imagenet' (pretrained, from the cache or downloaded), "
          "'none' (random initialisation) or a .pth/.safetensors file",
          [None, str, os.PathLike], cli=Cli("model", "SOURCE")),
    Param("head", "linear", "classification head", choices=HEADS, cli=_MODEL),
    Param("finetune", "full", "'full' trains every layer; 'head' freezes the backbone (fast)",
          choices=FINETUNES, cli=_MODEL),
    Param("image_size", 224, "side of the square the images are resized to",
          [Range(Integral, 8, 4096, closed="both")], cli=Cli("model", "PX")),
    Param("grayscale", False, "train on grayscale images", ["boolean"], cli=_MODEL),
    Param("augment", True, "random resized crops and flips of the training batches",
          ["boolean"], cli=_MODEL),
    Param("epochs", 10, "passes over the training images", [_POSITIVE_INT],
          cli=Cli("training", "N")),
    Param("batch_size", 32, "images per training step", [_POSITIVE_INT],
          cli=Cli("training", "N")),
    Param("lr", 1e-3, "peak learning rate", [Range(Real, 0, None, closed="neither")],
          cli=Cli("training", "LR")),
    Param("weight_decay", 1e-4, "weight decay of the optimizer",
          [Range(Real, 0, None, closed="left")], cli=Cli("training", "WD")),
    Param("optimizer", "adamw", "optimizer", choices=OPTIMIZERS, cli=_TRAINING),
    Param("lr_schedule", "cosine", "'cosine': linear warm-up, then cosine decay to 0",
          choices=LR_SCHEDULES, cli=_TRAINING),
    Param("label_smoothing", 0.0, "label smoothing of the loss",
          [Range(Real, 0, 1, closed="left")], cli=Cli("training", "EPS")),
    Param("class_weight", None, "'balanced' weighs classes inversely to their frequency in "
          "the loss (a dict {class: weight} from Python)",
          [None, frozenset({"balanced"}), dict], choices=(None, "balanced"), cli=_TRAINING),
    Param("sampling", None, "draw the same number of images of every class per epoch",
          choices=SAMPLINGS, cli=_TRAINING),
    Param("validation_fraction", 0.0, "stratified holdout for validation curves, early "
          "stopping and calibration", [Range(Real, 0, 1, closed="left")],
          cli=Cli("training", "F")),
    Param("early_stopping", False, "stop when validation macro-F1 stops improving (needs a "
          "validation fraction)", ["boolean"], cli=_TRAINING),
    Param("n_iter_no_change", 5, "patience of early stopping, in epochs", [_POSITIVE_INT],
          cli=Cli("training", "N")),
    Param("calibration", "temperature", "fit a temperature on held-out images so "
          "probabilities are calibrated, or not", choices=CALIBRATIONS, cli=_TRAINING),
    Param("decision", "auto", "how predict picks a class: 'balanced' divides the probabilities "
          "by the class frequencies (macro-F1), 'argmax' does not (accuracy)",
          choices=DECISIONS, cli=_TRAINING),
    Param("device", "auto", "auto, cpu, cuda, cuda:1, ...", [str], cli=_HARDWARE),
    Param("precision", "auto", "'auto': bf16 autocast on CUDA, fp32 on CPU",
          choices=PRECISIONS, cli=_HARDWARE),
    Param("num_workers", "auto", "image decoding threads ('auto': see "
          "wjsentiment.set_config(decode_threads=...))",
          [frozenset({"auto"}), Range(Integral, 1, MAX_WORKERS, closed="both")],
          cli=Cli("hardware", "N")),
    Param("decoder", "auto", "where JPEG files are decoded: 'auto' on the model's CUDA device "
          "(nvJPEG), else on the host", choices=DECODERS, cli=_HARDWARE),
    Param("on_bad_image", "raise", "stop at an unreadable image, or skip it with a warning",
          choices=ON_BAD_IMAGE, cli=_TRAINING),
    Param("on_divergence", "raise", "when the loss becomes NaN/inf: stop with an error, or "
          "keep the last good epoch's weights", choices=ON_DIVERGENCE, cli=_TRAINING),
    Param("cuda_graphs", "auto", "replay the CUDA train step from a graph",
          ["boolean", frozenset({"auto"})]),
    Param("distributed", "auto", "'auto': train data-parallel when torchrun started several "
          "processes; False: each process trains on its own", choices=DISTRIBUTED, cli=_HARDWARE),
    Param("random_state", None, "seed for reproducible training", ["random_state"],
          cli=Cli("training", "SEED")),
    Param("verbose", 1, "0 is silent; 1 shows progress",
          [Range(Integral, 0, None, closed="left")]),
    Param("callbacks", None, "objects told of every epoch (see wjsentiment.training.Callback)",
          [None, list]),
)

#: The parameters of :class:`~wjsentiment.SentimentEnsemble`, in the order of its signature.
ENSEMBLE_PARAMS: tuple[Param, ...] = (
    Param("estimators", None, "the members, as (name, estimator) pairs", [list, tuple, None]),
    Param("weights", None, "None (equal), 'auto' (fitted) or one weight per member",
          [None, frozenset({"auto"}), "array-like"]),
    Param("calibrate", False, "fit one temperature per member on the holdout", ["boolean"]),
    Param("validation_fraction", 0.15, "share of the data held out for calibrate and "
          "weights='auto'", [Range(Real, 0, 1, closed="neither")]),
    Param("n_jobs", None, "threads running members on separate GPUs",
          [None, _POSITIVE_INT, Range(Integral, None, -1, closed="right")]),
    Param("verbose", 1, "0 is silent; 1 shows progress over members",
          [Range(Integral, 0, None, closed="left")]),
    Param("decision", "auto", "how predict picks a class from the soft vote", choices=DECISIONS),
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
#: How :func:`describe` words scikit-learn's constraint strings (and None).
_SPEC_WORDS = {None: "None", "boolean": "True or False", "array-like": "a list of numbers",
               "random_state": "None, an int in [0, 2**32 - 1] or a numpy RandomState"}


def _spec_text(spec: Any) -> str:
    if isinstance(spec, frozenset):
        return ", ".join(repr(o) for o in sorted(spec))
    if isinstance(spec, Range):
        return f"{'an int' if spec.type is Integral else 'a number'} in {spec}"
    if isinstance(spec, type):
        article = "an" if spec.__name__[0] in "aeiou" else "a"
        return f"{article} {spec.__name__}"
    return _SPEC_WORDS.get(spec, str(spec))


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
    ranges = [c for c in param.specs if isinstance(c, Range)]
    number = isinstance(value, Real) and not isinstance(value, bool)
    if ranges and number and not np.isfinite(value):
        return "a finite number"
    if param.specs == tuple(ranges[:1]) and value is not _NO_VALUE \
            and not isinstance(value, ranges[0].type):
        return "an int" if ranges[0].type is Integral else "a number"
    options_only = all(c is None or c == "boolean" or isinstance(c, frozenset)
                       for c in param.specs)
    if param.choices is not None and options_only:
        return f"one of {list(param.choices)}"
    if len(param.specs) == 1 and ranges:
        return f"in {ranges[0]}"
    parts = [_spec_text(c) for c in param.specs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def check_params(params: Sequence[Param], values: Mapping[str, Any], caller: str) -> None:
    """Check ``values`` against the constraints of ``params``, in their order.

    The error is scikit-learn's ``InvalidParameterError`` (a ValueError) with scikit-learn's
    message, followed by what the parameter allows in the words of :func:`describe`.

    Raises
    ------
    InvalidParameterError
        For the first parameter whose value satisfies none of its constraints.

    Examples
    --------
    >>> check_params(CLASSIFIER_PARAMS, {"head": "big"},
    ...              "SentimentClassifier")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'head' parameter of \
SentimentClassifier must be a str among {...}. Got 'big' instead. head must be one of \
['linear', 'mlp'].
    """
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

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
