"""The errors and warnings wjsentiment raises, so callers can catch and filter them by name.

Every error derives from :class:`WjsentimentError` and keeps the built-in base it always had
(``except ValueError`` still catches a :class:`BadImageError`); every warning derives from
:class:`WjsentimentWarning`, a ``UserWarning``. For example, to silence the calibration
warning of small fits::

    import warnings
    from wjsentiment.exceptions import CalibrationWarning
    warnings.simplefilter("ignore", CalibrationWarning)

This module imports only the standard library, so every part of the package may use it.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings

__all__ = ["BadImageError", "CalibrationWarning", "CudaGraphWarning", "DivergenceWarning",
           "DownloadWarning", "FeatureCacheWarning", "InputError", "ModelFileError",
           "QuantizationWarning", "SkippedImagesWarning", "TrainingDivergedError",
           "WeightsUnavailableError", "WjsentimentError", "WjsentimentWarning"]


class WjsentimentError(Exception):
    """The base of every error wjsentiment raises on purpose.

    Catch it to tell the package's refusals (a bad input, a damaged model file, training
    that diverged) from bugs.
    """


class InputError(WjsentimentError, ValueError):
    """An input the library refuses (a value, a path, a file of the wrong kind); the
    message names it and says what to pass instead."""


class BadImageError(WjsentimentError, ValueError):
    """An input could not be decoded as an image.

    Attributes
    ----------
    source : str
        A short description of the input (its path, or its position for in-memory images).
    reason : str
        What went wrong.
    hint : str
        What to do about it (the estimator says what applies where it met the image).

    Examples
    --------
    >>> str(BadImageError("'a.png'", "it is empty"))
    "Cannot use image 'a.png': it is empty. Fix or remove it."
    """

    def __init__(self, source: str, reason: str, hint: str = "Fix or remove it.") -> None:
        self.source = source
        self.reason = reason
        self.hint = hint
        super().__init__(f"Cannot use image {source}: {reason}. {hint}")


_DAMAGED = ("The file is damaged or was edited by hand: restore the model folder from a good "
            "copy, or fit and save the model again.")


class ModelFileError(WjsentimentError, ValueError):
    """A saved model's file is damaged, edited into something invalid, or of another kind.

    Raised by ``SentimentClassifier.load``, ``SentimentEnsemble.load``, ``wjsentiment.load``
    and ``wjsentiment.export.load_onnx`` for every problem with what a model file holds (a
    missing folder or file stays a ``FileNotFoundError``).

    Attributes
    ----------
    path : str
        The file at fault.
    problem : str
        What is wrong with it.

    Examples
    --------
    >>> str(ModelFileError("m/config.json", "it is empty (0 bytes)", "Save it again."))
    "Cannot load 'm/config.json': it is empty (0 bytes). Save it again."
    """

    def __init__(self, path: str | os.PathLike, problem: str, advice: str = _DAMAGED) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"Cannot load {self.path!r}: {problem}. {advice}")


class TrainingDivergedError(WjsentimentError, FloatingPointError):
    """Training produced a non-finite loss or non-finite weights.

    Raised at the end of the epoch in which it happened, so that no model with NaN or
    infinite weights is ever returned.

    Attributes
    ----------
    epoch : int
        The epoch (from 1) in which training diverged.
    step : int or None
        The first step (from 1, within the epoch) whose loss was not finite; None when every
        loss was finite but the weights were not afterwards.
    """

    def __init__(self, epoch: int, step: int | None, steps: int, detail: str = "") -> None:
        self.epoch, self.step = epoch, step
        where = (f"the loss became non-finite at epoch {epoch}, step {step} of {steps}"
                 if step is not None else
                 f"the weights became non-finite during epoch {epoch}")
        super().__init__(
            f"Training diverged: {where}{detail}. Lower lr (or use lr_schedule='cosine', "
            "which warms up), or pass on_divergence='restore' to keep the weights of the last "
            "epoch that ended with finite values."
        )


class WeightsUnavailableError(WjsentimentError, RuntimeError):
    """Pretrained weights could not be found in a cache nor downloaded."""


# ------------------------------------------------------------------------------ warnings
class WjsentimentWarning(UserWarning):
    """The base of every warning wjsentiment gives."""


class CalibrationWarning(WjsentimentWarning):
    """Too few held-out images to fit a temperature: the probabilities stay uncalibrated."""


class SkippedImagesWarning(WjsentimentWarning):
    """``fit`` left out images it could not decode (``on_bad_image="skip"``)."""


class DivergenceWarning(WjsentimentWarning, RuntimeWarning):
    """Training diverged and ``on_divergence="restore"`` kept an earlier epoch's weights."""


class CudaGraphWarning(WjsentimentWarning, RuntimeWarning):
    """Capturing the train step in a CUDA graph failed; training goes on without it."""


class DownloadWarning(WjsentimentWarning):
    """Something about a download folder that the downloader replaced or worked around."""


class QuantizationWarning(WjsentimentWarning):
    """An int8 model does not keep the parity with its float model (see
    :func:`wjsentiment.quantize.export_int8`)."""


class FeatureCacheWarning(WjsentimentWarning, RuntimeWarning):
    """A file of the frozen-feature cache could not be read and is ignored, or its folder
    could not be locked and features are computed without the lock."""


def _library_folders() -> tuple[str, ...]:
    """Folders whose frames a warning skips: this package's and those that call into it
    (scikit-learn's fit wrappers and model selection, joblib's workers)."""
    files = [getattr(sys.modules.get(name), "__file__", None)
             for name in ("wjsentiment", "sklearn", "joblib")]
    return tuple(os.path.dirname(file) + os.sep for file in files if file)


def warn(message: str, category: type[Warning]) -> None:
    """Warn as from the first caller outside wjsentiment (and scikit-learn and joblib), so
    the warning points at the user's line whatever the depth of the call that gave it.

    (Python 3.12's ``warnings.warn(skip_file_prefixes=...)`` does this; the package also
    supports Python 3.10 and 3.11.)

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("a test", CalibrationWarning)
    >>> caught[0].category.__name__
    'CalibrationWarning'
    """
    skip = _library_folders()
    here = inspect.currentframe()  # None on Pythons without frames: then the direct caller
    frame, level = (here.f_back, 2) if here is not None else (None, 2)
    while frame is not None and frame.f_back is not None \
            and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
