"""The checks both estimators make of what ``fit`` and ``predict`` are given.

:class:`~wjsentiment.SentimentClassifier` and :class:`~wjsentiment.SentimentEnsemble` check
``X``, ``y``, ``groups`` and ``sample_weight`` here, so that they refuse the same things with
the same messages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
from scipy.sparse import issparse
from sklearn.utils.multiclass import check_classification_targets

from .exceptions import InputError
from .images.decode import ImageInput

__all__ = ["ImageInputs", "as_image_inputs", "check_groups", "check_labels", "check_targets",
           "n_samples", "take"]

#: What the estimators take as ``X``: a sequence of image paths, PIL images or uint8 arrays
#: (a list, tuple, 1-D array, pandas Series or one-column DataFrame), or one uint8 array of
#: shape ``(n, height, width, 3)``.
ImageInputs = Union[Sequence[ImageInput], np.ndarray]  # noqa: UP007 - a runtime alias


def as_image_inputs(X: Any, name: str = "X") -> list:
    """Turn X into a list of image inputs (paths, PIL images or uint8 arrays).

    Accepts a 1-D sequence (list, tuple, 1-D array, pandas Series or one-column DataFrame)
    of paths or PIL images, or a uint8 array of shape ``(n, H, W, 3)``.

    Raises
    ------
    ValueError
        If X is empty or of another shape.

    Examples
    --------
    >>> len(as_image_inputs(np.zeros((2, 8, 8, 3), dtype=np.uint8)))
    2
    """
    if issparse(X):
        raise InputError(
            f"{name} is a sparse matrix; sparse input is not supported. Pass images: a sequence "
            "of paths or PIL images, or a uint8 array of shape (n, H, W, 3)."
        )
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:
        if X.shape[1] != 1:
            raise InputError(
                f"{name} is a DataFrame with {X.shape[1]} columns; pass the one column that holds "
                "image paths, e.g. df['path']."
            )
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):
        X = X.to_numpy()
    if isinstance(X, np.ndarray):
        items = _array_items(X, name)
    elif isinstance(X, (str, os.PathLike)):
        raise InputError(
            f"{name} is a single path ({X!r}); pass a list of paths, e.g. [{X!r}], or use "
            "wjsentiment.datasets.load_image_folder for a folder."
        )
    elif isinstance(X, Sequence) or hasattr(X, "__iter__"):
        items = list(X)
    else:
        raise InputError(f"{name} must be a sequence of images, got {type(X).__name__}.")
    if len(items) == 0:
        raise InputError(f"{name} is empty: pass at least one image.")
    return items


def _array_items(X: np.ndarray, name: str) -> list:
    if X.ndim == 4 and X.shape[-1] in (3, 4) and X.dtype == np.uint8:
        if X.size == 0 and len(X) > 0:
            raise InputError(f"{name} is a uint8 array of shape {X.shape}, with a dimension of "
                             "size 0: every image needs at least one pixel. Pass images of "
                             "shape (n, H, W, 3) with H and W >= 1.")
        return list(X)
    if X.ndim == 1:
        return X.tolist()
    raise InputError(
        f"{name} must be a 1-D sequence of image paths or PIL images, or a uint8 array "
        f"of shape (n, H, W, 3); got an array of shape {X.shape} and dtype {X.dtype}."
    )


def check_labels(y: np.ndarray) -> None:
    """Refuse labels that cannot be sorted into classes: missing ones or a mix of types.

    numpy would otherwise fail with a TypeError about ``<`` between types.

    Examples
    --------
    >>> check_labels(np.array(["Positive", None], dtype=object))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.exceptions.InputError: y has 1 missing label(s) (None or NaN), the first at ...
    """
    try:
        np.unique(y)
    except TypeError:
        values = y.tolist()
        missing = [i for i, v in enumerate(values)
                   if v is None or (isinstance(v, float) and math.isnan(v))]
        if missing:
            raise InputError(
                f"y has {len(missing)} missing label(s) (None or NaN), the first at position "
                f"{missing[0]}; give every image a label, or leave unlabelled images out."
            ) from None
        kinds = sorted({type(v).__name__ for v in values})
        raise InputError(f"y mixes labels of types {kinds}, which cannot be ordered into "
                         "classes; give every label the same type, e.g. str.") from None


def check_targets(y: Any, n: int, unit: str = "image") -> np.ndarray:
    """``y`` as a 1-D array of class labels, one per sample of X.

    Parameters
    ----------
    y : array-like
        The labels.
    n : int
        The number of samples of X.
    unit : str, default="image"
        What a sample is called in messages ("image" or "sample").

    Raises
    ------
    ValueError
        If ``y`` is not 1-D, its length is not ``n``, a label is missing, the labels mix
        types (ints and strings, say), or they are not class labels (floats such as 0.5).

    Examples
    --------
    >>> check_targets(["a", "b"], 3)
    Traceback (most recent call last):
    ...
    wjsentiment.exceptions.InputError: X has 3 images but y has 2 labels; they must match.
    """
    labels, y = y, np.asarray(y)
    if y.dtype.kind == "U" and not isinstance(labels, np.ndarray):
        # numpy turns [1, "a"] into strings: check the labels as they were given
        check_labels(np.asarray(labels, dtype=object))
    if y.ndim != 1:
        raise InputError(f"y must be 1-D (one label per {unit}), got shape {y.shape}.")
    if len(y) != n:
        raise InputError(f"X has {n} {unit}s but y has {len(y)} labels; they must match.")
    check_labels(y)
    check_classification_targets(y)
    return y


def check_groups(groups: Any, n: int) -> np.ndarray | None:
    """``groups`` as a 1-D array of one group per sample, or None.

    Raises
    ------
    ValueError
        If ``groups`` is not 1-D or its length differs from ``n``.

    Examples
    --------
    >>> check_groups(["a", "a", "b"], 3).tolist()
    ['a', 'a', 'b']
    """
    if groups is None:
        return None
    arr = np.asarray(groups)
    if arr.ndim != 1 or len(arr) != n:
        raise InputError(f"groups must be 1-D with one group per image: got shape {arr.shape} "
                         f"for {n} images.")
    return arr


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """``sample_weight`` as a float array of one weight per sample; all ones when None.

    Raises
    ------
    ValueError
        If the weights are not numbers, not 1-D with one per sample, or not finite and
        non-negative with at least one above 0.

    Examples
    --------
    >>> check_sample_weight(None, 2).tolist(), check_sample_weight([0, 2], 2).tolist()
    ([1.0, 1.0], [0.0, 2.0])
    """
    if sample_weight is None:
        return np.ones(n)
    try:
        weights = np.asarray(sample_weight, dtype=float)
    except (TypeError, ValueError):
        raise InputError("sample_weight must hold numbers, one weight per sample.") from None
    if weights.shape != (n,):
        raise InputError(f"sample_weight must be 1-D with one weight per sample: got shape "
                         f"{weights.shape} for {n} samples.")
    if not np.isfinite(weights).all() or (weights < 0).any() or not weights.any():
        raise InputError("sample_weight must be finite and non-negative, with at least one "
                         f"weight above 0; got values from {weights.min()} to {weights.max()}.")
    return weights


def check_fit_inputs(X: Any, y: Any, groups: Any, sample_weight: Any, unit: str = "image"
                     ) -> tuple[Any, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Check what ``fit`` is given beside ``X`` (:func:`check_targets`, :func:`check_groups`,
    :func:`check_sample_weight`) and leave out the samples of weight 0, so that they count
    as absent from ``X``.

    Returns
    -------
    X, y, groups, weights, present
        What is left (``X``, ``y`` and ``groups`` themselves when no weight is 0), and the
        positions in ``X`` of what is left.

    Examples
    --------
    >>> X, y, groups, weights, present = check_fit_inputs(["a", "b"], [0, 1], None,
    ...                                                    [0.0, 2.0])
    >>> X, y.tolist(), weights.tolist(), present.tolist()
    (['b'], [1], [2.0], [1])
    """
    n = n_samples(X)
    y, groups = check_targets(y, n, unit), check_groups(groups, n)
    weights = check_sample_weight(sample_weight, n)
    present = np.flatnonzero(weights)
    if len(present) < n:
        X, y, weights = take(X, present), y[present], weights[present]
        groups = None if groups is None else groups[present]
    return X, y, groups, weights, present


def n_samples(X: Any) -> int:
    """The number of samples of X: its first dimension, or its length.

    Examples
    --------
    >>> n_samples(np.zeros((5, 2))), n_samples(["a.jpg", "b.jpg"])
    (5, 2)
    """
    return X.shape[0] if hasattr(X, "shape") else len(X)


def take(X: Any, indices: np.ndarray) -> Any:
    """The samples of X at ``indices``, in the type of X (array, sparse matrix, DataFrame or
    Series, list).

    scikit-learn's ``_safe_indexing`` does this but is private; this covers what the
    estimators are given.

    Examples
    --------
    >>> take(["a", "b", "c"], np.array([2, 0]))
    ['c', 'a']
    """
    if hasattr(X, "iloc"):
        return X.iloc[indices]
    if hasattr(X, "shape"):  # numpy arrays, sparse matrices
        return X[indices]
    return [X[i] for i in np.asarray(indices).tolist()]
