"""Datasets for image sentiment: the CrowdFlower data, an offline emoji set, your own images.

- :func:`fetch_image_sentiment`: the CrowdFlower "Image Sentiment Polarity" data
  (metadata shipped; images downloaded on demand with :func:`download_images`).
- :func:`load_emoji_sentiment`: 922 emoji images shipped with the package (offline).
- :func:`load_image_folder` / :func:`load_image_csv`: your own labelled images.
- :func:`iter_image_files`: the image files under a folder (the walk every command uses).
- :func:`stratified_split` / :func:`balance`: per-class splits and class balancing.
"""

from wjsentiment.datasets.crowdflower import fetch_image_sentiment
from wjsentiment.datasets.download import DownloadReport, default_filename, download_images
from wjsentiment.datasets.emoji import load_emoji_sentiment
from wjsentiment.datasets.folders import (
    SkippedEntry,
    iter_image_files,
    load_image_csv,
    load_image_folder,
)
from wjsentiment.datasets.splits import balance, stratified_split

__all__ = [
    "DownloadReport",
    "SkippedEntry",
    "balance",
    "default_filename",
    "download_images",
    "fetch_image_sentiment",
    "iter_image_files",
    "load_emoji_sentiment",
    "load_image_csv",
    "load_image_folder",
    "stratified_split",
]
