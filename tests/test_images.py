"""Decoding and the decoded-image cache."""

from __future__ import annotations

import builtins
import errno
import gc
import os
import time

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from wjsentiment import get_config, set_config
from wjsentiment.images import (
    BadImageError,
    clear_image_cache,
    decode_image,
    get_store,
    input_key,
)
from wjsentiment.images import cache as cache_module
from wjsentiment.images import decode as decode_module


def test_decode_resizes_to_square_rgb(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (500, 375), (200, 30, 40)).save(path, quality=95)
    out = decode_image(str(path), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert abs(int(out[..., 0].mean()) - 200) < 6 and int(out[..., 1].mean()) < 45


@pytest.fixture
def resized_sizes(monkeypatch):
    """The size (width, height) of every image that decoding resizes, in order, whichever
    decoder resizes it (PIL, or torch's kernel behind the simplejpeg path)."""
    sizes = []
    original = Image.Image.resize
    original_tensor = decode_module.resize_square

    def spy(self, size, *args, **kwargs):
        sizes.append(self.size)
        return original(self, size, *args, **kwargs)

    def spy_tensor(pixels, size):
        sizes.append((pixels.shape[-1], pixels.shape[-2]))
        return original_tensor(pixels, size)

    monkeypatch.setattr(Image.Image, "resize", spy)
    monkeypatch.setattr(decode_module, "resize_square", spy_tensor)
    return sizes


def test_jpeg_is_decoded_in_draft_mode(tmp_path, resized_sizes):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (10, 120, 240)).save(path)
    decode_image(str(path), 64)
    # draft mode decodes at 1/8 scale (200x150): the smallest that still covers 64x64
    assert resized_sizes == [(200, 150)]


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
    previous = get_config()["cache_memory_bytes"]
    try:
        set_config(cache_memory_bytes=0)
        store = get_store(40)
        result = store.add(paths, num_workers=2)
        assert store.spilled
        expected = np.stack([decode_image(p, 40) for p in paths])
        np.testing.assert_array_equal(store.gather(result.rows), expected)
    finally:
        set_config(cache_memory_bytes=previous)
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


# --------------------------------------------------------------------- hardening (issue 11)
def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def truncated_files(folder, n: int) -> list[str]:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        path = folder / f"cut_{i}.{('png', 'jpg', 'gif', 'bmp', 'tiff', 'webp')[i % 6]}"
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        paths.append(str(path))
    return paths


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_images_that_fail_to_decode_leave_no_open_file(tmp_path):
    clear_image_cache()
    paths = truncated_files(tmp_path, 12)
    before = open_descriptors()
    result = get_store(32).add(paths)
    assert len(result.errors) == len(paths)  # each is recorded as bad...
    gc.collect()
    assert open_descriptors() == before  # ...and none keeps its file open
    clear_image_cache()


