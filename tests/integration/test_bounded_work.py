"""Small requests cannot make a real node process use huge memory (issue 9, bounded work).

Each test starts ``python -m inference_node`` as its own process and reads its resident-memory
high-water mark (VmHWM) from /proc before and after the load; each ends with a request that
succeeds.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from tests.integration.harness import NodeSubprocess, encode, iou
from yolofleet.demo_models import DemoModels
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

MB = 1_000_000
GOOD = encode(render_image(7).image)
OK, EXHAUSTED = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED


def sixteen_bit_png(width: int = 4000, height: int = 3000) -> bytes:
    """A 12-megapixel 16-bit grayscale PNG of about 76 KiB: flat tiles and a few specks."""
    y, x = np.mgrid[0:height, 0:width]
    wide = ((x // 40) * 769 + (y // 40) * 1543).astype(np.uint16)
    rng = np.random.default_rng(0)
    specks = 3600
    wide[rng.integers(0, height, specks), rng.integers(0, width, specks)] = rng.integers(
        0, 65535, specks, dtype=np.uint16
    )
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def node(tmp_path: Path, models: DemoModels) -> Iterator[NodeSubprocess]:
    process = NodeSubprocess(models.v1, "--max-queue", "4", cache=tmp_path)
    yield process
    process.close()


def _reset_peak(node: NodeSubprocess) -> None:
    """Start the high-water mark from the current RSS, so growth is measured from here (the
    model's load peaked higher and would hide it)."""
    if not node.reset_peak_rss():
        pytest.skip("this kernel does not let VmHWM be reset (/proc/PID/clear_refs)")


def _burst(node: NodeSubprocess, image: bytes, count: int) -> list[grpc.StatusCode]:
    """``count`` Detect calls released at the same moment; the status each ended with."""
    start = threading.Barrier(count)

    def call(_: int) -> grpc.StatusCode:
        start.wait()
        try:
            node.stub.Detect(pb.DetectRequest(image=image), timeout=120)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
        return OK

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_concurrent_sixteen_bit_pngs_past_the_queue_are_refused_and_memory_stays_bounded(
    node: NodeSubprocess,
) -> None:
    image = sixteen_bit_png()
    assert 60_000 < len(image) < 90_000
    node.stub.Detect(pb.DetectRequest(image=GOOD), timeout=60)
    _reset_peak(node)
    before = node.peak_rss_bytes()

    codes = _burst(node, image, 24)

    grown = node.peak_rss_bytes() - before
    tally = {code.name: codes.count(code) for code in set(codes)}
    print(f"24 x 16-bit PNG: {tally} peak RSS +{grown / MB:.0f} MB")
    assert set(codes) <= {OK, EXHAUSTED}
    assert codes.count(EXHAUSTED) >= 24 - 4 - 16, "at most max-queue waiting beside one batch"
    assert OK in codes
    assert grown < 300 * MB
    reply = node.stub.Detect(pb.DetectRequest(image=image), timeout=60)
    assert (reply.image_width, reply.image_height) == (4000, 3000)


def test_one_sixteen_bit_png_costs_a_bounded_decode_then_the_node_serves(
    node: NodeSubprocess,
) -> None:
    image = sixteen_bit_png()
    node.stub.Detect(pb.DetectRequest(image=GOOD), timeout=60)
    _reset_peak(node)
    before = node.peak_rss_bytes()

    reply = node.stub.Detect(pb.DetectRequest(image=image), timeout=60)

    grown = node.peak_rss_bytes() - before
    print(f"one 16-bit PNG ({len(image)} bytes): peak RSS +{grown / MB:.0f} MB")
    assert (reply.image_width, reply.image_height) == (4000, 3000)
    assert grown < 100 * MB
    assert node.stub.Detect(pb.DetectRequest(image=GOOD), timeout=60).model.name


@pytest.mark.parametrize("fmt", [pytest.param("PNG", id="png"), pytest.param("JPEG", id="jpeg")])
def test_reduced_large_original_answers_in_original_pixels(node: NodeSubprocess, fmt: str) -> None:
    truth = render_image(9100, min_shapes=1, max_shapes=1)
    factor = 12  # 160 px → 1920 px: 3.7 megapixels, reduced on decode
    big = truth.image.resize((truth.image.width * factor, truth.image.height * factor))
    box = truth.boxes[0]

    reply = node.stub.Detect(pb.DetectRequest(image=encode(big, fmt)), timeout=60)

    best = max(reply.detections, key=lambda d: d.confidence)
    scaled = (box.x1 * factor, box.y1 * factor, box.x2 * factor, box.y2 * factor)
    assert (reply.image_width, reply.image_height) == big.size
    assert iou((best.box.x1, best.box.y1, best.box.x2, best.box.y2), scaled) > 0.5
