"""What a warm predict_proba does per call and per batch: the store's lookups, gathering
rows in blocks, and streaming batches on a host device without a thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wjsentiment import batches as batches_module
from wjsentiment.batches import ImageBatches, split_batches
from wjsentiment.images.cache import CHUNK_IMAGES, DecodedImageStore


@pytest.fixture(scope="module")
def store_and_rows():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2 * CHUNK_IMAGES + 10, 4, 4, 3), dtype=np.uint8)
    store = DecodedImageStore(4, grayscale=False)
    return store, store.add(list(images)).rows, images


@pytest.mark.parametrize("pick", [
    "in_order", "across_chunks", "runs_and_jumps", "repeated", "reversed", "one",
])
def test_gather_gives_each_row_whatever_the_order(store_and_rows, pick):
    store, rows, images = store_and_rows
    n = len(rows)
    positions = {
        "in_order": np.arange(n),
        "across_chunks": np.arange(CHUNK_IMAGES - 5, CHUNK_IMAGES + 5),
        "runs_and_jumps": np.r_[0:40, 300:340, 7:9, CHUNK_IMAGES - 1:CHUNK_IMAGES + 60],
        "repeated": np.r_[0:30, 0:30, 5, 5, 5],
        "reversed": np.arange(n)[::-1],
        "one": np.array([CHUNK_IMAGES + 1]),
    }[pick]
    np.testing.assert_array_equal(store.gather(rows[positions]), images[positions])


def test_a_warm_add_finds_rows_and_bad_inputs_in_place(tmp_path):
    store = DecodedImageStore(8, grayscale=False)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    good = [np.full((8, 8, 3), v, dtype=np.uint8) for v in (10, 20)]
    first = store.add([good[0], str(bad), good[1]])
    again = store.add([good[1], str(bad), good[0], str(bad)])  # nothing left to decode
    assert again.rows.tolist() == [first.rows[2], -1, first.rows[0], -1]
    assert [pos for pos, _ in again.errors] == [1, 3]


def test_host_batches_stream_without_a_thread(store_and_rows, monkeypatch):
    store, rows, images = store_and_rows

    def no_threads(*args, **kwargs):
        raise AssertionError("a thread pool was started")

    monkeypatch.setattr(batches_module, "ThreadPoolExecutor", no_threads)
    order = np.arange(len(rows))
    source = ImageBatches(store, rows, torch.device("cpu"), resident=False)
    got = [x for x in source.iterate(split_batches(order, 64))]
    pixels = (torch.cat(got) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(pixels, images)