def test_a_system_error_is_raised_and_not_recorded_as_bad(tmp_path, monkeypatch):
    clear_image_cache()
    path = tmp_path / "fine.png"
    Image.new("RGB", (20, 20), (0, 90, 200)).save(path)
    real_open = builtins.open

    def out_of_descriptors(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(path):
            raise OSError(errno.EMFILE, "Too many open files", os.fspath(file))
        return real_open(file, *args, **kwargs)

    store = get_store(24)
    monkeypatch.setattr(builtins, "open", out_of_descriptors)
    with pytest.raises(OSError, match="Too many open files") as info:
        store.add([str(path)])
    assert not isinstance(info.value, BadImageError)
    assert info.value.errno == errno.EMFILE and "fine.png" in str(info.value)
    monkeypatch.setattr(builtins, "open", real_open)
    result = store.add([str(path)])  # tried again, and it reads fine now
    assert result.errors == [] and result.rows[0] >= 0
    assert tuple(store.gather(result.rows)[0, 10, 10]) == (0, 90, 200)
    clear_image_cache()


def test_out_of_memory_is_raised_and_not_recorded_as_bad(tmp_path, monkeypatch):
    clear_image_cache()
    path = tmp_path / "fine.png"
    Image.new("RGB", (20, 20), (0, 90, 200)).save(path)

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    store = get_store(24)
    with monkeypatch.context() as patch:
        patch.setattr(decode_module, "_finish", out_of_memory)
        with pytest.raises(MemoryError):
            store.add([str(path)])
    result = store.add([str(path)])
    assert result.errors == [] and result.rows[0] >= 0
    clear_image_cache()


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_permission_denied_is_a_bad_image_naming_the_file(tmp_path, monkeypatch, code):
    """A file this account may not read stays so until someone changes its permissions: it is
    a bad input of its own (issue 19, #8), not a system error that would stop a whole run."""
    path = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(path)
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(path):
            raise PermissionError(code, os.strerror(code), os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(BadImageError, match="locked.png") as info:
        decode_image(str(path), 8)
    assert info.value.reason.startswith("permission denied")


def palette_image(colour: tuple[int, int, int], transparency: int | None = None) -> Image.Image:
    img = Image.new("P", (16, 16), 0)
    img.putpalette(list(colour) + [0, 0, 0] * 255)
    if transparency is not None:
        img.info["transparency"] = transparency
    return img


def test_palette_and_transparency_are_part_of_the_key():
    red, blue = palette_image((255, 0, 0)), palette_image((0, 0, 255))
    assert red.tobytes() == blue.tobytes()  # the same indices...
    assert input_key(red) != input_key(blue)  # ...but not the same image
    assert input_key(red) != input_key(palette_image((255, 0, 0), transparency=0))
    assert input_key(red) == input_key(palette_image((255, 0, 0)))
    clear_image_cache()
    store = get_store(16)
    rows = store.add([red, blue]).rows
    pixels = store.gather(rows)
    assert tuple(pixels[0, 8, 8]) == (255, 0, 0) and tuple(pixels[1, 8, 8]) == (0, 0, 255)
    clear_image_cache()


@pytest.mark.parametrize("value, expected", [(0, 0), (2570, 10), (32896, 128), (65535, 255)])
def test_16_bit_files_are_scaled_by_their_range_not_stretched(tmp_path, value, expected):
    rng = np.random.default_rng(0)
    noise = rng.integers(-1, 2, (32, 32))  # a little variation: nothing to stretch
    pixels = np.clip(value + noise, 0, 65535).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    out = decode_image(str(path), 16).astype(int)
    assert abs(out.mean() - expected) <= 1 and out.max() - out.min() <= 1


def test_32_bit_and_float_images_are_scaled_by_their_range():
    dark = Image.fromarray(np.full((8, 8), 2570, dtype=np.int32), mode="I")
    assert int(decode_image(dark, 8).mean()) == 10  # "I" is read on the 16-bit scale
    over = Image.fromarray(np.full((8, 8), 10**6, dtype=np.int32), mode="I")
    assert int(decode_image(over, 8).mean()) == 255  # clipped, not wrapped
    half = Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), mode="F")
    assert int(decode_image(half, 8).mean()) == 128
    bright = Image.fromarray(np.full((8, 8), 3.0, dtype=np.float32), mode="F")
    assert int(decode_image(bright, 8).mean()) == 255


def sideways_photo(path, size=(60, 30), orientation=6):
    """Top half red, bottom half blue, stored with an EXIF orientation."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[: size[1] // 2] = (255, 0, 0)
    pixels[size[1] // 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return pixels


def test_exif_orientation_is_applied_to_files_and_pil_images(tmp_path):
    path = tmp_path / "phone.jpg"
    sideways_photo(path)  # orientation 6: turn 90 degrees clockwise to view
    out = decode_image(str(path), 32).astype(int)
    # Upright, the top half (red) is on the right and the bottom half (blue) on the left.
    assert out[:, 24:, 0].mean() > 200 and out[:, 24:, 2].mean() < 50
    assert out[:, :8, 2].mean() > 200 and out[:, :8, 0].mean() < 50
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        assert np.abs(decode_image(img, 32).astype(int) - out).max() <= 1
        assert input_key(img) != input_key(Image.fromarray(np.asarray(img)))
    np.testing.assert_allclose(decode_image(expected, 32), out, atol=1)


def test_exif_orientation_keeps_jpeg_draft_mode(tmp_path, resized_sizes):
    path = tmp_path / "big.jpg"
    sideways_photo(path, size=(1600, 1200))
    out = decode_image(str(path), 64).astype(int)
    assert resized_sizes == [(150, 200)]  # decoded at 1/8 scale, then turned upright
    assert out[:, 48:, 0].mean() > 200 and out[:, :16, 2].mean() > 200


def rewrite_keeping_size_and_mtime(path, pixels) -> None:
    """What ``cp -p`` or ``rsync -t`` do: new content, same size, old modification time."""
    before = os.stat(path)
    Image.fromarray(pixels).save(path, format="BMP")  # BMP: same size for the same shape
    for _ in range(200):  # the change time moves with the clock's resolution
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        if os.stat(path).st_ctime_ns != before.st_ctime_ns:
            break
        time.sleep(0.01)
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_a_file_rewritten_in_place_with_the_same_size_and_mtime_is_decoded_again(tmp_path):
    clear_image_cache()
    path = tmp_path / "photo.bmp"
    Image.new("RGB", (20, 20), (255, 0, 0)).save(path)
    store = get_store(8)
    key = input_key(str(path))
    first = store.gather(store.add([str(path)]).rows)[0, 4, 4]
    rewrite_keeping_size_and_mtime(path, np.full((20, 20, 3), (0, 0, 255), dtype=np.uint8))
    assert input_key(str(path)) != key
    second = store.gather(store.add([str(path)]).rows)[0, 4, 4]
    assert tuple(first) == (255, 0, 0) and tuple(second) == (0, 0, 255)
    clear_image_cache()
