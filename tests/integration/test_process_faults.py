"""Faults from issue 9 on a real ``python -m inference_node`` process over loopback, each
followed by a request that succeeds: a stream with a bad frame goes on, a malformed protobuf
gets INVALID_ARGUMENT and one log line, a device thread busy past its watchdog timeout trips
it (health NOT_SERVING) and health comes back. The in-process tests in test_streams,
test_bad_input and test_watchdog go into more cases; the watchdog one wedges the device
thread outright, which a test cannot do from outside a process."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.harness import NodeSubprocess, encode
from tests.waits import wait_for
from yolofleet.demo_models import DemoModels
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

GOOD = encode(render_image(7).image)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SERVING = health_pb2.HealthCheckResponse.SERVING
WATCHDOG_S = 0.02
"""Shorter than a batch of 32 on this CPU (~0.1-0.5 s)."""
BATCH = 32
TRIPPED = re.compile(r"watchdog tripped: device thread stalled")
CLEARED = re.compile(r"watchdog cleared")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, models: DemoModels) -> Iterator[NodeSubprocess]:
    process = NodeSubprocess(
        models.v1, "--watchdog-timeout", str(WATCHDOG_S), "--max-batch", str(BATCH),
        "--max-wait-ms", "50", cache=tmp_path_factory.mktemp("process-faults"),
    )  # fmt: skip
    yield process
    process.close()


def _assert_serves(node: NodeSubprocess) -> None:
    assert node.stub.Detect(pb.DetectRequest(image=GOOD), timeout=30).model.name == "shapes-v1"


def test_stream_with_a_bad_frame_answers_it_with_its_own_error_and_goes_on(
    node: NodeSubprocess,
) -> None:
    frames = [
        pb.DetectRequest(image=encode(render_image(9500 + i).image), request_id=str(i))
        for i in range(5)
    ]
    frames[2] = pb.DetectRequest(image=b"not an image", request_id="2")

    replies = list(node.stub.DetectStream(iter(frames), timeout=60))

    assert [r.request_id for r in replies] == ["0", "1", "2", "3", "4"]
    assert replies[2].error.status == "INVALID_ARGUMENT"
    assert [r.HasField("error") for r in replies] == [False, False, True, False, False]
    _assert_serves(node)


def test_malformed_protobuf_is_invalid_argument_with_one_log_line(node: NodeSubprocess) -> None:
    detect = node.channel.unary_unary(
        "/yolofleet.v1.Inference/Detect", request_serializer=None,
        response_deserializer=pb.DetectResponse.FromString,
    )  # fmt: skip
    logged = len(node.log)

    with pytest.raises(grpc.RpcError) as caught:
        detect(b"\x0a\x05ab", timeout=30)
    _assert_serves(node)  # its answer follows the log line: the line is in by now

    assert caught.value.code() == INVALID
    assert "not a valid protobuf message" in caught.value.details()
    since = node.log[logged:]
    assert len([line for line in since if "malformed request" in line]) == 1, since
    assert not [line for line in since if "Traceback" in line], since


def test_device_thread_busy_past_the_watchdog_timeout_trips_it_and_health_comes_back(
    node: NodeSubprocess,
) -> None:
    _assert_serves(node)
    health = health_pb2_grpc.HealthStub(node.channel)
    seen: list[int] = []
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=120)
    reader = threading.Thread(target=_read_statuses, args=(watch, seen), daemon=True)
    reader.start()
    wait_for(lambda: seen[:1] == [SERVING], timeout_s=30, what="the watch to start at SERVING")
    big = encode(render_image(11).image.resize((640, 640)), "BMP")
    mark = len(node.log)

    with ThreadPoolExecutor(BATCH) as pool:  # a full batch: longer than the watchdog timeout
        codes = list(pool.map(lambda _: _code(node, big), range(BATCH)))
    verdicts = wait_for(
        lambda: _verdicts(node.log[mark:]), timeout_s=10, what="the watchdog to trip and clear"
    )
    # the watch may skip a status that was undone before it woke; it ends where health is
    wait_for(lambda: seen[-1] == SERVING, timeout_s=30, what="the watch to end at SERVING")
    watch.cancel()
    reader.join(10)

    assert set(codes) == {grpc.StatusCode.OK}
    assert verdicts[:2] == ["tripped", "cleared"]
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    _assert_serves(node)


def _code(node: NodeSubprocess, image: bytes) -> grpc.StatusCode:
    try:
        node.stub.Detect(pb.DetectRequest(image=image), timeout=60)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def _read_statuses(watch: Iterator[health_pb2.HealthCheckResponse], seen: list[int]) -> None:
    """Each status the watch streams, until it is cancelled."""
    try:
        for reply in watch:
            seen.append(reply.status)
    except grpc.RpcError as exc:
        if exc.code() is not grpc.StatusCode.CANCELLED:
            raise


def _verdicts(lines: list[str]) -> list[str]:
    """The watchdog's verdicts logged in ``lines`` (empty until it has tripped and cleared)."""
    found = [
        "tripped" if TRIPPED.search(line) else "cleared"
        for line in lines
        if TRIPPED.search(line) or CLEARED.search(line)
    ]
    return found if "cleared" in found[1:] else []
