"""Decoding has a memory bound (issue 19, #10): the pixel limit counts the bytes of a sample,
and the decoding threads hold a bounded number of decoded bytes at once."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from datasets_server import png_header_only
from PIL import Image, ImageFile

from wjsentiment.images import clear_image_cache, get_store
from wjsentiment.images import decode as decode_module
from wjsentiment.images.decode import BadImageError, check_pixel_count, decode_image


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail any attempt to decode pixels; record the sizes it was asked for."""
    asked = []

    def refuse(image):
        asked.append(image.size)
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    return asked


def test_a_16_bit_image_counts_twice_against_the_pixel_limit():
    grey = Image.open(io.BytesIO(png_header_only(9_000, 9_000)))  # 81 Mpx of 8 bits: fine
    deep = Image.open(io.BytesIO(png_header_only(9_000, 9_000, bit_depth=16)))
    assert (grey.mode, deep.mode) == ("L", "I;16")
    check_pixel_count(grey, "grey.png")
    with pytest.raises(BadImageError, match=r"2-byte samples count as 162000000 pixels"):
        check_pixel_count(deep, "deep.png")


@pytest.mark.parametrize("mode, weight", [("L", 1), ("RGB", 1), ("I;16", 2), ("I", 4), ("F", 4)])
def test_the_limit_weighs_each_mode_by_its_sample_size(monkeypatch, mode, weight):
    monkeypatch.setattr(decode_module, "MAX_IMAGE_PIXELS", 100 * 100 * 2)
    small = Image.new(mode, (100, 100))
    if weight <= 2:
        check_pixel_count(small, "small")
    else:
        with pytest.raises(BadImageError, match="decompression bomb"):
            check_pixel_count(small, "small")


def test_a_9000_px_16_bit_png_is_refused_before_it_is_decoded(tmp_path, no_decoding):
    path = tmp_path / "deep.png"
    path.write_bytes(png_header_only(9_000, 9_000, bit_depth=16))  # 115 bytes
    with pytest.raises(BadImageError, match="decompression bomb") as info:
        decode_image(str(path), 32)
    assert "deep.png" in str(info.value)
    assert no_decoding == []


def _images(folder, n: int, side: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_threads_decode_only_as_many_images_at_once_as_the_memory_budget_holds(
        tmp_path, monkeypatch):
    side = 48
    paths = _images(tmp_path, 8, side)
    decoded_bytes = side * side * 3
    monkeypatch.setattr(decode_module, "DECODE_MEMORY_BYTES", 2 * decoded_bytes)
    busy, most = [0], [0]
    lock = threading.Lock()
    finish = decode_module._finish

    def slow_finish(*args):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.05)  # long enough for every thread to arrive meanwhile
        try:
            return finish(*args)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(decode_module, "_finish", slow_finish)
    clear_image_cache()
    result = get_store(16).add(paths, num_workers=8)
    assert result.errors == [] and (result.rows >= 0).all()
    assert most[0] == 2  # 8 threads, room for 2 images
    clear_image_cache()


def test_an_image_larger_than_the_whole_budget_still_decodes_alone(tmp_path, monkeypatch):
    paths = _images(tmp_path, 3, 40)
    monkeypatch.setattr(decode_module, "DECODE_MEMORY_BYTES", 100)  # less than one image
    clear_image_cache()
    result = get_store(16).add(paths, num_workers=3)
    assert result.errors == [] and (result.rows >= 0).all()
    clear_image_cache()


def test_16_bit_scaling_is_exact_and_the_same_as_before():
    values = np.arange(0, 65536, dtype=np.uint16).reshape(256, 256)
    out = np.asarray(decode_module._scaled_to_uint8(Image.fromarray(values)))
    expected = np.rint(values.astype(np.float64) * (255.0 / 65535)).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
