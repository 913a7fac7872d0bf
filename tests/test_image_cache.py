"""The decoded-image cache within its budgets: LRU eviction in RAM and on disk, pins, reuse.

The store is made with 4-image chunks here (``CHUNK_IMAGES`` is read when a store is made) so
that budgets of a few chunks take a few dozen 32 px images.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import torch
from PIL import Image

from wjsentiment import SentimentClassifier, get_config, set_config
from wjsentiment import config as config_module
from wjsentiment.images import cache as cache_module
from wjsentiment.images import clear_image_cache, get_store
from wjsentiment.models import clear_feature_cache
from wjsentiment.models.features import frozen_features
from wjsentiment.models.network import build_network

CHUNK = 4
SIZE = 32
CHUNK_BYTES = CHUNK * SIZE * SIZE * 3


def spill_file_bytes(folder) -> int:
    """Bytes of the spill files this process holds open in ``folder`` (unlinked or not),
    as the operating system sees them; None where /proc is absent."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder)):
                total += os.fstat(int(fd)).st_size
        except OSError:  # the descriptor of the listing itself, closed meanwhile
            continue
    return total


@pytest.fixture
def budget(tmp_path, monkeypatch):
    """Small chunks and a settable budget, all restored afterwards. Returns a setter."""
    saved = get_config()
    monkeypatch.setattr(cache_module, "CHUNK_IMAGES", CHUNK)
    # The budgets count every live store's chunks: earlier tests' results that only a
    # reference cycle keeps (with their pinned rows) must go first, or they fill the tiny
    # budgets below.
    gc.collect()
    clear_image_cache()
    clear_feature_cache()
    held = sum(store.ram_bytes + store.disk_bytes for store in cache_module._LIVE)
    assert held == 0, f"{held} bytes of decoded images are still pinned by earlier tests"
    spill = tmp_path / "spill"

    def set_chunks(memory: int, disk: int):
        set_config(cache_memory_bytes=memory * CHUNK_BYTES, cache_dir=spill,
                   cache_disk_bytes=disk * CHUNK_BYTES)
        return {"memory_bytes": memory * CHUNK_BYTES, "disk_bytes": disk * CHUNK_BYTES,
                "cache_dir": get_config()["cache_dir"]}

    yield set_chunks
    set_config(**saved)
    clear_image_cache()
    clear_feature_cache()


def images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8))


def within(store, settings) -> bool:
    spilled = spill_file_bytes(settings["cache_dir"])
    return (store.ram_bytes <= settings["memory_bytes"]
            and store.disk_bytes <= settings["disk_bytes"]
            and (spilled is None or spilled <= settings["disk_bytes"]))


def test_least_recently_used_images_make_room(budget, monkeypatch):
    budget(memory=1, disk=1)
    store = get_store(SIZE)
    a, b, c = images(CHUNK, 0), images(CHUNK, 1), images(CHUNK, 2)
    store.add(a)  # fills RAM
    store.add(b)  # fills the disk budget
    store.add(a)  # a is used again: b is now the least recently used
    decoded = []
    original = cache_module.decode_image
    monkeypatch.setattr(cache_module, "decode_image",
                        lambda item, *args: decoded.append(1) or original(item, *args))
    rows_c = store.add(c).rows
    assert len(decoded) == CHUNK  # c only
    rows_a = store.add(a).rows
    assert len(decoded) == CHUNK  # a was kept...
    store.add(b)
    assert len(decoded) == 2 * CHUNK  # ...b was evicted
    assert store.ram_bytes == CHUNK_BYTES and store.disk_bytes == CHUNK_BYTES
    assert len(store) == 2 * CHUNK
    np.testing.assert_array_equal(store.gather(rows_a), np.stack(a))
    assert set(rows_c.tolist()) & set(store.add(b).rows.tolist())  # b took c's rows


def test_pinned_rows_are_never_evicted_and_may_exceed_the_budget(budget):
    settings = budget(memory=1, disk=1)
    store = get_store(SIZE)
    mine = images(3 * CHUNK, 0)  # a working set of three budgets' worth
    with store.add(mine, pin=True) as held:
        assert store.ram_bytes + store.disk_bytes == 3 * CHUNK_BYTES
        for seed in range(1, 4):  # others come and go meanwhile
            store.add(images(2 * CHUNK, seed))
        np.testing.assert_array_equal(store.gather(held.rows), np.stack(mine))
        assert held.pinned
    assert not held.pinned
    assert within(store, settings)  # given back once released


def test_a_result_that_is_collected_unpins_its_rows(budget):
    settings = budget(memory=1, disk=0)
    store = get_store(SIZE)
    held = store.add(images(3 * CHUNK, 0), pin=True)
    assert store.ram_bytes + store.disk_bytes == 3 * CHUNK_BYTES
    del held  # as when a call that pinned rows raises and its result is dropped
    store.add(images(1, 1))
    assert within(store, settings)


def test_a_spill_folder_that_cannot_be_made_raises_and_pins_nothing(budget, tmp_path):
    budget(memory=1, disk=4)
    store = get_store(SIZE)
    first = images(CHUNK, 0)
    store.add(first)  # fills the RAM budget
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    set_config(cache_dir=blocker / "spill")
    with pytest.raises(OSError):
        store.add(first + images(CHUNK, 1))  # the second half needs a spilled chunk
    budget(memory=1, disk=4)
    np.testing.assert_array_equal(store.gather(store.add(first).rows), np.stack(first))
    budget(memory=0, disk=0)
    assert store.ram_bytes == 0  # nothing was left pinned by the call that failed


