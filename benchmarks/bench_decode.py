"""Decode stage: the library's decoders against each other and against a plain PIL loop.

Three tables, on Flickr-size JPEGs (``flickr_like.py``, 500x375) to ``--size`` px:

``plain``
    Library: ``clear_image_cache(); get_store(size).add(paths, num_workers=cores)`` (JPEG draft
    mode + threads). Baseline: ``np.asarray(Image.open(p).convert("RGB").resize((size, size)))``
    in one Python loop, as a user's Dataset does. Two more rows separate the two effects: the
    library with one thread and the plain decode in a thread pool. Best of ``--repeats``
    interleaved runs; target: library >= 2x the plain loop.
``decoders``
    Each host decoder variant at the same worker count, against today's decoder (PIL draft
    mode in a thread pool): simplejpeg (libjpeg-turbo) in threads, simplejpeg with its
    ``fastdct``/``fastupsample`` options, both decoders in a process pool (started before the
    timing; its start-up is reported apart), and the whole store with each decoder. Every
    variant decodes every file into a preallocated array, as the store does. The runs are
    interleaved, ``--repeats`` times; ``ratio`` is the median over repeats of the variant's
    images/s over today's in the same repeat, and ``mad`` the mean absolute difference of its
    pixels from today's (grey levels). Target: >= 1.5x with a MAD within 2.
``device``
    On a CUDA machine: the store with the default host decoder against ``device="cuda"``
    (nvJPEG in batches), the first call (CUDA and nvJPEG start-up) reported apart.

Files are read once beforehand so every run sees them in the page cache. ``cpu_ms_per_image``
is this process's CPU time (all threads; not the pool's children). The 1-minute load average
is recorded before and after: on a shared machine, compare rows of one run.

Usage::

    python benchmarks/bench_decode.py --n-images 500 --size 224 --workers 2 --repeats 7
    python benchmarks/bench_decode.py --tables decoders device --n-images 4096   # GPU host
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import NamedTuple

import _common
import numpy as np
from flickr_like import make_flickr_like
from PIL import Image

TABLES = ("plain", "decoders", "device")

#: Files per task sent to a process-pool worker.
PROCESS_CHUNK = 16


def plain_decode(path: str, size: int) -> np.ndarray:
    """What a hand-written Dataset does: open, convert, resize, to array."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size)))


def decode_chunk(paths: list[str], size: int, host_decoder: str) -> np.ndarray:
    """A process-pool task: decode some files with one host decoder."""
    from wjsentiment.images import decode_image

    return np.stack([decode_image(p, size, host_decoder=host_decoder) for p in paths])


