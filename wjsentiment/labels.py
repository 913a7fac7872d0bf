"""The five sentiment labels, in ordinal order, and label-string normalisation."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The five sentiment classes, from most negative to most positive.
SENTIMENT_LABELS: tuple[str, ...] = (
    "Highly negative",
    "Negative",
    "Neutral",
    "Positive",
    "Highly positive",
)

_CANONICAL = {re.sub(r"[\s_\-]+", " ", label.lower()): label for label in SENTIMENT_LABELS}


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
    key = re.sub(r"[\s_\-]+", " ", str(label).strip().lower())
    try:
        return _CANONICAL[key]
    except KeyError:
        raise ValueError(
            f"Unknown sentiment label {str(label)!r}; expected one of {list(SENTIMENT_LABELS)}."
        ) from None


def label_order(labels: Iterable[object]) -> list[str]:
    """Sort sentiment labels by ordinal position (most negative first).

    Examples
    --------
    >>> label_order(["Positive", "Negative"])
    ['Negative', 'Positive']
    """
    return sorted({normalize_label(x) for x in labels}, key=SENTIMENT_LABELS.index)
