"""Request bodies -> decoded images, on the HTTP side of the service, with the errors a client
can act on.

The service takes image bytes only, as multipart parts named ``file`` or as the raw body: no
path or URL, so it never reads a local file nor fetches anything. The body is read up to a
size limit (413 past it) and within the service's timeout (408 past it), and each image is
decoded by the path that decodes files (:func:`~wjsentiment.images.decode.decode_image_file`:
its decompression-bomb guard, draft mode and decoding memory budget), as ``predict_proba``
decodes a file with the same bytes, so the service's probabilities are those of
``predict_proba``. Bytes of none of :data:`FORMATS` get 415; an image that is truncated,
damaged or too large gets 422; either way the message names the part.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import NamedTuple

import anyio
import numpy as np
from fastapi import HTTPException, Request
from PIL import Image

from ..images.decode import BadImageError, decode_image_file

__all__ = ["Upload", "decode_upload", "read_body", "read_images"]

#: Content types that carry text, never image bytes: refused with 415.
TEXT_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/")
#: The multipart field that holds an image.
FIELD = "file"
#: The image formats the service reads (PIL's names). Others, such as EPS, which PIL would
#: hand to Ghostscript, are refused with 415 before any of their bytes are decoded.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


class Upload(NamedTuple):
    """The images of one request, decoded: what the HTTP side sends to the inference worker.

    Attributes
    ----------
    pixels : dict of int to numpy.ndarray
        For each image size the model reads, the images decoded at it: uint8
        ``(n, size, size, 3)``, in request order.
    names : list of str
        How each image is named in messages (its part's file name, or "body").
    """

    pixels: dict[int, np.ndarray]
    names: list[str]


def decode_upload(data: bytes, size: int, source: str = "upload") -> np.ndarray:
    """Decode image bytes into a ``(size, size, 3)`` uint8 RGB array, as
    :func:`~wjsentiment.images.decode_image` decodes a file with these bytes (through
    :func:`~wjsentiment.images.decode.decode_image_file`: the same checks, draft mode and
    memory budget), if they are of one of :data:`FORMATS`.

    Parameters
    ----------
    data : bytes
        The image file's bytes.
    size : int
        Side of the square output.
    source : str
        How the image is named in errors.

    Raises
    ------
    BadImageError
        When the image is truncated, damaged, or has more pixels than the decoder allows;
        when the bytes are of none of :data:`FORMATS`, its ``__cause__`` is PIL's
        ``UnidentifiedImageError``.

    Examples
    --------
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (300, 200), "red").save(buffer, format="JPEG")
    >>> decode_upload(buffer.getvalue(), 32).shape
    (32, 32, 3)
    """
    return decode_image_file(io.BytesIO(data), size, source, formats=FORMATS)


def decode_all(parts: Sequence[tuple[str, bytes]], sizes: Sequence[int]) -> Upload:
    """Decode every part at every size, or raise the HTTP error of the first bad part:
    415 for bytes that are no image (422 when other parts came with it), 422 for an image
    that cannot be used; the message names the part."""
    several = len(parts) > 1
    pixels: dict[int, list[np.ndarray]] = {size: [] for size in sizes}
    for position, (name, data) in enumerate(parts, start=1):
        label = f"part {position} ({name!r})" if several else repr(name)
        try:
            if not data:
                raise BadImageError(label, "it is empty")
            for size in sizes:
                pixels[size].append(decode_upload(data, size, label))
        except BadImageError as exc:
            if isinstance(exc.__cause__, Image.UnidentifiedImageError):
                raise HTTPException(422 if several else 415, detail=(
                    f"{label} is not an image file of a format the service reads "
                    f"({', '.join(FORMATS)}).")) from exc
            raise HTTPException(422, detail=f"{label}: {exc.reason}.") from exc
    return Upload({size: np.stack(images) for size, images in pixels.items()},
                  [name for name, _ in parts])


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request's body, refused with 413 once it is larger than ``limit`` bytes (at once
    when its Content-Length says so, else as soon as that many bytes have come), and with 408
    when it has not all come within ``timeout`` seconds: a slow client must not hold its
    place in the queue."""
    too_large = HTTPException(413, detail=f"The body is larger than the limit of {limit} "
                                          "bytes; send fewer or smaller images per request.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, total = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(408, headers={"Connection": "close"}, detail=(
            f"The body did not arrive within {timeout:g} s ({total} bytes came): send the "
            "whole request at once, or fewer or smaller images over a slow link.")) from None
    return b"".join(chunks)


async def _multipart_parts(request: Request, body: bytes, max_images: int
                           ) -> list[tuple[str, bytes]]:
    """The ``file`` parts of a multipart body already read, as (file name, bytes)."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=max_images,
                                                     max_fields=max_images)
    try:
        values = form.getlist(FIELD)
        if any(isinstance(value, str) for value in values):
            raise HTTPException(415, detail=f"Part {FIELD!r} must be an image file's bytes, "
                                            "not text: paths and URLs are not accepted.")
        return [(value.filename or FIELD, await value.read()) for value in values]
    finally:
        await form.close()


async def read_images(request: Request, limit: int, max_images: int, timeout: float
                      ) -> list[tuple[str, bytes]]:
    """The images of a request as (name, bytes): the ``file`` parts of a multipart body, or
    the raw body, read within ``timeout`` seconds. Raises the HTTP errors a client can act on
    (408, 413, 415, 422)."""
    body = await read_body(request, limit, timeout)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        parts = await _multipart_parts(request, body, max_images)
        if not parts:
            raise HTTPException(422, detail=f"No multipart part named {FIELD!r}: send each "
                                            f"image as a part named {FIELD!r}.")
        return parts
    if content_type.startswith(TEXT_TYPES):
        raise HTTPException(415, detail=f"Send image bytes (multipart parts named {FIELD!r}, "
                                        f"or the raw image as the body), not {content_type}: "
                                        "paths and URLs are not accepted.")
    if not body:
        raise HTTPException(422, detail=f"The body is empty: send an image, as the raw body "
                                        f"or as multipart parts named {FIELD!r}.")
    return [("body", body)]
