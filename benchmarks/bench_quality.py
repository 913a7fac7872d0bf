"""Model quality on held-out emoji: 5-fold StratifiedGroupKFold over the shipped emoji set.

Every recipe is fitted on the same five folds (split by emoji, so both drawings of an emoji
are on one side) and scored on the fold it did not see: macro-F1, accuracy and log-loss per
fold (mean +- standard error over the folds), the paired difference of each to the anchor
(frozen EfficientNet-Lite0 features + logistic regression), and the top-label expected
calibration error (ECE, 10 bins) of the pooled out-of-fold predictions, next to the ECE a
perfectly calibrated model would score on the same bins (labels drawn from its own
probabilities).

Recipes:

- ``prior``: predicts the majority class, with the training class frequencies as probabilities.
- ``logreg``: frozen ``tf_efficientnet_lite0`` ImageNet features at 96 px +
  ``LogisticRegression(class_weight="balanced")``, C chosen by an inner grouped 3-fold CV.
- ``head``: :class:`~wjsentiment.SentimentClassifier` with ``finetune="head"`` on the same
  backbone (the library's cheap recipe).
- ``ensemble``: the demo's calibrated ensemble (:func:`wjsentiment.demo.demo_ensemble`); its
  members are reported too, as ``ensemble/<member>``.
- ``lite0``, ``lite1``: one member of that ensemble, fitted alone (same seed and settings).
- Any recipe can take modifiers after ``+``, which set estimator parameters:
  ``+nocal`` (calibration=None), ``+head`` (a head on frozen features: finetune="head",
  30 epochs, lr 3e-3), ``+seed<k>`` (random_state=k).

With calibration on, the same fitted model is also scored with its temperature set to 1
(``uncalibrated_log_loss``, ``uncalibrated_ece``).

Each (recipe, fold) is cached as JSON in ``--cache-dir``, so a run can be resumed or extended
with more recipes; the summary is computed from the cache. Below the table come paired
differences between recipes on the same folds (``--pairs A:B``, mean +- se of A - B): by
default the ensemble against each of its members, and each ``<recipe>+<modifier>`` against
``<recipe>`` when both were run.

Usage::

    python benchmarks/bench_quality.py --json benchmarks/results/quality.json
    python benchmarks/bench_quality.py --recipes ensemble logreg prior --folds 5
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import _common  # noqa: F401 - puts the checkout first on sys.path
import numpy as np
import torch
from _common import format_table, log, machine_info, write_json
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wjsentiment import SentimentClassifier, SentimentEnsemble
from wjsentiment.calibration import decide
from wjsentiment.datasets import load_emoji_sentiment
from wjsentiment.demo import DEMO_IMAGE_SIZE, DEMO_MEMBERS, SMOKE_PARAMS, demo_ensemble
from wjsentiment.evaluation import expected_calibration_error, predictions_from_proba
from wjsentiment.persistence import atomic_file

#: The anchor every recipe is compared with, fold by fold.
ANCHOR = "logreg"
#: Folds of the outer split and its seed.
N_FOLDS = 5
SPLIT_SEED = 0
#: Draws of labels from a model's own probabilities for the ECE floor.
FLOOR_DRAWS = 200
#: What each ``+modifier`` sets.
MODIFIERS = {"nocal": {"calibration": None},
             "head": {"finetune": "head", "epochs": 30, "lr": 3e-3}}
LOGREG_C = np.logspace(-3, 1, 9)
#: The library's cheap recipe: a linear head on frozen lite0 features.
HEAD_PARAMS = {"backbone": "tf_efficientnet_lite0", "weights": "imagenet", "finetune": "head",
               "image_size": DEMO_IMAGE_SIZE, "class_weight": "balanced", "epochs": 30,
               "lr": 3e-3}


# --------------------------------------------------------------------------------- recipes
def _modifiers(name: str) -> tuple[str, dict]:
    base, *mods = name.split("+")
    params: dict = {}
    for mod in mods:
        seed = re.fullmatch(r"seed(\d+)", mod)
        if seed:
            params["random_state"] = int(seed.group(1))
        elif mod in MODIFIERS:
            params.update(MODIFIERS[mod])
        else:
            raise SystemExit(f"unknown modifier +{mod} in {name!r}; known: "
                             f"{sorted(MODIFIERS)} and seed<k>.")
    return base, params


def _frozen_features(paths: list[str], size: int, smoke: bool) -> np.ndarray:
    """ImageNet lite0 features (or a tiny random net's in smoke runs) of every path."""
    from wjsentiment.images.cache import get_store
    from wjsentiment.models import build_network, frozen_features

    backbone = "test_resnet" if smoke else "tf_efficientnet_lite0"
    weights = None if smoke else "imagenet"
    torch.manual_seed(0)
    net, info = build_network({"backbone": backbone, "head": "linear", "n_classes": 2}, weights)
    store = get_store(size)
    with store.add(paths, num_workers=2, pin=True) as decoded:
        return frozen_features(net, (backbone, info["weights_source"]), store, decoded.rows,
                               torch.device("cpu"), "fp32", batch_size=128)


class _LogRegAnchor:
    """Frozen features + logistic regression, C by an inner grouped CV on macro-F1."""

    def __init__(self, features: Callable[[], dict[str, np.ndarray]]) -> None:
        self._features = features

    @property
    def features(self) -> dict[str, np.ndarray]:
        return self._features()

    def fit(self, X, y, groups):
        F = np.stack([self.features[p] for p in X])
        search = GridSearchCV(
            make_pipeline(StandardScaler(),
                          LogisticRegression(class_weight="balanced", max_iter=5000)),
            {"logisticregression__C": LOGREG_C}, scoring="f1_macro",
            cv=StratifiedGroupKFold(3, shuffle=True, random_state=SPLIT_SEED))
        self.model = search.fit(F, y, groups=groups).best_estimator_
        self.classes_ = self.model.classes_
        return self

    def predict_proba(self, X):
        return self.model.predict_proba(np.stack([self.features[p] for p in X]))


def make_recipe(name: str, *, smoke: bool, features: dict | None):
    base, params = _modifiers(name)
    if base == "prior":
        return DummyClassifier(strategy="prior")
    if base == "logreg":
        return _LogRegAnchor(features)
    if base == "head":
        head = {**HEAD_PARAMS, **(SMOKE_PARAMS if smoke else {}), **params}
        return SentimentClassifier(**{"random_state": 0, "verbose": 0, **head})
    if base in DEMO_MEMBERS:  # one member of the demo's ensemble, alone
        member = dict(demo_ensemble(smoke=smoke).estimators)[base]
        return member.set_params(**params)
    if base == "ensemble":
        ensemble = demo_ensemble(random_state=params.pop("random_state", 0), smoke=smoke,
                                 verbose=0)
        if params:
            for member in ensemble.estimators:
                member[1].set_params(**params)
        return ensemble
    raise SystemExit(f"unknown recipe {base!r}; known: prior, logreg, head, ensemble, "
                     f"{', '.join(DEMO_MEMBERS)}.")


@contextlib.contextmanager
def _temperature_one(model) -> Iterator[None]:
    """Score the same fitted model without its fitted temperature(s)."""
    members = getattr(model, "estimators_", [model])
    saved = [getattr(m, "temperature_", None) for m in members]
    try:
        for m in members:
            if hasattr(m, "temperature_"):
                m.temperature_ = 1.0
        yield
    finally:
        for m, t in zip(members, saved):
            if t is not None:
                m.temperature_ = t


# ----------------------------------------------------------------------------- one fold
def _scored(model, X_test) -> dict:
    proba = np.asarray(model.predict_proba(X_test), dtype=float)
    pred = predictions_from_proba(model, proba)
    return {"proba": proba.tolist(), "pred": [str(p) for p in pred]}


def run_fold(name: str, k: int, data, train: np.ndarray, test: np.ndarray, *, smoke: bool,
             features: dict | None) -> dict:
    X = np.asarray(data.paths, dtype=object)
    y, groups = np.asarray(data.target), np.asarray(data.groups)
    model = make_recipe(name, smoke=smoke, features=features)
    start = time.perf_counter()
    if isinstance(model, (SentimentClassifier, SentimentEnsemble, _LogRegAnchor)):
        model.fit(list(X[train]), y[train], groups=groups[train])
    else:
        model.fit(np.zeros((len(train), 1)), y[train])
    seconds = time.perf_counter() - start
    X_test = list(X[test]) if not isinstance(model, DummyClassifier) else np.zeros((len(test), 1))
    result = {"recipe": name, "fold": k, "classes": [str(c) for c in model.classes_],
              "test": test.tolist(), "seconds": seconds, **_scored(model, X_test)}
    if any(hasattr(m, "temperature_") for m in getattr(model, "estimators_", [model])):
        with _temperature_one(model):
            result["uncalibrated"] = _scored(model, X_test)
        result["temperatures"] = [float(getattr(m, "temperature_", 1.0))
                                  for m in getattr(model, "estimators_", [model])]
    if isinstance(model, SentimentEnsemble):
        result["members"] = _member_scores(model, X_test)
    return result


def _member_scores(model: SentimentEnsemble, X_test) -> dict:
    scores = {}
    for member_name, member in model.named_estimators_.items():
        entry = _scored(member, X_test)
        with _temperature_one(member):
            entry["uncalibrated"] = _scored(member, X_test)
        scores[member_name] = entry
    return scores


# ------------------------------------------------------------------------------ summary
def _fold_metrics(y_true: np.ndarray, scored: dict, classes: list[str]) -> dict:
    proba = np.asarray(scored["proba"])
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 models sum to 1 +- 1e-7
    return {"macro_f1": f1_score(y_true, scored["pred"], labels=classes, average="macro",
                                 zero_division=0),
            "accuracy": accuracy_score(y_true, scored["pred"]),
            "log_loss": log_loss(y_true, proba, labels=classes)}


def _ece_floor(proba: np.ndarray, classes: list[str], rng: np.random.Generator) -> float:
    draws = []
    cumulative = proba.cumsum(axis=1)
    for _ in range(FLOOR_DRAWS):
        u = rng.random((len(proba), 1))
        picked = np.minimum((u > cumulative).sum(axis=1), len(classes) - 1)
        draws.append(expected_calibration_error(np.asarray(classes)[picked], proba, classes))
    return float(np.mean(draws))


def _mean_se(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    se = arr.std(ddof=1) / np.sqrt(len(arr)) if len(arr) > 1 else float("nan")
    return float(arr.mean()), float(se)


def _flatten(results: dict[str, list[dict]]) -> dict[str, list[tuple]]:
    """``(scored, fold, classes, test rows)`` of every fold of every recipe and ensemble
    member (``<recipe>/<member>``)."""
    flat: dict[str, list[tuple[dict, dict, list[str], np.ndarray]]] = {}
    for name, folds in results.items():
        for fold in folds:
            test = np.asarray(fold["test"])
            flat.setdefault(name, []).append((fold, fold, fold["classes"], test))
            for member, member_scored in fold.get("members", {}).items():
                flat.setdefault(f"{name}/{member}", []).append(
                    (member_scored, fold, fold["classes"], test))
    return flat


def _per_fold(entries: list[tuple], y: np.ndarray) -> dict[int, dict]:
    return {fold["fold"]: _fold_metrics(y[test], scored, classes)
            for scored, fold, classes, test in entries}


def default_pairs(names: list[str]) -> list[tuple[str, str]]:
    """The ensemble against each member; ``<recipe>+<mod>`` against ``<recipe>``."""
    pairs = [(name.split("/")[0], name) for name in names if "/" in name]
    pairs += [(name, name.split("+")[0]) for name in names
              if "+" in name and name.split("+")[0] in names]
    return pairs


def paired_differences(results: dict[str, list[dict]], y: np.ndarray,
                       pairs: list[tuple[str, str]]) -> list[dict]:
    """Mean +- se over the shared folds of ``a - b`` for each pair, per metric."""
    flat = _flatten(results)
    rows = []
    for a, b in pairs:
        if a not in flat or b not in flat:
            raise SystemExit(f"--pairs {a}:{b}: both must be recipes (or members) that ran; "
                             f"known: {sorted(flat)}.")
        left, right = _per_fold(flat[a], y), _per_fold(flat[b], y)
        shared = sorted(set(left) & set(right))
        row: dict = {"pair": f"{a} - {b}", "folds": len(shared)}
        for metric in ("macro_f1", "accuracy", "log_loss"):
            row[metric], row[f"{metric}_se"] = _mean_se(
                [left[k][metric] - right[k][metric] for k in shared])
        rows.append(row)
    return rows


def summarise(results: dict[str, list[dict]], y: np.ndarray) -> list[dict]:
    """One row per recipe (and ensemble member): mean +- se, paired differences, ECE."""
    rng = np.random.default_rng(0)
    flat = _flatten(results)
    anchor = _per_fold(flat.get(ANCHOR, []), y)
    rows = []
    for name, entries in flat.items():
        per_fold = [(fold["fold"], _fold_metrics(y[test], scored, classes))
                    for scored, fold, classes, test in entries]
        row: dict = {"recipe": name, "folds": len(per_fold)}
        for metric in ("macro_f1", "accuracy", "log_loss"):
            row[metric], row[f"{metric}_se"] = _mean_se([m[metric] for _, m in per_fold])
            paired = [m[metric] - anchor[k][metric] for k, m in per_fold if k in anchor]
            if paired and name != ANCHOR:
                row[f"{metric}_vs_anchor"], row[f"{metric}_vs_anchor_se"] = _mean_se(paired)
        classes = entries[0][2]
        pooled_y = np.concatenate([y[test] for _, _, _, test in entries])
        pooled = np.concatenate([np.asarray(s["proba"]) for s, _, _, _ in entries])
        row["ece"] = expected_calibration_error(pooled_y, pooled, classes)
        row["ece_floor"] = _ece_floor(pooled, classes, rng)
        uncal = [s.get("uncalibrated") for s, _, _, _ in entries]
        if all(u is not None for u in uncal):
            un_proba = np.concatenate([np.asarray(u["proba"]) for u in uncal])
            row["uncalibrated_log_loss"] = _mean_se([
                _fold_metrics(y[test], u, cl)["log_loss"]
                for u, (_, _, cl, test) in zip(uncal, entries)])[0]
            row["uncalibrated_ece"] = expected_calibration_error(pooled_y, un_proba, classes)
        rows.append(row)
    return rows


def decision_rules(results: dict[str, list[dict]], y: np.ndarray,
                   folds: list[tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """Both decision rules on each recipe's (and member's) own probabilities, fold by fold:
    macro-F1 and accuracy of "argmax" and of "balanced" (the class with the largest
    probability relative to its training frequency, here the frequency in the fold's
    training part), and the paired difference balanced - argmax (mean +- se over folds)."""
    rows = []
    for name, entries in _flatten(results).items():
        scores: dict[str, list[float]] = {}
        for scored, fold, classes, test in entries:
            proba = np.asarray(scored["proba"], dtype=float)
            train_y = y[folds[fold["fold"]][0]]
            prior = np.array([np.mean(train_y == c) for c in classes])
            for rule in ("argmax", "balanced"):
                picked = decide(proba, rule, prior)
                pred = np.asarray(classes)[picked]
                scores.setdefault(f"{rule}_macro_f1", []).append(
                    f1_score(y[test], pred, labels=classes, average="macro", zero_division=0))
                scores.setdefault(f"{rule}_accuracy", []).append(accuracy_score(y[test], pred))
        row: dict = {"recipe": name, "folds": len(entries)}
        for metric in ("macro_f1", "accuracy"):
            for rule in ("argmax", "balanced"):
                row[f"{rule}_{metric}"], row[f"{rule}_{metric}_se"] = _mean_se(
                    scores[f"{rule}_{metric}"])
            row[f"diff_{metric}"], row[f"diff_{metric}_se"] = _mean_se(
                np.subtract(scores[f"balanced_{metric}"], scores[f"argmax_{metric}"]))
        rows.append(row)
    return rows


def _decision_table(rows: list[dict]) -> str:
    def cell(row, key):
        return f"{row[key]:.3f} +- {row[key + '_se']:.3f}"

    return format_table([{
        "recipe": row["recipe"],
        "macro-F1 argmax": cell(row, "argmax_macro_f1"),
        "macro-F1 balanced": cell(row, "balanced_macro_f1"),
        "balanced - argmax": f"{row['diff_macro_f1']:+.3f} +- {row['diff_macro_f1_se']:.3f}",
        "accuracy argmax": cell(row, "argmax_accuracy"),
        "accuracy balanced": cell(row, "balanced_accuracy"),
        "acc. balanced - argmax": f"{row['diff_accuracy']:+.3f} +- {row['diff_accuracy_se']:.3f}",
    } for row in rows])


def _table(rows: list[dict]) -> str:
    def cell(row, metric):
        text = f"{row[metric]:.3f} +- {row[metric + '_se']:.3f}"
        if f"{metric}_vs_anchor" in row:
            text += f" ({row[metric + '_vs_anchor']:+.3f} +- {row[metric + '_vs_anchor_se']:.3f})"
        return text

    shown = []
    for row in rows:
        shown.append({
            "recipe": row["recipe"],
            "macro-F1 (vs anchor)": cell(row, "macro_f1"),
            "accuracy (vs anchor)": cell(row, "accuracy"),
            "log-loss (vs anchor)": cell(row, "log_loss"),
            "ECE (floor)": f"{row['ece']:.3f} ({row['ece_floor']:.3f})",
            "T=1 log-loss / ECE": (f"{row['uncalibrated_log_loss']:.3f} / "
                                   f"{row['uncalibrated_ece']:.3f}"
                                   if "uncalibrated_log_loss" in row else ""),
        })
    return format_table(shown)


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["prior", "logreg", "head", "ensemble"])
    parser.add_argument("--folds", type=int, default=N_FOLDS)
    parser.add_argument("--only-folds", type=int, nargs="*", default=None,
                        help="run only these folds (the summary uses every cached fold)")
    parser.add_argument("--cache-dir", default="benchmarks/results/quality-cache")
    parser.add_argument("--json", default=None)
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run: 2 folds, a few emoji, tiny sizes")
    parser.add_argument("--pairs", nargs="*", default=None, metavar="A:B",
                        help="paired differences A - B to report (default: the ensemble "
                             "against its members, <recipe>+<mod> against <recipe>)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None, help="unused (shared benchmark option)")
    args = parser.parse_args(argv)

    data = load_emoji_sentiment()
    y = np.asarray(data.target)
    groups = np.asarray(data.groups)
    n_folds = 2 if args.smoke else args.folds
    splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=SPLIT_SEED)
    folds = list(splitter.split(np.zeros(len(y)), y, groups))
    if args.smoke:  # a few emoji per class on each side
        keep = set()
        for c in np.unique(y):
            keep |= set(np.unique(groups[y == c])[:6].tolist())
        mask = np.isin(groups, list(keep))
        folds = [(tr[mask[tr]], te[mask[te]]) for tr, te in folds]
    cache = Path(args.cache_dir) / ("smoke" if args.smoke else "full")
    cache.mkdir(parents=True, exist_ok=True)

    used = [data.paths[i] for i in sorted(set(np.concatenate([np.r_[a, b] for a, b in folds])))]

    @functools.cache
    def features() -> dict[str, np.ndarray]:  # computed once, when a fold needs them
        size = SMOKE_PARAMS["image_size"] if args.smoke else DEMO_IMAGE_SIZE
        return dict(zip(used, _frozen_features(used, size, args.smoke)))

    results: dict[str, list[dict]] = {}
    for name in args.recipes:
        for k, (train, test) in enumerate(folds):
            path = cache / f"{name}-fold{k}.json"
            if path.is_file():
                fold = json.loads(path.read_text())
            elif args.only_folds is not None and k not in args.only_folds:
                continue
            else:
                log("bench_quality", f"{name} fold {k}: fitting on {len(train)} images")
                fold = run_fold(name, k, data, train, test, smoke=args.smoke,
                                features=features)
                with atomic_file(path, encoding="utf-8") as fh:
                    json.dump(fold, fh)
                log("bench_quality", f"{name} fold {k}: {fold['seconds']:.0f}s")
            results.setdefault(name, []).append(fold)

    rows = summarise(results, y)
    print(_table(rows))
    pairs = (default_pairs([r["recipe"] for r in rows]) if args.pairs is None
             else [tuple(p.split(":", 1)) for p in args.pairs])
    differences = paired_differences(results, y, pairs)
    if differences:
        print("\nPaired differences (A - B, mean +- se over the same folds)")
        print(format_table([{"pair": d["pair"], **{
            m: f"{d[m]:+.3f} +- {d[m + '_se']:.3f}"
            for m in ("macro_f1", "accuracy", "log_loss")}} for d in differences]))
    rules = decision_rules(results, y, folds)
    print("\nDecision rules on the same probabilities (balanced: proba / training frequency)")
    print(_decision_table(rules))
    payload = {"benchmark": "bench_quality", "machine": machine_info(torch.device("cpu")),
               "settings": {"folds": n_folds, "split_seed": SPLIT_SEED, "anchor": ANCHOR,
                            "recipes": args.recipes, "smoke": args.smoke},
               "rows": rows, "pairs": differences, "decision_rules": rules}
    if args.json:
        write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
