"""Prediction throughput: SentimentClassifier.predict_proba vs a bare forward pass.

A model is fitted for one epoch on a few images (``weights=None``), then ``predict_proba``
runs over ``--n-images`` Flickr-size JPEGs twice: cold (image cache cleared, so decoding is
included) and warm (pixels already decoded). The bare forward runs the same network in eval
mode on one reused input tensor at the batch size ``predict_proba`` uses (bf16 autocast +
channels_last on CUDA, fp32 + channels_last on CPU).

``--calls`` measures instead where the time of a warm ``predict_proba`` goes: before the
first forward (keying the paths, the store's bookkeeping, the first batch), between
forwards, after the last one, and in the forwards themselves (timed by hooks on the
network), over ``--repeats`` calls. With ``--compare-checkout PATH`` the same measurement
runs on another checkout of the library too (the code before a change, say), in child
processes that alternate ``--rounds`` times, and the table gives each part before and after
and their ratio.

Usage::

    python benchmarks/bench_predict.py --backbone resnet18 --size 224 --n-images 1024
    python benchmarks/bench_predict.py --calls --backbone test_resnet --size 32 \
        --n-images 4096 --device cpu --compare-checkout /tmp/orig
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import _common
import torch
from flickr_like import make_flickr_like

#: The parts of a warm predict_proba call that ``--calls`` reports, in seconds.
CALL_PARTS = ("total", "before_first_forward", "between_forwards", "after_last_forward",
              "forwards", "input_keys", "store_add", "gather_batches", "one_image_call")


def predict_batch_size(clf, device: torch.device) -> int:
    """The batch size predict_proba uses (mirrors the estimator's rule)."""
    rule = getattr(clf, "_predict_batch_size", None)
    if rule is not None:
        return int(rule(device))
    return max(clf.batch_size, 256 if device.type == "cuda" else 64)


def call_parts(args, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each part of ``--repeats`` warm predict_proba calls, with the library that
    is first on ``sys.path``: wall-clock time, and the calling thread's CPU time (``_cpu``),
    which a busy machine's scheduler does not inflate (on a CPU with one torch thread the
    calling thread does all the work)."""
    from wjsentiment import SentimentClassifier
    from wjsentiment.images import get_store, input_key

    data = make_flickr_like(args.n_images, args.data_dir, verbose=False)
    n_fit = min(len(data.paths), 2 * args.batch_size)
    clf = SentimentClassifier(backbone=args.backbone, weights=None, image_size=args.size,
                              epochs=1, batch_size=args.batch_size, device=str(device),
                              verbose=0, random_state=0, calibration=None)
    clf.fit(data.paths[:n_fit], data.labels[:n_fit])
    clf.predict_proba(data.paths)  # decodes every image: the calls below are warm
    stamps: list[tuple[str, float, float]] = []

    def now() -> tuple[float, float]:
        _common.sync(device)
        return time.perf_counter(), time.thread_time()

    clf.model_.register_forward_pre_hook(lambda module, inputs: stamps.append(("start", *now())))
    clf.model_.register_forward_hook(lambda module, inputs, out: stamps.append(("end", *now())))
    parts: dict[str, list[float]] = {f"{name}{clock}": [] for name in CALL_PARTS
                                     for clock in ("", "_cpu")}

    def add(name: str, begin: tuple[float, float], end: tuple[float, float]) -> None:
        parts[name].append(end[0] - begin[0])
        parts[f"{name}_cpu"].append(end[1] - begin[1])

    for _ in range(args.repeats):
        stamps.clear()
        start = now()
        clf.predict_proba(data.paths)
        end = now()
        starts = [(w, c) for kind, w, c in stamps if kind == "start"]
        ends = [(w, c) for kind, w, c in stamps if kind == "end"]
        add("total", start, end)
        add("before_first_forward", start, starts[0])
        add("after_last_forward", ends[-1], end)
        for name, pairs in (("forwards", zip(starts, ends)),
                            ("between_forwards", zip(ends[:-1], starts[1:]))):
            pairs = list(pairs)
            parts[name].append(sum(b[0] - a[0] for a, b in pairs))
            parts[f"{name}_cpu"].append(sum(b[1] - a[1] for a, b in pairs))
        begin = now()
        [input_key(p) for p in data.paths]
        add("input_keys", begin, now())
        begin = now()
        with get_store(args.size).add(data.paths, pin=True) as found:
            add("store_add", begin, now())
            batch = predict_batch_size(clf, device)
            begin = now()
            for i in range(0, len(found.rows), batch):
                get_store(args.size).gather(found.rows[i:i + batch])
            add("gather_batches", begin, now())
        begin = now()
        clf.predict_proba(data.paths[:1])
        add("one_image_call", begin, now())
    return parts


def calls_child(args) -> None:
    """``--calls-child CHECKOUT``: measure with the library of CHECKOUT; print JSON."""
    sys.path.insert(0, os.path.abspath(args.calls_child))  # ahead of this checkout
    import wjsentiment

    device = _common.resolve_device(args.device)
    parts = call_parts(args, device)
    print(json.dumps({"library": os.path.dirname(wjsentiment.__file__), "parts": parts}))


def compare_calls(args, device: torch.device) -> dict:
    """``--calls`` on this checkout and ``--compare-checkout``, alternating in children."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = {"before": os.path.abspath(args.compare_checkout), "after": here}
    common = [sys.executable, os.path.abspath(__file__), "--device", str(device.type),
              "--size", str(args.size), "--n-images", str(args.n_images),
              "--batch-size", str(args.batch_size), "--backbone", args.backbone,
              "--repeats", str(args.repeats)]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    parts: dict[str, dict[str, list[float]]] = {k: {} for k in checkouts}
    libraries = {}
    for _ in range(args.rounds):
        for label, checkout in checkouts.items():
            out = subprocess.run(common + ["--calls-child", checkout], capture_output=True,
                                 text=True, check=True)
            child = json.loads(out.stdout.strip().splitlines()[-1])
            libraries[label] = child["library"]
            for name, values in child["parts"].items():
                parts[label].setdefault(name, []).extend(values)
    rows = []
    for name in CALL_PARTS:
        row = {"part": name}
        for clock in ("", "_cpu"):
            before = statistics.median(parts["before"][name + clock])
            after = statistics.median(parts["after"][name + clock])
            unit = "cpu_ms" if clock else "wall_ms"
            row.update({f"before_{unit}": 1e3 * before, f"after_{unit}": 1e3 * after,
                        f"ratio_{unit}": after / before if before else float("nan")})
        rows.append(row)
    return {"rows": rows, "libraries": libraries, "samples": parts}


def main_calls(args) -> dict:
    device = _common.resolve_device(args.device)
    load_before = os.getloadavg()[0]
    if args.compare_checkout:
        compared = compare_calls(args, device)
        rows = compared["rows"]
        extra = {"libraries": compared["libraries"], "samples": compared["samples"]}
    else:
        parts = call_parts(args, device)
        rows = [{"part": name, "wall_ms": 1e3 * statistics.median(parts[name]),
                 "cpu_ms": 1e3 * statistics.median(parts[f"{name}_cpu"])}
                for name in CALL_PARTS]
        extra = {"samples": parts}
    results = {
        "benchmark": "predict_calls",
        "machine": _common.machine_info(device),
        "settings": {"backbone": args.backbone, "size": args.size, "n_images": args.n_images,
                     "repeats": args.repeats, "rounds": args.rounds,
                     "compare_checkout": args.compare_checkout},
        "load_average_1m": {"before": round(load_before, 2),
                            "after": round(os.getloadavg()[0], 2)},
        "rows": rows, **extra,
    }
    return _common.report(f"warm predict_proba parts, {args.backbone} {args.size}px on {device}",
                          results, rows, args.json_out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="predict_proba vs a bare forward pass.")
    _common.add_common_args(parser, size=224, n_images=256, batch_size=32)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--bare-steps", type=int, default=10)
    parser.add_argument("--calls", action="store_true",
                        help="where a warm predict_proba's time goes, instead of throughput")
    parser.add_argument("--repeats", type=int, default=5, help="warm calls (--calls)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternations of the two checkouts (--compare-checkout)")
    parser.add_argument("--compare-checkout", default=None, metavar="PATH",
                        help="with --calls: measure this checkout of the library too")
    parser.add_argument("--calls-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.batch_size, args.bare_steps = (
            min(args.n_images, 16), min(args.size, 32), 8, 2)
        args.repeats, args.rounds = min(args.repeats, 2), 1
        if args.backbone == parser.get_default("backbone"):
            args.backbone = _common.SMOKE_BACKBONE
    if args.calls_child:
        return calls_child(args)
    if args.calls:
        return main_calls(args)

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
