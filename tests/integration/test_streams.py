"""DetectStream under bad frames, idle clients and too many streams, over a real gRPC server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
import pytest

from inference_node.model import ModelRef
from inference_node.serving.admission import AdmissionLimits
from tests.integration.harness import RunningNode, encode
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

STREAM = "/yolofleet.v1.Inference/DetectStream"
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def _frames(count: int) -> list[pb.DetectRequest]:
    return [
        pb.DetectRequest(image=encode(render_image(9300 + i).image), request_id=str(i))
        for i in range(count)
    ]


def _assert_still_serving(node: RunningNode) -> None:
    reply = node.stub.Detect(pb.DetectRequest(image=encode(render_image(7).image)), timeout=30)
    assert reply.model.name == "shapes"


def _held_open(first: pb.DetectRequest, release: threading.Event) -> Iterator[pb.DetectRequest]:
    """Send ``first``, then nothing until ``release`` is set (an idle client)."""
    yield first
    release.wait(60)


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        pytest.param(b"not an image", "not a recognised image", id="undecodable-image"),
        pytest.param(b"", "empty", id="empty-image"),
    ],
)
def test_bad_frame_gets_its_own_error_and_the_stream_goes_on(
    shared_node: RunningNode, garbage: bytes, message: str
) -> None:
    frames = _frames(6)
    frames[2] = pb.DetectRequest(image=garbage, request_id="2")

    replies = list(shared_node.stub.DetectStream(iter(frames), timeout=60))

    assert [r.request_id for r in replies] == [str(i) for i in range(6)]
    assert replies[2].error.code == INVALID
    assert replies[2].error.status == "INVALID_ARGUMENT"
    assert message in replies[2].error.message
    for index in (0, 1, 3, 4, 5):
        assert not replies[index].HasField("error")
        assert replies[index].model.name == "shapes"
        assert replies[index].image_width == 160
    _assert_still_serving(shared_node)


def test_unparsable_frame_bytes_get_their_own_error(shared_node: RunningNode) -> None:
    call = shared_node.channel.stream_stream(
        STREAM, request_serializer=None, response_deserializer=pb.DetectResponse.FromString
    )
    frames = [frame.SerializeToString() for frame in _frames(4)]
    frames[1] = b"\x0a\x05ab"  # field 1 claims 5 bytes, carries 2

    replies = list(call(iter(frames), timeout=60))

    assert len(replies) == 4
    assert replies[1].error.code == INVALID
    assert "not a valid protobuf message" in replies[1].error.message
    assert [r.request_id for r in replies if not r.HasField("error")] == ["0", "2", "3"]
    _assert_still_serving(shared_node)


def test_idle_stream_is_ended_with_a_clear_status(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node(admission=AdmissionLimits(stream_idle_s=0.5))
    node.swap_to(refs["v1"])
    release = threading.Event()
    replies = node.stub.DetectStream(_held_open(_frames(1)[0], release), timeout=60)

    try:
        first = next(replies)
        with pytest.raises(grpc.RpcError) as ended:
            next(replies)
    finally:
        release.set()

    assert first.request_id == "0"
    assert not first.HasField("error")
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "sent no frame for 0.5s" in ended.value.details()
    _assert_still_serving(node)


def test_streams_past_the_cap_are_refused_then_served(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node(admission=AdmissionLimits(max_streams=1))
    node.swap_to(refs["v1"])
    release = threading.Event()
    frame = _frames(1)[0]
    held = node.stub.DetectStream(_held_open(frame, release), timeout=60)

    try:
        assert next(held).request_id == "0"
        with pytest.raises(grpc.RpcError) as refused:
            list(node.stub.DetectStream(iter([frame]), timeout=30))
    finally:
        release.set()
    list(held)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many streams open (1)" in refused.value.details()
    assert [r.request_id for r in node.stub.DetectStream(iter([frame]), timeout=30)] == ["0"]
    _assert_still_serving(node)
