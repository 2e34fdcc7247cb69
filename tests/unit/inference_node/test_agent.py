from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from inference_node.agent import AgentPhase, SwapAgent
from inference_node.errors import ArtifactError, LoadError, Superseded, ValidationFailed
from inference_node.metrics import NodeMetrics
from inference_node.model import ModelSpec
from inference_node.slot import ModelSlot
from inference_node.validate import ValidationPolicy
from tests.fakes import FakeDetector, FakeLoader, make_ref
from tests.waits import until

A, B, C = make_ref("a", "1"), make_ref("b", "2"), make_ref("c", "3")


@dataclass
class Rig:
    slot: ModelSlot
    loader: FakeLoader
    agent: SwapAgent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _rig(
    loader: FakeLoader,
    *,
    interval_s: float = 0.0,
    policy: ValidationPolicy | None = None,
    clock: FakeClock | None = None,
    retry_first_s: float = 5.0,
) -> tuple[Rig, list[ThreadPoolExecutor]]:
    pools = [ThreadPoolExecutor(1), ThreadPoolExecutor(1)]
    slot = ModelSlot()
    agent = SwapAgent(
        slot,
        loader,
        loader_executor=pools[0],
        device_executor=pools[1],
        policy=policy or ValidationPolicy(latency_factor=None),
        min_swap_interval_s=interval_s,
        metrics=NodeMetrics(),
        clock=clock or FakeClock(),
        retry_first_s=retry_first_s,
    )
    agent.start()
    return Rig(slot, loader, agent), pools


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    loader = FakeLoader({"a": FakeDetector(), "b": FakeDetector(), "c": FakeDetector()})
    made, pools = await _rig(loader)
    yield made
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_first_request_goes_live(rig: Rig) -> None:
    active = await asyncio.wait_for(rig.agent.request(A), 5)

    assert active.ref == A
    assert active.generation == 1
    assert rig.agent.status.phase is AgentPhase.SERVING


async def test_newest_request_wins_and_loads_never_overlap(rig: Rig) -> None:
    await rig.agent.request(A)
    rig.loader.gate = threading.Event()
    first = rig.agent.request(B)
    await until(lambda: rig.loader.running == 1)

    second = rig.agent.request(C)
    rig.loader.gate.set()

    with pytest.raises(Superseded):
        await asyncio.wait_for(first, 5)
    active = await asyncio.wait_for(second, 5)
    assert active.ref == C
    assert rig.loader.most_at_once == 1
    assert rig.loader.detectors["b"].closed


async def test_failed_load_keeps_old_model_and_reports_reason(rig: Rig) -> None:
    await rig.agent.request(A)
    rig.loader.fail["b"] = "model b@222222 could not be built: bad pickle"

    with pytest.raises(LoadError, match="bad pickle"):
        await asyncio.wait_for(rig.agent.request(B), 5)

    assert rig.slot.active is not None
    assert rig.slot.active.ref == A
    status = rig.agent.status
    assert status.phase is AgentPhase.FAILED
    assert "bad pickle" in status.last_error


async def test_class_change_is_refused_by_default(rig: Rig) -> None:
    await rig.agent.request(A)
    rig.loader.detectors["b"] = FakeDetector(
        spec=ModelSpec(class_names=("cat", "dog"), input_size=160, task="detect")
    )

    with pytest.raises(ValidationFailed) as refused:
        await asyncio.wait_for(rig.agent.request(B), 5)

    assert refused.value.gate == "classes"
    assert rig.slot.active is not None
    assert rig.slot.active.ref == A


