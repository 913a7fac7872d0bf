"""wjsentiment: image sentiment classification for scikit-learn users.

Classify images as Highly negative, Negative, Neutral, Positive or Highly positive with a
scikit-learn estimator around a fine-tuned timm backbone.

The estimators are imported on first use, so that ``import wjsentiment`` (and the command
line's ``--help``) does not wait for torch.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import config_context, get_config, set_config
from .labels import SENTIMENT_LABELS

if TYPE_CHECKING:
    from .ensemble import SentimentEnsemble
    from .estimator import SentimentClassifier
    from .image_features import ImageFeatures

__version__ = "0.1.0"

__all__ = ["SENTIMENT_LABELS", "ImageFeatures", "SentimentClassifier", "SentimentEnsemble",
           "__version__", "config_context", "get_config", "load", "set_config"]

_LAZY = {"SentimentClassifier": ".estimator", "SentimentEnsemble": ".ensemble",
         "ImageFeatures": ".image_features"}


def load(path: str | os.PathLike, device: str | None = None) -> Any:
    """Load what :meth:`SentimentClassifier.save` or :meth:`SentimentEnsemble.save` wrote.

    A folder with an ``ensemble.json`` holds an ensemble; any other a single classifier.

    Parameters
    ----------
    path : path-like
        The saved folder (e.g. ``runs/demo/model``).
    device : str, optional
        Override the saved device (e.g. "cpu").

    Returns
    -------
    SentimentClassifier or SentimentEnsemble
        Fitted, predicting exactly as the saved one.

    Examples
    --------
    >>> load("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: No saved wjsentiment model at 'no/such/folder'...
    """
    from .persistence import ENSEMBLE_FILE

    if (Path(path) / ENSEMBLE_FILE).is_file():
        return __getattr__("SentimentEnsemble").load(path, device=device)
    return __getattr__("SentimentClassifier").load(path, device=device)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
