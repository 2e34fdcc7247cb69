"""A real node whose device thread is wedged goes NOT_SERVING, says why, and comes back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inference_node.model import ModelRef
from tests.integration.harness import RunningNode, encode
from tests.waits import wait_for
from yolofleet.synthetic import render_image

TIMEOUT_S = 1.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_wedged_device_thread_flips_health_and_recovers(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node(watchdog_timeout_s=TIMEOUT_S)
    node.swap_to(refs["v1"])
    health = health_pb2_grpc.HealthStub(node.channel)

    def status() -> int:
        return int(health.Check(health_pb2.HealthCheckRequest(), timeout=10).status)

    def sample(name: str) -> float | None:
        return node.on_loop(lambda: node.node.metrics.registry.get_sample_value(name))

    image = encode(render_image(2).image)
    wait_for(lambda: status() == SERVING, timeout_s=30, what="SERVING with v1 live")
    release = threading.Event()
    wedged_at = time.monotonic()
    node.on_loop(lambda: node.node.run_on_device(lambda: release.wait(60)))
    with ThreadPoolExecutor(1) as clients:
        queued = clients.submit(node.detect_code, image)
        wait_for(lambda: status() == NOT_SERVING, timeout_s=30, what="NOT_SERVING when wedged")
        flipped_after_s = time.monotonic() - wedged_at
        stalled_error = node.status().last_error
        stalled_gauge = sample("yolofleet_device_stalled")
        release.set()
        wait_for(lambda: status() == SERVING, timeout_s=30, what="SERVING once it recovers")
        queued_code = queued.result(60)
    after_code = node.detect_code(image)

    assert flipped_after_s > TIMEOUT_S
    assert stalled_error.startswith("device thread stalled: one job has run for")
    assert stalled_gauge == 1
    assert sample("yolofleet_device_stalled") == 0
    assert sample("yolofleet_watchdog_trips_total") == 1
    assert node.status().last_error == ""
    assert (queued_code, after_code) == (grpc.StatusCode.OK, grpc.StatusCode.OK)
