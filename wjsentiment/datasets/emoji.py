"""A small offline image sentiment dataset: emoji drawings labelled by tweet sentiment."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from wjsentiment.labels import SENTIMENT_LABELS, normalize_label

from ..exceptions import InputError

__all__ = ["load_emoji_sentiment"]

_ROOT = Path(__file__).parent / "data" / "emoji_sentiment"
_STYLES = ("twitter", "google")

_DESCR = """\
Emoji sentiment images
----------------------

461 emoji, each drawn in two styles -- Twitter's Twemoji ("twitter") and Google's
Noto Emoji ("google") -- as 64x64 RGBA PNG files, 922 images in all. Each emoji is
labelled with one of five sentiment classes from its score in the Emoji Sentiment
Ranking v1.0, built from 1.6 million tweets annotated by 83 people:
score = (positive - negative) / occurrences, and
Highly negative < -0.25 <= Negative < 0.05 <= Neutral < 0.30 <= Positive < 0.55
<= Highly positive. Only emoji seen in at least 5 tweets are kept.

Per style: Positive 158, Highly positive 116, Neutral 106, Negative 61,
Highly negative 20. Both drawings of one emoji share its label, so split by
``groups`` (the emoji code point, e.g. with sklearn's GroupKFold), never by image,
or the test set leaks. The labels are noisy: they come from tweet context, not from
the picture alone.

Attribution and licences:

- Twemoji graphics: Copyright Twitter, Inc. and other contributors, CC-BY 4.0
  (https://creativecommons.org/licenses/by/4.0/).
- Noto Emoji graphics: Copyright Google Inc., Apache License 2.0.
- Emoji Sentiment Ranking v1.0: P. Kralj Novak, J. Smailovic, B. Sluban,
  I. Mozetic, "Sentiment of Emojis", PLoS ONE 10(12): e0144296 (2015), CC BY-SA 4.0.
"""


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
    frame["label"] = [normalize_label(x) for x in frame["label"]]
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
        DESCR=_DESCR,
    )
