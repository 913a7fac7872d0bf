"""Scale-out on Dask: GridSearchCV on a LocalCluster, the shared feature cache, a lost worker,
and predict_partitions; plus the cross-process lock of the feature cache and what travels."""

from __future__ import annotations

import os
import pickle
import sys
import threading

import cloudpickle
import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from distributed import Client, LocalCluster, WorkerPlugin
from PIL import Image
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from wjsentiment import SentimentClassifier, cli, config_context
from wjsentiment.config import ENVIRONMENT
from wjsentiment.images import get_store
from wjsentiment.models import frozen_features
from wjsentiment.models.feature_files import FeatureFiles, image_digest
from wjsentiment.models.features import feature_table
from wjsentiment.models.network import build_network
from wjsentiment.scale import predict_partitions, worker_setup

# Functions and plugins of this module run on the workers, which cannot import it: send them
# by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SIZE = 32
N_IMAGES = 24
GRID = {"lr": [1e-3, 1e-2], "head": ["linear", "mlp"]}


def search(n_jobs: int) -> GridSearchCV:
    """A 2x2 grid over a frozen tiny backbone, scored by log loss (a continuous score, so
    equal results mean equal fits, not just equal accuracies)."""
    estimator = SentimentClassifier(backbone="test_resnet", weights=None, finetune="head",
                                    image_size=SIZE, epochs=2, batch_size=8, calibration=None,
                                    num_workers=1, random_state=0, verbose=0)
    return GridSearchCV(estimator, GRID, cv=StratifiedKFold(3), scoring="neg_log_loss",
                        n_jobs=n_jobs)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[list[str], list[str]]:
    """24 PNG files, dark (Negative) and bright (Positive) noise, and their labels."""
    folder = tmp_path_factory.mktemp("scale-images")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(N_IMAGES):
        positive = i % 2 == 1
        low, high = (150, 256) if positive else (0, 110)
        path = folder / f"{i:02d}.png"
        Image.fromarray(rng.integers(low, high, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
        labels.append("Positive" if positive else "Negative")
    return paths, labels


@pytest.fixture(scope="module")
def local_search(images) -> GridSearchCV:
    """The reference: the search in this process, n_jobs=1, no feature folder."""
    paths, labels = images
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the workers
    try:
        with config_context(feature_cache_dir=None):
            return search(n_jobs=1).fit(paths, labels)
    finally:
        torch.set_num_threads(previous_threads)


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shared-features")


@pytest.fixture(scope="module")
def client(feature_dir):
    """Two worker processes of one thread each; the feature folder reaches them through
    their environment, as it would through a job script on a real cluster."""
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None,
                           env={ENVIRONMENT["feature_cache_dir"]: str(feature_dir),
                                "OMP_NUM_THREADS": "1"})
    client = Client(cluster)
    client.register_plugin(worker_setup(torch_threads=1))
    yield client
    client.close()
    cluster.close()


def stored_digests(folder) -> list[bytes]:
    """The image digests of every feature row written to the cache folder."""
    digests = []
    for shard in folder.rglob("*.npz"):
        with np.load(shard) as data:
            digests += [bytes(row) for row in data["digests"]]
    return digests


def decoded_images_held() -> int:
    """Runs on a worker: how many images its decoded-image store holds."""
    return len(get_store(SIZE, False))


# --------------------------------------------------------------------------- on the cluster
def test_search_on_dask_matches_n_jobs_1_and_computes_each_feature_once(
        client, images, local_search, feature_dir):
    paths, labels = images
    with joblib.parallel_backend("dask", scatter=[paths, labels]):
        remote = search(n_jobs=-1).fit(paths, labels)
    assert remote.best_params_ == local_search.best_params_
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local_search.cv_results_["mean_test_score"], rtol=0, atol=1e-6)
    assert np.unique(remote.cv_results_["mean_test_score"]).size > 1  # the grid mattered
    # 12 fits and their scoring on two workers, yet the backbone saw each image once in all.
    digests = stored_digests(feature_dir)
    assert len(digests) == N_IMAGES == len(set(digests))
    # Each worker kept its decoded images after its fits, for the next ones.
    held = client.run(decoded_images_held)
    assert len(held) == 2 and all(n > 0 for n in held.values()), held


