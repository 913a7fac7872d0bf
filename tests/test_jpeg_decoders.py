"""The host JPEG decoders: libjpeg-turbo through simplejpeg (when installed) and PIL.

The fast path must give what PIL gives (same shapes, dtypes, errors, orientation; pixels
within rounding) and hand every file it is not made for to PIL.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageOps

from wjsentiment.images import BadImageError, clear_image_cache, decode_image, get_store
from wjsentiment.images import decode as decode_module

needs_simplejpeg = pytest.mark.skipif(decode_module.simplejpeg is None,
                                      reason="needs simplejpeg")
DECODERS = [d for d in decode_module.HOST_DECODERS
            if d != "simplejpeg" or decode_module.simplejpeg is not None]


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with some texture: what a resize can be judged on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    texture = 40 * np.sin(x[..., None] / 7.0 + rng.uniform(0, 6, 3)) * np.cos(y[..., None] / 5.0)
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def save_jpeg(path, pixels, **options) -> str:
    Image.fromarray(pixels).save(path, format="JPEG", quality=90, **options)
    return str(path)


@pytest.fixture
def decode_calls(monkeypatch):
    """Every call of ``simplejpeg.decode_jpeg`` (its min_width and min_height)."""
    calls = []
    original = decode_module.simplejpeg.decode_jpeg

    def spy(data, *args, **kwargs):
        calls.append((kwargs.get("min_width"), kwargs.get("min_height")))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(decode_module.simplejpeg, "decode_jpeg", spy)
    return calls


@pytest.mark.parametrize("width, height", [(500, 375), (375, 500), (1000, 750), (801, 599),
                                           (2047, 3001), (100, 80), (17, 9)])
@pytest.mark.parametrize("size", [32, 64, 224])
def test_draft_scale_is_the_scale_pil_drafts_at(width, height, size):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="JPEG")
    with Image.open(buffer) as img:
        least = decode_module._draft_side(size)
        img.draft("RGB", (least, least))
        drafted = img.size
    factor = decode_module.draft_scale(width, height, size)
    assert drafted == (-(-width // factor), -(-height // factor))


@needs_simplejpeg
@pytest.mark.parametrize("grayscale", [False, True])
@pytest.mark.parametrize("width, height, size", [(500, 375, 224), (375, 500, 64), (640, 480, 48),
                                                 (1600, 300, 64)])
def test_fast_path_gives_pils_pixels_within_rounding(tmp_path, decode_calls, width, height,
                                                      size, grayscale):
    path = save_jpeg(tmp_path / "p.jpg", photo(width, height))
    fast = decode_image(path, size, grayscale, host_decoder="simplejpeg")
    assert decode_calls  # the fast path ran...
    pil = decode_image(path, size, grayscale, host_decoder="pil")
    assert fast.shape == pil.shape == (size, size, 3) and fast.dtype == pil.dtype == np.uint8
    diff = np.abs(fast.astype(int) - pil.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 2  # ...and differs only by rounding


@needs_simplejpeg
def test_fast_path_decodes_at_the_draft_scale(tmp_path, decode_calls):
    path = save_jpeg(tmp_path / "big.jpg", photo(1600, 1200))
    decode_image(path, 64, host_decoder="simplejpeg")
    assert decode_calls == [(200, 150)]  # 1/8 scale, as PIL's draft mode


@needs_simplejpeg
def test_grayscale_jpeg_files_take_the_fast_path(tmp_path, decode_calls):
    gray = photo(120, 90)[..., 0]
    path = tmp_path / "gray.jpg"
    Image.fromarray(gray).save(path, quality=90)
    fast = decode_image(str(path), 32, host_decoder="simplejpeg")
    assert decode_calls
    assert (fast[..., 0] == fast[..., 1]).all() and (fast[..., 1] == fast[..., 2]).all()
    pil = decode_image(str(path), 32, host_decoder="pil")
    assert np.abs(fast.astype(int) - pil.astype(int)).max() <= 1


@needs_simplejpeg
@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_path_turns_every_exif_orientation_upright(tmp_path, decode_calls, orientation):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    path = save_jpeg(tmp_path / "o.jpg", photo(90, 60), exif=exif)
    fast = decode_image(path, 32, host_decoder="simplejpeg")
    assert decode_calls
    pil = decode_image(path, 32, host_decoder="pil")  # exif_transpose, then resize
    assert np.abs(fast.astype(int) - pil.astype(int)).max() <= 2
    stored = decode_image(save_jpeg(tmp_path / "s.jpg", photo(90, 60)), 32)  # as stored
    turned = np.abs(fast.astype(int) - stored.astype(int)).mean()
    assert turned < 1 if orientation == 1 else turned > 10


@needs_simplejpeg
@pytest.mark.parametrize("width, height", [(1, 1), (1, 12), (12, 1)])
@pytest.mark.parametrize("orientation", [2, 3, 4])
def test_flipped_one_pixel_wide_jpegs_decode(tmp_path, decode_calls, width, height, orientation):
    """A flip of a one-pixel-wide array has a negative stride that torch cannot wrap."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    path = save_jpeg(tmp_path / "thin.jpg", photo(width, height), exif=exif)
    fast = decode_image(path, 8, host_decoder="simplejpeg")
    assert decode_calls
    pil = decode_image(path, 8, host_decoder="pil")
    assert np.abs(fast.astype(int) - pil.astype(int)).max() <= 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_array_turns_as_exif_transpose(orientation):
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[ExifTags.Base.Orientation] = orientation
    img.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(decode_module.upright_array(pixels, orientation), expected)