def timed(fn) -> tuple[float, float]:
    """Wall seconds and process CPU seconds (all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


def plain_table(paths: list[str], size: int, workers: int, repeats: int) -> list[dict]:
    """The library store against a plain PIL loop (best of the interleaved repeats)."""
    from wjsentiment.images import clear_image_cache, get_store

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

    cases = [
        ("plain PIL loop (baseline)", plain_loop, 1),
        ("plain PIL, thread pool", plain_threads, workers),
        ("library store, 1 thread", library(1), 1),
        ("library store (draft + threads)", library(workers), workers),
    ]
    best = {name: (float("inf"), float("inf")) for name, _, _ in cases}
    for _ in range(repeats):  # interleaved, so load changes hit every row alike
        for name, fn, _ in cases:
            wall, cpu = timed(fn)
            if wall < best[name][0]:
                best[name] = (wall, cpu)
    clear_image_cache()
    n = len(paths)
    rows = []
    for name, _, threads in cases:
        wall, cpu = best[name]
        rows.append({"method": name, "threads": threads, "seconds": wall,
                     "cpu_seconds": cpu, "images_per_second": n / wall,
                     "cpu_ms_per_image": 1e3 * cpu / n})
    base = rows[0]["images_per_second"]
    for row in rows:
        row["speedup_vs_baseline"] = row["images_per_second"] / base
    return rows


@contextlib.contextmanager
def simplejpeg_options(**options):
    """Run the block with other ``SIMPLEJPEG_OPTIONS`` (the library's module setting)."""
    from wjsentiment.images import decode

    saved = dict(decode.SIMPLEJPEG_OPTIONS)
    decode.SIMPLEJPEG_OPTIONS.update(options)
    try:
        yield
    finally:
        decode.SIMPLEJPEG_OPTIONS.clear()
        decode.SIMPLEJPEG_OPTIONS.update(saved)


@contextlib.contextmanager
def default_decoder(name: str):
    """Run the block with another default host JPEG decoder (``decode.HOST_DECODER``)."""
    from wjsentiment.images import decode

    saved = decode.HOST_DECODER
    decode.HOST_DECODER = name
    try:
        yield
    finally:
        decode.HOST_DECODER = saved


class Case(NamedTuple):
    """One decoder variant: ``run(out)`` decodes every file (the timed part), ``collect(out)``
    then leaves its pixels in ``out``, an ``(n, size, size, 3)`` uint8 array."""

    name: str
    decoder: str
    pool: str
    run: Callable[[np.ndarray], None]
    collect: Callable[[np.ndarray], None]


def decoder_cases(paths: list[str], size: int, workers: int,
                  processes: ProcessPoolExecutor | None) -> list[Case]:
    """Each variant; the first is today's decoder. Thread and process variants decode into
    ``out`` as the store decodes into its rows; the store variants start from an empty
    store and are gathered afterwards, untimed."""
    from wjsentiment.images import clear_image_cache, decode_image, get_store
    from wjsentiment.images.decode import simplejpeg

    def nothing(out: np.ndarray) -> None:
        pass

    def threads(host_decoder: str, **options):
        def run(out: np.ndarray) -> None:
            def one(i: int) -> None:
                out[i] = decode_image(paths[i], size, host_decoder=host_decoder)

            with simplejpeg_options(**options), ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, range(len(paths))))
        return run

    def pooled(host_decoder: str):
        def run(out: np.ndarray) -> None:
            starts = range(0, len(paths), PROCESS_CHUNK)
            chunks = [paths[s:s + PROCESS_CHUNK] for s in starts]
            for start, part in zip(starts, processes.map(
                    decode_chunk, chunks, [size] * len(chunks), [host_decoder] * len(chunks))):
                out[start:start + len(part)] = part
        return run

    def store(host_decoder: str) -> tuple[Callable, Callable]:
        added = []

        def run(out: np.ndarray) -> None:
            with default_decoder(host_decoder):
                added.append(get_store(size).add(paths, num_workers=workers))

        def collect(out: np.ndarray) -> None:
            result = added.pop()
            assert not result.errors, result.errors[:1]
            get_store(size).gather(result.rows, out=out)
            clear_image_cache()  # the next run decodes again
        return run, collect

    clear_image_cache()
    cases = [Case("PIL draft, threads (today)", "pil", "threads", threads("pil"), nothing)]
    if processes is not None:
        cases.append(Case("PIL draft, processes", "pil", "processes", pooled("pil"), nothing))
    if simplejpeg is not None:
        cases.append(Case("simplejpeg, threads", "simplejpeg", "threads",
                          threads("simplejpeg"), nothing))
        cases.append(Case("simplejpeg fastdct+fastupsample, threads", "simplejpeg", "threads",
                          threads("simplejpeg", fastdct=True, fastupsample=True), nothing))
        if processes is not None:
            cases.append(Case("simplejpeg, processes", "simplejpeg", "processes",
                              pooled("simplejpeg"), nothing))
    cases.append(Case("store.add, PIL", "pil", "store", *store("pil")))
    if simplejpeg is not None:
        cases.append(Case("store.add, simplejpeg (default)", "simplejpeg", "store",
                          *store("simplejpeg")))
    return cases


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference over all pixels, and of the worst image, in grey levels."""
    per_image = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(1, 2, 3))
    return float(per_image.mean()), float(per_image.max())


def start_process_pool(workers: int, paths: list[str], size: int
                       ) -> tuple[ProcessPoolExecutor, float]:
    """A process pool whose workers have imported the library and decoded a file each, and
    the seconds that took (spawned: the parent holds torch's threads)."""
    start = time.perf_counter()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(decode_chunk, [paths[:1]] * workers, [size] * workers, ["pil"] * workers))
    return pool, time.perf_counter() - start


def decoders_table(paths: list[str], size: int, workers: int, repeats: int,
                   with_processes: bool) -> tuple[list[dict], dict]:
    """Each host decoder variant against today's, interleaved; medians over the repeats."""
    processes, startup = (start_process_pool(workers, paths, size) if with_processes
                          else (None, None))
    try:
        cases = decoder_cases(paths, size, workers, processes)
        outputs = {case.name: np.zeros((len(paths), size, size, 3), dtype=np.uint8)
                   for case in cases}
        walls: dict[str, list[float]] = {case.name: [] for case in cases}
        cpus: dict[str, list[float]] = {case.name: [] for case in cases}
        for _ in range(repeats):
            for case in cases:
                out = outputs[case.name]
                wall, cpu = timed(lambda case=case, out=out: case.run(out))
                case.collect(out)
                walls[case.name].append(wall)
                cpus[case.name].append(cpu)
    finally:
        if processes is not None:
            processes.shutdown()
    n = len(paths)
    today = cases[0].name
    rows = []
    for name, decoder, pool, _, _ in cases:
        ratios = [b / w for w, b in zip(walls[name], walls[today])]
        mad, worst = mean_abs_diff(outputs[name], outputs[today])
        rows.append({
            "method": name, "decoder": decoder, "pool": pool, "workers": workers,
            "seconds": statistics.median(walls[name]),
            "images_per_second": n / statistics.median(walls[name]),
            "cpu_ms_per_image": (1e3 * statistics.median(cpus[name]) / n
                                 if pool != "processes" else None),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "mad": mad, "mad_worst_image": worst,
        })
    return rows, {"process_pool_startup_seconds": startup}


