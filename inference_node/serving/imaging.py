"""Turn request bytes into an RGB array, refusing anything unsafe before it is fully decoded.

Decoding happens in two steps so that admission can count a request's memory before it is
spent: ``open_image`` reads the header only, checks it and plans the decode (how far a large
original is reduced, and the bytes the decode will hold at its peak); ``DecodePlan.decode``
then decodes. Large originals are reduced while decoding (JPEG's DCT scaling via ``draft``)
or right after it, before any conversion, so no step creates more than one full-size 8-bit
copy beyond the decoder's own buffer, and 16-bit, palette and alpha images never pass through
wide (32- or 64-bit) intermediates. ``DecodedImage`` keeps the original size, so boxes found
on the reduced pixels are mapped back to original-image pixels (``to_original``).
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from inference_node.errors import InvalidImage
from inference_node.model import Detection, Image

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP"})
EXIF_ORIENTATION = 0x0112
DETECTOR_INPUT = 640
"""The usual detector input side; the default decoded size is a few times its square."""

_TRANSPOSES = {
    2: PILImage.Transpose.FLIP_LEFT_RIGHT,
    3: PILImage.Transpose.ROTATE_180,
    4: PILImage.Transpose.FLIP_TOP_BOTTOM,
    5: PILImage.Transpose.TRANSPOSE,
    6: PILImage.Transpose.ROTATE_270,
    7: PILImage.Transpose.TRANSVERSE,
    8: PILImage.Transpose.ROTATE_90,
}
"""EXIF orientation (other than 1, as stored) → the transpose that shows it upright."""

_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1} | dict.fromkeys(_SIXTEEN_BIT, 2)
"""Bytes per pixel of Pillow's in-memory modes; every other mode holds 4 (RGB too)."""
_CONVERT_BEFORE_REDUCING = frozenset({"1", "P", "PA"})
"""Modes whose pixels cannot be averaged as stored: converted first, then reduced."""
_PREMULTIPLIED_TO_REDUCE = frozenset({"RGBA", "LA"})
"""Modes ``reduce`` premultiplies by alpha first: a full-size 4-byte copy."""
_DECODER_COPIES = {"WEBP": 4}
"""Full-size buffers a format's decoder holds at once (measured): Pillow's WebP decoder keeps
libwebp's RGBA canvases beside its own image, about 16 bytes a pixel in all."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageLimits:
    """Upper bounds on what a request may ask the node to decode.

    ``max_pixels`` bounds the original (larger ones are refused from the header: a
    decompression bomb costs a few bytes of parsing); originals above ``max_decoded_pixels``
    are reduced on decode by a whole factor until they fit, which a detector letterboxing to
    its input size does not miss.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_decoded_pixels: int = 4 * DETECTOR_INPUT * DETECTOR_INPUT


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedImage:
    """Upright RGB pixels, possibly reduced, and the size of the original they came from."""

    pixels: Image
    original_width: int
    original_height: int

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)

    def to_original(self, detection: Detection) -> Detection:
        """``detection`` (in ``pixels`` coordinates) in original-image pixels."""
        height, width = self.pixels.shape[:2]
        if (width, height) == (self.original_width, self.original_height):
            return detection
        sx, sy = self.original_width / width, self.original_height / height
        return Detection(
            x1=min(detection.x1 * sx, self.original_width),
            y1=min(detection.y1 * sy, self.original_height),
            x2=min(detection.x2 * sx, self.original_width),
            y2=min(detection.y2 * sy, self.original_height),
            confidence=detection.confidence,
            class_id=detection.class_id,
            class_name=detection.class_name,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodePlan:
    """A checked header, and what decoding it will cost."""

    picture: PILImage.Image
    """The opened file; a large JPEG is already set to decode scaled (``draft``)."""
    stored_size: tuple[int, int]
    """The original's width and height as stored (before its EXIF orientation)."""
    factor: int
    """Whole factor the original is reduced by (1: kept as it is)."""
    peak_bytes: int
    """Bytes the decode holds at its peak: the decoder's buffer plus the reduced copies."""
    orientation: int
    max_pixels: int
    """The decoded size the pixels are brought within (``ImageLimits.max_decoded_pixels``)."""

    def decode(self) -> DecodedImage:
        """Decode, reduce, turn upright and convert to 8-bit RGB; ``InvalidImage`` on bad data."""
        picture = self.picture
        width, height = self.stored_size
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            try:
                picture.load()
            except (OSError, ValueError, SyntaxError, struct.error) as exc:
                raise InvalidImage(f"{picture.format} image could not be decoded: {exc}") from exc
        reduced = _reduce(picture, _factor(picture.size, self.max_pixels))
        transpose = _TRANSPOSES.get(self.orientation)
        upright = reduced if transpose is None else reduced.transpose(transpose)
        swapped = self.orientation in (5, 6, 7, 8)
        return DecodedImage(
            pixels=_to_rgb(upright),
            original_width=height if swapped else width,
            original_height=width if swapped else height,
        )


def decode_image(data: bytes, limits: ImageLimits) -> Image:
    """Decode ``data`` into upright RGB uint8 pixels (reduced if large), or raise
    ``InvalidImage`` saying why."""
    return open_image(data, limits).decode().pixels


def open_image(data: bytes, limits: ImageLimits) -> DecodePlan:
    """Read and check the header of ``data`` (no pixel decoded yet) and plan its decode."""
    if not data:
        raise InvalidImage("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise InvalidImage(f"image is {len(data)} bytes, over the limit of {limits.max_bytes}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        picture = _open_header(data)
    _check_header(picture, limits)
    stored = picture.size
    factor = _factor(stored, limits.max_decoded_pixels)
    if factor > 1 and picture.format == "JPEG":  # DCT scaling: decodes at 1/2, 1/4 or 1/8
        picture.draft(picture.mode, (stored[0] // factor, stored[1] // factor))
    return DecodePlan(
        picture=picture,
        stored_size=stored,
        factor=factor,
        peak_bytes=_peak_bytes(picture, stored, factor),
        orientation=_orientation(picture),
        max_pixels=limits.max_decoded_pixels,
    )


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


def _factor(size: tuple[int, int], max_pixels: int) -> int:
    """The smallest whole factor that brings ``size`` within ``max_pixels``."""
    pixels = size[0] * size[1]
    if pixels <= max_pixels:
        return 1
    factor = max(2, math.ceil(math.sqrt(pixels / max(max_pixels, 1))))
    while math.ceil(size[0] / factor) * math.ceil(size[1] / factor) > max_pixels:
        factor += 1
    return factor


def _peak_bytes(picture: PILImage.Image, stored: tuple[int, int], factor: int) -> int:
    """What the decode holds at its peak: the decoder's buffers, a full-size copy where the
    mode must be converted or premultiplied to be reduced, and the reduced working copies
    (Pillow's 4-byte pixels, then RGB). Checked against measured high-water marks."""
    native = picture.size[0] * picture.size[1]  # a drafted JPEG decodes already scaled
    reduced = math.ceil(stored[0] / factor) * math.ceil(stored[1] / factor)
    buffer = (
        native
        * _BYTES_PER_PIXEL.get(picture.mode, 4)
        * _DECODER_COPIES.get(picture.format or "", 1)
    )
    mode = picture.mode
    if factor > 1 and mode in _CONVERT_BEFORE_REDUCING:
        mode = _averageable(picture)
        buffer += native * _BYTES_PER_PIXEL.get(mode, 4)
    if factor > 1 and mode in _PREMULTIPLIED_TO_REDUCE:
        buffer += native * 4
    if factor > 1 and mode in _SIXTEEN_BIT:  # the box resize's horizontal pass
        buffer += math.ceil(stored[0] / factor) * stored[1] * 2
    return buffer + reduced * (4 + 4 + 3)


def _orientation(picture: PILImage.Image) -> int:
    """The EXIF orientation tag (1 when missing or unreadable), read before any reduction."""
    try:
        value = picture.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSES else 1


def _reduce(picture: PILImage.Image, factor: int) -> PILImage.Image:
    """``picture`` averaged down by ``factor`` (box filter), in a mode that can be averaged."""
    if factor <= 1:
        return picture
    if picture.mode in _CONVERT_BEFORE_REDUCING:
        picture = picture.convert(_averageable(picture))
    if picture.mode in _SIXTEEN_BIT:  # ``reduce`` has no 16-bit path; a box resize has
        size = (math.ceil(picture.width / factor), math.ceil(picture.height / factor))
        return picture.resize(size, PILImage.Resampling.BOX)
    return picture.reduce(factor)


def _averageable(picture: PILImage.Image) -> str:
    """The mode a bilevel or palette picture is converted to before it is reduced."""
    if picture.mode == "1":
        return "L"
    return "RGBA" if "transparency" in picture.info else "RGB"


def _to_rgb(picture: PILImage.Image) -> Image:
    """Convert any decoded mode (16-bit, grayscale, palette, alpha, CMYK) to 8-bit RGB.

    16-bit pixels are scaled to 8 bits within their own mode (``point`` with a linear map),
    then narrowed; 32-bit integer and float pixels (already reduced to a working size) are
    scaled by their maximum.
    """
    if picture.mode in _SIXTEEN_BIT:
        picture = picture.point(lambda value: value / 257).convert("L")
    elif picture.mode in {"I", "F"}:
        values = np.asarray(picture, dtype=np.float32)
        top = max(float(values.max()), 1e-9)
        narrow = (values * (255.0 / top)).clip(0, 255).astype(np.uint8)
        picture = PILImage.fromarray(narrow, "L")
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    return np.ascontiguousarray(np.asarray(picture, dtype=np.uint8))
