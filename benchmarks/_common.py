"""Helpers shared by the benchmark scripts: devices, timing, machine facts, tables and JSON.

Not part of the library. The scripts run from the repository root
(``python benchmarks/bench_fit.py``); this module puts the checkout first on ``sys.path``, so
the checkout is what gets measured, installed or not.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # benchmark this checkout, installed or not

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks never reach a model hub

import torch  # noqa: E402

#: The tiny timm model ``--smoke`` runs use in place of the default backbone.
SMOKE_BACKBONE = "test_resnet"


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine; use auto/cpu.")
    return device


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so wall-clock timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def machine_info(device: torch.device | None = None) -> dict:
    """What ran the benchmark: host, cores, load, library versions, GPU."""
    info = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_cores": cpu_cores(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        pass
    try:
        import timm
        import torchvision

        info["timm"] = timm.__version__
        info["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover
        pass
    if device is not None:
        info["device"] = str(device)
        if torch.device(device).type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def add_common_args(parser: argparse.ArgumentParser, *, size: int, n_images: int,
                    epochs: int | None = None, batch_size: int | None = None) -> None:
    """The options every benchmark shares."""
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run (default: auto)")
    parser.add_argument("--size", type=int, default=size, help=f"image side (default {size})")
    parser.add_argument("--n-images", type=int, default=n_images,
                        help=f"number of images (default {n_images})")
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs,
                            help=f"training epochs (default {epochs})")
    if batch_size is not None:
        parser.add_argument("--batch-size", type=int, default=batch_size,
                            help=f"batch size (default {batch_size})")
    parser.add_argument("--data-dir", default=None,
                        help="where generated images are kept (default: $WJS_BENCH_DATA or "
                             "~/.cache/wjsentiment-bench)")
    parser.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                        help="write the results to this JSON file")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run that only checks the script works (used by the tests)")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write JSON atomically (see :func:`write_text`)."""
    write_text(path, json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain-text table of dicts (floats to 4 significant digits)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


class Timer:
    """``with Timer(device) as t: ...`` then ``t.seconds`` (synchronises CUDA at both ends)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds = float("nan")

    def __enter__(self) -> Timer:
        sync(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._start


def steady(values: Sequence[float]) -> float:
    """Mean of the values after the first (the first epoch pays warm-up costs)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan")
    rest = values[1:] or values
    return sum(rest) / len(rest)


def _precision_context(device: torch.device):
    import contextlib

    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bare_train_speed(net: torch.nn.Module, batch_size: int, size: int, device: torch.device,
                     *, n_classes: int = 5, steps: int = 20, warmup: int = 3) -> dict:
    """Images/s of a bare training step: one input tensor reused, no data path at all.

    channels_last network and input, bf16 autocast on CUDA and fp32 on CPU, AdamW: the step
    the library's fit runs, minus decoding, batching and augmentation.
    """
    net = net.to(device).train().to(memory_format=torch.channels_last)
    x = torch.rand(batch_size, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (batch_size,), device=device)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()

    def step() -> None:
        with _precision_context(device):
            logits = net(x)
        loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    with Timer(device) as t:
        for _ in range(steps):
            step()
    return {"images_per_second": steps * batch_size / t.seconds, "steps": steps,
            "seconds": t.seconds}


@torch.inference_mode()
def bare_forward_speed(net: torch.nn.Module, batch_size: int, size: int, device: torch.device,
                       *, steps: int = 20, warmup: int = 3) -> dict:
    """Images/s of a bare eval-mode forward on one reused input tensor (bf16 on CUDA).

    The input has channels_last strides, as the batches ``predict_proba`` hands the network
    (a permuted NHWC tensor); on a CPU that layout alone makes resnet18 about 1.3x faster than
    a contiguous NCHW input.
    """
    net = net.to(device).eval().to(memory_format=torch.channels_last)
    x = torch.rand(batch_size, size, size, 3, device=device).permute(0, 3, 1, 2)
    for _ in range(warmup):
        with _precision_context(device):
            net(x)
    with Timer(device) as t:
        for _ in range(steps):
            with _precision_context(device):
                net(x)
    return {"images_per_second": steps * batch_size / t.seconds, "steps": steps,
            "seconds": t.seconds}


def log(tag: str, message: str) -> None:
    """A progress line, flushed at once (so a run cut by a timeout still shows its steps)."""
    print(f"[{tag}] {message}", flush=True)


def report(name: str, results: dict, rows: Sequence[dict], json_out: str | None,
           columns: Sequence[str] | None = None) -> dict:
    """Print the table (and notes), write the JSON if asked, and return the results."""
    print(f"\n== {name} ==")
    print(format_table(rows, columns))
    for note in results.get("notes", []):
        print(f"note: {note}")
    if json_out:
        write_json(json_out, results)
        print(f"wrote {json_out}")
    return results
