"""ONNX export throughput: onnxruntime on the CPU vs predict_proba on the CPU, at one batch size.

A model is fitted for one epoch on a few images (``weights=None``) and exported with
``export_onnx``. Both sides then classify the same ``--n-images`` decoded uint8 images
(``(n, size, size, 3)``, from Flickr-size JPEGs decoded once beforehand, so decoding is not
measured) in calls of ``--batch-size`` images: ``predict_proba`` (fp32, channels_last, torch's
threads) and the exported model through ``load_onnx(...).predict_proba`` (onnxruntime with as
many intra-op threads as torch has). Each side runs once to warm up, then ``--repeats`` times
interleaved; the best run of each counts. The result is the ratio of their throughputs.

Usage::

    python benchmarks/bench_export.py --backbone resnet18 --size 224 --n-images 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
import torch
from flickr_like import make_flickr_like


def images_per_second(predict, pixels: np.ndarray, batch_size: int) -> float:
    """Throughput of ``predict`` over ``pixels`` in calls of ``batch_size`` images."""
    start = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        predict(pixels[i:i + batch_size])
    return len(pixels) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="onnxruntime vs predict_proba on the CPU.")
    _common.add_common_args(parser, size=224, n_images=256, batch_size=32)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.batch_size, args.repeats = (
            min(args.n_images, 16), min(args.size, 32), 8, 1)
        if args.backbone == parser.get_default("backbone"):
            args.backbone = _common.SMOKE_BACKBONE
    if args.device == "cuda":
        raise SystemExit("bench_export compares the two on the CPU; pass --device cpu.")

    import onnxruntime

    from wjsentiment import SentimentClassifier
    from wjsentiment.export import load_onnx
    from wjsentiment.images import decode_image

    device = torch.device("cpu")
    data = make_flickr_like(args.n_images, args.data_dir)
    pixels = np.stack([decode_image(p, args.size) for p in data.paths])
    n_fit = min(len(data.paths), 2 * args.batch_size)
    clf = SentimentClassifier(backbone=args.backbone, weights=None, image_size=args.size,
                              epochs=1, batch_size=args.batch_size, device="cpu", verbose=0,
                              random_state=0)
    clf.fit(pixels[:n_fit], data.labels[:n_fit])

    threads = torch.get_num_threads()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = clf.export_onnx(Path(tmp) / "model.onnx")
        megabytes = Path(path).stat().st_size / 1e6
        served = load_onnx(path, batch_size=args.batch_size, session_options=options)

    sides = {"predict_proba (torch)": clf.predict_proba,
             "onnxruntime (load_onnx)": served.predict_proba}
    gap = float(np.abs(served.predict_proba(pixels[:args.batch_size])
                       - clf.predict_proba(pixels[:args.batch_size])).max())
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, predict in sides.items():
            runs[name].append(images_per_second(predict, pixels, args.batch_size))
    rows = [{"pipeline": name, "batch": args.batch_size, "threads": threads,
             "images_per_second": max(speeds), "runs": [round(s, 2) for s in speeds]}
            for name, speeds in runs.items()]
    ratio = rows[1]["images_per_second"] / rows[0]["images_per_second"]
    results = {
        "benchmark": "export",
        "machine": _common.machine_info(device),
        "settings": {"backbone": args.backbone, "size": args.size, "n_images": len(pixels),
                     "batch_size": args.batch_size, "repeats": args.repeats,
                     "threads": threads, "onnxruntime": onnxruntime.__version__,
                     "onnx_megabytes": round(megabytes, 1), "data": data.root},
        "rows": rows,
        "onnx_over_torch": ratio,
        "max_abs_probability_gap": gap,
        "notes": ["decoded uint8 images on both sides (decoding not measured); best of the "
                  "interleaved runs"],
    }
    return _common.report(f"export {args.backbone} {args.size}px, CPU, batch {args.batch_size}",
                          results, rows, args.json_out,
                          columns=["pipeline", "batch", "threads", "images_per_second"])


if __name__ == "__main__":
    main()
