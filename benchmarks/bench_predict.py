"""Prediction throughput: SentimentClassifier.predict_proba vs a bare forward pass.

A model is fitted for one epoch on a few images (``weights=None``), then ``predict_proba``
runs over ``--n-images`` Flickr-size JPEGs twice: cold (image cache cleared, so decoding is
included) and warm (pixels already decoded). The bare forward runs the same network in eval
mode on one reused input tensor at the batch size ``predict_proba`` uses (bf16 autocast +
channels_last on CUDA, fp32 + channels_last on CPU).

Usage::

    python benchmarks/bench_predict.py --backbone resnet18 --size 224 --n-images 1024
"""

from __future__ import annotations

import argparse
import time

import _common
import torch
from flickr_like import make_flickr_like


def predict_batch_size(clf, device: torch.device) -> int:
    """The batch size predict_proba uses (mirrors the estimator's rule)."""
    rule = getattr(clf, "_predict_batch_size", None)
    if rule is not None:
        return int(rule(device))
    return max(clf.batch_size, 256 if device.type == "cuda" else 64)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="predict_proba vs a bare forward pass.")
    _common.add_common_args(parser, size=224, n_images=256, batch_size=32)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--bare-steps", type=int, default=10)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.batch_size, args.bare_steps = (
            min(args.n_images, 16), min(args.size, 32), 8, 2)
        if args.backbone == parser.get_default("backbone"):
            args.backbone = _common.SMOKE_BACKBONE

    from wjsentiment import SentimentClassifier
    from wjsentiment.images import clear_image_cache

    device = _common.resolve_device(args.device)
    data = make_flickr_like(args.n_images, args.data_dir)
    n_fit = min(len(data.paths), 2 * args.batch_size)
    clf = SentimentClassifier(backbone=args.backbone, weights=None, image_size=args.size,
                              epochs=1, batch_size=args.batch_size, device=str(device),
                              verbose=0, random_state=0)
    clf.fit(data.paths[:n_fit], data.labels[:n_fit])
    clf.predict_proba(data.paths[:2])  # warm-up (kernels, memory pools)

    timings = {}
    for label in ("cold", "warm"):
        if label == "cold":
            clear_image_cache()
        _common.sync(device)
        start = time.perf_counter()
        proba = clf.predict_proba(data.paths)
        _common.sync(device)
        timings[label] = time.perf_counter() - start
    assert proba.shape == (len(data.paths), len(clf.classes_))

    batch = predict_batch_size(clf, device)
    bare = _common.bare_forward_speed(clf.model_, batch, args.size, device,
                                      steps=args.bare_steps)
    n = len(data.paths)
    rows = [
        {"pipeline": "predict_proba cold (decode incl.)", "batch": batch,
         "seconds": timings["cold"], "images_per_second": n / timings["cold"]},
        {"pipeline": "predict_proba warm (decoded)", "batch": batch,
         "seconds": timings["warm"], "images_per_second": n / timings["warm"]},
        {"pipeline": "bare forward", "batch": batch, "seconds": bare["seconds"],
         "images_per_second": bare["images_per_second"]},
    ]
    for row in rows:
        row["of_bare"] = row["images_per_second"] / bare["images_per_second"]
    results = {
        "benchmark": "predict",
        "machine": _common.machine_info(device),
        "settings": {"backbone": args.backbone, "size": args.size, "n_images": n,
                     "predict_batch_size": batch, "data": data.root},
        "rows": rows,
        "warm_fraction_of_bare": rows[1]["of_bare"],
        "cold_fraction_of_bare": rows[0]["of_bare"],
        "notes": [f"precision: {'bf16' if device.type == 'cuda' else 'fp32'} + channels_last"],
    }
    return _common.report(f"predict {args.backbone} {args.size}px on {device}", results, rows,
                          args.json_out)


if __name__ == "__main__":
    main()
