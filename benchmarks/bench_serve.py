"""`wjsentiment serve` under load and faults, and int8 against float on the CPU.

Three parts (``--parts``, default all):

- ``load``: the service on 127.0.0.1 (started here with ``--model``, or an existing one with
  ``--url``) under closed-loop load: at each ``--concurrency`` (1, 8, 32) that many clients
  each send one Flickr-size JPEG per request (the raw body), for ``--seconds`` and at most
  ``--requests`` per level. Reported: images/s, p50/p95/p99 latency, the mean batch (images
  and requests per forward pass, from ``/metrics``), and in the same run, at that batch size,
  in-process ``predict_proba`` on the same JPEGs (decoding included: the image cache is
  cleared before each call) and the bare forward on decoded pixels. Targets: at concurrency
  32 the service reaches 80% of in-process throughput (CPU) and 85% of the bare forward (GPU).
- ``faults``: ``--fault-requests`` (10,000) requests at concurrency 8 with
  ``--malformed-share`` (5%) malformed ones mixed in (truncated JPEGs, random bytes, text,
  empty bodies): the count of 5xx answers (target 0), good requests answered (target all),
  and the resident memory of the server's processes after the first 1,000 requests and at
  the end (target within 10%).
- ``int8``: ``predict_proba`` vs the float ONNX file vs the int8 one from
  :func:`wjsentiment.quantize.export_int8` through onnxruntime, on the CPU with the same
  threads, interleaved, on decoded images: ResNet18 at 224 px (fitted for an epoch,
  ``weights=None``), and the demo's members and ensemble (``--demo-model``, a folder written
  by ``wjsentiment demo``; without it the demo's models are "not measured"), their parity
  measured on the demo's held-out emoji. Target: int8 at least 1.8x float for ResNet18.

Every load is bounded in count and time. Without a GPU, the GPU figures are "not measured".

Usage::

    python benchmarks/bench_serve.py --json results/serve.json --demo-model runs/demo/model
    python benchmarks/bench_serve.py --smoke
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common
import numpy as np
import requests
import torch
from flickr_like import make_flickr_like

PARTS = ("load", "faults", "int8")
INT8_COLUMNS = ["model", "predict_proba_images_per_s", "float_images_per_s",
                "float_folded_images_per_s", "int8_images_per_s", "int8_over_float",
                "agreement", "mean_abs_difference", "meets_parity"]


# ----------------------------------------------------------------------------- the server
class Server:
    """The service under test: started here (and stopped at the end), or one at ``url``."""

    def __init__(self, url: str | None, model: str | None, args: argparse.Namespace) -> None:
        key_env = args.api_key_env
        self.headers = {"X-API-Key": os.environ[key_env]} if key_env else {}
        self.proc = None
        self.pid = args.server_pid
        if url:
            self.url = url.rstrip("/")
            return
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
        command = [sys.executable, "-m", "wjsentiment.serve", model, "--port", str(port),
                   "--device", args.device, "--max-batch-size", str(args.max_batch_size),
                   "--batch-timeout-ms", str(args.batch_timeout_ms), "--workers",
                   str(args.workers), "--no-heatmaps"]
        if key_env:
            command += ["--api-key-env", key_env]
        env = {**os.environ, "PYTHONPATH": str(_common.REPO_ROOT)}
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 600
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {self.log.name}")
            time.sleep(0.5)

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def batch_counts(self) -> dict[str, float]:
        """Sums and counts of the batch-size histograms."""
        text = requests.get(f"{self.url}/metrics", headers=self.headers, timeout=30).text
        found = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("wjsentiment_batch_") and name.endswith(("_sum", "_count")):
                found[name] = float(value)
        return found

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def resident_bytes(pid: int | None) -> int | None:
    """Resident memory of a process and all its descendants (Linux ``/proc``)."""
    if pid is None or not os.path.exists(f"/proc/{pid}"):
        return None
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as fh:
                total += next(int(line.split()[1]) * 1024 for line in fh
                              if line.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo += [int(child) for child in fh.read().split()]
        except (OSError, StopIteration):
            continue
    return total


# ------------------------------------------------------------------------------- the load
def closed_loop(server: Server, bodies: list[bytes], concurrency: int, seconds: float,
                max_requests: int) -> tuple[list[float], list[int], float]:
    """``concurrency`` clients each sending the next body as soon as the last is answered,
    until ``seconds`` pass or ``max_requests`` are sent; latencies (s), statuses, wall time."""
    latencies, statuses, lock = [], [], threading.Lock()
    counter = iter(range(max_requests))
    deadline = time.monotonic() + seconds
    headers = {**server.headers, "Content-Type": "image/jpeg"}

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    status = session.post(f"{server.url}/predict", data=bodies[i % len(bodies)],
                                          headers=headers, timeout=120).status_code
                except requests.RequestException:
                    status = -1
                with lock:
                    latencies.append(time.perf_counter() - start)
                    statuses.append(status)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    return latencies, statuses, time.perf_counter() - start


def in_process_speed(model, paths: list[str], batch: int, repeats: int) -> float:
    """Images/s of ``predict_proba`` on JPEG paths in calls of ``batch``, decoding included."""
    from wjsentiment.images import clear_image_cache

    best = 0.0
    calls = [paths[i:i + batch] for i in range(0, len(paths) - batch + 1, batch)] or [paths]
    for _ in range(repeats):
        seconds = 0.0
        for call in calls:
            clear_image_cache()
            start = time.perf_counter()
            model.predict_proba(call)
            seconds += time.perf_counter() - start
        best = max(best, sum(len(c) for c in calls) / seconds)
    return best


def mean_of(before: dict, after: dict, name: str) -> float:
    """The mean of a histogram over what was observed between two readings."""
    count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
    return (after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)) / max(count, 1)


def run_load(server: Server, model, data, args) -> list[dict]:
    bodies = [Path(p).read_bytes() for p in data.paths]
    rows = []
    for concurrency in args.concurrency:
        closed_loop(server, bodies, concurrency, 2, 2 * concurrency)  # warm-up
        before = server.batch_counts()
        latencies, statuses, wall = closed_loop(server, bodies, concurrency, args.seconds,
                                                args.requests)
        after = server.batch_counts()
        images, requests_ = (mean_of(before, after, f"wjsentiment_batch_{what}")
                             for what in ("images", "requests"))
        batch = max(1, round(images))
        ok = statuses.count(200)
        row = {"concurrency": concurrency, "requests": len(statuses), "errors": len(statuses) - ok,
               "images_per_s": ok / wall,
               **{f"p{q}_ms": float(np.percentile(latencies, q) * 1000) for q in (50, 95, 99)},
               "mean_batch_images": images, "mean_batch_requests": requests_}
        if model is not None:
            row["in_process_images_per_s"] = in_process_speed(model, data.paths, batch,
                                                              args.repeats)
            row["service_over_in_process"] = row["images_per_s"] / row[
                "in_process_images_per_s"]
            row["bare_forward_images_per_s"] = bare_forward(model, batch, args)
        _common.log("load", str({k: round(v, 2) if isinstance(v, float) else v
                                 for k, v in row.items()}))
        rows.append(row)
    return rows


def bare_forward(model, batch: int, args) -> float | None:
    members = getattr(model, "members_", None)
    if members is None or len(members) != 1:
        return None
    clf = members[0].classifier
    with clf.inference_network() as net:
        device = next(net.parameters()).device
        return _common.bare_forward_speed(net, batch, int(clf.image_size), device,
                                          steps=3 if args.smoke else 20)["images_per_second"]


# ----------------------------------------------------------------------------- the faults
def malformed_bodies(good: bytes, rng: np.random.Generator) -> list[tuple[str, bytes, str]]:
    """(kind, body, content type) of the malformed requests mixed in."""
    return [("truncated JPEG", good[:len(good) * 2 // 5], "image/jpeg"),
            ("random bytes", rng.bytes(2000), "application/octet-stream"),
            ("text", b'{"url": "http://example.invalid/a.jpg"}', "application/json"),
            ("empty", b"", "image/jpeg")]


def run_faults(server: Server, data, args) -> dict:
    rng = np.random.default_rng(0)
    bodies = [Path(p).read_bytes() for p in data.paths]
    bad = malformed_bodies(bodies[0], rng)
    n = args.fault_requests
    is_bad = rng.random(n) < args.malformed_share
    plan = [(bad[i % len(bad)] if is_bad[i] else ("good", bodies[i % len(bodies)],
                                                  "image/jpeg")) for i in range(n)]
    statuses = [0] * n
    memory, lock, counter = {}, threading.Lock(), iter(range(n))
    first_thousand = min(1000, n // 2)

    def client() -> None:
        with requests.Session() as session:
            while (i := next(counter, None)) is not None:
                kind, body, content_type = plan[i]
                try:
                    answer = session.post(f"{server.url}/predict", data=body, timeout=120,
                                          headers={**server.headers,
                                                   "Content-Type": content_type})
                    good = answer.status_code == 200 and len(answer.json()["predictions"]) == 1
                    statuses[i] = 200 if good else answer.status_code
                except (requests.RequestException, ValueError):
                    statuses[i] = -1
                with lock:
                    done = sum(1 for s in statuses if s != 0)
                    if done >= first_thousand and "after_first" not in memory:
                        memory["after_first"] = resident_bytes(server.pid)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.fault_concurrency) as pool:
        for future in [pool.submit(client) for _ in range(args.fault_concurrency)]:
            future.result()
    wall = time.perf_counter() - start
    end = resident_bytes(server.pid)
    good = [s for s, (kind, _, _) in zip(statuses, plan) if kind == "good"]
    malformed = [s for s, (kind, _, _) in zip(statuses, plan) if kind != "good"]
    result = {"requests": n, "malformed_sent": len(malformed), "good_sent": len(good),
              "good_answered": good.count(200),
              "status_5xx": sum(1 for s in statuses if 500 <= s < 600),
              "connection_errors": statuses.count(-1),
              "malformed_statuses": {str(s): malformed.count(s) for s in sorted(set(malformed))},
              "seconds": wall, "rss_after_first_mb": _mb(memory.get("after_first")),
              "rss_end_mb": _mb(end)}
    if memory.get("after_first") and end:
        result["rss_growth"] = end / memory["after_first"] - 1
    _common.log("faults", str(result))
    return result


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 1e6, 1)


# -------------------------------------------------------------------------------- int8
def onnx_speeds(model, files: dict[str, str], pixels: np.ndarray, batch: int,
                repeats: int) -> dict[str, float]:
    """Images/s of predict_proba and of each ONNX file, interleaved, best of ``repeats``."""
    import onnxruntime

    from wjsentiment.export import load_onnx

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    sides = {"predict_proba": model.predict_proba,
             **{name: load_onnx(path, batch_size=batch, session_options=options).predict_proba
                for name, path in files.items()}}
    best = dict.fromkeys(sides, 0.0)
    for predict in sides.values():
        predict(pixels[:batch])
    for _ in range(repeats):
        for name, predict in sides.items():
            start = time.perf_counter()
            for i in range(0, len(pixels), batch):
                predict(pixels[i:i + batch])
            best[name] = max(best[name], len(pixels) / (time.perf_counter() - start))
    return best


def int8_row(name: str, model, calibration, held_out, held_out_labels, speed_pixels,
             tmp: Path, args) -> dict:
    """export_int8 on one model, and the speeds of its three forms."""
    from wjsentiment.quantize import export_int8, fold_shapes

    float_file = str(model.export_onnx(tmp / f"{name}.onnx"))
    fold_shapes(float_file, tmp / f"{name}.folded.onnx", speed_pixels[:4])
    report = export_int8(float_file, tmp / f"{name}.int8.onnx", calibration,
                         held_out=held_out, held_out_labels=held_out_labels,
                         n_calibration=args.calibration_images)
    speeds = onnx_speeds(model, {"float": float_file, "float_folded":
                                 str(tmp / f"{name}.folded.onnx"),
                                 "int8": str(tmp / f"{name}.int8.onnx")},
                         speed_pixels, args.batch_size, args.repeats)
    row = {"model": name, **{f"{k}_images_per_s": v for k, v in speeds.items()},
           "int8_over_float": speeds["int8"] / speeds["float"],
           "int8_over_float_folded": speeds["int8"] / speeds["float_folded"],
           "agreement": report.agreement, "mean_abs_difference": report.mean_abs_difference,
           "macro_f1_float_int8": report.macro_f1, "log_loss_float_int8": report.log_loss,
           "meets_parity": report.meets_parity, "policy": report.policy,
           "checked_on": report.n_images}
    _common.log("int8", str(row))
    return row


def demo_models(path: str) -> list[tuple[str, object]]:
    """The demo's members and its ensemble, from the folder ``wjsentiment demo`` wrote."""
    import wjsentiment

    ensemble = wjsentiment.load(path, device="cpu")
    return [(f"demo_{m.name}_{m.classifier.image_size}px", m.classifier)
            for m in ensemble.members_] + [("demo_ensemble", ensemble)]


