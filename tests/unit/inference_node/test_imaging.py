from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inference_node.errors import InvalidImage
from inference_node.model import Detection
from inference_node.serving.imaging import DecodedImage, ImageLimits, decode_image, open_image
from tests.images import png_claiming

LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=1_000_000)


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    array = np.full((12, 20, 3), 200, dtype=np.uint8)

    decoded = decode_image(encode(array, fmt), LIMITS)

    assert decoded.shape == (12, 20, 3)
    assert decoded.dtype == np.uint8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"not an image at all", "not a recognised image", id="garbage"),
        pytest.param(b"GIF89a" + b"\x00" * 40, "not a recognised image", id="gif-unsupported"),
        pytest.param(png_claiming(5000, 5000), "over the limit", id="decompression-bomb"),
        pytest.param(b"x" * (2 << 20), "over the limit of", id="too-many-bytes"),
    ],
)
def test_bad_bytes_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        decode_image(data, LIMITS)


def test_truncated_jpeg_is_refused() -> None:
    rng = np.random.default_rng(1)
    data = encode(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "JPEG")

    with pytest.raises(InvalidImage, match=r"could not be decoded|could not be read"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_zero_size_image_is_refused() -> None:
    with pytest.raises(InvalidImage):
        decode_image(png_claiming(0, 10), LIMITS)


def test_sixteen_bit_grayscale_is_scaled_to_eight_bit_rgb() -> None:
    wide = np.full((10, 10), 65535, dtype=np.uint16)
    wide[0, 0] = 0
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, "PNG")

    decoded = decode_image(buffer.getvalue(), LIMITS)

    assert decoded.shape == (10, 10, 3)
    assert decoded[5, 5].tolist() == [255, 255, 255]
    assert decoded[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_grayscale_alpha_and_palette_are_converted(mode: str) -> None:
    picture = Image.new(mode, (9, 7))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")

    decoded = decode_image(buffer.getvalue(), LIMITS)

    assert decoded.shape == (7, 9, 3)


def _tagged_jpeg(orientation: int) -> bytes:
    """A 30 wide x 10 high picture, white in its top-left 10x10 corner, with an EXIF tag."""
    array = np.zeros((10, 30, 3), dtype=np.uint8)
    array[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("orientation", "shape", "white_corner"),
    [
        pytest.param(1, (10, 30, 3), (0, 0), id="as-stored"),
        pytest.param(3, (10, 30, 3), (9, 29), id="rotated-180"),
        pytest.param(6, (30, 10, 3), (0, 9), id="rotate-90-clockwise"),
        pytest.param(8, (30, 10, 3), (29, 0), id="rotate-90-counter-clockwise"),
        pytest.param(9, (10, 30, 3), (0, 0), id="invalid-value-ignored"),
    ],
)
def test_exif_orientation_is_applied_like_cv2_imread(
    orientation: int, shape: tuple[int, int, int], white_corner: tuple[int, int]
) -> None:
    decoded = decode_image(_tagged_jpeg(orientation), LIMITS)

    assert decoded.shape == shape
    assert decoded[white_corner].min() > 200
    assert decoded[shape[0] - 1 - white_corner[0], shape[1] - 1 - white_corner[1]].max() < 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_opencv(orientation: int) -> None:
    import cv2

    data = _tagged_jpeg(orientation)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    decoded = decode_image(data, LIMITS)

    assert bgr is not None
    assert decoded.shape == bgr.shape
    assert np.abs(decoded.astype(int) - bgr[..., ::-1].astype(int)).max() <= 2


SMALL = ImageLimits(max_bytes=1 << 20, max_pixels=1_000_000, max_decoded_pixels=10_000)


def _quadrants(width: int, height: int) -> np.ndarray:
    """RGB picture: red top-left, green top-right, blue bottom-left, white bottom-right."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = slice(0, height // 2), slice(0, width // 2)
    bottom, right = slice(height // 2, height), slice(width // 2, width)
    array[top, left, 0] = 255
    array[top, right, 1] = 255
    array[bottom, left, 2] = 255
    array[bottom, right] = 255
    return array


def _as(mode: str, fmt: str) -> bytes:
    picture = Image.fromarray(_quadrants(400, 300))
    if mode == "P":
        picture = picture.quantize(8)
    if mode == "RGBA":
        picture.putalpha(128)
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        pytest.param("RGB", "PNG", id="png"),
        pytest.param("RGB", "JPEG", id="jpeg-draft"),
        pytest.param("RGB", "WEBP", id="webp"),
        pytest.param("RGB", "BMP", id="bmp"),
        pytest.param("P", "PNG", id="palette"),
        pytest.param("RGBA", "PNG", id="alpha"),
    ],
)
def test_large_originals_are_reduced_on_decode_keeping_their_size(mode: str, fmt: str) -> None:
    plan = open_image(_as(mode, fmt), SMALL)

    decoded = plan.decode()

    height, width = decoded.pixels.shape[:2]
    assert plan.factor == 4
    assert width * height <= SMALL.max_decoded_pixels
    assert (decoded.original_width, decoded.original_height) == (400, 300)
    corners = [decoded.pixels[5, 5], decoded.pixels[5, -5], decoded.pixels[-5, 5]]
    assert [int(np.argmax(c)) for c in corners] == [0, 1, 2]
    assert decoded.pixels[-5, -5].min() > 200
    assert plan.peak_bytes >= decoded.nbytes


def test_large_bilevel_image_is_reduced_as_grayscale() -> None:
    array = np.zeros((300, 400), dtype=bool)
    array[:, 200:] = True
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")

    decoded = open_image(buffer.getvalue(), SMALL).decode()

    assert decoded.pixels.shape == (75, 100, 3)
    assert decoded.pixels[:, :45].max() == 0
    assert decoded.pixels[:, 55:].min() == 255


def test_large_sixteen_bit_image_is_reduced_and_narrowed() -> None:
    wide = np.full((300, 400), 65535, dtype=np.uint16)
    wide[:150] = 0
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, "PNG")

    decoded = open_image(buffer.getvalue(), SMALL).decode()

    assert decoded.pixels.shape == (75, 100, 3)
    assert decoded.pixels[:30].max() == 0
    assert decoded.pixels[-30:].min() == 255


@pytest.mark.parametrize(
    ("size", "max_decoded", "factor"),
    [
        pytest.param((100, 100), 10_000, 1, id="fits"),
        pytest.param((101, 100), 10_000, 2, id="just-over"),
        pytest.param((4000, 3000), 1_638_400, 3, id="12-megapixel-photo"),
        pytest.param((3, 9000), 100, 90, id="thin-strip-keeps-one-column"),
    ],
)
def test_reduction_is_the_smallest_whole_factor_that_fits(
    size: tuple[int, int], max_decoded: int, factor: int
) -> None:
    limits = ImageLimits(max_pixels=50_000_000, max_decoded_pixels=max_decoded)

    plan = open_image(png_claiming(*size), limits)

    assert plan.factor == factor


def test_reduced_rotated_jpeg_is_upright_with_the_original_upright_size() -> None:
    array = np.zeros((300, 900, 3), dtype=np.uint8)
    array[:, :300] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95, exif=exif.tobytes())

    decoded = open_image(buffer.getvalue(), SMALL).decode()

    assert (decoded.original_width, decoded.original_height) == (300, 900)
    height, width = decoded.pixels.shape[:2]
    assert height > width
    assert decoded.pixels[2, width - 3].min() > 200
    assert decoded.pixels[height - 3, 2].max() < 50


def test_boxes_on_reduced_pixels_map_back_to_original_pixels() -> None:
    decoded = DecodedImage(
        pixels=np.zeros((75, 100, 3), dtype=np.uint8), original_width=400, original_height=301
    )
    found = Detection(x1=10, y1=5, x2=100, y2=75, confidence=0.9, class_id=1, class_name="c")

    mapped = decoded.to_original(found)

    assert (mapped.x1, mapped.x2) == (40, 400)
    assert mapped.y1 == pytest.approx(5 * 301 / 75)
    assert mapped.y2 == 301
    assert (mapped.confidence, mapped.class_id, mapped.class_name) == (0.9, 1, "c")
