"""Frozen-backbone features, computed once per (backbone, weights, image size, image).

With ``finetune="head"`` only the head trains, so the backbone's output for an image never
changes: it is computed once and every epoch, fold and clone reuses it. The table hangs off
the decoded-image store it was computed from and goes away with it. With a cache folder
(``wjsentiment.set_config(feature_cache_dir=...)``), features also go to disk and later
processes read them from there (:mod:`~wjsentiment.models.feature_files`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..batches import ImageBatches, autocast, split_batches
from ..images import decode as image_decode
from ..images.cache import DecodedImageStore
from ..images.decode import input_key
from ..progress import progress
from .feature_files import FeatureFiles, clear_feature_files, feature_cache_dir, image_digest
from .network import SentimentNet

#: Store -> (weights key, precision) -> input key -> feature vector. By input key, not by
#: store row: the store reuses the rows of evicted images.
_TABLES: weakref.WeakKeyDictionary[DecodedImageStore, dict[tuple, dict[tuple, np.ndarray]]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def weights_key(backbone: str, weights: str | os.PathLike | None, weights_source: str,
                seed: int | None) -> tuple | None:
    """What identifies a backbone and its weights in the frozen-feature cache.

    Estimators that build the same backbone with the same weights get the same key, so they
    share features: a classifier with ``finetune="head"`` and an
    :class:`~wjsentiment.ImageFeatures` transformer, clones, folds.

    Parameters
    ----------
    backbone : str
        The timm model name.
    weights : "imagenet", None or path
        As given to :func:`~wjsentiment.models.backbones.create_backbone`.
    weights_source : str
        Where the weights came from (its ``info["weights_source"]``): ImageNet weights from
        the Hugging Face cache, a weight package or a download may differ, and features kept
        on disk outlive the process.
    seed : int or None
        The seed the random initialisation of ``weights=None`` was drawn with; None when it
        was not fixed (the features are then not cached: nothing could ask for them again).

    Returns
    -------
    tuple or None
        The key for :func:`frozen_features`; None disables its cache.

    Examples
    --------
    >>> weights_key("resnet18", None, "random initialisation", seed=3)
    ('resnet18', 'random', 3)
    >>> weights_key("resnet18", None, "random initialisation", seed=None) is None
    True
    """
    if weights is None:
        return None if seed is None else (backbone, "random", seed)
    if isinstance(weights, str) and weights == "imagenet":
        return (backbone, "imagenet", weights_source)
    return (backbone, input_key(os.fspath(weights)))


@torch.inference_mode()
def _compute(net: SentimentNet, store: DecodedImageStore, rows: np.ndarray,
             device: torch.device, precision: str, batch_size: int, verbose: int) -> np.ndarray:
    was_training = net.training
    net.eval()
    source = ImageBatches(store, rows, device, resident=False)  # one pass: stream it
    batches = split_batches(np.arange(len(rows)), batch_size)
    out = []
    with autocast(device, precision), \
            progress(len(batches), "backbone features", "batch", verbose) as bar:
        for x in source.iterate(batches):
            out.append(net.features(x).float())  # stays on the device: no sync per batch
            bar.update(1)
    net.train(was_training)
    return torch.cat(out).cpu().numpy()


def frozen_features(
    net: SentimentNet,
    weights_key: tuple | None,
    store: DecodedImageStore,
    rows: np.ndarray,
    device: torch.device,
    precision: str,
    batch_size: int = 64,
    verbose: int = 0,
) -> np.ndarray:
    """Backbone features of the images at ``rows`` of ``store``, computing only new ones.

    Parameters
    ----------
    net : SentimentNet
        Network whose (frozen) backbone gives the features.
    weights_key : tuple or None
        Identifies the backbone and its weights. None disables the cache (used for random
        weights without a seed, and for loaded models).
    store : DecodedImageStore
        Where the decoded images are.
    rows : numpy.ndarray
        Store rows of the images, pinned by the caller. Features are kept by the rows'
        input keys, so they stay right when the store gives a row to another image.
    device, precision, batch_size, verbose
        How to run the backbone.

    Returns
    -------
    numpy.ndarray
        Float32 array of shape ``(len(rows), num_features)``.
    """
    rows = np.asarray(rows, dtype=np.int64)

    def compute(subset: np.ndarray) -> np.ndarray:
        return _compute(net, store, subset, device, precision, batch_size, verbose)

    if weights_key is None:
        return compute(rows)
    key = (weights_key, precision)
    keys = store.input_keys(rows)
    first_row = dict(zip(keys, rows.tolist()))  # one row per image, whatever its repeats
    with _LOCK:
        table = _TABLES.setdefault(store, {}).setdefault(key, {})
        missing_keys = sorted((k for k in first_row if k not in table), key=first_row.get)
    if missing_keys:
        missing = np.array([first_row[k] for k in missing_keys], dtype=np.int64)
        values = _load_or_compute(key, store, missing, compute)
        with _LOCK:
            table.update(zip(missing_keys, values))
    with _LOCK:
        return np.stack([table[k] for k in keys])


def feature_table(root: Path, key: tuple, store: DecodedImageStore) -> FeatureFiles:
    """The folder of ``root`` that holds the features of ``key``'s backbone on ``store``'s
    images.

    The host decoder is part of what the features depend on: its resize rounds pixels
    differently from PIL's.
    """
    return FeatureFiles(root, (key, store.size, store.grayscale, image_decode.HOST_DECODER))


def _load_or_compute(key: tuple, store: DecodedImageStore, rows: np.ndarray,
                     compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Features of ``rows``: read from the cache folder where there, computed (by
    ``compute``, and saved) where not.

    Computing happens under the table's lock (:meth:`FeatureFiles.locked`), after a second
    look at the folder: another process may have written the missing features meanwhile.
    """
    root = feature_cache_dir()
    if root is None:
        return compute(rows)
    files = feature_table(root, key, store)
    digests = [image_digest(k) for k in store.input_keys(rows)]
    found, stored = files.read(digests)
    if all(found[i] or digests[i] is None for i in range(len(rows))):
        # Nothing another process could write: all there, or inputs known by identity only.
        return _fill(files, digests, found, stored, rows, compute)
    with files.locked():
        found, stored = files.read(digests)
        return _fill(files, digests, found, stored, rows, compute)


def _fill(files: FeatureFiles, digests: list[bytes | None], found: np.ndarray,
          stored: np.ndarray | None, rows: np.ndarray,
          compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The features of ``rows``: ``stored`` where ``found``, the others computed and saved."""
    todo = np.flatnonzero(~found)
    if len(todo):
        computed = compute(rows[todo])
        files.write([digests[i] for i in todo], computed)
        if stored is None:  # none was found: ``computed`` holds every row
            return computed
        stored[todo] = computed
    return stored


def clear_feature_cache(disk: bool = False) -> None:
    """Forget every cached backbone feature.

    Parameters
    ----------
    disk : bool, default=False
        Also delete the features stored in the cache folder, if one is set.

    Examples
    --------
    >>> clear_feature_cache()
    """
    with _LOCK:
        _TABLES.clear()
    if disk:
        clear_feature_files()
