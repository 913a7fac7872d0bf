"""Data-parallel fit under torchrun, on the CPU: gloo, 2 processes, a tiny model, 32 px.

Each launch runs ``python -m torch.distributed.run --nproc-per-node 2`` on a small script
(:data:`WORKER`) as a subprocess with a timeout; each rank writes what it learned to a JSON
file and the test compares the ranks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_bright_dark
from PIL import Image

from wjsentiment import SentimentClassifier
from wjsentiment.training.distributed import LOCAL, TIMEOUT_ENV, DataParallel, timeout_seconds

REPO = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT = 180

#: The script every rank runs: ``worker.py OUT MODE``; the data and settings are in it.
WORKER = r'''
import hashlib, json, os, sys, time
import numpy as np
import torch
import torch.distributed as dist
from wjsentiment import SentimentClassifier
from wjsentiment.training import Callback

out, mode = sys.argv[1], sys.argv[2]
rank = int(os.environ["RANK"])
rng = np.random.default_rng(0)
X = np.concatenate([rng.integers(0, 90, (48, 32, 32, 3)),
                    rng.integers(165, 256, (48, 32, 32, 3))]).astype(np.uint8)
y = np.array(["Negative"] * 48 + ["Positive"] * 48)
PARAMS = dict(backbone="test_resnet", weights=None, image_size=32, epochs=3, batch_size=8,
              augment=False, validation_fraction=0.25, device="cpu", verbose=0)


def digest(clf):
    h = hashlib.sha256()
    for name, tensor in sorted(clf.model_.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def report(clf):
    return {"hash": digest(clf), "history": clf.history_, "temperature": clf.temperature_,
            "best_epoch": clf.best_epoch_, "group": dist.is_initialized()}


class OnRank1(Callback):
    def __init__(self, action):
        self.action = action

    def on_epoch_end(self, estimator, record):
        if rank == 1 and self.action == "raise":
            raise ValueError("boom on rank 1")
        if rank == 1 and self.action == "hang":
            time.sleep(600)


found = {}
if mode == "fit":
    # random_state=None: each rank draws its own seed; only the data-parallel fit agrees.
    found["alone"] = report(SentimentClassifier(**PARAMS, distributed=False).fit(X, y))
    found["ddp"] = report(SentimentClassifier(**PARAMS).fit(X, y))
    found["head"] = report(SentimentClassifier(**{**PARAMS, "finetune": "head"},
                                               random_state=0).fit(X, y))
else:
    SentimentClassifier(**PARAMS, callbacks=[OnRank1(mode)]).fit(X, y)
with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
    json.dump(found, fh)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*args: str, env: dict | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 ARGS`` with one thread per process."""
    environ = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + str(REPO / "tests"),
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               **(env or {})}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args]
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)


