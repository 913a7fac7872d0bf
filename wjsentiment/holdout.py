"""The held-out split both estimators use for validation, calibration and ensemble weights.

One function, so that :class:`~wjsentiment.SentimentClassifier` and
:class:`~wjsentiment.SentimentEnsemble` split the same way: stratified by class, and with
``groups`` whole groups on one side (both drawings of an emoji, near-duplicate photos), so
the held-out score is not inflated by images whose twin was trained on.
"""

from __future__ import annotations

import numpy as np

from .datasets.splits import stratified_split
from .exceptions import InputError

__all__ = ["holdout_split"]


def holdout_split(y: np.ndarray, fraction: float, *, groups: np.ndarray | None = None,
                  random_state: int | None = None,
                  name: str = "validation_fraction") -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into a training part and a held-out ``fraction``.

    Per class, ``floor(fraction * n_class)`` samples are held out (about that many with
    ``groups``, whose groups go whole to one side); see
    :func:`wjsentiment.datasets.stratified_split`. The held-out part is empty when every class
    is too small to give one sample.

    Parameters
    ----------
    y : numpy.ndarray of shape (n_samples,)
        Labels.
    fraction : float
        In (0, 1).
    groups : numpy.ndarray of shape (n_samples,), optional
        Group of each sample.
    random_state : int, optional
        Seed of the split.
    name : str, default="validation_fraction"
        The parameter named in error messages.

    Returns
    -------
    train, held_out : numpy.ndarray of int
        Sorted indices.

    Raises
    ------
    ValueError
        If nothing would be left to train on, or ``groups`` has a single group.

    Examples
    --------
    >>> y = np.array([0] * 10 + [1] * 10)
    >>> train, held = holdout_split(y, 0.2, groups=np.arange(20) // 2, random_state=0)
    >>> len(held), len(set((np.arange(20) // 2)[held]) & set((np.arange(20) // 2)[train]))
    (4, 0)
    """
    names = None if groups is None else set(np.asarray(groups).tolist())
    if names is not None and len(names) == 1:
        raise InputError(f"groups puts all {len(y)} images in one group ({names.pop()!r}), so "
                         f"{name}={fraction} cannot hold any out without splitting it: pass "
                         "one group per set of related images, or no groups.")
    train, held = stratified_split(y, (1.0 - fraction, fraction), random_state=random_state,
                                   groups=groups)
    if len(train) == 0:
        raise InputError(f"{name}={fraction} leaves no image to train on; use a smaller "
                         "fraction or more images.")
    return train, held
