"""Training throughput: SentimentClassifier.fit vs the reference study's hand-written pipeline.

Reference (as a user writes it): ``torchvision.datasets.ImageFolder`` over the class folders
with ``Resize((size, size)) + ToTensor + Normalize`` per image per epoch, a ``DataLoader``
(``num_workers`` = every core, shuffle, ``pin_memory`` on CUDA), the same timm backbone
(``weights=None``) with a Linear head, Adam, fp32.

Library: ``SentimentClassifier(backbone, weights=None, image_size=size, epochs, batch_size,
verbose=0).fit(paths, y)`` on the same JPEGs, from a cold image cache. It keeps its default
``augment=True`` (random resized crop + flip on the device), which the reference does not do:
the comparison is against a pipeline doing *less* work. ``--no-augment`` turns it off.

Also: a bare training step (one input tensor reused, channels_last, bf16 autocast on CUDA,
fp32 on CPU) with the same network and batch size, i.e. the ceiling for the data path; fit's
steady images/s is reported as a fraction of it.

Images/s per epoch come from ``clf.history_`` and from the reference's own per-epoch timer;
"steady" is the mean over epochs after the first. Total wall includes decoding and setup.

Usage::

    python benchmarks/bench_fit.py --backbone resnet18 --size 224 --n-images 1024 \
        --epochs 3 --batch-size 32 256 --json fit.json
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
import torch
from flickr_like import make_flickr_like
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def run_reference(root: str, paths: list[str], backbone: str, size: int, epochs: int,
                  batch_size: int, workers: int, device: torch.device, seed: int = 0) -> dict:
    """The reference pipeline; returns per-epoch seconds and the total wall time."""
    import timm
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    start = time.perf_counter()
    chosen = set(paths)
    transform = transforms.Compose([
        transforms.Resize((size, size)),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    dataset = datasets.ImageFolder(root, transform=transform,
                                   is_valid_file=lambda p: p in chosen)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda")
    body = timm.create_model(backbone, pretrained=False, num_classes=0)
    model = nn.Sequential(body, nn.Linear(body.num_features, len(dataset.classes))).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    epoch_seconds = []
    for _ in range(epochs):
        model.train()
        _common.sync(device)
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        _common.sync(device)
        epoch_seconds.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    n = len(dataset)
    return {"n_images": n, "epoch_seconds": epoch_seconds,
            "images_per_second": [n / s for s in epoch_seconds], "total_seconds": total}


def run_library(paths: list[str], labels: np.ndarray, backbone: str, size: int, epochs: int,
                batch_size: int, device: torch.device, augment: bool = True) -> dict:
    """SentimentClassifier.fit from a cold cache; per-epoch numbers from ``history_``."""
    from wjsentiment import SentimentClassifier
    from wjsentiment.images import clear_image_cache
    from wjsentiment.models import clear_feature_cache

    clear_image_cache()
    clear_feature_cache()
    clf = SentimentClassifier(backbone=backbone, weights=None, image_size=size, epochs=epochs,
                              batch_size=batch_size, augment=augment, device=str(device),
                              verbose=0, random_state=0)
    _common.sync(device)
    start = time.perf_counter()
    clf.fit(paths, labels)
    _common.sync(device)
    total = time.perf_counter() - start
    epoch_seconds = [h["seconds"] for h in clf.history_]
    return {"n_images": len(paths), "epoch_seconds": epoch_seconds,
            "images_per_second": [h["images_per_second"] for h in clf.history_],
            "total_seconds": total, "setup_seconds": total - sum(epoch_seconds),
            "augment": augment}


def bare_step(backbone: str, size: int, batch_size: int, device: torch.device,
              steps: int) -> dict:
    from wjsentiment.models import build_network

    torch.manual_seed(0)
    net, _ = build_network({"backbone": backbone, "head": "linear", "n_classes": 5}, None)
    return _common.bare_train_speed(net, batch_size, size, device, steps=steps)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="fit throughput vs a hand-written pipeline.")
    _common.add_common_args(parser, size=224, n_images=256, epochs=2)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32],
                        help="one or more batch sizes (default 32)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the reference (default: every core)")
    parser.add_argument("--bare-steps", type=int, default=20)
    parser.add_argument("--no-augment", action="store_true",
                        help="fit with augment=False (default keeps the library's augment=True)")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.epochs = min(args.n_images, 16), min(args.size, 32), 1
        args.batch_size, args.bare_steps = [8], 2
        if args.backbone == parser.get_default("backbone"):
            args.backbone = _common.SMOKE_BACKBONE

    device = _common.resolve_device(args.device)
    workers = args.workers if args.workers is not None else _common.cpu_cores()
    data = make_flickr_like(args.n_images, args.data_dir)
    notes = ["library fit keeps augment=%s; the reference does no augmentation"
             % (not args.no_augment),
             "steady = mean images/s over epochs after the first; speedup row: total_s column "
             "is the wall-time ratio, steady_img_s column the steady images/s ratio",
             f"precision: {'bf16 autocast' if device.type == 'cuda' else 'fp32'} + "
             "channels_last for library and bare step; fp32 NCHW for the reference"]
    rows, runs = [], []
    results = {
        "benchmark": "fit",
        "machine": _common.machine_info(device),
        "settings": {"backbone": args.backbone, "size": args.size,
                     "n_images": args.n_images, "epochs": args.epochs,
                     "batch_sizes": args.batch_size, "reference_workers": workers,
                     "data": data.root},
        "runs": runs,
        "complete": False,
        "notes": notes,
    }
    tag = f"bench_fit {args.backbone} {args.size}px"
    for bs in args.batch_size:
        ref = None
        if not args.skip_reference:
            ref = run_reference(data.root, data.paths, args.backbone, args.size, args.epochs, bs,
                                workers, device)
            _common.log(tag, f"batch {bs} reference: {ref['total_seconds']:.1f} s, images/s "
                        f"per epoch {[round(v, 1) for v in ref['images_per_second']]}")
        lib = run_library(data.paths, data.labels, args.backbone, args.size, args.epochs, bs,
                          device, augment=not args.no_augment)
        _common.log(tag, f"batch {bs} library: {lib['total_seconds']:.1f} s, images/s per "
                    f"epoch {[round(v, 1) for v in lib['images_per_second']]}")
        bare = bare_step(args.backbone, args.size, bs, device, args.bare_steps)
        _common.log(tag, f"batch {bs} bare step: {bare['images_per_second']:.1f} images/s")
        run = {"batch_size": bs, "reference": ref, "library": lib, "bare_step": bare}
        lib_steady = _common.steady(lib["images_per_second"])
        run["library_fraction_of_bare"] = lib_steady / bare["images_per_second"]
        rows.append({"batch": bs, "pipeline": "library fit", "total_s": lib["total_seconds"],
                     "setup_s": lib["setup_seconds"],
                     "epoch1_img_s": lib["images_per_second"][0], "steady_img_s": lib_steady,
                     "of_bare": run["library_fraction_of_bare"]})
        if ref is not None:
            ref_steady = _common.steady(ref["images_per_second"])
            run["steady_speedup"] = lib_steady / ref_steady
            run["wall_speedup"] = ref["total_seconds"] / lib["total_seconds"]
            run["reference_fraction_of_bare"] = ref_steady / bare["images_per_second"]
            rows.append({"batch": bs, "pipeline": "reference (DataLoader, fp32)",
                         "total_s": ref["total_seconds"],
                         "setup_s": ref["total_seconds"] - sum(ref["epoch_seconds"]),
                         "epoch1_img_s": ref["images_per_second"][0],
                         "steady_img_s": ref_steady,
                         "of_bare": run["reference_fraction_of_bare"]})
            rows.append({"batch": bs, "pipeline": "speedup library/reference",
                         "total_s": run["wall_speedup"], "steady_img_s": run["steady_speedup"]})
        rows.append({"batch": bs, "pipeline": "bare train step",
                     "steady_img_s": bare["images_per_second"], "of_bare": 1.0})
        runs.append(run)
        if args.json_out:  # partial results survive a timeout in a later batch size
            _common.write_json(args.json_out, results)
    results["complete"] = True
    return _common.report(f"fit {args.backbone} {args.size}px on {device}", results, rows,
                          args.json_out, ["batch", "pipeline", "total_s", "setup_s",
                                          "epoch1_img_s", "steady_img_s", "of_bare"])


if __name__ == "__main__":
    main()
