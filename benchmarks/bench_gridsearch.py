"""GridSearchCV over a frozen backbone: the library's caches vs a hand-written loop.

Library: ``GridSearchCV(SentimentClassifier(backbone="resnet18", finetune="head",
image_size=112, epochs=3, weights=None, random_state=0), {"lr": [1e-3, 1e-2],
"head": ["linear", "mlp"]}, cv=StratifiedKFold(3))`` (12 fits + the refit), cold: the image and
feature caches are cleared first. Every fold and clone then shares one decode and one backbone
pass per image.

Hand-written: the same grid, the same folds, the same frozen backbone and heads (AdamW, same
learning rates, 3 epochs, same batch size), but every epoch of every fit decodes its images
(``Image.open().convert("RGB").resize()``) and runs the frozen backbone on them again, and so
does the scoring of every test fold; plus the refit on all images with the best parameters.

Target: library >= 5x faster on 2 CPU cores (300 Flickr-size JPEGs).

Usage::

    python benchmarks/bench_gridsearch.py --n-images 300 --size 112 --json grid.json
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
import torch
from flickr_like import make_flickr_like
from PIL import Image
from torch import nn

IMAGENET_MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def load_batch(paths, size: int) -> torch.Tensor:
    """Decode and normalise a batch the plain way."""
    arrays = []
    for p in paths:
        with Image.open(p) as img:
            arrays.append(np.asarray(img.convert("RGB").resize((size, size))))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def make_head(kind: str, d: int, n_classes: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(d, n_classes)
    return nn.Sequential(nn.Linear(d, d // 2), nn.Tanh(), nn.Linear(d // 2, d // 4), nn.Tanh(),
                         nn.Linear(d // 4, n_classes))


def hand_fit_score(paths, y, train, test, params: dict, *, backbone: str, size: int,
                   epochs: int, batch_size: int, seed: int, n_classes: int,
                   device: torch.device) -> float:
    """One fit of the hand-written loop; returns test accuracy (nan without a test set)."""
    import timm

    torch.manual_seed(seed)
    body = timm.create_model(backbone, pretrained=False, num_classes=0).eval().to(device)
    body.requires_grad_(False)
    head = make_head(params["head"], body.num_features, n_classes).to(device)
    labels = torch.as_tensor(y, device=device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=params["lr"], weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(train)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            with torch.no_grad():
                feats = body(load_batch([paths[i] for i in idx], size).to(device))
            loss = nn.functional.cross_entropy(head(feats), labels[torch.as_tensor(idx)])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if test is None or len(test) == 0:
        return float("nan")
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 64):
            idx = test[start:start + 64]
            x = load_batch([paths[i] for i in idx], size).to(device)
            pred = head(body(x)).argmax(1).cpu().numpy()
            correct += int((pred == y[idx]).sum())
    return correct / len(test)


def hand_grid(paths, y_enc, grid, folds, **kw) -> dict:
    from sklearn.model_selection import ParameterGrid

    candidates = list(ParameterGrid(grid))
    means = []
    for params in candidates:
        scores = [hand_fit_score(paths, y_enc, tr, te, params, **kw) for tr, te in folds]
        means.append(float(np.mean(scores)))
    best = int(np.argmax(means))
    hand_fit_score(paths, y_enc, np.arange(len(paths)), None, candidates[best], **kw)  # refit
    return {"best_params": candidates[best], "best_score": means[best], "mean_scores": means}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="GridSearchCV: library caches vs hand loop.")
    _common.add_common_args(parser, size=112, n_images=300, epochs=3, batch_size=32)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.epochs, args.batch_size, args.cv = (
            min(args.n_images, 10), min(args.size, 32), 1, 8, 2)
        if args.backbone == parser.get_default("backbone"):
            args.backbone = _common.SMOKE_BACKBONE

    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from wjsentiment import SentimentClassifier
    from wjsentiment.images import clear_image_cache
    from wjsentiment.models import clear_feature_cache

    device = _common.resolve_device(args.device)
    data = make_flickr_like(args.n_images, args.data_dir)
    paths, y = np.array(data.paths), data.labels
    grid = {"lr": [1e-3, 1e-2], "head": ["linear", "mlp"]}
    cv = StratifiedKFold(args.cv)
    folds = list(cv.split(paths, y))

    clear_image_cache()
    clear_feature_cache()
    estimator = SentimentClassifier(backbone=args.backbone, finetune="head",
                                    image_size=args.size, epochs=args.epochs,
                                    batch_size=args.batch_size, weights=None, random_state=0,
                                    device=str(device), verbose=0)
    search = GridSearchCV(estimator, grid, cv=cv)
    start = time.perf_counter()
    search.fit(paths, y)
    lib_seconds = time.perf_counter() - start
    start = time.perf_counter()
    GridSearchCV(estimator, grid, cv=cv).fit(paths, y)
    warm_seconds = time.perf_counter() - start
    clear_image_cache()
    clear_feature_cache()

    n_fits = len(folds) * 4 + 1
    rows = [{"pipeline": "library GridSearchCV, cold", "fits": n_fits, "seconds": lib_seconds,
             "best_score": float(search.best_score_), "best_params": search.best_params_},
            {"pipeline": "library GridSearchCV, warm caches", "fits": n_fits,
             "seconds": warm_seconds}]
    results = {
        "benchmark": "gridsearch",
        "machine": _common.machine_info(device),
        "settings": {"backbone": args.backbone, "size": args.size, "n_images": len(paths),
                     "epochs": args.epochs, "batch_size": args.batch_size, "cv": args.cv,
                     "grid": grid, "data": data.root},
        "library": {"seconds": lib_seconds, "warm_seconds": warm_seconds,
                    "best_params": search.best_params_, "best_score": search.best_score_,
                    "mean_scores": search.cv_results_["mean_test_score"].tolist()},
        "target": 5.0,
        "notes": ["cold = image and feature caches cleared before the search; warm = a "
                  "second search in the same process"],
    }
    if not args.skip_reference:
        classes, y_enc = np.unique(y, return_inverse=True)
        start = time.perf_counter()
        hand = hand_grid(list(paths), y_enc, grid, folds, backbone=args.backbone,
                         size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                         seed=0, n_classes=len(classes), device=device)
        hand_seconds = time.perf_counter() - start
        speedup = hand_seconds / lib_seconds
        rows.append({"pipeline": "hand-written loop", "fits": n_fits, "seconds": hand_seconds,
                     "best_score": hand["best_score"], "best_params": hand["best_params"]})
        rows.append({"pipeline": "speedup (hand / library cold)", "seconds": speedup})
        results["hand"] = dict(hand, seconds=hand_seconds)
        results["speedup"] = speedup
        results["target_met"] = bool(speedup >= 5.0)
        results["notes"].append(f"speedup {speedup:.1f}x (target >= 5x)")
    return _common.report(f"GridSearchCV {args.backbone} {args.size}px on {device}", results,
                          rows, args.json_out)


if __name__ == "__main__":
    main()
