"""Per-class (stratified) splits and class balancing, returning index arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ..exceptions import InputError

__all__ = ["balance", "stratified_split"]

_BALANCE_STRATEGIES = ("undersample", "oversample")


def _encoded(y: Any, name: str = "y") -> tuple[np.ndarray, int]:
    """Integer codes of the labels ``y`` (in the sorted order of its values) and their count."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputError(
            f"{name} must be one-dimensional (one label per sample), got shape {arr.shape}."
        )
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty; pass at least one label.")
    try:
        uniques, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise InputError(
            f"{name} mixes values that cannot be compared ({exc}); use labels of one type."
        ) from None
    return codes.reshape(-1), len(uniques)


def _rng(random_state: Any) -> np.random.Generator | np.random.RandomState:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return check_random_state(random_state)


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence):
        raise InputError(
            f"fractions must be a sequence of floats such as (0.8, 0.2), got {fractions!r}."
        )
    try:
        values = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise InputError(f"fractions must hold numbers, got {fractions!r}.") from None
    if not values:
        raise InputError("fractions is empty; pass e.g. (0.8, 0.2).")
    if not all(math.isfinite(value) and value > 0 for value in values):
        raise InputError(f"fractions must all be positive, got {fractions!r}.")
    if abs(sum(values) - 1.0) > 1e-6:
        raise InputError(f"fractions must sum to 1, but {fractions!r} sums to {sum(values):.6g}.")
    return values


def _part_size(fraction: float, n: int) -> int:
    """``floor(fraction * n)``, forgiving float error just below an integer."""
    return int(math.floor(fraction * n + 1e-9))


def stratified_split(
    y: Any,
    fractions: Sequence[float] = (0.8, 0.15, 0.05),
    *,
    random_state: Any = None,
    groups: Any = None,
) -> tuple[np.ndarray, ...]:
    """Split sample indices into parts with the same class proportions.

    Within each class, indices are shuffled; every part after the first receives
    ``floor(fraction * n_class)`` of them and the first part receives the rest. So
    ``(0.8, 0.2)`` gives a test part of exactly ``floor(0.2 * n)`` samples per class.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    fractions : sequence of float, default=(0.8, 0.15, 0.05)
        Relative size of each part (for example train, validation, test). All must be
        positive and they must sum to 1.
    random_state : int, RandomState, Generator or None, default=None
        Controls the shuffling; pass an int for reproducible splits.
    groups : array-like of shape (n_samples,), optional
        Group of each sample (for example the emoji id shared by its two drawings).
        When given, whole groups go to one part: each group counts for the class most
        of its samples have, and parts after the first are filled with whole groups
        to about ``fraction * n_class`` samples, so counts are approximate.

    Returns
    -------
    tuple of ndarray of int
        One sorted index array per fraction; together they hold every index once.

    Raises
    ------
    ValueError
        If ``y`` is empty or not one-dimensional, if ``fractions`` are not positive
        numbers summing to 1, or if ``groups`` does not match ``y`` in length.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array(["a"] * 10 + ["b"] * 5)
    >>> train, test = stratified_split(y, (0.8, 0.2), random_state=0)
    >>> len(train), len(test)
    (12, 3)
    >>> np.unique(y[test], return_counts=True)[1].tolist()
    [2, 1]
    """
    codes, n_classes = _encoded(y)
    parts = _check_fractions(fractions)
    rng = _rng(random_state)
    if groups is not None:
        return _grouped_split(codes, n_classes, groups, parts, rng)

    part = np.zeros(len(codes), dtype=np.intp)  # the part of each sample
    for c in range(n_classes):
        members = rng.permutation(np.flatnonzero(codes == c))
        sizes = [_part_size(f, len(members)) for f in parts[1:]]
        part[members[: sum(sizes)]] = np.repeat(np.arange(1, len(parts)), sizes)
    return _indices(part, len(parts))


def _indices(part: np.ndarray, n_parts: int) -> tuple[np.ndarray, ...]:
    """The sorted sample indices of each part, given the part of each sample."""
    return tuple(np.flatnonzero(part == j).astype(np.intp) for j in range(n_parts))


def _grouped_split(
    codes: np.ndarray,
    n_classes: int,
    groups: Any,
    parts: list[float],
    rng: np.random.Generator | np.random.RandomState,
) -> tuple[np.ndarray, ...]:
    gcodes, n_groups = _encoded(groups, "groups")
    if gcodes.shape[0] != codes.shape[0]:
        raise InputError(
            f"groups has {gcodes.shape[0]} entries but y has {codes.shape[0]}; "
            "pass one group per sample."
        )
    # Samples of each (group, class); a group counts for its majority class (ties: the first).
    counts = np.bincount(gcodes.astype(np.int64) * n_classes + codes,
                         minlength=n_groups * n_classes).reshape(n_groups, n_classes)
    group_class, group_size = counts.argmax(axis=1), counts.sum(axis=1)

    assignment = np.zeros(n_groups, dtype=np.intp)
    for c in range(n_classes):
        class_groups = rng.permutation(np.flatnonzero(group_class == c))
        n = int(group_size[class_groups].sum())
        targets = [_part_size(f, n) for f in parts]
        filled = [0] * len(parts)
        for g in class_groups:
            size = int(group_size[g])
            for j in range(1, len(parts)):
                if filled[j] + size / 2 <= targets[j]:
                    assignment[g] = j
                    filled[j] += size
                    break
    return _indices(assignment[gcodes], len(parts))


def balance(y: Any, strategy: str = "undersample", *, random_state: Any = None) -> np.ndarray:
    """Return sample indices that give every class the same count.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    strategy : {"undersample", "oversample"}, default="undersample"
        ``"undersample"`` draws, without replacement, as many samples of each class
        as the rarest class has. ``"oversample"`` keeps every sample and tops each
        class up to the size of the largest class by drawing with replacement.
    random_state : int, RandomState, Generator or None, default=None
        Controls the sampling; pass an int for reproducible results.

    Returns
    -------
    ndarray of int
        Sorted indices into ``y`` (with repeats when oversampling).

    Raises
    ------
    ValueError
        If ``strategy`` is unknown or ``y`` is empty or not one-dimensional.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array(["a", "a", "a", "b"])
    >>> idx = balance(y, random_state=0)
    >>> sorted(y[idx].tolist())
    ['a', 'b']
    >>> sorted(y[balance(y, "oversample", random_state=0)].tolist())
    ['a', 'a', 'a', 'b', 'b', 'b']
    """
    if strategy not in _BALANCE_STRATEGIES:
        raise InputError(
            f"Unknown strategy {strategy!r}; expected one of {list(_BALANCE_STRATEGIES)}."
        )
    rng = _rng(random_state)
    codes, n_classes = _encoded(y)
    members = [np.flatnonzero(codes == c) for c in range(n_classes)]
    if strategy == "undersample":
        least = min(len(m) for m in members)
        chosen = [rng.choice(m, size=least, replace=False) for m in members]
    else:
        most = max(len(m) for m in members)
        chosen = members + [rng.choice(m, size=most - len(m), replace=True) for m in members]
    return np.sort(np.concatenate(chosen)).astype(np.intp)