def test_an_interrupted_add_keeps_nothing_and_pins_nothing(budget, monkeypatch):
    budget(memory=1, disk=0)
    store = get_store(SIZE)
    batch = images(CHUNK, 0)
    original = cache_module.decode_image

    def interrupted(item, *args):
        if item is batch[1]:
            raise KeyboardInterrupt
        return original(item, *args)

    store.add(batch[:1])  # found by the next call, which pins it
    monkeypatch.setattr(cache_module, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.add(batch)
    assert len(store) == 1  # nothing of the interrupted call is kept
    monkeypatch.setattr(cache_module, "decode_image", original)
    np.testing.assert_array_equal(store.gather(store.add(batch).rows), np.stack(batch))
    budget(memory=0, disk=0)
    assert store.ram_bytes == 0  # and nothing was left pinned


def test_released_chunks_give_back_their_disk(budget):
    settings = budget(memory=0, disk=2)
    store = get_store(SIZE)
    with store.add(images(6 * CHUNK, 0), pin=True):
        assert store.disk_bytes == 6 * CHUNK_BYTES
        spilled = spill_file_bytes(settings["cache_dir"])
        assert spilled in (None, 6 * CHUNK_BYTES)
    assert store.disk_bytes == 2 * CHUNK_BYTES
    assert spill_file_bytes(settings["cache_dir"]) in (None, 2 * CHUNK_BYTES)
    assert len(store) == 2 * CHUNK  # the rest was forgotten, not kept in freed rows


def test_lowering_a_budget_gives_back_at_once(budget):
    budget(memory=4, disk=4)
    store = get_store(SIZE)
    store.add(images(8 * CHUNK, 0))
    assert store.ram_bytes == 4 * CHUNK_BYTES and store.disk_bytes == 4 * CHUNK_BYTES
    settings = budget(memory=1, disk=2)
    assert settings["disk_bytes"] == 2 * CHUNK_BYTES
    assert store.ram_bytes == CHUNK_BYTES and store.disk_bytes == 2 * CHUNK_BYTES


def test_the_disk_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("WJSENTIMENT_CACHE_DISK", "2.5e9")
    assert config_module._env_bytes("WJSENTIMENT_CACHE_DISK", 1) == 2_500_000_000
    monkeypatch.setenv("WJSENTIMENT_CACHE_DISK", "lots")
    with pytest.raises(ValueError, match="WJSENTIMENT_CACHE_DISK='lots'"):
        config_module._env_bytes("WJSENTIMENT_CACHE_DISK", 1)
    monkeypatch.delenv("WJSENTIMENT_CACHE_DISK")
    assert config_module._env_bytes("WJSENTIMENT_CACHE_DISK", 7) == 7
    with pytest.raises(ValueError, match="cache_disk_bytes must be an int >= 0"):
        set_config(cache_disk_bytes=-1)


def test_features_follow_the_image_when_its_row_is_reused(budget):
    budget(memory=1, disk=0)
    store = get_store(SIZE)
    torch.manual_seed(0)
    net, _ = build_network({"backbone": "test_resnet", "head": "linear", "n_classes": 2}, None)
    cpu = torch.device("cpu")
    first, second = images(CHUNK, 0), images(CHUNK, 1)
    with store.add(first, pin=True) as held:
        rows_first = held.rows
        frozen_features(net, ("test", 0), store, rows_first, cpu, "fp32")
    with store.add(second, pin=True) as held:
        assert set(held.rows.tolist()) == set(rows_first.tolist())  # the rows were reused
        cached = frozen_features(net, ("test", 0), store, held.rows, cpu, "fp32")
        fresh = frozen_features(net, None, store, held.rows, cpu, "fp32")
    np.testing.assert_allclose(cached, fresh, atol=1e-6)


def write_images(folder, n: int, seed: int) -> list[str]:
    paths = []
    for i, pixels in enumerate(images(n, seed)):
        path = folder / f"img_{seed}_{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def test_predict_on_three_budgets_of_images_stays_within_ram_and_disk(budget, tmp_path,
                                                                       tiny_params):
    X, y = images(4 * CHUNK, 9), ["Negative", "Positive"] * (2 * CHUNK)
    clf = SentimentClassifier(**tiny_params, backbone="test_resnet").fit(X, y)
    batches = [write_images(tmp_path, 2 * CHUNK, seed) for seed in range(3)]
    expected = [clf.predict_proba(paths) for paths in batches]  # default budget
    clear_image_cache()
    settings = budget(memory=2, disk=1)  # three times this much RAM over the calls
    store = get_store(SIZE)
    for paths, want in zip(batches + batches[:1], expected + expected[:1]):
        np.testing.assert_allclose(clf.predict_proba(paths), want, atol=1e-6)
        assert within(store, settings)
    assert 3 * 2 * CHUNK * store.image_bytes >= 3 * settings["memory_bytes"]


def test_a_fit_larger_than_the_budgets_trains_and_predicts(budget, tiny_params):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.integers(0, 90, (12, SIZE, SIZE, 3)),
                        rng.integers(165, 256, (12, SIZE, SIZE, 3))]).astype(np.uint8)
    y = np.array(["Negative"] * 12 + ["Positive"] * 12)
    params = dict(tiny_params, backbone="test_resnet")
    reference = SentimentClassifier(**params).fit(X, y).predict_proba(X)
    clear_image_cache()
    settings = budget(memory=1, disk=1)
    assert len(X) * SIZE * SIZE * 3 > 2 * settings["memory_bytes"] + settings["disk_bytes"]
    clf = SentimentClassifier(**params).fit(X, y)
    store = get_store(SIZE)
    assert within(store, settings)
    np.testing.assert_allclose(clf.predict_proba(X), reference, atol=1e-6)
