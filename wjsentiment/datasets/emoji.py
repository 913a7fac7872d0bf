"""A small offline image sentiment dataset: emoji drawings labelled by tweet sentiment."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from wjsentiment.labels import SENTIMENT_LABELS

from ..exceptions import InputError

__all__ = ["load_emoji_sentiment"]

_ROOT = Path(__file__).parent / "data" / "emoji_sentiment"  # DESCR.rst: the description
_STYLES = ("twitter", "google")


def _check_styles(styles: str | Iterable[str]) -> list[str]:
    chosen = [styles] if isinstance(styles, str) else list(styles)
    if not chosen:
        raise InputError(f"styles is empty; pick one or more of {list(_STYLES)}.")
    unknown = [s for s in chosen if s not in _STYLES]
    if unknown:
        raise InputError(f"Unknown style(s) {unknown}; expected a subset of {list(_STYLES)}.")
    return list(dict.fromkeys(chosen))


def load_emoji_sentiment(
    *, styles: str | Iterable[str] = ("twitter", "google"), return_X_y: bool = False
) -> Bunch | tuple[list[str], np.ndarray]:
    """Load the shipped emoji sentiment images (works offline).

    Parameters
    ----------
    styles : str or iterable of str, default=("twitter", "google")
        Which drawings to include: ``"twitter"`` (Twemoji), ``"google"`` (Noto Emoji)
        or both.
    return_X_y : bool, default=False
        If True, return ``(paths, target)`` instead of a Bunch.

    Returns
    -------
    sklearn.utils.Bunch or tuple
        A Bunch with keys ``paths`` (list of absolute str paths to PNG files),
        ``target`` (ndarray of label strings), ``groups`` (ndarray of emoji ids; the
        two styles of one emoji share it), ``frame`` (DataFrame with the label table
        and a ``path`` column), ``target_names`` (the five labels, most negative
        first) and ``DESCR`` (description, attribution and licences).
        With ``return_X_y=True``: the tuple ``(paths, target)``.

    Raises
    ------
    ValueError
        If ``styles`` is empty or names an unknown style.

    Examples
    --------
    >>> ds = load_emoji_sentiment()
    >>> len(ds.paths), ds.target_names[-1]
    (922, 'Highly positive')
    >>> paths, y = load_emoji_sentiment(styles="google", return_X_y=True)
    >>> len(paths)
    461
    """
    chosen = _check_styles(styles)
    table = pd.read_csv(_ROOT / "labels.csv", dtype={"emoji_id": str, "image": str, "style": str})
    frame = table.loc[table["style"].isin(chosen)].reset_index(drop=True)
    frame["path"] = [str((_ROOT / rel).resolve()) for rel in frame["image"]]

    paths = frame["path"].tolist()
    target = frame["label"].to_numpy(dtype=object)
    if return_X_y:
        return paths, target
    return Bunch(
        paths=paths,
        target=target,
        groups=frame["emoji_id"].to_numpy(dtype=object),
        frame=frame,
        target_names=list(SENTIMENT_LABELS),
        DESCR=(_ROOT / "DESCR.rst").read_text(encoding="utf-8"),
    )
