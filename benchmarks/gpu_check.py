"""End-to-end check on a GPU: fit + predict throughput, and CUDA vs CPU probabilities.

For each backbone (default resnet18 and resnet152, ``weights=None``): fit on ``--n-images``
Flickr-size JPEGs at ``--size`` for ``--epochs`` epochs with ``precision="auto"`` (bf16
autocast on CUDA), then ``predict_proba`` over all images (decoded already), then move the
fitted model to the CPU with ``clf.set_params(device="cpu")`` and compare probabilities on
``--n-compare`` images: the gap of the bf16 CUDA run to the fp32 CPU run, and of an fp32 CUDA
run (``precision="fp32"``) to the CPU run.

Runs on a CPU too (then both sides are the CPU and the gaps are 0); ``--smoke`` is a tiny run.

Usage::

    python benchmarks/gpu_check.py --n-images 2048 --json gpu_check.json
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
from flickr_like import make_flickr_like


def check_backbone(backbone: str, data, args, device) -> dict:
    from wjsentiment import SentimentClassifier

    clf = SentimentClassifier(backbone=backbone, weights=None, image_size=args.size,
                              epochs=args.epochs, batch_size=args.batch_size,
                              precision="auto", device=str(device), verbose=0, random_state=0)
    start = time.perf_counter()
    clf.fit(data.paths, data.labels)
    _common.sync(device)
    fit_seconds = time.perf_counter() - start

    clf.predict_proba(data.paths[:2])
    _common.sync(device)
    start = time.perf_counter()
    clf.predict_proba(data.paths)
    _common.sync(device)
    predict_seconds = time.perf_counter() - start

    some = data.paths[:args.n_compare]
    p_device = clf.predict_proba(some)
    p_device32 = clf.set_params(precision="fp32").predict_proba(some)
    p_cpu = clf.set_params(device="cpu", precision="auto").predict_proba(some)
    clf.set_params(device=str(device))
    return {
        "backbone": backbone,
        "fit_seconds": fit_seconds,
        "epoch_images_per_second": [h["images_per_second"] for h in clf.history_],
        "predict_images_per_second": len(data.paths) / predict_seconds,
        "max_abs_gap_bf16_vs_cpu": float(np.abs(p_device - p_cpu).max()),
        "max_abs_gap_fp32_vs_cpu": float(np.abs(p_device32 - p_cpu).max()),
        "argmax_agreement_bf16_vs_cpu": float((p_device.argmax(1) == p_cpu.argmax(1)).mean()),
        "n_compare": len(some),
        "train_loss": [h["train_loss"] for h in clf.history_],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="fit/predict on the GPU; CUDA vs CPU gap.")
    _common.add_common_args(parser, size=224, n_images=2048, epochs=3, batch_size=64)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet152"])
    parser.add_argument("--n-compare", type=int, default=32)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.epochs, args.batch_size = (
            min(args.n_images, 16), min(args.size, 32), 1, 8)
        args.n_compare = 4
        if args.backbones == parser.get_default("backbones"):
            args.backbones = [_common.SMOKE_BACKBONE]

    from wjsentiment.images import get_store

    device = _common.resolve_device(args.device)
    data = make_flickr_like(args.n_images, args.data_dir)
    start = time.perf_counter()
    get_store(args.size).add(data.paths, num_workers=min(16, _common.cpu_cores()))
    decode_seconds = time.perf_counter() - start
    checks = []
    partial = {"benchmark": "gpu_check", "machine": _common.machine_info(device),
               "checks": checks, "complete": False}
    for backbone in args.backbones:
        checks.append(check_backbone(backbone, data, args, device))
        _common.log("gpu_check", f"{backbone}: {checks[-1]}")
        if args.json_out:  # partial results survive a timeout in a later backbone
            _common.write_json(args.json_out, partial)
    rows = []
    for c in checks:
        ips = c["epoch_images_per_second"]
        rows.append({"backbone": c["backbone"], "epoch1_img_s": ips[0],
                     "steady_img_s": _common.steady(ips), "predict_img_s":
                     c["predict_images_per_second"],
                     "gap_bf16_cpu": c["max_abs_gap_bf16_vs_cpu"],
                     "gap_fp32_cpu": c["max_abs_gap_fp32_vs_cpu"],
                     "argmax_agree": c["argmax_agreement_bf16_vs_cpu"]})
    results = {
        "benchmark": "gpu_check",
        "machine": _common.machine_info(device),
        "settings": {"size": args.size, "n_images": args.n_images, "epochs": args.epochs,
                     "batch_size": args.batch_size, "data": data.root},
        "decode_seconds": decode_seconds,
        "decode_images_per_second": args.n_images / decode_seconds,
        "checks": checks,
        "complete": True,
        "notes": [f"decoded {args.n_images} images to {args.size}px in {decode_seconds:.1f} s "
                  "before the fits (so epoch numbers exclude decoding)",
                  "gaps: max |p_device - p_cpu| over the compared images; weights=None, so "
                  "probabilities are near uniform"],
    }
    return _common.report(f"gpu_check on {device}", results, rows, args.json_out)


if __name__ == "__main__":
    main()
