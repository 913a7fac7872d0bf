"""Scaling out: GridSearchCV on a local Dask cluster against ``n_jobs=1``.

Dask: the same ``GridSearchCV(SentimentClassifier(finetune="head", weights=None,
calibration=None, random_state=0, ...), {"lr": [1e-3, 1e-2], "head": ["linear", "mlp"]},
cv=3)`` (12 fits and the refit) runs twice from cold caches: once in this process with
``n_jobs=1`` (torch using every core), once with ``n_jobs=-1`` inside
``joblib.parallel_backend("dask")`` on a ``LocalCluster`` of ``--workers`` processes with
one thread each, which share the frozen
backbone features through a feature-cache folder (:func:`wjsentiment.scale.worker_setup`;
this process, which runs the refit, reads the same folder).
The cluster's start-up (spawning the workers) is timed apart; the cold search's time includes
the workers importing torch on their first task, as a fresh cluster would. Each search then
runs once more, warm (same process or same cluster: decoded images and features cached).
Reported: seconds, fits per second and the ratios ``n_jobs=1 seconds / dask seconds``
(above 1: Dask faster), cold and warm, and whether both searches chose the same parameters
with the same scores.

On a machine with 2 cores the workers take the cores that torch's threads would use in the
``n_jobs=1`` run, so no speed-up is to be expected here: the ratio measures the overhead of
the cluster (process start, task transfer, one feature pass shared through files). The gain
comes with more cores or machines than one process can use.

``--gloo-fit`` adds the data-parallel fit (see :func:`gloo_fit`): ``SentimentClassifier(
finetune="full", weights=None, augment=False, ...)`` on the same images, once under
``torchrun --nproc-per-node 2`` (gloo, ``batch_size`` per rank, one torch thread per rank)
and once in one process with twice the batch size and two threads: the same total batch and
the same cores. Reported: each run's training images per second (from ``history_``), the fit's
seconds inside the process and the launch's seconds, and the ratio of images per second
(2 processes / 1 process). On 2 cores this is no speed-up: it measures what the gradient
all-reduce and the second process cost.

Usage::

    python benchmarks/bench_scale.py --n-images 120 --size 112 --workers 2 --json scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
from flickr_like import make_flickr_like

GRID = {"lr": [1e-3, 1e-2], "head": ["linear", "mlp"]}


def _fit_worker(spec_file: str) -> None:
    """One rank (or the only process) of :func:`gloo_fit`: fit, and rank 0 writes its timing."""
    spec = json.loads(Path(spec_file).read_text())
    from wjsentiment import SentimentClassifier

    clf = SentimentClassifier(backbone=spec["backbone"], weights=None, image_size=spec["size"],
                              epochs=spec["epochs"], batch_size=spec["batch_size"],
                              augment=False, calibration=None, device="cpu", random_state=0,
                              verbose=0)
    clf.fit(spec["paths"], spec["labels"])  # decoding, warm-up: not in the timed epochs
    start = time.perf_counter()
    clf.fit(spec["paths"], spec["labels"])
    seconds = time.perf_counter() - start
    if int(os.environ.get("RANK", "0")) == 0:
        samples = sum(e["samples"] for e in clf.history_)
        train = sum(e["seconds"] for e in clf.history_)
        Path(spec["out"]).write_text(json.dumps({
            "fit_seconds": seconds, "samples": samples, "train_seconds": train,
            "images_per_second": samples / train, "history": clf.history_}))


def _launch(spec: dict, processes: int, threads: int, folder: str) -> dict:
    """Run :func:`_fit_worker` in ``processes`` processes under torchrun; its result."""
    spec_file = Path(folder) / f"spec{processes}.json"
    spec_file.write_text(json.dumps({**spec, "out": str(Path(folder) / f"out{processes}.json")}))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                    str(processes), "--master-addr", "127.0.0.1", "--master-port", str(port),
                    __file__, "--fit-worker", str(spec_file)], env=env, check=True,
                   timeout=3600)
    found = json.loads((Path(folder) / f"out{processes}.json").read_text())
    return {**found, "launch_seconds": time.perf_counter() - start, "processes": processes,
            "threads_per_process": threads}


def gloo_fit(args: argparse.Namespace, paths: list[str], y: np.ndarray) -> dict:
    """A 2-process gloo fit against a 1-process fit of the same total batch and cores."""
    cores = max(2, os.cpu_count() or 2)
    spec = {"backbone": args.backbone, "size": args.size, "epochs": args.epochs,
            "paths": paths, "labels": np.asarray(y).tolist()}
    with tempfile.TemporaryDirectory(prefix="wjs-bench-gloo-") as folder:
        one = _launch({**spec, "batch_size": 2 * args.batch_size}, 1, cores, folder)
        two = _launch({**spec, "batch_size": args.batch_size}, 2, cores // 2, folder)
    ratio = two["images_per_second"] / one["images_per_second"]
    return {"one_process": one, "two_processes": two, "ratio": ratio,
            "total_batch": 2 * args.batch_size,
            "status": f"2 processes x batch {args.batch_size} (gloo) / 1 process x batch "
                      f"{2 * args.batch_size}: {ratio:.2f}x images per second"}


def _search(args: argparse.Namespace, n_jobs: int):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from wjsentiment import SentimentClassifier

    estimator = SentimentClassifier(backbone=args.backbone, finetune="head", weights=None,
                                    image_size=args.size, epochs=args.epochs,
                                    batch_size=args.batch_size, calibration=None,
                                    random_state=0, device="cpu", verbose=0)
    return GridSearchCV(estimator, GRID, cv=StratifiedKFold(args.cv), n_jobs=n_jobs)


def dask_search(args: argparse.Namespace, paths: list[str], y: np.ndarray) -> dict:
    """The search on a fresh LocalCluster; the start-up and the search timed apart."""
    import joblib
    from distributed import Client, LocalCluster

    from wjsentiment import set_config
    from wjsentiment.models import feature_cache_dir
    from wjsentiment.scale import worker_setup

    previous = feature_cache_dir()
    with tempfile.TemporaryDirectory(prefix="wjs-bench-features-") as features:
        set_config(feature_cache_dir=features)  # the refit, in this process, reads them too
        start = time.perf_counter()
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        client.register_plugin(worker_setup(feature_cache_dir=features, torch_threads=1))
        startup = time.perf_counter() - start
        try:
            seconds = []
            for _ in range(2):  # cold, then warm
                start = time.perf_counter()
                with joblib.parallel_backend("dask", scatter=[paths, y]):
                    search = _search(args, n_jobs=-1).fit(paths, y)
                seconds.append(time.perf_counter() - start)
        finally:
            client.close()
            cluster.close()
            set_config(feature_cache_dir=previous)
    return {"startup_seconds": startup, "seconds": seconds[0], "warm_seconds": seconds[1],
            "search": search}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="GridSearchCV: Dask cluster vs n_jobs=1.")
    _common.add_common_args(parser, size=112, n_images=120, epochs=3, batch_size=32)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2,
                        help="Dask worker processes, one thread each (default 2)")
    parser.add_argument("--gloo-fit", action="store_true",
                        help="also a 2-process gloo fit under torchrun against one "
                             "process of the same total batch")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.epochs, args.batch_size, args.cv = (
            min(args.n_images, 12), min(args.size, 32), 1, 8, 2)
        if args.backbone == parser.get_default("backbone"):
            args.backbone = _common.SMOKE_BACKBONE
    if args.device == "cuda":
        raise SystemExit("bench_scale measures CPU worker processes; use --device cpu.")

    import torch

    from wjsentiment import set_config
    from wjsentiment.images import clear_image_cache
    from wjsentiment.models import clear_feature_cache, feature_cache_dir

    data = make_flickr_like(args.n_images, args.data_dir, verbose=False)
    paths, y = list(data.paths), np.asarray(data.labels)

    folder = feature_cache_dir()
    set_config(feature_cache_dir=None)  # cold: no features from an earlier run on disk
    clear_image_cache()
    clear_feature_cache()
    try:
        start = time.perf_counter()
        local = _search(args, n_jobs=1).fit(paths, y)
        local_seconds = time.perf_counter() - start
        start = time.perf_counter()
        _search(args, n_jobs=1).fit(paths, y)
        local_warm = time.perf_counter() - start
    finally:
        set_config(feature_cache_dir=folder)
        clear_image_cache()
        clear_feature_cache()

    remote = dask_search(args, paths, y)
    n_fits = args.cv * len(local.cv_results_["params"]) + 1
    ratio = local_seconds / remote["seconds"]
    warm_ratio = local_warm / remote["warm_seconds"]
    same = bool(remote["search"].best_params_ == local.best_params_ and np.allclose(
        remote["search"].cv_results_["mean_test_score"], local.cv_results_["mean_test_score"],
        rtol=0, atol=1e-6))
    local_run = f"n_jobs=1 ({torch.get_num_threads()} torch threads)"
    dask_run = f"dask, {args.workers} workers x 1 thread"
    rows = [
        {"run": f"{local_run}, cold", "fits": n_fits, "seconds": local_seconds,
         "fits_per_second": n_fits / local_seconds},
        {"run": f"{dask_run}, cold", "fits": n_fits, "seconds": remote["seconds"],
         "fits_per_second": n_fits / remote["seconds"]},
        {"run": "dask cluster start-up (not in the rows)", "seconds": remote["startup_seconds"]},
        {"run": f"{local_run}, warm", "fits": n_fits, "seconds": local_warm,
         "fits_per_second": n_fits / local_warm},
        {"run": f"{dask_run}, warm", "fits": n_fits, "seconds": remote["warm_seconds"],
         "fits_per_second": n_fits / remote["warm_seconds"]},
        {"run": "ratio n_jobs=1 / dask, cold (above 1: dask faster)", "seconds": ratio},
        {"run": "ratio n_jobs=1 / dask, warm", "seconds": warm_ratio},
    ]
    results = {
        "benchmark": "scale",
        "machine": _common.machine_info(torch.device("cpu")),
        "settings": {"backbone": args.backbone, "size": args.size, "n_images": len(paths),
                     "epochs": args.epochs, "batch_size": args.batch_size, "cv": args.cv,
                     "grid": GRID, "workers": args.workers, "data": data.root},
        "n_jobs_1": {"seconds": local_seconds, "warm_seconds": local_warm,
                     "torch_threads": torch.get_num_threads(),
                     "best_params": local.best_params_,
                     "mean_scores": local.cv_results_["mean_test_score"].tolist()},
        "dask": {"seconds": remote["seconds"], "warm_seconds": remote["warm_seconds"],
                 "startup_seconds": remote["startup_seconds"],
                 "best_params": remote["search"].best_params_,
                 "mean_scores": remote["search"].cv_results_["mean_test_score"].tolist()},
        "ratio": ratio,
        "warm_ratio": warm_ratio,
        "same_result": same,
        "notes": [f"{n_fits} fits; ratio n_jobs=1 seconds / dask seconds: {ratio:.2f} cold, "
                  f"{warm_ratio:.2f} warm; same best_params_ and scores: {same}"],
    }
    if args.gloo_fit:
        results["gloo_fit"] = gloo_fit(args, paths, y)
        results["notes"].append(f"gloo fit: {results['gloo_fit']['status']}")
        for key, name in (("one_process", "fit, 1 process"), ("two_processes",
                                                              "fit, 2 processes (gloo)")):
            run = results["gloo_fit"][key]
            rows.append({"run": f"{name} x {run['threads_per_process']} threads",
                         "seconds": run["fit_seconds"],
                         "images_per_second": run["images_per_second"]})
    return _common.report(f"GridSearchCV on Dask {args.backbone} {args.size}px", results, rows,
                          args.json_out, columns=["run", "fits", "seconds", "fits_per_second",
                                                  "images_per_second"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fit-worker"]:  # a process of gloo_fit, started by torchrun
        _fit_worker(sys.argv[2])
    else:
        main()
