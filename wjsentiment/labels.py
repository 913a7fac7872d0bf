"""The five sentiment labels, in ordinal order; label-string normalisation; ordinal order of
classes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .exceptions import InputError

__all__ = ["SENTIMENT_LABELS", "normalize_label", "ordinal_labels", "sentiment_positions"]

#: The five sentiment classes, from most negative to most positive.
SENTIMENT_LABELS: tuple[str, ...] = (
    "Highly negative",
    "Negative",
    "Neutral",
    "Positive",
    "Highly positive",
)



def _key(label: object) -> str:
    """What two spellings of one label have in common: lower case, words split by spaces."""
    return re.sub(r"[\s_\-]+", " ", str(label).strip().lower())


_CANONICAL = {_key(label): label for label in SENTIMENT_LABELS}


def normalize_label(label: object) -> str:
    """Return the canonical spelling of a sentiment label.

    Case, surrounding spaces, underscores and hyphens are ignored, so
    ``"highly_positive"`` and ``" Highly Positive "`` both give ``"Highly positive"``.

    Parameters
    ----------
    label : object
        A label string.

    Returns
    -------
    str
        One of :data:`SENTIMENT_LABELS`.

    Raises
    ------
    ValueError
        If ``label`` is not one of the five sentiment labels.

    Examples
    --------
    >>> normalize_label("highly_positive")
    'Highly positive'
    """
    try:
        return _CANONICAL[_key(label)]
    except KeyError:
        raise InputError(
            f"Unknown sentiment label {str(label)!r}; expected one of {list(SENTIMENT_LABELS)}."
        ) from None


def sentiment_positions(labels: Sequence[Any]) -> list[int] | None:
    """Ordinal position (0 = Highly negative .. 4 = Highly positive) of each label.

    Spelling is normalised as in :func:`normalize_label`.

    Parameters
    ----------
    labels : sequence
        Class labels.

    Returns
    -------
    list of int or None
        None if any label is not a sentiment label.

    Examples
    --------
    >>> sentiment_positions(["Positive", "highly_negative"])
    [3, 0]
    >>> sentiment_positions(["cat", "dog"]) is None
    True
    """
    try:
        return [SENTIMENT_LABELS.index(normalize_label(label)) for label in labels]
    except ValueError:
        return None


def ordinal_labels(classes: Sequence[Any]) -> list[Any]:
    """Classes in ordinal sentiment order when they are all sentiment labels, else as given.

    Examples
    --------
    >>> ordinal_labels(["Negative", "Highly positive", "Neutral"])
    ['Negative', 'Neutral', 'Highly positive']
    >>> ordinal_labels(["b", "a"])
    ['b', 'a']
    """
    classes = list(classes)
    positions = sentiment_positions(classes)
    if positions is None:
        return classes
    return [classes[i] for i in sorted(range(len(classes)), key=lambda i: positions[i])]
