"""Decode stage: the library's image store vs a plain PIL loop, on Flickr-size JPEGs.

Library: ``clear_image_cache(); get_store(size).add(paths, num_workers=cores)`` (JPEG draft
mode + threads). Baseline: ``np.asarray(Image.open(p).convert("RGB").resize((size, size)))``
in one Python loop, as a user's Dataset does. Two more rows separate the two effects: the
library with one thread (draft mode only) and the plain decode in a thread pool (threads only).
Files are read once beforehand so every row sees them in the page cache. Each row is the best
of ``--repeats`` interleaved runs; ``cpu_ms_per_image`` (process CPU time) shows the work
saved independently of how busy the machine is. Target: library >= 2x the plain loop.

Usage::

    python benchmarks/bench_decode.py --n-images 500 --size 224 --json decode.json
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import _common
import numpy as np
from flickr_like import make_flickr_like
from PIL import Image


def plain_decode(path: str, size: int) -> np.ndarray:
    """What a hand-written Dataset does: open, convert, resize, to array."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size)))


def timed(fn) -> tuple[float, float]:
    """Wall seconds and process CPU seconds (all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Decode stage: image store vs plain PIL loop.")
    _common.add_common_args(parser, size=224, n_images=500)
    parser.add_argument("--workers", type=int, default=None,
                        help="decode threads for the library (default: every core)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.repeats = min(args.n_images, 12), min(args.size, 32), 1

    from wjsentiment.images import clear_image_cache, get_store

    workers = args.workers or _common.cpu_cores()
    data = make_flickr_like(args.n_images, args.data_dir)
    paths, size = data.paths, args.size
    for p in paths:  # page cache
        with open(p, "rb") as fh:
            fh.read()

    def library(n_threads: int):
        def run() -> None:
            clear_image_cache()
            result = get_store(size).add(paths, num_workers=n_threads)
            assert not result.errors, result.errors[:1]
        return run

    def plain_loop() -> None:
        for p in paths:
            plain_decode(p, size)

    def plain_threads() -> None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda p: plain_decode(p, size), paths))

    n = len(paths)
    cases = [
        ("plain PIL loop (baseline)", plain_loop, 1),
        ("plain PIL, thread pool", plain_threads, workers),
        ("library store, 1 thread", library(1), 1),
        ("library store (draft + threads)", library(workers), workers),
    ]
    best = {name: (float("inf"), float("inf")) for name, _, _ in cases}
    for _ in range(args.repeats):  # interleaved, so load changes hit every row alike
        for name, fn, _ in cases:
            wall, cpu = timed(fn)
            if wall < best[name][0]:
                best[name] = (wall, cpu)
    rows = []
    for name, _, threads in cases:
        wall, cpu = best[name]
        rows.append({"method": name, "threads": threads, "seconds": wall,
                     "cpu_seconds": cpu, "images_per_second": n / wall,
                     "cpu_ms_per_image": 1e3 * cpu / n})
    clear_image_cache()
    base = rows[0]["images_per_second"]
    for row in rows:
        row["speedup_vs_baseline"] = row["images_per_second"] / base
    speedup = rows[-1]["speedup_vs_baseline"]
    results = {
        "benchmark": "decode",
        "machine": _common.machine_info(),
        "settings": {"n_images": n, "size": size, "workers": workers, "repeats": args.repeats,
                     "source": f"{data.root} (Flickr-size JPEG q90)"},
        "rows": rows,
        "speedup": speedup,
        "target": 2.0,
        "target_met": bool(speedup >= 2.0),
        "notes": [f"library vs plain loop: {speedup:.2f}x (target >= 2x)"],
    }
    return _common.report("decode", results, rows, args.json_out)


if __name__ == "__main__":
    main()
