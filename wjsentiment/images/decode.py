"""Decode one input (a path, a PIL image or a uint8 array) into a square uint8 RGB array.

This is the only place in wjsentiment that turns files into pixels. JPEGs are decoded in
PIL's draft mode, at the smallest power-of-two scale (1/2, 1/4, 1/8) whose result still covers
:data:`DRAFT_COVERAGE` of the target size, which skips most of the decoding work for large
photos. Transparent images are composited on white.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

#: What :func:`decode_image` accepts: a file path, a PIL image, or a uint8 array.
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]  # noqa: UP007 - runtime alias

#: Draft mode may return a JPEG down to this fraction of the target side, which the resize then
#: scales up: a 500x375 photo decodes at 1/2 scale (250x188) for a 224 px target instead of at
#: full size, about 1.7x less decoding work, at the price of a slight blur of the short side.
DRAFT_COVERAGE = 0.8

#: Images with more pixels than this are refused as possible decompression bombs (about 16k x 16k).
MAX_IMAGE_PIXELS = 268_435_456


class BadImageError(ValueError):
    """An input could not be decoded as an image.

    Attributes
    ----------
    source : str
        A short description of the input (its path, or its position for in-memory images).
    reason : str
        What went wrong.
    hint : str
        What to do about it (the estimator says what applies where it met the image).
    """

    def __init__(self, source: str, reason: str, hint: str = "Fix or remove it.") -> None:
        self.source = source
        self.reason = reason
        self.hint = hint
        super().__init__(f"Cannot use image {source}: {reason}. {hint}")


def describe_input(item: object) -> str:
    """Name an input for error messages: its path, or its type for in-memory images."""
    if isinstance(item, (str, os.PathLike)):
        return repr(os.fspath(item))
    if isinstance(item, Image.Image):
        return f"<PIL image {item.mode} {item.size[0]}x{item.size[1]}>"
    if isinstance(item, np.ndarray):
        return f"<array {item.dtype} {item.shape}>"
    return f"<{type(item).__name__}>"


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with any transparency composited on a white background."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8))
    return img.convert("RGB")


def _finish(img: Image.Image, size: int, grayscale: bool) -> np.ndarray:
    img = _to_rgb(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    if grayscale:
        gray = np.asarray(img.convert("L"))
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img, dtype=np.uint8)


def _open_file(path: str, size: int) -> Image.Image:
    if not os.path.exists(path):
        raise BadImageError(repr(path), "no such file")
    if os.path.isdir(path):
        raise BadImageError(repr(path), "it is a directory, not an image file")
    with warnings.catch_warnings():
        # PIL only warns between MAX_IMAGE_PIXELS and twice that: refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise BadImageError(
                    repr(path),
                    f"{img.width}x{img.height} pixels is over the limit of {MAX_IMAGE_PIXELS} "
                    "(possible decompression bomb)",
                )
            if img.format == "JPEG":
                least = math.ceil(DRAFT_COVERAGE * size)
                img.draft("RGB", (least, least))
            img.load()
        except BadImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImageError(repr(path), f"refused as a decompression bomb ({exc})") from exc
        except Image.UnidentifiedImageError:
            raise BadImageError(repr(path), "not an image file PIL can read") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadImageError(repr(path), f"unreadable or truncated ({exc})") from exc
    return img


def decode_image(item: ImageInput, size: int, grayscale: bool = False) -> np.ndarray:
    """Decode one image into a ``(size, size, 3)`` uint8 RGB array.

    The image is resized to a square (as ``torchvision.transforms.Resize((size, size))``
    does), transparent pixels are composited on white, and with ``grayscale=True`` the
    luminance is repeated over three channels (as ``transforms.Grayscale(3)``).

    Parameters
    ----------
    item : str, os.PathLike, PIL.Image.Image or numpy.ndarray
        A path to an image file, a PIL image, or a uint8 array of shape (H, W, 3),
        (H, W, 4) or (H, W).
    size : int
        Side of the square output, in pixels.
    grayscale : bool, default=False
        Convert to grayscale, then back to three identical channels.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(size, size, 3)`` and dtype uint8.

    Raises
    ------
    BadImageError
        If the file is missing, unreadable, truncated, not an image, or larger than
        :data:`MAX_IMAGE_PIXELS`; or the array has the wrong dtype or shape.

    Examples
    --------
    >>> import numpy as np
    >>> decode_image(np.zeros((40, 60, 3), dtype=np.uint8), size=32).shape
    (32, 32, 3)
    """
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        try:
            return _finish(_open_file(path, size), size, grayscale)
        except BadImageError:
            raise
        except (OSError, ValueError) as exc:
            raise BadImageError(repr(path), f"unreadable or truncated ({exc})") from exc
    if isinstance(item, Image.Image):
        return _finish(item, size, grayscale)
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise BadImageError(
                describe_input(item), "arrays must be uint8 with values 0-255; convert with "
                "np.clip(a, 0, 255).astype(np.uint8)"
            )
        if item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3, 4)):
            arr = item[:, :, 0] if item.ndim == 3 and item.shape[2] == 1 else item
            return _finish(Image.fromarray(np.ascontiguousarray(arr)), size, grayscale)
        raise BadImageError(
            describe_input(item), "an image array must have shape (H, W), (H, W, 3) or (H, W, 4)"
        )
    raise BadImageError(
        describe_input(item), "expected a file path (str or pathlib.Path), a PIL image or a uint8 "
        "array"
    )


def input_key(item: ImageInput) -> tuple:
    """A hashable key that identifies an input by content.

    Paths are keyed by the file they name (device and inode, so a symbolic or hard link
    shares its target's key), its size and its modification time (a file rewritten in place
    gets a new key): one ``stat`` call, cheap enough to repeat on every ``predict``.
    In-memory images are keyed by a hash of their pixels.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4, 3), dtype=np.uint8)
    >>> input_key(a) == input_key(a.copy())
    True
    """
    import hashlib

    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        try:
            st = os.stat(path)
        except OSError:
            return ("missing", str(Path(path).absolute()))
        return ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if isinstance(item, Image.Image):
        digest = hashlib.blake2b(item.tobytes(), digest_size=16).hexdigest()
        return ("pil", item.mode, item.size, digest)
    if isinstance(item, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(item).tobytes(), digest_size=16).hexdigest()
        return ("array", str(item.dtype), item.shape, digest)
    return ("object", id(item))
