"""Swapping models repeatedly under concurrent load loses no request and mixes no models.

With every gate on, each swap's calibration images and latency rounds run beside the load
(the rounds on the device thread, between served batches).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from inference_node.config import GateConfig
from inference_node.errors import Superseded, ValidationFailed
from inference_node.model import ModelRef
from tests.integration.harness import RunningNode, encode
from tests.waits import wait_for
from yolofleet.demo_models import DemoModels
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

CLIENTS = 4
SWAPS = 20
CANCEL_DEADLINE_S = 10.0
"""A newer model must be live this soon after it was asked for, however stuck the load before."""


@dataclass
class Observed:
    """One client's responses: (sent_at, sha256, generation), plus any failures."""

    replies: list[tuple[float, str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _client(node: RunningNode, image: bytes, stop: threading.Event, seen: Observed) -> None:
    while not stop.is_set():
        sent = time.monotonic()
        try:
            reply = node.stub.Detect(pb.DetectRequest(image=image), timeout=30)
        except grpc.RpcError as exc:
            seen.failures.append(f"{exc.code()}: {exc.details()}")
            continue
        seen.replies.append((sent, reply.model.sha256, reply.generation))


@pytest.mark.parametrize(
    "every_gate", [pytest.param(False, id="default-gates"), pytest.param(True, id="every-gate")]
)
def test_swaps_under_load_drop_nothing_and_never_mix_models(
    start_node: Callable[..., RunningNode],
    refs: dict[str, ModelRef],
    models: DemoModels,
    every_gate: bool,
) -> None:
    gates = GateConfig(latency_factor=None)
    if every_gate:  # a loose latency bound: the rounds run under this test's own load
        gates = GateConfig(calibration_dir=models.calibration_dir, latency_factor=5.0)
    node = start_node(gates=gates)
    node.swap_to(refs["v1"])
    image = encode(render_image(5).image)
    stop = threading.Event()
    observed = [Observed() for _ in range(CLIENTS)]
    threads = [
        threading.Thread(target=_client, args=(node, image, stop, seen)) for seen in observed
    ]
    for thread in threads:
        thread.start()
    completed: list[tuple[float, int, str]] = []  # (went live at, generation, sha256)
    try:
        for index in range(SWAPS):
            if index % 5 == 2:
                with pytest.raises(ValidationFailed):
                    node.swap_to(refs["alt"])  # a refused candidate must never answer
            target = refs["v2"] if index % 2 == 0 else refs["v1"]
            active = node.swap_to(target)
            completed.append((time.monotonic(), active.generation, active.ref.sha256))
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    replies = [reply for seen in observed for reply in seen.replies]
    assert [f for seen in observed for f in seen.failures] == []
    assert len(completed) == SWAPS
    assert len(replies) > SWAPS * CLIENTS
    by_generation = {generation: sha for _, generation, sha in completed} | {1: refs["v1"].sha256}
    assert refs["alt"].sha256 not in {sha for _, sha, _ in replies}
    for _, sha, generation in replies:
        assert by_generation[generation] == sha, "a reply named a model its generation never ran"
    for live_at, generation, _ in completed:
        later = [g for sent, _, g in replies if sent > live_at]
        assert all(g >= generation for g in later), "a request sent after a swap hit an old model"


class _Trickling(BaseHTTPRequestHandler):
    """An artifact server that hangs: headers, then one byte every 0.2 s until released."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        while not self.release.wait(0.2):
            self.wfile.write(b"\0")
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hung_artifact_url() -> Iterator[str]:
    release = threading.Event()
    handler = type("Trickling", (_Trickling,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/shapes.pt"
    release.set()  # the stuck fetch ends, so the node can stop
    server.shutdown()
    server.server_close()
    thread.join(30)


def test_a_newer_model_replaces_a_load_stuck_on_a_hung_artifact_server(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef], hung_artifact_url: str
) -> None:
    node = start_node()
    node.swap_to(refs["v1"])
    stuck = node.request_swap(replace(refs["v2"], uri=hung_artifact_url))
    wait_for(
        lambda: node.status().loading_model.sha256 == refs["v2"].sha256,
        timeout_s=30,
        what="the load from the hung server to start",
    )

    newer = node.request_swap(refs["drift"])

    assert newer.result(timeout=CANCEL_DEADLINE_S).ref.sha256 == refs["drift"].sha256
    with pytest.raises(Superseded):
        stuck.result(timeout=1)
    reply = node.stub.Detect(pb.DetectRequest(image=encode(render_image(3).image)), timeout=30)
    assert reply.model.sha256 == refs["drift"].sha256
