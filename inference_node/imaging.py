"""Turn request bytes into an RGB array, refusing anything unsafe before it is fully decoded."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from inference_node.errors import InvalidImage
from inference_node.model import Image

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP"})
EXIF_ORIENTATION = 0x0112
ROTATED_OR_MIRRORED = frozenset(range(2, 9))
"""EXIF orientation values other than 1 (as stored) that ``ImageOps.exif_transpose`` undoes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageLimits:
    """Upper bounds on what a request may ask the node to decode."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000


def decode_image(data: bytes, limits: ImageLimits) -> Image:
    """Decode ``data`` into an RGB uint8 array, or raise ``InvalidImage`` saying why.

    The header is read first: format, dimensions and the pixel limit are checked before any
    pixel is decoded, so a decompression bomb costs a few bytes of parsing.
    """
    if not data:
        raise InvalidImage("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise InvalidImage(f"image is {len(data)} bytes, over the limit of {limits.max_bytes}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        picture = _open_header(data)
        _check_header(picture, limits)
        try:
            picture.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidImage(f"{picture.format} image could not be decoded: {exc}") from exc
    return _to_rgb(_upright(picture))


def _open_header(data: bytes) -> PILImage.Image:
    """Parse the header with Pillow's decoders for our formats only.

    ``PIL.Image.open`` is not used: ultralytics replaces it process-wide with a wrapper that
    tries to install a HEIF plugin on unknown bytes. Going to the format plugins directly also
    keeps exotic decoders away from untrusted input.
    """
    PILImage.init()
    for name in sorted(SUPPORTED_FORMATS):
        factory, accept = PILImage.OPEN[name]
        accepted = accept is None or accept(data[:16])
        if not accepted or isinstance(accepted, str):
            continue
        try:
            return factory(io.BytesIO(data), "")
        except (OSError, ValueError, SyntaxError, IndexError, TypeError, struct.error) as exc:
            raise InvalidImage(f"{name} image header could not be read: {exc}") from exc
    raise InvalidImage("image bytes are not a recognised image format (JPEG, PNG, WebP, BMP)")


def _check_header(picture: PILImage.Image, limits: ImageLimits) -> None:
    if picture.format not in SUPPORTED_FORMATS:
        supported = ", ".join(sorted(SUPPORTED_FORMATS))
        raise InvalidImage(f"image format {picture.format} is not supported (use {supported})")
    width, height = picture.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has zero size ({width}x{height})")
    if width * height > limits.max_pixels:
        raise InvalidImage(
            f"image is {width}x{height} = {width * height} pixels, "
            f"over the limit of {limits.max_pixels}"
        )


def _upright(picture: PILImage.Image) -> PILImage.Image:
    """The picture as it is meant to be seen: its EXIF orientation applied (phones store
    portrait photos as rotated landscape pixels plus a tag). ``cv2.imread``, and so ultralytics
    reading a file, does the same, so boxes come back in the grid a viewer shows. A missing or
    unreadable tag leaves the stored grid as it is.
    """
    try:
        orientation = picture.getexif().get(EXIF_ORIENTATION, 1)
        if orientation not in ROTATED_OR_MIRRORED:
            return picture
        return ImageOps.exif_transpose(picture)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        return picture


def _to_rgb(picture: PILImage.Image) -> Image:
    """Convert any decoded mode (16-bit, grayscale, palette, alpha, CMYK) to 8-bit RGB."""
    if picture.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        wide = np.asarray(picture, dtype=np.uint32)
        top = 65535 if picture.mode.startswith("I;16") else max(int(wide.max()), 1)
        narrow = (wide.astype(np.float64) * (255.0 / top)).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([narrow] * 3, axis=-1))
    if picture.mode == "F":
        values = np.asarray(picture, dtype=np.float64)
        narrow = (values / max(float(values.max()), 1e-9) * 255.0).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([narrow] * 3, axis=-1))
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    return np.ascontiguousarray(np.asarray(picture, dtype=np.uint8))
