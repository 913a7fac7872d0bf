"""torch.profiler summary of the first epoch of SentimentClassifier.fit, as text.

The images are decoded before profiling (the profile is of the training epoch, not of
decoding). The text holds the top operators by device time (CUDA) or CPU time, and the
epoch's wall time and images/s.

Usage::

    python benchmarks/profile_fit.py --backbone resnet18 --n-images 512 --out profile.txt
"""

from __future__ import annotations

import argparse
import time

import _common
from flickr_like import make_flickr_like
from torch.profiler import ProfilerActivity, profile


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="Profile the first epoch of fit.")
    _common.add_common_args(parser, size=224, n_images=512, batch_size=32)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--row-limit", type=int, default=25)
    parser.add_argument("--out", default=None, help="write the summary text here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.batch_size, args.row_limit = (
            min(args.n_images, 16), min(args.size, 32), 8, 10)
        if args.backbone == parser.get_default("backbone"):
            args.backbone = _common.SMOKE_BACKBONE

    from wjsentiment import SentimentClassifier
    from wjsentiment.images import get_store

    device = _common.resolve_device(args.device)
    data = make_flickr_like(args.n_images, args.data_dir)
    get_store(args.size).add(data.paths, num_workers=min(16, _common.cpu_cores()))
    clf = SentimentClassifier(backbone=args.backbone, weights=None, image_size=args.size,
                              epochs=1, batch_size=args.batch_size, device=str(device),
                              verbose=0, random_state=0)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        clf.fit(data.paths, data.labels)
        _common.sync(device)
    wall = time.perf_counter() - start
    averages = prof.key_averages()
    lines = [f"profile_fit: {args.backbone} {args.size}px batch {args.batch_size}, "
             f"{args.n_images} images, device {device}",
             f"machine: {_common.machine_info(device)}",
             f"profiled fit wall {wall:.2f} s (profiler overhead included); epoch "
             f"{clf.history_[0]['seconds']:.2f} s, "
             f"{clf.history_[0]['images_per_second']:.1f} images/s", ""]
    if device.type == "cuda":
        for key in ("self_cuda_time_total", "self_device_time_total", "cuda_time_total"):
            try:
                table = averages.table(sort_by=key, row_limit=args.row_limit)
            except (KeyError, AttributeError, ValueError, RuntimeError):
                continue
            lines += [f"== top {args.row_limit} ops by {key} ==", table, ""]
            break
    lines += [f"== top {args.row_limit} ops by self_cpu_time_total ==",
              averages.table(sort_by="self_cpu_time_total", row_limit=args.row_limit)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        _common.write_text(args.out, text + "\n")
    return text


if __name__ == "__main__":
    main()