class ExitOnFirstTask(WorkerPlugin):
    """Kills the first worker process that starts a task (once in the cluster)."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing":
            return
        try:
            os.close(os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)


def test_search_finishes_right_when_a_worker_dies(client, images, local_search, tmp_path):
    paths, labels = images
    flag = tmp_path / "a-worker-exited"
    client.register_plugin(ExitOnFirstTask(str(flag)), name="exit-once")
    try:
        with joblib.parallel_backend("dask", scatter=[paths, labels]):
            remote = search(n_jobs=-1).fit(paths, labels)
    finally:
        client.unregister_worker_plugin("exit-once")
    assert flag.exists()  # a worker died holding a task; Dask ran the task again elsewhere
    assert remote.best_params_ == local_search.best_params_
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local_search.cv_results_["mean_test_score"], rtol=0, atol=1e-6)
    client.wait_for_workers(2, timeout=300)  # the nanny started a new worker


def count_model_loads() -> None:
    """Runs on a worker: count the calls of wjsentiment.load from now on."""
    import wjsentiment

    original = getattr(wjsentiment.load, "original", wjsentiment.load)

    def counted(*args, **kwargs):
        counted.calls += 1
        return original(*args, **kwargs)

    counted.calls, counted.original = 0, original
    wjsentiment.load = counted


def model_loads() -> int:
    import wjsentiment

    return wjsentiment.load.calls


def test_predict_partitions_gives_the_cli_rows_loading_the_model_once_per_worker(
        client, images, tmp_path):
    import dask.dataframe as dd

    paths, labels = images
    clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=SIZE, epochs=1,
                              calibration=None, random_state=0, verbose=0).fit(paths, labels)
    model = clf.save(tmp_path / "model")
    broken = tmp_path / "broken.png"
    broken.write_text("not a PNG")
    inputs = [*paths[:10], str(broken), *paths[10:]]

    out = tmp_path / "cli.csv"
    assert cli.main(["predict", model, *inputs, "--out", str(out), "--batch-size", "5",
                     "--quiet"]) == 0
    expected = pd.read_csv(out, keep_default_na=False)

    client.run(count_model_loads)
    frame = dd.from_pandas(pd.DataFrame({"path": inputs}), npartitions=6)
    table = predict_partitions(frame, model, batch_size=4).compute()
    loads = client.run(model_loads)
    assert sorted(loads.values()) == [1, 1], loads  # 6 partitions, one load per worker

    assert table.columns.tolist() == expected.columns.tolist()
    assert table.index.tolist() == list(range(len(inputs)))
    for column in ("path", "label", "error"):
        assert table[column].tolist() == expected[column].astype(str).tolist(), column
    proba = [c for c in table.columns if c.startswith("proba_")]
    ours = table[proba].to_numpy(dtype=float)
    theirs = expected[proba].replace("", np.nan).to_numpy(dtype=float)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-6)
    assert table.loc[10, "error"] == "not an image file PIL can read"


# ------------------------------------------------------------- the feature folder, one process
@pytest.fixture
def feature_folder(tmp_path):
    with config_context(feature_cache_dir=tmp_path):
        yield tmp_path


def test_a_waiting_process_reads_the_features_written_meanwhile(images, feature_folder,
                                                               monkeypatch):
    """While one process holds the table's lock (computing), another that misses the same
    features waits, then reads them from the folder instead of computing them again."""
    paths = images[0][:3]
    net, _ = build_network({"backbone": "test_resnet", "head": "linear", "n_classes": 2}, None)
    store = get_store(SIZE)
    decoded = store.add(paths, pin=True)
    weights_key = ("test_resnet", "random", "lock-test")
    files = feature_table(feature_folder, (weights_key, "fp32"), store)
    digests = [image_digest(k) for k in store.input_keys(decoded.rows)]
    marker = np.full((3, 4), 7.0, dtype=np.float32)  # not what the backbone would give

    looked = threading.Event()
    read = FeatureFiles.read

    def watched_read(self, wanted):
        found = read(self, wanted)
        if threading.current_thread().name == "other":
            looked.set()
        return found

    monkeypatch.setattr(FeatureFiles, "read", watched_read)
    result = {}

    def other() -> None:
        result["features"] = frozen_features(net, weights_key, store, decoded.rows,
                                             torch.device("cpu"), "fp32")

    thread = threading.Thread(target=other, name="other")
    with files.lock():
        thread.start()
        assert looked.wait(timeout=120)  # it found nothing and now waits for the lock
        files.write(digests, marker)  # what this "process" computed meanwhile
    thread.join(timeout=120)
    np.testing.assert_array_equal(result["features"], marker)
    assert len(list(files.folder.glob("*.npz"))) == 1  # nothing computed twice
    decoded.release()


def test_the_lock_is_exclusive_between_open_files(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    files = FeatureFiles(tmp_path, ("any",))
    with files.lock():
        with open(files.folder / ".lock", "a+b") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(files.folder / ".lock", "a+b") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again


# ------------------------------------------------------------------- what goes to the workers
def test_estimators_travel_as_parameters_and_fitted_ones_carry_no_pixels(images):
    paths, labels = images
    estimator = search(n_jobs=1).estimator
    assert len(pickle.dumps(clone(estimator))) < 4096
    small = clone(estimator).set_params(epochs=1).fit(paths[:8], labels[:8])
    large = clone(estimator).set_params(epochs=1).fit(paths, labels)
    # Three times the images (9 kB of pixels each at 32 px) and the same size on the wire.
    assert abs(len(pickle.dumps(large)) - len(pickle.dumps(small))) < 1024
