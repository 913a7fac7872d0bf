"""Decode baseline JPEG files in batches on a torch device: nvJPEG on CUDA.

:func:`decode_files_on_device` reads files on the caller's threads, keeps those the device may
decode (:func:`read_device_jpeg`: baseline RGB or grayscale JPEGs, upright, within the pixel
limit, ending in their end-of-image marker), decodes them in batches with
``torchvision.io.decode_jpeg(list_of_tensors, device=...)``, and resizes them there with the
host decoder's geometry: first down to the size the host decodes the file at in the DCT
domain (:func:`~wjsentiment.images.decode.draft_scale`), by averaging the blocks of pixels
that libjpeg's scaled IDCT turns into one, on the same grid; then to the square target by the
host's own resize (:func:`~wjsentiment.images.decode.resize_square`, bilinear with
antialiasing). The uint8 result comes back to the host, for the same cache as host-decoded
images. A block average is not quite a scaled IDCT, so the pixels differ from the host's by
about half a grey level on average on photos (:data:`HOST_TOLERANCE`).

Everything else goes back to the caller as "not decoded here" and takes the host path, which
names any error: files that are not baseline JPEGs, files with an EXIF orientation, and any
file nvJPEG refuses (a batch that fails is retried one file at a time to find it).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from typing import NamedTuple

import numpy as np
import torch

from ..exceptions import InputError
from ..params import DECODERS
from .decode import (
    JpegHeader,
    baseline_jpeg,
    draft_scale,
    opened_image,
    output_pixels,
    resize_square,
)

#: Most JPEG files per call of the device decoder...
DEVICE_BATCH = 128
#: ...and most decoded pixels per call, which bounds its memory (about 200 MB of RGB).
DEVICE_BATCH_PIXELS = 64 * 2**20

#: Mean absolute difference, in grey levels, that device-decoded pixels may have from the
#: host decoder's on a photo: about 0.6 at 224 px through torchvision's CPU decoder (at most
#: 1.0 on the benchmark's JPEGs), with room for nvJPEG's own IDCT and chroma upsampling.
HOST_TOLERANCE = 2.0

#: The bytes a JPEG file ends with (the end-of-image marker).
_EOI = b"\xff\xd9"


class DeviceJpeg(NamedTuple):
    """A file's bytes (writable, as torch takes them) and its header."""

    data: bytearray
    header: JpegHeader


def decode_device(decoder: str, device: torch.device) -> torch.device | None:
    """The device JPEG files are decoded on for a ``decoder`` setting and a model's device;
    None for the host.

    Examples
    --------
    >>> decode_device("auto", torch.device("cpu")) is None
    True
    """
    if decoder not in DECODERS:
        raise InputError(f"decoder must be one of {list(DECODERS)}, got {decoder!r}.")
    device = torch.device(device)
    if decoder == "cpu" or (decoder == "auto" and device.type != "cuda"):
        return None
    if not torch.cuda.is_available():
        raise InputError("decoder='cuda' needs a CUDA GPU and none is available; use "
                         "decoder='auto' or 'cpu'.")
    return device if device.type == "cuda" else torch.device("cuda")


def read_device_jpeg(path: str | os.PathLike) -> DeviceJpeg | None:
    """The bytes and header of a file the device may decode; None for any other file, and
    for any error (the host path reads it again and names the error)."""
    try:
        with open(path, "rb") as fh, opened_image(fh, repr(os.fspath(path))) as img:
            header = baseline_jpeg(img)
            if header is None or header.orientation != 1:
                return None
            fh.seek(0)
            data = bytearray(fh.read())
    except Exception:  # noqa: BLE001 - the host path decides what the error means
        return None
    # nvJPEG may give pixels for a cut-off file, where the host refuses it as truncated.
    return DeviceJpeg(data, header) if bytes(data[-64:]).rstrip(b"\0").endswith(_EOI) else None


