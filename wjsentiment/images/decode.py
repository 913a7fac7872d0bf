"""Decode one input (a path, a PIL image or a uint8 array) into a square uint8 RGB array.

This is the only place in wjsentiment that turns files into pixels. What it does, in order:

- Files are opened with context managers, so a file is closed whether or not it decodes.
- JPEGs are decoded smaller in the DCT domain, at the smallest power-of-two scale (1/2, 1/4,
  1/8) whose result still covers :data:`DRAFT_COVERAGE` of the target size
  (:func:`draft_scale`, the rule of PIL's draft mode), which skips most of the decoding work
  for large photos.
- Two host decoders (:data:`HOST_DECODERS`). "pil": PIL decodes and resizes everything.
  "simplejpeg", the default when the optional ``simplejpeg`` package is installed
  (``pip install wjsentiment[fast]``; :data:`HOST_DECODER`): baseline RGB and grayscale JPEGs
  are decoded by libjpeg-turbo, without holding the GIL, to PIL's pixels at the same scale;
  every other file (progressive and CMYK JPEGs, other formats), and any JPEG libjpeg-turbo
  refuses or only decodes with a warning, is decoded by PIL, which decides whether it is bad;
  and every input, files, PIL images and arrays alike, is resized by torch's uint8
  antialiased bilinear kernel (:func:`resize_square`), which differs from PIL's resize by
  rounding (a mean under 0.1 grey level). Each decoder gives one input the same pixels
  whether it comes as a file, a PIL image or an array.
- Images are turned upright by their EXIF orientation (:func:`PIL.ImageOps.exif_transpose`):
  a phone photo stored sideways is learned and predicted the right way up. Files and PIL
  images alike; an unreadable EXIF block counts as "no orientation".
- 16-bit and float images are scaled by their type's range, never stretched per image:
  ``I;16*`` and ``I`` map 0-65535 to 0-255 (PIL opens 16-bit PNG and TIFF files as ``I;16``
  or ``I``; ``I`` values outside 0-65535 are clipped), ``F`` maps 0.0-1.0 to 0-255 (clipped).
- Transparent images are composited on white.

- Memory is bounded: a file is refused before it is decoded when its pixels, counted by the
  bytes of one sample (a 16-bit pixel counts twice, a 32-bit or float one four times), are
  over :data:`MAX_IMAGE_PIXELS` (:func:`check_pixel_count`); and the threads decoding at once
  hold at most :data:`DECODE_MEMORY_BYTES` of decoded pixels between them (a large image waits
  for room), so many threads cannot decode many large images at the same time.

Errors that are properties of the input (missing, unreadable for lack of permission,
truncated, not an image, too large) raise :class:`BadImageError`. Errors of the system (too
many open files, an I/O error, out of memory: :data:`SYSTEM_ERRNOS` and :class:`MemoryError`)
are not: they raise an :class:`OSError` (or the :class:`MemoryError`) naming the file, since
the same file may read fine a moment later and must not be dropped as "bad".
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple, Union

import numpy as np
import torch
from PIL import ExifTags, Image, ImageMode, ImageOps

from ..exceptions import BadImageError, InputError

try:  # optional: libjpeg-turbo with DCT-domain scaling, decoding without the GIL
    import simplejpeg
except ImportError:  # pragma: no cover - depends on what is installed
    simplejpeg = None

#: What :func:`decode_image` accepts: a file path, a PIL image, or a uint8 array.
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]  # noqa: UP007 - runtime alias

#: Draft mode may return a JPEG down to this fraction of the target side, which the resize then
#: scales up: a 500x375 photo decodes at 1/2 scale (250x188) for a 224 px target instead of at
#: full size, about 1.7x less decoding work, at the price of a slight blur of the short side.
DRAFT_COVERAGE = 0.8

#: Host decoders: "simplejpeg" (libjpeg-turbo through the optional ``simplejpeg`` package for
#: baseline JPEGs, PIL for other files, and :func:`resize_square` for every input) and "pil"
#: (PIL for everything, JPEGs in draft mode).
HOST_DECODERS = ("simplejpeg", "pil")

#: The host decoder :func:`decode_image` uses when none is named: "simplejpeg" when it is
#: installed (it decodes and resizes a Flickr-size photo in about two thirds of PIL's CPU
#: time, mostly outside the GIL), else "pil".
HOST_DECODER = "simplejpeg" if simplejpeg is not None else "pil"

#: Files with more pixels than this are refused, before decoding, as possible decompression
#: bombs: PIL's own default limit (about 9,500 x 9,500), with each pixel counted by the bytes of
#: one sample, so a 16-bit image may have half as many pixels and a 32-bit or float one a quarter.
MAX_IMAGE_PIXELS = 89_478_485

#: The most bytes of decoded pixels that the threads decoding files hold at once: a file whose
#: pixels do not fit beside those being decoded waits for them (one larger than this decodes
#: alone), so that, say, 16 threads never decode 16 large images at the same time.
DECODE_MEMORY_BYTES = 2**30

#: ``errno`` values of an :class:`OSError` that come from the system, not from the file: the
#: same file may read fine on the next try, so it is never recorded as a bad image. A file this
#: account may not read (``EACCES``, ``EPERM``) is not among them: it stays unreadable until
#: someone changes its permissions (which gives it a new :func:`input_key`), so it is a bad
#: image of its own, not a reason to stop a whole run.
SYSTEM_ERRNOS = frozenset({
    errno.EMFILE, errno.ENFILE, errno.EIO, errno.ENOMEM,
    errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT, errno.ENOBUFS,
})

#: The largest value of a 16-bit sample, which maps to 255.
_UINT16_MAX = 65535


def describe_input(item: object) -> str:
    """Name an input for error messages: its path, or its type for in-memory images."""
    if isinstance(item, (str, os.PathLike)):
        return repr(os.fspath(item))
    if isinstance(item, Image.Image):
        return f"<PIL image {item.mode} {item.size[0]}x{item.size[1]}>"
    if isinstance(item, np.ndarray):
        return f"<array {item.dtype} {item.shape}>"
    return f"<{type(item).__name__}>"


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) of an image; 1 when it has none or its EXIF is unreadable."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block does not make the pixels unusable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(img: Image.Image) -> Image.Image:
    """The image turned by its EXIF orientation (a new image only when it has one)."""
    return ImageOps.exif_transpose(img) if _orientation(img) != 1 else img


#: What each EXIF orientation does to an ``(H, W, C)`` array to turn it upright: the
#: transpositions :func:`PIL.ImageOps.exif_transpose` makes, as numpy views.
_UPRIGHT_ARRAY = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def upright_array(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``(H, W, C)`` pixels turned by an EXIF orientation (1-8), as PIL's ``exif_transpose``.

    Examples
    --------
    >>> upright_array(np.arange(6).reshape(2, 3, 1), 6)[..., 0].tolist()  # 90 deg clockwise
    [[3, 0], [4, 1], [5, 2]]
    """
    turn = _UPRIGHT_ARRAY.get(orientation)
    return np.ascontiguousarray(turn(pixels)) if turn is not None else pixels


