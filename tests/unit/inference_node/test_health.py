"""``NodeHealth``: SERVING only with a live model, a device that is not stalled, and no shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from grpc_health.v1 import health_pb2

from inference_node.serving.health import INFERENCE_SERVICE, NodeHealth
from inference_node.swapping.loader import LoadReport
from inference_node.swapping.slot import Active
from tests.fakes import FakeDetector, make_ref

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _active() -> Active:
    load = LoadReport(fetch_s=0, build_s=0, warmup_s=0, weight_bytes=1000)
    return Active(
        ref=make_ref("shapes"),
        detector=FakeDetector(),
        generation=1,
        load=load,
        live_since=0,
        swap_duration_s=0,
    )


async def _status(health: NodeHealth, service: str = "") -> int:
    await asyncio.sleep(0)  # let the scheduled update run
    await asyncio.sleep(0)
    request = health_pb2.HealthCheckRequest(service=service)
    response = await health.servicer.Check(request, None)
    return int(response.status)


Step = Callable[[NodeHealth], None]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([], NOT_SERVING, id="no-model-yet"),
        pytest.param([lambda h: h.on_swap(_active())], SERVING, id="model-live"),
        pytest.param(
            [lambda h: h.on_swap(_active()), lambda h: h.on_stall("device thread stalled")],
            NOT_SERVING, id="stalled",
        ),
        pytest.param(
            [lambda h: h.on_swap(_active()), lambda h: h.on_stall("stalled"),
             lambda h: h.on_stall("")],
            SERVING, id="recovered",
        ),
        pytest.param(
            [lambda h: h.on_stall("stalled"), lambda h: h.on_swap(_active())],
            NOT_SERVING, id="a-swap-does-not-hide-a-stall",
        ),
    ],
)  # fmt: skip
async def test_health_follows_model_and_watchdog(steps: list[Step], expected: int) -> None:
    health = NodeHealth()
    await health.start()

    for step in steps:
        step(health)

    assert await _status(health) == expected
    assert await _status(health, INFERENCE_SERVICE) == expected


async def test_shutdown_is_final_even_when_the_watchdog_clears() -> None:
    health = NodeHealth()
    await health.start()
    health.on_swap(_active())
    health.on_stall("stalled")

    await health.draining()
    health.on_stall("")
    health.on_swap(_active())

    assert await _status(health) == NOT_SERVING
    assert not health.serving
