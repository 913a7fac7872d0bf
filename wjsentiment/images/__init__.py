"""Image decoding and the decoded-image cache."""

from .cache import DecodedImageStore, DecodeResult, clear_image_cache, get_store
from .decode import MAX_IMAGE_PIXELS, BadImageError, ImageInput, decode_image, input_key

__all__ = [
    "MAX_IMAGE_PIXELS",
    "BadImageError",
    "DecodeResult",
    "DecodedImageStore",
    "ImageInput",
    "clear_image_cache",
    "decode_image",
    "get_store",
    "input_key",
]