class JpegHeader(NamedTuple):
    """What the fast JPEG decoders need to know of a file before decoding it."""

    width: int
    height: int
    #: "RGB" (three components) or "L" (one).
    mode: str
    #: EXIF orientation, 1-8 (1: upright).
    orientation: int


def baseline_jpeg(img: Image.Image) -> JpegHeader | None:
    """The header of an opened (not loaded) image when it is a baseline JPEG of RGB or
    grayscale pixels; None for anything else (progressive or CMYK JPEGs, other formats)."""
    if img.format != "JPEG" or img.mode not in ("RGB", "L"):
        return None
    if img.info.get("progressive") or img.info.get("progression"):
        return None
    return JpegHeader(img.width, img.height, img.mode, _orientation(img))


def _draft_side(size: int) -> int:
    """The least side a JPEG decoded in draft mode may have for a ``size`` px target."""
    return math.ceil(DRAFT_COVERAGE * size)


def draft_scale(width: int, height: int, size: int) -> int:
    """The factor (1, 2, 4 or 8) by which a ``width x height`` JPEG is decoded smaller for a
    ``size`` px target: the largest whose result still covers :data:`DRAFT_COVERAGE` of the
    target on both sides (PIL's draft-mode rule). The result is ``ceil(side / factor)``.

    Examples
    --------
    >>> draft_scale(500, 375, 224), draft_scale(500, 375, 112), draft_scale(100, 80, 224)
    (2, 4, 1)
    """
    least = _draft_side(size)
    fits = min(width // least, height // least)
    return next((factor for factor in (8, 4, 2) if fits >= factor), 1)


#: torch's antialiased bilinear resize, writing straight into a channels-last (NHWC) tensor:
#: ``interpolate`` resizes uint8 images in NHWC order, then copies them to NCHW, and the
#: caller would copy them back.
_AA_RESIZE_INTO = torch.ops.aten._upsample_bilinear2d_aa.out


def resize_square(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` uint8 images to ``(N, C, size, size)`` uint8, bilinear with
    antialiasing (PIL's geometry and filter), on the images' device.

    On a CPU, uint8 images go through torch's uint8 kernel, which rounds as PIL does, and the
    result has channels-last strides: ``out.permute(0, 2, 3, 1)`` is a contiguous NHWC
    array. Other devices and dtypes are resized in float32 and rounded to the nearest integer.

    Examples
    --------
    >>> x = torch.full((1, 3, 40, 60), 7, dtype=torch.uint8)
    >>> resize_square(x, 32).shape, int(resize_square(x, 32).max())
    (torch.Size([1, 3, 32, 32]), 7)
    """
    if tuple(pixels.shape[-2:]) == (size, size):
        return pixels.to(torch.uint8)
    if pixels.dtype == torch.uint8 and pixels.device.type == "cpu":
        n, channels = pixels.shape[:2]
        out = torch.empty((n, size, size, channels), dtype=torch.uint8).permute(0, 3, 1, 2)
        pixels = pixels.contiguous(memory_format=torch.channels_last)  # as the op takes it
        _AA_RESIZE_INTO(pixels, [size, size], False, None, None, out=out)
        return out
    out = torch.nn.functional.interpolate(pixels.float(), size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def output_pixels(pixels: np.ndarray, grayscale: bool) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 output from resized ``(size, size, 3)`` RGB or
    ``(size, size, 1)`` grayscale pixels: with ``grayscale``, PIL's luminance (``convert("L")``)
    repeated over three channels."""
    if pixels.shape[2] == 3 and grayscale:
        pixels = np.asarray(Image.fromarray(pixels).convert("L"))[:, :, None]
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


#: Options of ``simplejpeg.decode_jpeg`` for the fast path. ``fastdct`` and ``fastupsample``
#: (a faster IDCT, nearest-neighbour chroma) cut the decode's own time by under a tenth and
#: move the pixels by about 0.6 grey level, for no gain in whole-decode throughput that
#: stood out of the noise, so both stay off: the result is PIL's decode, pixel for pixel.
SIMPLEJPEG_OPTIONS = {"fastdct": False, "fastupsample": False}


def _decode_jpeg_fast(data: bytes, header: JpegHeader, size: int,
                      grayscale: bool) -> np.ndarray | None:
    """A baseline JPEG decoded by libjpeg-turbo at its draft scale, turned upright and resized;
    None when libjpeg-turbo refuses the data or warns about it (PIL then decides)."""
    factor = draft_scale(header.width, header.height, size)
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB" if header.mode == "RGB" else "GRAY",
            min_width=-(-header.width // factor), min_height=-(-header.height // factor),
            **SIMPLEJPEG_OPTIONS,
        )
    except ValueError:
        return None
    return _finish_array(upright_array(pixels, header.orientation), size, grayscale)


def _scaled_to_uint8(img: Image.Image) -> Image.Image:
    """An ``L`` image from a 16-bit (``I;16*``, ``I``) or float (``F``) one, by the type's range.

    Integers are scaled in integer arithmetic (rounding as ``rint`` does: ``v * 255 / 65535``
    never ends in one half), in place, so a 16-bit image needs 4 bytes per pixel beside its own.
    """
    if img.mode == "F":
        scaled = np.asarray(img, dtype=np.float64) * 255.0
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
    arr = np.clip(np.asarray(img), 0, _UINT16_MAX).astype(np.uint32)
    arr *= 255
    arr += _UINT16_MAX // 2
    arr //= _UINT16_MAX
    return Image.fromarray(arr.astype(np.uint8))


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with any transparency composited on a white background."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _scaled_to_uint8(img)
    return img.convert("RGB")


def _finish_array(pixels: np.ndarray, size: int, grayscale: bool) -> np.ndarray:
    """The output of ``(H, W, C)`` uint8 RGB or grayscale pixels resized by
    :func:`resize_square` (what the "simplejpeg" host decoder does with every input).

    torch only wraps writable arrays with positive strides: PIL's arrays are read-only, and a
    flipped one-pixel-wide array counts as contiguous with a negative stride, so those are
    copied first."""
    if not pixels.flags.writeable or not pixels.flags.c_contiguous or min(pixels.strides) < 0:
        pixels = pixels.copy(order="C")
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    return output_pixels(resize_square(tensor, size)[0].permute(1, 2, 0).numpy(), grayscale)


def _finish(img: Image.Image, size: int, grayscale: bool, host_decoder: str) -> np.ndarray:
    img = _to_rgb(img)
    if host_decoder == "simplejpeg":
        return _finish_array(np.asarray(img, dtype=np.uint8), size, grayscale)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return output_pixels(np.asarray(img, dtype=np.uint8), grayscale)


def _sample_bytes(mode: str) -> int:
    """Bytes of one sample of a PIL mode: 1 for 8-bit modes, 2 for ``I;16*``, 4 for ``I``, ``F``."""
    try:
        return np.dtype(ImageMode.getmode(mode).typestr).itemsize
    except (KeyError, TypeError):  # a mode PIL names but does not describe: count it as 8-bit
        return 1


def check_pixel_count(img: Image.Image, source: str) -> None:
    """Refuse an opened (not yet decoded) image that is too large to decode.

    Its pixels are counted by the bytes of one sample (a 16-bit pixel counts twice, a 32-bit
    or float pixel four times) and compared with :data:`MAX_IMAGE_PIXELS`. Every path that
    decodes a file checks it with this function (the host and device decoders, and the
    downloader before it accepts a file), so an image one of them accepts is never refused by
    another.

    Raises
    ------
    BadImageError
        Naming ``source`` and saying it is refused as a possible decompression bomb.

    Examples
    --------
    A 9,000 x 9,000 16-bit image counts as 162 million pixels:

    >>> deep = Image.new("I;16", (9, 9))
    >>> deep._size = (9000, 9000)  # what a PNG header would say, without the pixels
    >>> check_pixel_count(deep, "deep.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.exceptions.BadImageError: Cannot use image deep.png: 9000x9000 pixels of \
2-byte samples count as 162000000 pixels, over the limit of 89478485 (possible decompression...
    """
    weight = _sample_bytes(img.mode)
    counted = img.width * img.height * weight
    if counted > MAX_IMAGE_PIXELS:
        size = f"{img.width}x{img.height} pixels"
        if weight > 1:
            size += f" of {weight}-byte samples count as {counted} pixels,"
        raise BadImageError(source, f"{size} over the limit of {MAX_IMAGE_PIXELS} "
                                    "(possible decompression bomb)")


class _DecodeMemory:
    """The bytes of decoded pixels that threads may hold at once (:data:`DECODE_MEMORY_BYTES`).

    A thread asks for the bytes of the image it is about to decode and waits until they fit
    beside what the others hold; an image larger than the whole budget waits until nothing
    else is held, then decodes alone.
    """

    def __init__(self) -> None:
        self._held = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        with self._changed:
            nbytes = min(nbytes, DECODE_MEMORY_BYTES)
            self._changed.wait_for(lambda: self._held + nbytes <= DECODE_MEMORY_BYTES)
            self._held += nbytes
        try:
            yield
        finally:
            with self._changed:
                self._held -= nbytes
                self._changed.notify_all()


_DECODE_MEMORY = _DecodeMemory()


def _decoded_bytes(img: Image.Image, factor: int = 1) -> int:
    """Bytes of the pixels of an opened image once decoded (``factor`` times smaller)."""
    pixels = -(-img.width // factor) * -(-img.height // factor)
    return pixels * len(img.getbands()) * _sample_bytes(img.mode)


@contextlib.contextmanager
def opened_image(fh: BinaryIO, source: str,
                 formats: Sequence[str] | None = None) -> Iterator[Image.Image]:
    """The image of an open file, its header read and checked (:func:`check_pixel_count`);
    PIL's decompression-bomb warnings are errors. ``formats``: the PIL formats tried (None:
    every one PIL knows)."""
    with warnings.catch_warnings():
        # PIL only warns between its own limit and twice that: refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(fh, formats=formats) as img:
            check_pixel_count(img, source)
            yield img


def _decode_file(path: str, size: int, grayscale: bool, host_decoder: str) -> np.ndarray:
    """Decode the file at ``path``; it is closed on the way out, whatever happens."""
    with open(path, "rb") as fh:
        return _decode_open(fh, repr(path), size, grayscale, host_decoder)


def _decode_open(fh: BinaryIO, source: str, size: int, grayscale: bool, host_decoder: str,
                 formats: Sequence[str] | None = None) -> np.ndarray:
    """Open, check, draft, load, turn upright and finish one open file, within the decoding
    memory budget; the image is closed on the way out, whatever happens."""
    start = fh.tell()
    with opened_image(fh, source, formats) as img:
        header = baseline_jpeg(img) if host_decoder == "simplejpeg" else None
        factor = draft_scale(img.width, img.height, size) if img.format == "JPEG" else 1
        with _DECODE_MEMORY.hold(_decoded_bytes(img, factor)):
            if header is not None:
                fh.seek(start)
                pixels = _decode_jpeg_fast(fh.read(), header, size, grayscale)
                if pixels is not None:
                    return pixels
            if img.format == "JPEG":
                least = _draft_side(size)
                img.draft("RGB", (least, least))  # before load; the orientation still holds
            img.load()
            return _finish(_upright(img), size, grayscale, host_decoder)


def verify_image_file(fh: BinaryIO, source: str) -> None:
    """Check that an open image file is one :func:`decode_image` accepts, keeping no pixels.

    The same checks as decoding: the header is read and the size checked first
    (:func:`check_pixel_count`, so a decompression bomb is refused before any of it is
    decoded), then the whole file is decoded once, within the decoding memory budget, to
    find truncated or damaged data. The downloader checks every file so before keeping it.

    Parameters
    ----------
    fh : binary file
        Open for reading; read from where it stands.
    source : str
        How errors name the file.

    Raises
    ------
    BadImageError
        If the file is not an image, is truncated or damaged, or is too large.
    OSError, MemoryError
        For errors of the system, as :func:`decode_image`.

    Examples
    --------
    >>> import io
    >>> verify_image_file(io.BytesIO(b"<html>"), "page.jpg")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.exceptions.BadImageError: Cannot use image page.jpg: not an image file PIL...
    """
    start = fh.tell()
    with _named_errors(source):
        with opened_image(fh, source) as img:
            img.verify()  # the structure, and checksums where the format has them
        fh.seek(start)
        with opened_image(fh, source) as img, _DECODE_MEMORY.hold(_decoded_bytes(img)):
            img.load()


#: ``errno`` values of an :class:`OSError` on opening that say what the path is, with the words
#: :class:`BadImageError` gives for them.
_PATH_ERRORS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied (this account may not read it)",
    errno.EPERM: "permission denied (operation not permitted)",
    errno.EISDIR: "it is a directory, not an image file",
    errno.ENOTDIR: "a part of the path is not a directory",
}


def _input_error(exc: Exception, source: str) -> Exception:
    """What a decoder error on ``source`` means: an :class:`OSError` naming ``source`` (same
    errno, so the same subclass) for an error of the system (:data:`SYSTEM_ERRNOS`), which
    the next call tries again; else the :class:`BadImageError` of a property of the input."""
    if isinstance(exc, OSError) and exc.errno in SYSTEM_ERRNOS:
        return OSError(exc.errno, f"{exc.strerror or exc} (reading image {source}; not "
                       "recorded as a bad image, the next call tries it again)")
    if isinstance(exc, OSError) and exc.errno in _PATH_ERRORS:
        return BadImageError(source, _PATH_ERRORS[exc.errno])
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return BadImageError(source, f"refused as a decompression bomb ({exc})")
    if isinstance(exc, Image.UnidentifiedImageError):
        return BadImageError(source, "not an image file PIL can read")
    if isinstance(exc, (OSError, SyntaxError, ValueError)):
        return BadImageError(source, f"unreadable or truncated ({exc})")
    return BadImageError(source, f"unreadable or truncated ({type(exc).__name__}: {exc})")


def _decode_array(item: np.ndarray, size: int, grayscale: bool, host_decoder: str) -> np.ndarray:
    if item.dtype != np.uint8:
        raise BadImageError(
            describe_input(item), "arrays must be uint8 with values 0-255; convert with "
            "np.clip(a, 0, 255).astype(np.uint8)"
        )
    if item.ndim == 3 and item.shape[2] == 3 and host_decoder == "simplejpeg":
        # RGB already: resized as it is (PIL would only copy it there and back).
        return _finish_array(item, size, grayscale)
    if item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3, 4)):
        arr = item[:, :, 0] if item.ndim == 3 and item.shape[2] == 1 else item
        return _finish(Image.fromarray(np.ascontiguousarray(arr)), size, grayscale, host_decoder)
    raise BadImageError(
        describe_input(item), "an image array must have shape (H, W), (H, W, 3) or (H, W, 4)"
    )


def decode_image(item: ImageInput, size: int, grayscale: bool = False, *,
                 host_decoder: str | None = None) -> np.ndarray:
    """Decode one image into a ``(size, size, 3)`` uint8 RGB array.

    The image is turned upright by its EXIF orientation (as
    :func:`PIL.ImageOps.exif_transpose`), resized to a square (as
    ``torchvision.transforms.Resize((size, size))`` does), transparent pixels are composited
    on white, 16-bit and float images are scaled by their type's range (see the module), and
    with ``grayscale=True`` the luminance is repeated over three channels (as
    ``transforms.Grayscale(3)``). A file is always closed before this returns or raises.

    Parameters
    ----------
    item : str, os.PathLike, PIL.Image.Image or numpy.ndarray
        A path to an image file, a PIL image, or a uint8 array of shape (H, W, 3),
        (H, W, 4) or (H, W).
    size : int
        Side of the square output, in pixels.
    grayscale : bool, default=False
        Convert to grayscale, then back to three identical channels.
    host_decoder : {"simplejpeg", "pil"}, optional
        Which host decoder (see :data:`HOST_DECODERS`); default :data:`HOST_DECODER`.
        "simplejpeg" needs the ``simplejpeg`` package.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(size, size, 3)`` and dtype uint8.

    Raises
    ------
    BadImageError
        If the file is missing, unreadable (no permission to read it included), truncated,
        not an image, or larger than :data:`MAX_IMAGE_PIXELS` allows (see
        :func:`check_pixel_count`); or the array has the wrong dtype or shape.
    OSError
        For an error of the system rather than of the image (errno in
        :data:`SYSTEM_ERRNOS`: too many open files, an I/O error...), with
        the path in the message. Such an image is not bad: a later call may read it.
    MemoryError
        When there is not enough memory to decode the image.
    ValueError
        For an unknown ``host_decoder``, or "simplejpeg" without the package.

    Examples
    --------
    >>> import numpy as np
    >>> decode_image(np.zeros((40, 60, 3), dtype=np.uint8), size=32).shape
    (32, 32, 3)
    """
    host_decoder = _host_decoder(host_decoder)
    if isinstance(item, np.ndarray):
        return _decode_array(item, size, grayscale, host_decoder)
    if not isinstance(item, (str, os.PathLike, Image.Image)):
        raise BadImageError(
            describe_input(item), "expected a file path (str or pathlib.Path), a PIL image or a "
            "uint8 array"
        )
    with _named_errors(describe_input(item)):
        if isinstance(item, Image.Image):
            return _finish(_upright(item), size, grayscale, host_decoder)
        return _decode_file(os.fspath(item), size, grayscale, host_decoder)


def decode_image_file(fh: BinaryIO, size: int, source: str, grayscale: bool = False, *,
                      host_decoder: str | None = None,
                      formats: Sequence[str] | None = None) -> np.ndarray:
    """Decode an open image file, such as the bytes of an upload in :class:`io.BytesIO`,
    exactly as :func:`decode_image` decodes a file at a path with these bytes: the same
    decompression-bomb check, draft mode, memory budget (:data:`DECODE_MEMORY_BYTES`) and
    errors, which name ``source``.

    Parameters
    ----------
    fh : binary file
        Open for reading, read from where it stands; it is left open.
    size, grayscale, host_decoder
        As for :func:`decode_image`.
    source : str
        How errors name the image.
    formats : sequence of str, optional
        The PIL formats the file may have (e.g. ``("JPEG", "PNG")``); bytes of any other are
        "not an image file". None: every format PIL reads.

    Examples
    --------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (300, 200), "red").save(buffer, format="PNG")
    >>> _ = buffer.seek(0)
    >>> decode_image_file(buffer, 32, "upload", formats=("JPEG", "PNG")).shape
    (32, 32, 3)
    """
    host_decoder = _host_decoder(host_decoder)
    with _named_errors(source):
        return _decode_open(fh, source, size, grayscale, host_decoder,
                            None if formats is None else tuple(formats))


def _host_decoder(name: str | None) -> str:
    """The host decoder to use for ``name`` (None: :data:`HOST_DECODER`), checked."""
    name = HOST_DECODER if name is None else name
    if name not in HOST_DECODERS:
        raise InputError(f"host_decoder must be one of {list(HOST_DECODERS)}, got {name!r}.")
    if name == "simplejpeg" and simplejpeg is None:
        raise InputError("host_decoder='simplejpeg' needs the simplejpeg package: pip install "
                         "simplejpeg (or wjsentiment[fast]), or use 'pil'.")
    return name


@contextlib.contextmanager
def _named_errors(source: str) -> Iterator[None]:
    """Turn what a decoder raises into a :class:`BadImageError` naming ``source``, except the
    errors of the system (:data:`SYSTEM_ERRNOS`, :class:`MemoryError`), which are re-raised
    naming it."""
    try:
        yield
    except (BadImageError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - anything else a decoder raises is the input's
        raise _input_error(exc, source) from exc


def input_key(item: ImageInput) -> tuple:
    """A hashable key that identifies an input by content.

    Paths are keyed by the file they name (device and inode, so a symbolic or hard link
    shares its target's key), its size, its modification time and its inode change time
    (``st_ctime_ns``): one ``stat`` call, cheap enough to repeat on every ``predict``. A file
    rewritten in place gets a new key even when a copy tool (``cp -p``, ``rsync -t``) or
    :func:`os.utime` restores its size and modification time, since nothing can set the
    change time back. In-memory images are keyed by a hash of their pixels and of what else
    decides their colours: a PIL image's palette, transparency and EXIF orientation.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4, 3), dtype=np.uint8)
    >>> input_key(a) == input_key(a.copy())
    True
    """
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        try:
            st = os.stat(path)
        except OSError:
            return ("missing", str(Path(path).absolute()))
        return ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if isinstance(item, Image.Image):
        digest = hashlib.blake2b(item.tobytes(), digest_size=16)
        if item.mode in ("P", "PA"):
            palette_mode = item.palette.mode if item.palette is not None else ""
            digest.update(palette_mode.encode() + bytes(item.getpalette(None) or []))
        digest.update(repr(item.info.get("transparency")).encode())
        return ("pil", item.mode, item.size, _orientation(item), digest.hexdigest())
    if isinstance(item, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(item).tobytes(), digest_size=16).hexdigest()
        return ("array", str(item.dtype), item.shape, digest)
    return ("object", id(item))
