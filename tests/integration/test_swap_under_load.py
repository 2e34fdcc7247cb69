"""Swapping models repeatedly under concurrent load loses no request and mixes no models.

With every gate on, each swap's calibration images and latency rounds run beside the load
(the rounds on the device thread, between served batches).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import pytest

from inference_node.config import GateConfig
from inference_node.errors import ValidationFailed
from inference_node.model import ModelRef
from tests.integration.harness import RunningNode, encode
from yolofleet.demo_models import DemoModels
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

CLIENTS = 4
SWAPS = 20


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
