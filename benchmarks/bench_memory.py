"""Peak memory of fit vs the number of images, and the decoded-image budget that caps it.

Each ``n`` in ``--n-images`` runs in a fresh child process that sets
``wjsentiment.set_config(cache_memory_bytes=budget, cache_dir=cache_dir)`` and fits one epoch
of a tiny timm model (default ``test_convnext``, 0.2M parameters) on ``n`` square JPEGs of
``--size`` pixels.
Decoded pixels take ``n * size * size * 3`` bytes; beyond the budget the store puts new chunks
in memory-mapped files (unlinked temporary files in ``cache_dir``).

Reported per child (Linux):

* ``ru_maxrss`` (``resource.getrusage``) and ``VmHWM`` (``/proc/self/status``): peak resident
  set size. Both count *every* resident page, including pages of the memory-mapped spill files,
  which are page cache: the kernel can write them back and drop them under pressure, so they
  are not memory the fit holds on to.
* peak ``RssAnon`` (sampled every 20 ms from ``/proc/self/status``): anonymous memory, i.e. the
  in-RAM chunks, the model, activations and batches. This is what the budget bounds.
* peak ``RssFile``: file-backed resident pages (the spilled chunks and shared libraries).

The images are generated directly at the target size (square, JPEG q90, from the same real
photos as ``flickr_like``), because writing 20k Flickr-size files takes long on 2 cores; decode
cost is not what this benchmark measures.

Usage::

    python benchmarks/bench_memory.py --n-images 5000 10000 20000 --size 224 --budget-gb 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import _common
import numpy as np
from flickr_like import make_flickr_like

RESULT_PREFIX = "BENCH_MEMORY_RESULT "


def read_status() -> dict[str, int]:
    """Memory fields of /proc/self/status, in bytes (empty off Linux)."""
    fields = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return fields


class PeakSampler(threading.Thread):
    """Samples /proc/self/status in the background and keeps the peaks."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def sample(self) -> None:
        for key, value in read_status().items():
            self.peaks[key] = max(self.peaks.get(key, 0), value)

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join()
        self.sample()
        return self.peaks


def child(args) -> dict:
    """One fit in this process; returns its memory figures."""
    import torch

    from wjsentiment import SentimentClassifier, get_config, set_config
    from wjsentiment.images import get_store

    device = _common.resolve_device(args.device)
    data = make_flickr_like(args.n, args.data_dir, width=args.size, height=args.size,
                            portrait_fraction=0.0, verbose=False)
    budget = int(args.budget_gb * 2**30)
    set_config(cache_memory_bytes=budget,
               **({"cache_dir": args.cache_dir} if args.cache_dir is not None else {}))
    settings = {"cache_dir": get_config()["cache_dir"] or tempfile.gettempdir()}
    torch.manual_seed(0)
    before = read_status()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    clf = SentimentClassifier(backbone=args.backbone, weights=None, image_size=args.size,
                              epochs=args.epochs, batch_size=args.batch_size,
                              device=str(device), verbose=0, random_state=0)
    clf.fit(data.paths, data.labels)
    seconds = time.perf_counter() - start
    peaks = sampler.stop()
    store = get_store(args.size)
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "n_images": args.n,
        "pixels_bytes": args.n * args.size * args.size * 3,
        "budget_bytes": budget,
        "cache_dir": settings["cache_dir"],
        "store_ram_bytes": store.ram_bytes,
        "spilled": store.spilled,
        "seconds": seconds,
        "images_per_second_epoch1": clf.history_[0]["images_per_second"],
        "ru_maxrss_bytes": ru_maxrss,
        "vm_hwm_bytes": peaks.get("VmHWM", 0),
        "peak_rss_anon_bytes": peaks.get("RssAnon", 0),
        "peak_rss_file_bytes": peaks.get("RssFile", 0),
        "rss_anon_before_fit_bytes": before.get("RssAnon", 0),
    }


def run_child(n: int, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--n-images", str(n),
           "--size", str(args.size), "--budget-gb", repr(args.budget_gb),
           "--backbone", args.backbone, "--batch-size", str(args.batch_size),
           "--epochs", str(args.epochs), "--device", args.device]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.cache_dir:
        cmd += ["--cache-dir", args.cache_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"child for n={n} failed (exit {proc.returncode}):\n"
                       f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Peak memory of fit vs number of images.")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--n-images", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbone", default="test_convnext")
    parser.add_argument("--budget-gb", type=float, default=2.0,
                        help="RAM budget of decoded pixels, GiB (default 2)")
    parser.add_argument("--cache-dir", default=None,
                        help="where spilled chunks are memory-mapped (default: system temp)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", dest="json_out", default=None, metavar="OUT")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.n = args.n_images[0]
        print(RESULT_PREFIX + json.dumps(child(args)), flush=True)
        return {}
    if args.smoke:
        args.n_images, args.size, args.budget_gb, args.batch_size = [16], 32, 0.0, 8
        if args.backbone == parser.get_default("backbone"):
            args.backbone = _common.SMOKE_BACKBONE

    with tempfile.TemporaryDirectory(prefix="wjs-bench-mem-") as scratch:
        if args.cache_dir is None:
            args.cache_dir = scratch
        make_flickr_like(max(args.n_images), args.data_dir, width=args.size, height=args.size,
                         portrait_fraction=0.0)
        runs = [run_child(n, args) for n in sorted(args.n_images)]

    gib = 2**30
    rows = [{"n_images": r["n_images"], "pixels_GiB": r["pixels_bytes"] / gib,
             "spilled": r["spilled"], "store_ram_GiB": r["store_ram_bytes"] / gib,
             "ru_maxrss_GiB": r["ru_maxrss_bytes"] / gib, "VmHWM_GiB": r["vm_hwm_bytes"] / gib,
             "peak_anon_GiB": r["peak_rss_anon_bytes"] / gib,
             "peak_file_GiB": r["peak_rss_file_bytes"] / gib,
             "fit_s": r["seconds"]} for r in runs]
    results = {
        "benchmark": "memory",
        "machine": _common.machine_info(),
        "settings": {"size": args.size, "n_images": sorted(args.n_images),
                     "budget_bytes": int(args.budget_gb * gib), "backbone": args.backbone,
                     "batch_size": args.batch_size, "epochs": args.epochs},
        "runs": runs,
        "notes": [
            "peak_anon = anonymous memory (in-RAM chunks, model, activations); it is what the "
            "budget bounds",
            "ru_maxrss / VmHWM also count resident pages of the memory-mapped spill files, "
            "which are reclaimable page cache",
        ],
    }
    under = [r for r in runs if r["pixels_bytes"] <= r["budget_bytes"]]
    if len(under) >= 2:
        n = np.array([r["n_images"] for r in under], dtype=float)
        anon = np.array([r["peak_rss_anon_bytes"] for r in under], dtype=float)
        slope, intercept = np.polyfit(n, anon, 1)
        per_image = args.size * args.size * 3
        results["anon_slope_bytes_per_image"] = slope
        results["anon_intercept_bytes"] = intercept
        results["notes"].append(
            f"under the budget, peak anon grows {slope / 1e3:.1f} kB per image "
            f"(decoded image = {per_image / 1e3:.1f} kB), intercept {intercept / gib:.2f} GiB")
    return _common.report(f"memory {args.backbone} {args.size}px, budget {args.budget_gb} GiB",
                          results, rows, args.json_out)


if __name__ == "__main__":
    main()
