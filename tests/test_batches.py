"""Image batches: the pixels of the store, in the asked order, resident or streamed.

On a CUDA machine the same tests also cover the pinned-buffer stream and the upload.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wjsentiment.batches import STAGING_DEPTH, ImageBatches, split_batches
from wjsentiment.images.cache import CHUNK_IMAGES, DecodedImageStore

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def store_and_rows():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (CHUNK_IMAGES + 45, 8, 8, 3), dtype=np.uint8)
    store = DecodedImageStore(8, grayscale=False)
    rows = store.add(list(images)).rows
    return store, rows


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resident", [True, False])
def test_batches_hold_the_store_pixels_in_order(store_and_rows, device, resident):
    store, rows = store_and_rows
    order = np.random.default_rng(1).permutation(len(rows))
    batches = split_batches(order, 37)  # more batches than staging buffers, a short last one
    assert len(batches) > STAGING_DEPTH and len(batches[-1]) != 37
    source = ImageBatches(store, rows, torch.device(device), resident=resident)
    assert (source.pixels is not None) == resident
    got = [x.cpu() for x in source.iterate(batches)]
    assert [len(x) for x in got] == [len(b) for b in batches]
    assert all(x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 for x in got)
    # Back to uint8 for an exact comparison: CUDA divides by 255 as a multiplication by
    # 1/255, one rounding away from the CPU's division.
    pixels = (torch.cat(got) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(pixels, store.gather(rows[order]))


def test_gather_copies_rows_across_chunks_into_out(store_and_rows):
    store, rows = store_and_rows
    pick = rows[[CHUNK_IMAGES + 3, 0, CHUNK_IMAGES - 1, 5]]
    out = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    assert store.gather(pick, out=out) is out
    for i, row in enumerate(pick):
        np.testing.assert_array_equal(out[i], store.gather([row])[0])
    with pytest.raises(ValueError, match="out holds 3 images"):
        store.gather(pick, out=out[:3])