async def test_old_model_closed_only_after_swap() -> None:
    old, new = FakeDetector(), FakeDetector()
    made, pools = await _rig(FakeLoader({"a": old, "b": new}))
    await made.agent.request(A)
    with made.slot.lease():
        await made.agent.request(B)
        await asyncio.sleep(0.05)  # give a wrongly eager close the chance to happen
        assert not old.closed

    await until(lambda: old.closed)

    assert not new.closed
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_min_interval_holds_new_model_but_not_a_return_to_previous(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="inference_node.agent")
    loader = FakeLoader({"a": FakeDetector(), "b": FakeDetector(), "c": FakeDetector()})
    clock = FakeClock()
    made, pools = await _rig(loader, interval_s=30.0, clock=clock)
    await made.agent.request(A)
    clock.now += 31
    await made.agent.request(B)

    held = made.agent.request(C)
    await until(lambda: any("held" in r.getMessage() for r in caplog.records), what="the hold")
    assert not held.done()
    assert loader.loads == ["a", "b"]
    back = made.agent.request(A)

    with pytest.raises(Superseded):
        await asyncio.wait_for(held, 5)
    active = await asyncio.wait_for(back, 5)
    assert active.ref == A
    assert loader.loads == ["a", "b", "a"]
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_latency_gate_refuses_clearly_slower_candidate() -> None:
    loader = FakeLoader({"a": FakeDetector(delay_s=0.002), "b": FakeDetector(delay_s=0.03)})
    policy = ValidationPolicy(latency_factor=1.5, latency_rounds=3)
    made, pools = await _rig(loader, policy=policy)
    await made.agent.request(A)

    with pytest.raises(ValidationFailed, match="too slow") as refused:
        await asyncio.wait_for(made.agent.request(B), 5)

    assert refused.value.gate == "latency"
    assert made.slot.active is not None
    assert made.slot.active.ref == A
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_a_failed_fetch_is_tried_again_with_backoff_until_it_works() -> None:
    loader = FakeLoader({"a": FakeDetector(), "b": FakeDetector()}, fetch_failures={"b": 2})
    made, pools = await _rig(loader, retry_first_s=0.05)
    await made.agent.request(A)
    seen: list[str] = []
    made.agent.add_listener(lambda active: seen.append(active.ref.name))

    with pytest.raises(ArtifactError, match="HTTP 503"):
        await asyncio.wait_for(made.agent.request(B), 5)
    refused = made.agent.status
    await until(lambda: made.slot.active is not None and made.slot.active.ref == B, timeout_s=5)

    assert refused.phase is AgentPhase.FAILED
    assert refused.retry_at is not None
    assert refused.last_error.endswith("; trying again in 0.05s")
    assert loader.loads == ["a", "b", "b", "b"]  # two failed fetches, then the one that worked
    assert seen == ["b"]  # the retry's swap reaches listeners: nobody is awaiting it
    assert made.agent.status.phase is AgentPhase.SERVING
    assert made.agent.status.retry_at is None
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_a_latency_refusal_is_tried_again_once_the_device_is_quieter() -> None:
    slow = FakeDetector(delay_s=0.03)
    loader = FakeLoader({"a": FakeDetector(delay_s=0.002), "b": slow})
    policy = ValidationPolicy(latency_factor=1.5, latency_rounds=3)
    made, pools = await _rig(loader, policy=policy, retry_first_s=0.05)
    await made.agent.request(A)

    with pytest.raises(ValidationFailed, match="too slow"):
        await asyncio.wait_for(made.agent.request(B), 5)
    assert made.agent.status.retry_at is not None
    slow.delay_s = 0.002  # whatever made it slow has passed
    await until(lambda: made.slot.active is not None and made.slot.active.ref == B, timeout_s=5)

    assert made.agent.status.phase is AgentPhase.SERVING
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_a_refusal_that_would_repeat_is_not_tried_again(rig: Rig) -> None:
    await rig.agent.request(A)
    rig.loader.fail["b"] = "model b@222222 could not be built: bad pickle"

    with pytest.raises(LoadError):
        await asyncio.wait_for(rig.agent.request(B), 5)

    status = rig.agent.status
    assert (status.phase, status.retry_at) == (AgentPhase.FAILED, None)
    assert "trying again" not in status.last_error


async def test_a_new_request_cancels_the_pending_retry() -> None:
    loader = FakeLoader({"a": FakeDetector(), "b": FakeDetector()}, fetch_failures={"b": 1})
    made, pools = await _rig(loader, retry_first_s=60.0)
    await made.agent.request(A)
    with pytest.raises(ArtifactError):
        await asyncio.wait_for(made.agent.request(B), 5)
    assert made.agent.status.retry_at is not None

    active = await asyncio.wait_for(made.agent.request(B), 5)  # the operator re-sends it now

    assert active.ref == B
    assert made.agent.status.retry_at is None
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()
