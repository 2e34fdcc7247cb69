"""Every kind of bad request gets a clear status, and the node keeps serving afterwards."""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from inference_node.model import ModelRef
from inference_node.serving.admission import AdmissionLimits
from inference_node.serving.requests import BatchLimits
from tests.images import png_claiming
from tests.integration.harness import RunningNode, encode
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

GOOD = encode(render_image(7).image)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _jpeg() -> bytes:
    noise = np.random.default_rng(3).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    return encode(noise, "JPEG")


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "GIF")
    return buffer.getvalue()


def _assert_still_serving(node: RunningNode) -> None:
    reply = node.stub.Detect(pb.DetectRequest(image=GOOD), timeout=30)
    assert reply.model.name == "shapes"


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        pytest.param(pb.DetectRequest(image=b""), INVALID, "empty", id="empty-bytes"),
        pytest.param(pb.DetectRequest(image=b"\x00garbage" * 10), INVALID, "not a recognised",
                     id="undecodable"),
        pytest.param(pb.DetectRequest(image=_jpeg()[:300]), INVALID, "JPEG", id="truncated-jpeg"),
        pytest.param(pb.DetectRequest(image=png_claiming(0, 0)), INVALID, "", id="zero-size"),
        pytest.param(pb.DetectRequest(image=png_claiming(60000, 60000)), INVALID,
                     "over the limit", id="decompression-bomb"),
        pytest.param(pb.DetectRequest(image=_gif()), INVALID, "not a recognised",
                     id="unsupported-gif"),
        pytest.param(pb.DetectRequest(image=GOOD, conf=1.5), INVALID, "conf", id="conf-high"),
        pytest.param(pb.DetectRequest(image=GOOD, iou=-0.1), INVALID, "iou", id="iou-negative"),
        pytest.param(pb.DetectRequest(image=GOOD, max_det=0), INVALID, "max_det", id="max-det-0"),
        pytest.param(pb.DetectRequest(image=GOOD, max_det=10**6), INVALID, "max_det",
                     id="max-det-huge"),
        pytest.param(pb.DetectRequest(image=GOOD, classes=[-1]), INVALID, "class ids",
                     id="negative-class"),
        pytest.param(pb.DetectRequest(image=GOOD, model="nope"), grpc.StatusCode.NOT_FOUND,
                     "'nope' is not served", id="unknown-model"),
    ],
)  # fmt: skip
def test_bad_request_gets_clear_status_then_node_serves(
    shared_node: RunningNode, request_: pb.DetectRequest, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        shared_node.stub.Detect(request_, timeout=30)

    assert caught.value.code() == code
    assert message in caught.value.details()
    _assert_still_serving(shared_node)


@pytest.mark.parametrize(
    "picture",
    [
        pytest.param(Image.fromarray(np.full((40, 50), 40000, dtype=np.uint16)), id="16-bit"),
        pytest.param(Image.new("L", (50, 40), 128), id="grayscale"),
        pytest.param(Image.new("RGBA", (50, 40), (10, 200, 30, 128)), id="alpha"),
    ],
)
def test_unusual_pixel_formats_are_converted_not_refused(
    shared_node: RunningNode, picture: Image.Image
) -> None:
    reply = shared_node.stub.Detect(pb.DetectRequest(image=encode(picture)), timeout=30)

    assert (reply.image_width, reply.image_height) == (50, 40)


def test_full_queue_is_resource_exhausted_then_node_serves(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node(batch=BatchLimits(max_size=4, max_wait_s=0.0, max_queue=2))
    node.swap_to(refs["v1"])
    big = encode(render_image(11).image.resize((640, 640)), "BMP")

    with ThreadPoolExecutor(48) as pool:
        codes = list(pool.map(node.detect_code, [big] * 48))

    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    _assert_still_serving(node)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x0a\x05ab", id="truncated-field"),
        pytest.param(b"\xff" * 11, id="varint-too-long"),
        pytest.param(b"\x12\x03\xff\xfe\xfd", id="model-name-not-utf8"),
    ],
)
def test_unparsable_request_bytes_are_invalid_argument_with_one_log_line(
    shared_node: RunningNode, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    detect = shared_node.channel.unary_unary(
        "/yolofleet.v1.Inference/Detect",
        request_serializer=None,
        response_deserializer=pb.DetectResponse.FromString,
    )

    with caplog.at_level("INFO"), pytest.raises(grpc.RpcError) as caught:
        detect(garbage, timeout=30)

    assert caught.value.code() == INVALID
    assert "not a valid protobuf message" in caught.value.details()
    malformed = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert len(malformed) == 1
    assert f"bytes={len(garbage)}" in malformed[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"
    _assert_still_serving(shared_node)


def test_inference_calls_past_the_cap_are_resource_exhausted_then_served(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node(admission=AdmissionLimits(max_rpcs=1))
    node.swap_to(refs["v1"])
    big = encode(render_image(11).image.resize((640, 640)), "BMP")

    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(node.detect_code, [big] * 32))

    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    _assert_still_serving(node)


def test_unparsable_message_on_another_stream_ends_it_with_invalid_argument(
    shared_node: RunningNode,
) -> None:
    reflection = shared_node.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=None,
        response_deserializer=None,
    )

    with pytest.raises(grpc.RpcError) as caught:
        list(reflection(iter([b"\x0a\x05ab"]), timeout=30))

    assert caught.value.code() == INVALID
    assert "not a valid protobuf message" in caught.value.details()
    _assert_still_serving(shared_node)


def test_unparsable_health_watch_request_is_invalid_argument(shared_node: RunningNode) -> None:
    watch = shared_node.channel.unary_stream(
        "/grpc.health.v1.Health/Watch", request_serializer=None, response_deserializer=None
    )

    with pytest.raises(grpc.RpcError) as caught:
        list(watch(b"\x0a\x05ab", timeout=30))

    assert caught.value.code() == INVALID
    _assert_still_serving(shared_node)


def test_a_valid_health_watch_streams_the_status_through_the_guard(
    shared_node: RunningNode,
) -> None:
    """The health service's Watch writes with ``context.write`` (not a generator): the error
    guard must keep that form, or every Watch fails INTERNAL."""
    watch = health_pb2_grpc.HealthStub(shared_node.channel).Watch(
        health_pb2.HealthCheckRequest(), timeout=30
    )

    first = next(watch)
    watch.cancel()

    assert first.status == health_pb2.HealthCheckResponse.SERVING
    _assert_still_serving(shared_node)