@needs_simplejpeg
@pytest.mark.parametrize("kind", ["progressive", "cmyk", "png"])
def test_files_that_are_not_baseline_jpegs_go_through_pil(tmp_path, decode_calls, kind):
    pixels = photo(80, 60)
    path = tmp_path / f"f.{'png' if kind == 'png' else 'jpg'}"
    if kind == "progressive":
        Image.fromarray(pixels).save(path, quality=90, progressive=True)
    elif kind == "cmyk":
        Image.fromarray(pixels).convert("CMYK").save(path, quality=90)
    else:
        Image.fromarray(pixels).save(path)
    out = decode_image(str(path), 32, host_decoder="simplejpeg")
    assert decode_calls == []  # decoded by PIL; resized by torch's kernel, as every input
    pil = decode_image(str(path), 32, host_decoder="pil")
    assert np.abs(out.astype(int) - pil.astype(int)).max() <= 1


@needs_simplejpeg
def test_a_jpeg_libjpeg_turbo_warns_about_is_decided_by_pil(tmp_path, decode_calls):
    # Junk after the entropy-coded data: libjpeg-turbo warns ("extraneous bytes"), so the
    # fast path gives it to PIL, which decodes it as it always did.
    buffer = io.BytesIO()
    Image.fromarray(photo(64, 48)).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    eoi = data.rindex(b"\xff\xd9")
    path = tmp_path / "junk.jpg"
    path.write_bytes(data[:eoi] + b"\x00\x12\x34" + data[eoi:])
    out = decode_image(str(path), 32, host_decoder="simplejpeg")
    assert len(decode_calls) == 1  # tried, refused, and decoded by PIL
    pil = decode_image(str(path), 32, host_decoder="pil")
    assert np.abs(out.astype(int) - pil.astype(int)).max() <= 1


@needs_simplejpeg
def test_a_truncated_jpeg_is_bad_under_the_fast_path_too(tmp_path, decode_calls):
    path = save_jpeg(tmp_path / "cut.jpg", np.random.default_rng(0).integers(
        0, 256, (200, 200, 3), dtype=np.uint8))
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="truncated") as info:
        decode_image(path, 32, host_decoder="simplejpeg")
    assert decode_calls and "cut.jpg" in str(info.value)


@needs_simplejpeg
def test_the_pixel_limit_holds_before_the_fast_path(tmp_path, monkeypatch, decode_calls):
    path = save_jpeg(tmp_path / "bomb.jpg", photo(200, 200))
    monkeypatch.setattr(decode_module, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode_image(path, 32, host_decoder="simplejpeg")
    assert decode_calls == []


def test_an_unknown_host_decoder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="host_decoder must be one of"):
        decode_image(np.zeros((4, 4, 3), dtype=np.uint8), 4, host_decoder="turbo")


def test_without_simplejpeg_pil_decodes_everything(tmp_path):
    # A fresh process in which simplejpeg cannot be imported.
    path = save_jpeg(tmp_path / "p.jpg", photo(120, 90))
    code = (
        "import sys; sys.modules['simplejpeg'] = None\n"
        "import numpy as np\n"
        "from wjsentiment.images import decode\n"
        "assert decode.HOST_DECODER == 'pil', decode.HOST_DECODER\n"
        f"out = decode.decode_image({path!r}, 32)\n"
        "assert out.shape == (32, 32, 3) and out.dtype == np.uint8\n"
        "try:\n"
        f"    decode.decode_image({path!r}, 32, host_decoder='simplejpeg')\n"
        "except ValueError as exc:\n"
        "    assert 'pip install' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


@needs_simplejpeg
def test_the_store_uses_the_default_decoder(tmp_path, monkeypatch, decode_calls):
    clear_image_cache()
    monkeypatch.setattr(decode_module, "HOST_DECODER", "simplejpeg")
    path = save_jpeg(tmp_path / "p.jpg", photo(120, 90))
    store = get_store(24)
    rows = store.add([path], num_workers=2).rows
    assert len(decode_calls) == 1
    np.testing.assert_array_equal(store.gather(rows)[0], decode_image(path, 24))
    monkeypatch.setattr(decode_module, "HOST_DECODER", "pil")
    clear_image_cache()
    get_store(24).add([path])
    assert len(decode_calls) == 2  # the module setting switches the store to PIL
    clear_image_cache()


def test_resize_square_rounds_as_the_float_path():
    # The uint8 kernel (host) and the float kernel (other devices) give the same geometry.
    x = torch.from_numpy(photo(250, 188)).permute(2, 0, 1).unsqueeze(0)
    u8 = decode_module.resize_square(x, 224).int()
    as_float = decode_module.resize_square(x.float(), 224).int()
    assert (u8 - as_float).abs().max() <= 1


def test_resize_square_follows_pil_bilinear():
    pixels = photo(250, 188)
    x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    ours = decode_module.resize_square(x, 224)[0].permute(1, 2, 0).numpy().astype(int)
    pil = np.asarray(Image.fromarray(pixels).resize((224, 224), Image.Resampling.BILINEAR,
                                                    reducing_gap=3.0)).astype(int)
    assert np.abs(ours - pil).mean() < 0.2 and np.abs(ours - pil).max() <= 1


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("n, channels", [(1, 3), (4, 3), (2, 1), (2, 4)])
def test_resize_square_is_torchs_antialiased_bilinear_in_any_layout(n, channels, channels_last):
    x = torch.randint(0, 256, (n, channels, 37, 51), dtype=torch.uint8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = decode_module.resize_square(x, 24)
    expected = torch.nn.functional.interpolate(x.contiguous(), size=(24, 24), mode="bilinear",
                                               antialias=True, align_corners=False)
    assert torch.equal(out, expected)
    assert out.permute(0, 2, 3, 1).is_contiguous()  # NHWC memory: no copy to an array
