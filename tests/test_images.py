"""Decoding and the decoded-image cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wjsentiment.images import (
    BadImageError,
    clear_image_cache,
    decode_image,
    get_store,
    input_key,
    set_cache_budget,
)
from wjsentiment.images import cache as cache_module
from wjsentiment.images import decode as decode_module


def test_decode_resizes_to_square_rgb(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (500, 375), (200, 30, 40)).save(path, quality=95)
    out = decode_image(str(path), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert abs(int(out[..., 0].mean()) - 200) < 6 and int(out[..., 1].mean()) < 45


def test_jpeg_is_decoded_in_draft_mode(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (10, 120, 240)).save(path)
    sizes = []
    original = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        sizes.append(self.size)
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    decode_image(str(path), 64)
    # draft mode decodes at 1/8 scale (200x150): the smallest that still covers 64x64
    assert sizes == [(200, 150)]


def test_alpha_is_composited_on_white():
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)  # fully transparent black
    out = decode_image(rgba, 16)
    assert (out == 255).all()


def test_grayscale_has_three_equal_channels():
    rng = np.random.default_rng(0)
    out = decode_image(rng.integers(0, 256, (20, 20, 3)).astype(np.uint8), 16, grayscale=True)
    assert out.shape == (16, 16, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_input_key_follows_content_not_identity(tmp_path):
    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert input_key(a) == input_key(a.copy())
    assert input_key(a) != input_key(a[::-1].copy())
    path = tmp_path / "x.png"
    Image.fromarray(a).save(path)
    key = input_key(str(path))
    Image.fromarray(a[::-1].copy()).save(path)
    import os

    os.utime(path, ns=(1, 1))  # a rewrite gets a new modification time
    assert input_key(str(path)) != key


def test_a_link_shares_the_key_of_its_file(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(path)
    (tmp_path / "link.png").symlink_to(path)
    (tmp_path / "sub").mkdir()
    assert input_key(str(tmp_path / "link.png")) == input_key(str(path))
    assert input_key(str(tmp_path / "sub" / ".." / "x.png")) == input_key(path)
    (tmp_path / "y.png").write_bytes(path.read_bytes())  # same bytes, another file
    assert input_key(str(tmp_path / "y.png")) != input_key(str(path))


def test_each_image_is_decoded_once_per_size(monkeypatch, image_files):
    clear_image_cache()
    paths, _ = image_files
    calls = []
    original = decode_module.decode_image

    def counting(item, size, grayscale=False):
        calls.append((item, size))
        return original(item, size, grayscale)

    monkeypatch.setattr(cache_module, "decode_image", counting)
    store = get_store(32)
    first = store.add(paths + paths[:3], num_workers=2)
    assert len(calls) == len(paths)  # duplicates inside one call decode once
    second = store.add(list(reversed(paths)), num_workers=2)
    assert len(calls) == len(paths)  # nothing decoded again
    assert list(second.rows) == list(reversed(first.rows[: len(paths)]))
    get_store(48).add(paths[:2])
    assert len(calls) == len(paths) + 2  # another size is another decode


def test_store_spills_to_memmap_beyond_budget(image_files):
    clear_image_cache()
    paths, _ = image_files
    previous = set_cache_budget()["memory_bytes"]
    try:
        set_cache_budget(0)
        store = get_store(40)
        result = store.add(paths, num_workers=2)
        assert store.spilled
        expected = np.stack([decode_image(p, 40) for p in paths])
        np.testing.assert_array_equal(store.gather(result.rows), expected)
    finally:
        set_cache_budget(previous)
        clear_image_cache()


@pytest.mark.parametrize(
    "content, reason",
    [(b"not an image at all", "not an image"), (None, "no such file")],
)
def test_bad_files_name_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadImageError, match=reason) as info:
        decode_image(str(path), 32)
    assert "bad.jpg" in str(info.value)


def test_truncated_jpeg_is_refused(tmp_path):
    path = tmp_path / "cut.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 300, 3)).astype(np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="truncated") as info:
        decode_image(str(path), 32)
    assert "cut.jpg" in str(info.value)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (200, 200)).save(path)
    monkeypatch.setattr(decode_module, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode_image(str(path), 32)


def test_wrong_array_dtype_says_what_to_do():
    with pytest.raises(BadImageError, match="uint8"):
        decode_image(np.zeros((8, 8, 3), dtype=np.float32), 8)