def demo_split() -> tuple[list[str], list[str], np.ndarray]:
    """The demo's training emoji (for calibration) and held-out emoji with their labels."""
    from wjsentiment.datasets import load_emoji_sentiment, stratified_split
    from wjsentiment.demo import SPLIT_SEED, TEST_FRACTION

    emoji = load_emoji_sentiment()
    y, paths = np.asarray(emoji.target), np.asarray(emoji.paths)
    train, test = stratified_split(y, (1 - TEST_FRACTION, TEST_FRACTION),
                                   random_state=SPLIT_SEED, groups=emoji.groups)
    order = np.random.default_rng(0).permutation(train)
    return paths[order].tolist(), paths[test].tolist(), y[test]


def run_int8(smoke_model, data, args) -> list[dict]:
    """ResNet18 at 224 px (or the smoke model) and the demo's models."""
    from wjsentiment import SentimentClassifier
    from wjsentiment.images import decode_image

    if smoke_model is not None:
        models = [("smoke_model", smoke_model, data.paths, None, None)]
    else:
        clf = SentimentClassifier(backbone="resnet18", weights=None, image_size=224, epochs=1,
                                  batch_size=32, device="cpu", verbose=0, random_state=0)
        clf.fit(data.paths[:64], data.labels[:64])
        models = [("resnet18_224px", clf, data.paths, None, None)]
        if args.demo_model:
            train, test, y_test = demo_split()
            models += [(name, model, train, test, y_test)
                       for name, model in demo_models(args.demo_model)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, calibration, held_out, held_out_labels in models:
            size = int(model.members_[0].classifier.image_size)
            speed_pixels = np.stack([decode_image(p, size)
                                     for p in (held_out or data.paths)[:args.n_images]])
            rows.append(int8_row(name, model, calibration, held_out, held_out_labels,
                                 speed_pixels, Path(tmp), args))
    return rows


# --------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="wjsentiment serve under load; int8 vs float.")
    _common.add_common_args(parser, size=224, n_images=256, batch_size=32)
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default: {','.join(PARTS)})")
    parser.add_argument("--model", default=None, help="saved model folder or .onnx file to "
                        "serve (default: resnet18 at --size, fitted here for one epoch)")
    parser.add_argument("--url", default=None, help="measure the service already at this "
                        "URL instead of starting one (with --model for the in-process side)")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="with --url: the server's process id, for its memory")
    parser.add_argument("--api-key-env", default=None, metavar="VAR",
                        help="the service's API key is in this environment variable")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    parser.add_argument("--requests", type=int, default=5000, help="most per level")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fault-requests", type=int, default=10_000)
    parser.add_argument("--fault-concurrency", type=int, default=8)
    parser.add_argument("--malformed-share", type=float, default=0.05)
    parser.add_argument("--calibration-images", type=int, default=128)
    parser.add_argument("--demo-model", default=None,
                        help="a folder written by `wjsentiment demo` (runs/demo/model)")
    return parser


