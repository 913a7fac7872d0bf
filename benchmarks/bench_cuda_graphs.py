"""Train-step throughput at small batch sizes with and without CUDA graphs.

At batch 32 a GPU finishes resnet18's kernels faster than Python can launch them. This runs
``SentimentClassifier.fit`` on in-memory uint8 images (no decoding, so only the step is
measured) with ``cuda_graphs=False`` and ``True``, next to the bare eager train step of
``_common.bare_train_speed`` at the same batch size, in one process.

Usage::

    python benchmarks/bench_cuda_graphs.py --backbones resnet18 resnet152 --batch-size 32
"""

from __future__ import annotations

import argparse

import _common
import numpy as np
import timm

from wjsentiment import SentimentClassifier


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--n-images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.backbones, args.size, args.n_images, args.epochs = (
            [_common.SMOKE_BACKBONE], 32, 32, 2)
    device = _common.resolve_device(args.device)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (args.n_images, args.size, args.size, 3), dtype=np.uint8)
    y = np.arange(args.n_images) % 5
    rows = []
    for backbone in args.backbones:
        net = timm.create_model(backbone, pretrained=False, num_classes=5)
        bare = _common.bare_train_speed(net, args.batch_size, args.size, device)
        row = {"backbone": backbone, "batch": args.batch_size,
               "bare_eager_img_s": round(bare["images_per_second"], 1)}
        for graphs in (False, True):
            clf = SentimentClassifier(backbone=backbone, weights=None, image_size=args.size,
                                      epochs=args.epochs, batch_size=args.batch_size,
                                      device=str(device), cuda_graphs=graphs, verbose=0,
                                      random_state=0).fit(X, y)
            speed = _common.steady([h["images_per_second"] for h in clf.history_])
            row[f"fit_graphs_{str(graphs).lower()}_img_s"] = round(speed, 1)
        row["graphs_speedup"] = round(row["fit_graphs_true_img_s"]
                                      / row["fit_graphs_false_img_s"], 3)
        row["fit_graphs_vs_bare"] = round(row["fit_graphs_true_img_s"]
                                          / row["bare_eager_img_s"], 3)
        rows.append(row)
    results = {"machine": _common.machine_info(device), "rows": rows, "args": vars(args)}
    print(_common.format_table(rows))
    if args.json:
        _common.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
