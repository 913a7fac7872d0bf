"""Property: any image file, whole, truncated, mutated or garbage, either decodes to a
``(size, size, 3)`` uint8 array or raises :class:`BadImageError`, and is closed either way:
no descriptor stays open, and no file is left for the garbage collector to close (which
Python reports as a ``ResourceWarning``). Both host JPEG decoders keep these promises, and
they agree on which files are bad."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from wjsentiment.images import BadImageError, decode_image
from wjsentiment.images.decode import HOST_DECODERS, simplejpeg

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")
#: Every host JPEG decoder this environment has.
DECODERS = [d for d in HOST_DECODERS if d != "simplejpeg" or simplejpeg is not None]
MODES = ("1", "L", "P", "RGB", "RGBA", "CMYK", "I;16")
HAS_PROC_FD = os.path.isdir("/proc/self/fd")


def make_image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return rgb.convert(mode)


def encode(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def encode_jpeg(img: Image.Image, draw) -> bytes:
    """A JPEG, baseline or progressive, with or without an EXIF orientation."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    orientation = draw(st.integers(0, 8))
    if orientation:
        exif[0x0112] = orientation
    img.save(buffer, format="JPEG", progressive=draw(st.booleans()), exif=exif,
             quality=draw(st.sampled_from([50, 95])))
    return buffer.getvalue()


def writable(fmt: str, mode: str) -> bool:
    try:
        encode(make_image(mode, 2, 2, 0), fmt)
    except (OSError, ValueError, KeyError):
        return False
    return True


#: The (format, mode) pairs this PIL can write (WebP, say, only where PIL was built with it).
COMBINATIONS = [(fmt, mode) for fmt in FORMATS for mode in MODES if writable(fmt, mode)]


@st.composite
def image_files(draw, combinations=None) -> tuple[str, bytes]:
    """An encoded image, then left whole, truncated, mutated, spliced or replaced by noise."""
    fmt, mode = draw(st.sampled_from(combinations or COMBINATIONS))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    img = make_image(mode, width, height, draw(st.integers(0, 2**16)))
    data = bytearray(encode(img, fmt) if fmt != "JPEG" else encode_jpeg(img, draw))
    damage = draw(st.sampled_from(["none", "truncate", "mutate", "splice", "noise"]))
    if damage == "truncate":
        del data[draw(st.integers(0, len(data) - 1)):]
    elif damage == "mutate":
        for pos, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1),
                                                  st.integers(0, 255)), min_size=1, max_size=8)):
            data[pos] = value
    elif damage == "splice":
        start = draw(st.integers(0, len(data)))
        data[start:start + draw(st.integers(0, 64))] = draw(st.binary(max_size=64))
    elif damage == "noise":
        data = data[:draw(st.integers(0, 16))] + draw(st.binary(max_size=256))
    return fmt, bytes(data)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_every_format_and_mode_is_tried():
    assert {mode for _, mode in COMBINATIONS} == set(MODES)
    assert {fmt for fmt, _ in COMBINATIONS} >= set(FORMATS) - {"WEBP"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("damaged")


@pytest.mark.parametrize("host_decoder", DECODERS)
@settings(max_examples=150, deadline=None)
@given(case=image_files(), size=st.sampled_from([8, 24]), grayscale=st.booleans())
def test_decode_gives_pixels_or_bad_image_and_closes_the_file(folder, host_decoder, case, size,
                                                               grayscale):
    fmt, data = case
    path = folder / f"image.{fmt.lower()}"
    path.write_bytes(data)
    before = open_descriptors() if HAS_PROC_FD else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            out = decode_image(str(path), size, grayscale=grayscale, host_decoder=host_decoder)
        except BadImageError as exc:
            assert "image." in exc.source
        else:
            assert out.shape == (size, size, 3) and out.dtype == np.uint8
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    if HAS_PROC_FD:
        assert open_descriptors() == before


JPEG_COMBINATIONS = [(fmt, mode) for fmt, mode in COMBINATIONS if fmt == "JPEG"]


@pytest.mark.skipif(simplejpeg is None, reason="needs simplejpeg")
@settings(max_examples=200, deadline=None)
@given(case=image_files(JPEG_COMBINATIONS), size=st.sampled_from([8, 24]),
       grayscale=st.booleans())
def test_both_host_decoders_agree_on_bad_files_and_on_pixels(folder, case, size, grayscale):
    _, data = case
    path = folder / "agree.jpg"
    path.write_bytes(data)
    outcomes = []
    for host_decoder in ("simplejpeg", "pil"):
        try:
            outcomes.append(decode_image(str(path), size, grayscale, host_decoder=host_decoder))
        except BadImageError:
            outcomes.append(None)
    fast, pil = outcomes
    assert (fast is None) == (pil is None)
    if fast is None:
        return
    assert fast.shape == pil.shape and fast.dtype == pil.dtype
    with Image.open(path) as img:
        smallest_side = min(img.size)
    if smallest_side >= size:
        # The same libjpeg decode, scaled down by two antialiased resizes that differ by
        # rounding. (Scaled up, from an image of a pixel or two, their edge handling differs
        # by much more: those only have to agree on shape.)
        diff = np.abs(fast.astype(int) - pil.astype(int))
        assert diff.max() <= 4 and diff.mean() <= 1.0