def _smoke(args: argparse.Namespace) -> None:
    args.size, args.n_images, args.batch_size, args.repeats = 32, 12, 4, 1
    args.concurrency, args.seconds, args.requests = [1, 2], 5.0, 16
    args.fault_requests, args.fault_concurrency, args.malformed_share = 80, 2, 0.1
    args.calibration_images, args.demo_model = 6, None


def _model_folder(args: argparse.Namespace, data, tmp: Path) -> str:
    """The model to serve: ``--model``, or one fitted here for an epoch (weights=None)."""
    if args.model:
        return args.model
    from wjsentiment import SentimentClassifier

    backbone = _common.SMOKE_BACKBONE if args.smoke else "resnet18"
    clf = SentimentClassifier(backbone=backbone, weights=None, image_size=args.size, epochs=1,
                              batch_size=args.batch_size, verbose=0, random_state=0)
    clf.fit(data.paths[:2 * args.batch_size], data.labels[:2 * args.batch_size])
    return clf.save(tmp / "model")


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.smoke:
        _smoke(args)
    parts = [p for p in args.parts.split(",") if p]
    import wjsentiment

    device = _common.resolve_device(args.device)
    args.device = device.type
    data = make_flickr_like(args.n_images, args.data_dir, verbose=False)
    results = {"benchmark": "serve", "machine": _common.machine_info(device),
               "settings": {k: v for k, v in vars(args).items() if k != "api_key_env"},
               "notes": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = _model_folder(args, data, Path(tmp))
        model = None if str(folder).endswith(".onnx") else wjsentiment.load(folder,
                                                                            device=args.device)
        if "load" in parts or "faults" in parts:
            server = Server(args.url, str(folder), args)
            try:
                if "load" in parts:
                    results["load"] = run_load(server, model, data, args)
                if "faults" in parts:
                    results["faults"] = run_faults(server, data, args)
            finally:
                server.stop()
        if "int8" in parts:
            results["int8"] = run_int8(model if args.smoke else None, data, args)
    if device.type != "cuda":
        results["gpu"] = "not measured (no GPU)"
    if "int8" in parts and not args.demo_model and not args.smoke:
        results["notes"].append("demo models: not measured (pass --demo-model runs/demo/model)")
    if results.get("int8"):
        print("\n== int8 vs float, onnxruntime on the CPU ==")
        print(_common.format_table(results["int8"], INT8_COLUMNS))
    if results.get("faults"):
        print("\n== faults ==\n" + "\n".join(f"{k}: {v}" for k, v in results["faults"].items()))
    return _common.report("serve under load", results, results.get("load", []), args.json_out)


if __name__ == "__main__":
    main()