def run_worker(tmp_path: Path, mode: str, env: dict | None = None):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return torchrun(str(script), str(tmp_path), mode, env=env)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of the 2 ranks learned in the "fit" mode of the worker."""
    folder = tmp_path_factory.mktemp("ddp_fit")
    done = run_worker(folder, "fit")
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def test_both_ranks_end_with_the_same_weights_and_history(ranks):
    first, second = ranks
    assert first["ddp"]["group"] and second["ddp"]["group"]
    assert first["ddp"]["hash"] == second["ddp"]["hash"]
    assert first["ddp"]["history"] == second["ddp"]["history"]
    assert first["ddp"]["temperature"] == second["ddp"]["temperature"] != 1.0
    assert first["ddp"]["best_epoch"] == second["ddp"]["best_epoch"]


def test_each_epoch_covers_every_training_image_once_across_the_ranks(ranks):
    n_train = 72  # 96 images, a quarter held out
    for entry in ranks[0]["ddp"]["history"]:
        assert entry["samples"] == n_train  # 36 per rank: nothing padded, nothing lost
        assert "valid_f1" in entry


def test_the_loss_falls_as_in_one_process(ranks):
    X, y = make_bright_dark(48)
    alone = SentimentClassifier(backbone="test_resnet", weights=None, image_size=32, epochs=3,
                                batch_size=8, augment=False, validation_fraction=0.25,
                                device="cpu", verbose=0, random_state=0).fit(X, y)
    for history in (alone.history_, ranks[0]["ddp"]["history"]):
        losses = [entry["train_loss"] for entry in history]
        assert losses[-1] < losses[0], losses


def test_distributed_false_trains_each_rank_on_its_own(ranks):
    first, second = ranks
    assert not first["alone"]["group"] and not second["alone"]["group"]
    assert first["alone"]["hash"] != second["alone"]["hash"]  # own seeds, no averaging


def test_head_finetuning_shares_the_feature_work_and_ends_equal(ranks):
    assert ranks[0]["head"]["hash"] == ranks[1]["head"]["hash"]
    assert ranks[0]["head"]["history"] == ranks[1]["head"]["history"]


def test_a_rank_that_raises_ends_the_run_with_an_error(tmp_path):
    start = time.monotonic()
    done = run_worker(tmp_path, "raise")
    assert done.returncode != 0
    assert "boom on rank 1" in done.stdout + done.stderr
    assert time.monotonic() - start < LAUNCH_TIMEOUT
    assert not list(tmp_path.glob("rank*.json"))


def test_a_rank_that_hangs_makes_the_others_fail_after_the_timeout(tmp_path):
    done = run_worker(tmp_path, "hang", env={TIMEOUT_ENV: "3"})
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert "Data-parallel fit, rank 0 of 2" in text, text[-4000:]
    assert f"({TIMEOUT_ENV})" in text


def test_the_command_line_under_torchrun_writes_the_model_once(tmp_path):
    for label, (low, high) in {"dark": (0, 90), "bright": (165, 256)}.items():
        (tmp_path / "photos" / label).mkdir(parents=True)
        rng = np.random.default_rng(len(label))
        for i in range(8):
            pixels = rng.integers(low, high, (32, 32, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{i}.png")
    out = tmp_path / "run"
    done = torchrun("-m", "wjsentiment", "fit", "--folder", str(tmp_path / "photos"),
                    "--out", str(out), "--backbone", "test_resnet", "--weights", "none",
                    "--image-size", "32", "--epochs", "1", "--batch-size", "4",
                    "--device", "cpu")
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("model saved to") == 1
    assert sorted(p.name for p in out.iterdir()) == ["model", "training_curves.png"]
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["params"]["distributed"] == "auto"
    assert config["history"][0]["samples"] == 16


# ------------------------------------------------------------- in one process (no torchrun)
def test_outside_torchrun_fit_creates_no_process_group(bright_dark, tiny_params):
    tiny = {**tiny_params, "backbone": "test_resnet", "epochs": 1, "calibration": None}
    assert SentimentClassifier(**tiny).fit(*bright_dark).history_[0]["samples"] == 48
    assert not torch.distributed.is_initialized()


def test_the_single_process_context_changes_nothing():
    order = np.arange(5)
    assert LOCAL.shard(order) is order
    assert LOCAL.map_shards(lambda positions: positions * 2, 3).tolist() == [0, 2, 4]
    assert LOCAL.any(False) is False and LOCAL.from_rank0(7) == 7


def test_sharding_pads_by_wrapping_so_every_rank_runs_as_many_steps():
    shards = []
    for rank in range(3):
        parallel = DataParallel.__new__(DataParallel)  # its answers without a process group
        parallel.rank, parallel.world_size = rank, 3
        shards.append(parallel.shard(np.array([10, 11, 12, 13, 14, 15, 16])))
    assert [s.tolist() for s in shards] == [[10, 13, 16], [11, 14, 10], [12, 15, 11]]


def test_a_bad_timeout_is_named(monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=f"{TIMEOUT_ENV}='soon' must be a positive number"):
        timeout_seconds()
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    assert timeout_seconds() == 2.5
