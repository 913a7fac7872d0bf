"""The CrowdFlower / Figure Eight "Image Sentiment Polarity" dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from sklearn.utils import Bunch

from wjsentiment.datasets.download import DownloadReport, download_images
from wjsentiment.labels import SENTIMENT_LABELS

from ..exceptions import InputError

__all__ = ["fetch_image_sentiment"]

_DATA = Path(__file__).parent / "data" / "crowdflower"  # DESCR.rst: the dataset's description
_METADATA = _DATA / "image-sentiment-polarity.csv.gz"
_LABEL_COL = "which_of_these_sentiment_scores_does_the_above_image_fit_into_best"
_SUBDIR = "crowdflower"
#: The shipped CSV's columns, and the names ``frame`` gives them.
_COLUMNS = {"_unit_id": "unit_id", _LABEL_COL: "label", f"{_LABEL_COL}:confidence": "confidence",
            "_golden": "golden", "_trusted_judgments": "judgments", "imageurl": "url"}


def _resolve_data_home(data_home: str | os.PathLike[str] | None) -> Path:
    """Return ``data_home``, else ``$WJSENTIMENT_DATA``, else ``~/wjsentiment_data``."""
    if data_home is None:
        data_home = os.environ.get("WJSENTIMENT_DATA") or os.path.join("~", "wjsentiment_data")
    return Path(data_home).expanduser().resolve()


def _load_metadata() -> pd.DataFrame:
    """The shipped metadata, in the columns of ``frame`` (unit_id, label, ..., url)."""
    raw = pd.read_csv(_METADATA, usecols=list(_COLUMNS),
                      dtype={_LABEL_COL: object, "imageurl": object})
    return raw.rename(columns=_COLUMNS)[list(_COLUMNS.values())]


def fetch_image_sentiment(
    data_home: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    min_confidence: float = 0.0,
    include_golden: bool = True,
    n_jobs: int = 16,
    timeout: float = 10.0,
    deadline: float | None = None,
    retries: int = 3,
    verbose: int = 1,
) -> Bunch:
    """Load the CrowdFlower image sentiment dataset, downloading missing images.

    The metadata ships with the package, so this works offline with
    ``download=False``. Images are stored as ``data_home/crowdflower/images/<unit_id>.jpg``;
    only missing ones are fetched, so a second call downloads nothing new.

    Parameters
    ----------
    data_home : str or path-like, optional
        Folder for downloaded data. Defaults to ``$WJSENTIMENT_DATA`` if set,
        else ``~/wjsentiment_data``.
    download : bool, default=True
        Fetch the selected images that are not on disk yet. With ``False`` nothing is
        fetched and only images already on disk are returned.
    min_confidence : float, default=0.0
        Keep only rows whose label confidence is at least this value (0 to 1).
    include_golden : bool, default=True
        Keep the 613 "golden" test-question rows.
    n_jobs : int, default=16
        Maximum number of downloads in flight at once.
    timeout : float, default=10.0
        Seconds to wait for a connection and for each read of an answer.
    deadline : float, optional
        Seconds one image may take in all, retries included; a server that keeps sending a
        trickle of bytes is abandoned then. Default ten times ``timeout`` (see
        :func:`~wjsentiment.datasets.download_images`).
    retries : int, default=3
        Extra attempts for transient download failures.
    verbose : int, default=1
        ``0`` is silent; ``1`` shows a download progress bar.

    Returns
    -------
    sklearn.utils.Bunch
        With keys:

        - ``frame``: DataFrame with columns ``unit_id``, ``label``, ``confidence``,
          ``golden``, ``judgments``, ``url``, ``path`` (where the image is or would be)
          and ``available`` (whether it is on disk), one row per selected image;
        - ``paths``: list of str, the images on disk;
        - ``target``: ndarray of label strings, aligned with ``paths``;
        - ``target_names``: the five labels, most negative first;
        - ``DESCR``: description, licence and the dead-link caveat;
        - ``download_report``: :class:`DownloadReport`, or ``None`` if
          ``download=False``.

    Raises
    ------
    ValueError
        If ``min_confidence`` is not a number between 0 and 1, or a download
        argument is out of range.

    Examples
    --------
    >>> import tempfile
    >>> ds = fetch_image_sentiment(tempfile.mkdtemp(), download=False, min_confidence=0.66)
    >>> len(ds.frame), len(ds.paths)
    (13150, 0)
    >>> ds.target_names[0]
    'Highly negative'
    """
    if (
        isinstance(min_confidence, bool)
        or not isinstance(min_confidence, (int, float))
        or not 0.0 <= float(min_confidence) <= 1.0
    ):
        raise InputError(f"min_confidence must be a number from 0 to 1, got {min_confidence!r}.")

    frame = _load_metadata()
    keep = frame["confidence"] >= float(min_confidence)
    if not include_golden:
        keep &= ~frame["golden"]
    frame = frame.loc[keep].reset_index(drop=True)

    image_dir = _resolve_data_home(data_home) / _SUBDIR / "images"
    filenames = [f"{unit_id}.jpg" for unit_id in frame["unit_id"]]
    frame["path"] = [str(image_dir / name) for name in filenames]

    report: DownloadReport | None = None
    if download:
        report = download_images(
            frame["url"].tolist(),
            image_dir,
            filenames=filenames,
            n_jobs=n_jobs,
            timeout=timeout,
            deadline=deadline,
            retries=retries,
            verbose=verbose,
        )
    frame["available"] = [os.path.isfile(p) for p in frame["path"]]

    on_disk = frame.loc[frame["available"]]
    return Bunch(
        frame=frame,
        paths=on_disk["path"].tolist(),
        target=on_disk["label"].to_numpy(dtype=object),
        target_names=list(SENTIMENT_LABELS),
        DESCR=(_DATA / "DESCR.rst").read_text(encoding="utf-8"),
        download_report=report,
    )