def _decode_batch(files: Sequence[DeviceJpeg], device: torch.device) -> list[torch.Tensor | None]:
    """``(3, H, W)`` uint8 RGB tensors on the device, None for each file it refuses."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its decoders
            warnings.simplefilter("ignore", DeprecationWarning)
            tensors = [torch.frombuffer(f.data, dtype=torch.uint8) for f in files]
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
    except (RuntimeError, ValueError):  # one bad file fails the batch: find it
        if len(files) == 1:
            return [None]
    return [_decode_batch([f], device)[0] for f in files]


def _draft(batch: torch.Tensor, factor: int) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 images made ``factor`` times smaller as the host's DCT-domain
    scaling makes them: each output pixel is the mean of the ``factor x factor`` block it
    stands for (the last, partial blocks padded by repeating the edge, as a JPEG encoder pads
    them), rounded to uint8 as a decoded pixel is."""
    height, width = batch.shape[-2:]
    pad = (0, -width % factor, 0, -height % factor)
    padded = torch.nn.functional.pad(batch.float(), pad, mode="replicate")
    return torch.nn.functional.avg_pool2d(padded, factor).round_().clamp_(0, 255).to(torch.uint8)


def _resize_like_host(images: list[torch.Tensor], headers: list[JpegHeader],
                      size: int) -> torch.Tensor:
    """``(N, size, size, 3)`` uint8 from full-size ``(3, H, W)`` decodes, by the host path's
    geometry. Images of one shape are resized together."""
    out = torch.empty((len(images), size, size, 3), dtype=torch.uint8, device=images[0].device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape[1:]), []).append(i)
    for members in groups.values():
        batch = torch.stack([images[i] for i in members])
        factor = draft_scale(headers[members[0]].width, headers[members[0]].height, size)
        if factor > 1:
            batch = _draft(batch, factor)
        index = torch.tensor(members, device=out.device)
        out.index_copy_(0, index, resize_square(batch, size).permute(0, 2, 3, 1))
    return out


def _batches(files: list[DeviceJpeg | None]) -> Iterator[list[int]]:
    """Positions of the files to decode, cut at :data:`DEVICE_BATCH` files or
    :data:`DEVICE_BATCH_PIXELS` pixels, whichever comes first."""
    batch: list[int] = []
    pixels = 0
    for i, f in enumerate(files):
        if f is None:
            continue
        area = f.header.width * f.header.height
        if batch and (len(batch) >= DEVICE_BATCH or pixels + area > DEVICE_BATCH_PIXELS):
            yield batch
            batch, pixels = [], 0
        batch.append(i)
        pixels += area
    if batch:
        yield batch


def decode_files_on_device(paths: Sequence[str | os.PathLike], size: int, grayscale: bool,
                           device: torch.device,
                           pool: Executor) -> Iterator[tuple[int, np.ndarray | None]]:
    """Decode files on ``device``: yields ``(position, pixels)`` for every path, in batches,
    with ``(size, size, 3)`` uint8 pixels as :func:`~wjsentiment.images.decode.decode_image`
    gives them, or None for a file the host must decode.

    Files are read by ``pool``'s threads, the next chunk while the device decodes this one.
    When a whole batch is refused (no usable device decoder, say), the remaining files are
    left to the host.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(1) as pool:
    ...     list(decode_files_on_device(["missing.jpg"], 32, False, torch.device("cpu"), pool))
    [(0, None)]
    """
    chunk = max(1, 2 * DEVICE_BATCH)
    pending = [pool.submit(read_device_jpeg, p) for p in paths[:chunk]]
    usable = True
    for start in range(0, len(paths), chunk):
        files = [f.result() for f in pending]
        pending = [pool.submit(read_device_jpeg, p) for p in paths[start + chunk:start + 2 * chunk]]
        decoded: dict[int, np.ndarray] = {}
        for batch in _batches(files) if usable else ():
            images = _decode_batch([files[i] for i in batch], device)
            kept = [(i, image) for i, image in zip(batch, images) if image is not None]
            if not kept:
                usable = False
                break
            resized = _resize_like_host([image for _, image in kept],
                                        [files[i].header for i, _ in kept], size).cpu().numpy()
            for (i, _), pixels in zip(kept, resized):
                decoded[i] = output_pixels(pixels, grayscale)
        for i in range(len(files)):
            yield start + i, decoded.get(i)