def device_table(paths: list[str], size: int, workers: int, repeats: int) -> list[dict]:
    """The store with the default host decoder against ``device="cuda"``."""
    import torch

    from wjsentiment.images import clear_image_cache, get_store

    cuda = torch.device("cuda")
    n = len(paths)

    def run(device, out: np.ndarray | None = None, files=paths) -> float:
        clear_image_cache()
        start = time.perf_counter()
        result = get_store(size).add(files, num_workers=workers, device=device)
        seconds = time.perf_counter() - start
        assert not result.errors, result.errors[:1]
        if out is not None:
            get_store(size).gather(result.rows, out=out)
        clear_image_cache()
        return seconds

    first = run(cuda, files=paths[:64])  # CUDA context, nvJPEG handles, kernels
    outputs = {name: np.empty((n, size, size, 3), dtype=np.uint8) for name in ("host", "cuda")}
    walls: dict[str, list[float]] = {"host": [], "cuda": []}
    for _ in range(repeats):
        walls["host"].append(run(None, outputs["host"]))
        walls["cuda"].append(run(cuda, outputs["cuda"]))
    mad, worst = mean_abs_diff(outputs["cuda"], outputs["host"])
    host_rate = n / statistics.median(walls["host"])
    return [
        {"method": f"store.add, host ({workers} threads)", "images_per_second": host_rate,
         "seconds": statistics.median(walls["host"]), "ratio": 1.0, "mad": 0.0},
        {"method": "store.add, device='cuda' (nvJPEG)",
         "images_per_second": n / statistics.median(walls["cuda"]),
         "seconds": statistics.median(walls["cuda"]),
         "ratio": statistics.median([h / c for h, c in zip(walls["host"], walls["cuda"])]),
         "mad": mad, "mad_worst_image": worst, "first_call_64_images_seconds": first},
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Decode stage: the library's decoders.")
    _common.add_common_args(parser, size=224, n_images=500)
    parser.add_argument("--workers", type=int, default=None,
                        help="decode threads and processes (default: every core)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=None,
                        help="which tables (default: plain and decoders, and device on CUDA)")
    parser.add_argument("--no-processes", action="store_true",
                        help="leave the process-pool variants out")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_images, args.size, args.repeats = min(args.n_images, 12), min(args.size, 32), 1

    import torch

    device = _common.resolve_device(args.device)
    tables = args.tables or [t for t in TABLES if t != "device" or device.type == "cuda"]
    if "device" in tables and device.type != "cuda":
        raise SystemExit("--tables device needs a CUDA GPU (and --device auto or cuda).")
    workers = args.workers or _common.cpu_cores()
    data = make_flickr_like(args.n_images, args.data_dir)
    paths, size = data.paths, args.size
    for p in paths:  # page cache
        with open(p, "rb") as fh:
            fh.read()
    load_before = load_average()
    results: dict = {
        "benchmark": "decode",
        "settings": {"n_images": len(paths), "size": size, "workers": workers,
                     "repeats": args.repeats, "tables": tables, "torch_threads":
                     torch.get_num_threads(), "source": f"{data.root} (Flickr-size JPEG q90)"},
        "rows": [], "notes": [],
    }
    if "plain" in tables:
        results["rows"] = plain_table(paths, size, workers, args.repeats)
        speedup = results["rows"][-1]["speedup_vs_baseline"]
        results.update(speedup=speedup, target=2.0, target_met=bool(speedup >= 2.0))
        results["notes"].append(f"library vs plain loop: {speedup:.2f}x (target >= 2x)")
    if "decoders" in tables:
        rows, extra = decoders_table(paths, size, workers, args.repeats,
                                     not args.no_processes)
        results["decoder_rows"] = rows
        results.update(extra)
        best = max(rows[1:], key=lambda r: r["ratio"], default=rows[0])
        results["best_decoder"] = {"method": best["method"], "ratio": best["ratio"],
                                   "mad": best["mad"]}
        results["notes"].append(
            f"best variant: {best['method']}: {best['ratio']:.2f}x today's decoder, MAD "
            f"{best['mad']:.3f} grey levels (target >= 1.5x within 2)")
        if extra["process_pool_startup_seconds"] is not None:
            results["notes"].append(
                f"process pool start-up ({workers} spawned workers importing the library): "
                f"{extra['process_pool_startup_seconds']:.2f} s, not in the rows")
    if "device" in tables:
        results["device_rows"] = device_table(paths, size, workers, args.repeats)
    results["machine"] = _common.machine_info(device)
    results["load_average_1m"] = {"before": load_before, "after": load_average()}
    print(f"\n== decode: {len(paths)} JPEGs to {size} px, {workers} workers, load "
          f"{load_before} -> {results['load_average_1m']['after']} ==")
    for key in ("decoder_rows", "device_rows"):
        if results.get(key):
            print(f"\n-- {key} --")
            print(_common.format_table(results[key]))
    return _common.report("decode", results, results["rows"], args.json_out)


if __name__ == "__main__":
    main()
