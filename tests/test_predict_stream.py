"""``wjsentiment predict`` over 5,000 images: bounded memory, and a killed run that resumes.

The images are tiny PNGs (8 to 16 px, written once per session), in five sub-folders, with a
few broken files among them. The model is a tiny timm network at 80 px, so that the decoded
pixels of the whole set (5,000 x 80 x 80 x 3 bytes = 96 MB) would show if they were kept.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 5000
N_FOLDERS = 5
BROKEN = {17, 1234, 2500, 4999}  # positions (in the sorted listing) of non-image .png files
IMAGE_SIZE = 80
CHUNK = 250
#: How much the predicting process's anonymous memory may grow once its first chunks are
#: done. The decoded pixels of the other 4,500 images are 86 MB; one chunk's are 4.8 MB.
GROWTH_LIMIT_MB = 40

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="reads the memory of a process from /proc (Linux)")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """5,000 tiny PNGs in 5 sub-folders, 4 of them broken; their sorted order is the CLI's."""
    root = tmp_path_factory.mktemp("stream-images")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        folder = root / f"part{i * N_FOLDERS // N_IMAGES}"
        folder.mkdir(exist_ok=True)
        path = folder / f"{i:04d}.png"
        if i in BROKEN:
            path.write_bytes(b"not a PNG")
            continue
        side = int(rng.integers(8, 17))
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, compress_level=0)
    return root


@pytest.fixture(scope="module")
def model(images, tmp_path_factory) -> Path:
    from wjsentiment import SentimentClassifier

    paths = sorted(str(p) for p in (images / "part0").glob("*.png"))[30:50]
    clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=IMAGE_SIZE,
                              epochs=1, calibration=None, random_state=0, verbose=0)
    clf.fit(paths, ["Negative", "Positive"] * 10)
    return Path(clf.save(tmp_path_factory.mktemp("stream-model") / "model"))


def start_predict(model: Path, images: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "wjsentiment", "predict", str(model), str(images), "--out",
         str(out), "--batch-size", str(CHUNK), "--quiet", *extra],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def anonymous_memory_mb(pid: int) -> float | None:
    """RssAnon of a running process, in MB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def rows_written(out: Path) -> int:
    """Complete rows in the output (the header not counted)."""
    if not out.exists():
        return 0
    return max(0, out.read_bytes().count(b"\n") - 1)


def read_rows(out: Path) -> list[dict]:
    with open(out, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def uninterrupted(model, images, tmp_path_factory):
    """One whole run, with its anonymous memory sampled every 20 ms."""
    out = tmp_path_factory.mktemp("stream-full") / "predictions.csv"
    proc = start_predict(model, images, out)
    samples: list[tuple[int, float]] = []  # (rows written, MB)
    while proc.poll() is None:
        memory = anonymous_memory_mb(proc.pid)
        if memory is not None:
            samples.append((rows_written(out), memory))
        time.sleep(0.02)
    assert proc.returncode == 0, proc.stderr.read()
    return out, samples


def test_memory_stays_bounded_over_5000_images(uninterrupted):
    out, samples = uninterrupted
    assert rows_written(out) == N_IMAGES
    # Warm: model loaded, the first two chunks predicted and written. What is held then
    # (interpreter, torch, the model, one chunk's pixels and activations) is the fixed cost;
    # the rest of the run must not add to it as the other 4,500 images go through.
    warm = [mb for rows, mb in samples if CHUNK <= rows <= 2 * CHUNK]
    later = [mb for rows, mb in samples if rows > 2 * CHUNK]
    assert warm and later, f"too few memory samples: {samples[:3]}...{samples[-3:]}"
    growth = max(later) - max(warm)
    assert growth < GROWTH_LIMIT_MB, (
        f"anonymous memory grew by {growth:.0f} MB (from {max(warm):.0f} MB) after the "
        f"first chunks; limit {GROWTH_LIMIT_MB} MB")


def test_rows_stream_out_in_input_order_with_errors(uninterrupted, images):
    out, samples = uninterrupted
    written_while_running = {rows for rows, _ in samples}
    assert any(0 < rows < N_IMAGES for rows in written_while_running)  # rows came out early
    rows = read_rows(out)
    expected = sorted(str(p) for p in images.rglob("*.png"))
    assert [r["path"] for r in rows] == expected
    assert [i for i, r in enumerate(rows) if r["error"]] == sorted(BROKEN)
    assert all(r["label"] in ("Negative", "Positive") for r in rows if not r["error"])


def test_a_killed_run_resumes_to_the_uninterrupted_output(uninterrupted, model, images,
                                                          tmp_path):
    reference = read_rows(uninterrupted[0])
    out = tmp_path / "predictions.csv"
    proc = start_predict(model, images, out)
    deadline = time.monotonic() + 300
    while rows_written(out) < 2 * CHUNK and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    rows_at_kill = rows_written(out)
    assert 2 * CHUNK <= rows_at_kill < N_IMAGES, "the run was not killed mid-way"

    resumed = start_predict(model, images, out, "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err

    rows = read_rows(out)
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a path was written twice"
    assert paths == [r["path"] for r in reference], "a path is missing or out of order"
    assert [r["label"] for r in rows] == [r["label"] for r in reference]
    assert [r["error"] for r in rows] == [r["error"] for r in reference]
    classes = [c for c in rows[0] if c.startswith("proba_")]
    ours = np.array([[float(r[c] or "nan") for c in classes] for r in rows])
    theirs = np.array([[float(r[c] or "nan") for c in classes] for r in reference])
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    assert out.read_bytes().endswith(b"\n")


@pytest.mark.skipif(sys.platform == "win32", reason="user ids are POSIX's")
def test_the_output_lock_lives_in_this_accounts_lock_folder(tmp_path, monkeypatch):
    import tempfile

    from wjsentiment.scale.stream import output_lock

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    with output_lock(tmp_path / "out.csv"):
        (mine,) = root.iterdir()
        assert mine.name == f"wjsentiment-locks-{os.getuid()}"
        assert [p.suffix for p in mine.iterdir()] == [".lock"]
    mine.rename(root / "moved")
    mine.symlink_to(root / "moved")
    with pytest.raises(PermissionError, match="symbolic link"), output_lock(tmp_path / "out.csv"):
        pass
