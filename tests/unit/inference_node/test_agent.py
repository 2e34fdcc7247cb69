from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from inference_node.errors import ArtifactError, LoadError, Superseded, ValidationFailed
from inference_node.model import ModelSpec
from inference_node.swapping.agent import SwapAgent
from inference_node.swapping.policy import SlotPhase
from inference_node.swapping.slot import ModelSlot
from inference_node.swapping.validate import CalibrationCase, ValidationPolicy
from inference_node.telemetry.metrics import NodeMetrics
from tests.fakes import FakeClock, FakeDetector, FakeLoader, make_ref
from tests.waits import until

A, B, C = make_ref("a", "1"), make_ref("b", "2"), make_ref("c", "3")


@dataclass
class Rig:
    slot: ModelSlot
    loader: FakeLoader
    agent: SwapAgent
    clock: FakeClock


async def _rig(
    loader: FakeLoader,
    *,
    interval_s: float = 0.0,
    policy: ValidationPolicy | None = None,
    clock: FakeClock | None = None,
    retry_first_s: float = 5.0,
    retire_delay_s: float = 0.0,
) -> tuple[Rig, list[ThreadPoolExecutor]]:
    pools = [
        ThreadPoolExecutor(1, thread_name_prefix="loader"),
        ThreadPoolExecutor(1, thread_name_prefix="device"),
    ]
    slot = ModelSlot()
    clock = clock or FakeClock()
    agent = SwapAgent(
        slot,
        loader,
        loader_executor=pools[0],
        device_executor=pools[1],
        policy=policy or ValidationPolicy(latency_factor=None),
        min_swap_interval_s=interval_s,
        metrics=NodeMetrics(),
        clock=clock,
        sleep=clock.sleep,
        retry_first_s=retry_first_s,
        retire_delay_s=retire_delay_s,
    )
    agent.start()
    return Rig(slot, loader, agent, clock), pools


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
    assert rig.agent.status.phase is SlotPhase.SERVING


async def test_newer_request_cancels_a_hung_load_and_starts_at_once(rig: Rig) -> None:
    await rig.agent.request(A)
    rig.loader.blocked.add("b")  # an artifact server that never answers
    first = rig.agent.request(B)
    await until(lambda: rig.loader.running == 1)

    second = rig.agent.request(C)

    with pytest.raises(Superseded):
        await asyncio.wait_for(first, 5)
    active = await asyncio.wait_for(second, 5)
    assert active.ref == C
    assert rig.loader.cancelled == ["b"]
    assert rig.loader.loads == ["a", "c"]
    assert rig.loader.most_at_once == 1


async def test_newer_request_supersedes_a_load_that_ignores_cancel(rig: Rig) -> None:
    await rig.agent.request(A)
    rig.loader.honours_cancel = False
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
    assert rig.loader.detectors["b"].closed  # the unwanted result was closed, never served
    assert rig.agent.status.phase is SlotPhase.SERVING


async def test_newer_request_stops_the_trial_at_its_next_inference() -> None:
    held = threading.Event()
    candidate = FakeDetector(gate=held)
    loader = FakeLoader({"a": FakeDetector(), "b": candidate, "c": FakeDetector()})
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    cases = tuple(CalibrationCase(name=f"{i}.png", image=image, min_detections=1) for i in range(3))
    policy = ValidationPolicy(calibration=cases, latency_factor=None)
    made, pools = await _rig(loader, policy=policy)
    await made.agent.request(A)
    first = made.agent.request(B)
    await until(lambda: candidate.started == 1, what="the first calibration image")

    second = made.agent.request(C)
    held.set()

    with pytest.raises(Superseded):
        await asyncio.wait_for(first, 5)
    assert (await asyncio.wait_for(second, 5)).ref == C
    assert candidate.batches == [1]  # the calibration image running when C came, no more
    assert candidate.closed
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_trial_inferences_let_served_batches_run_in_between() -> None:
    order: list[str] = []
    first_probe = threading.Event()
    incumbent = FakeDetector(delay_s=0.002, on_detect=lambda: order.append("incumbent"))
    candidate = FakeDetector(delay_s=0.002, on_detect=lambda: order.append("candidate"))
    loader = FakeLoader({"a": incumbent, "b": candidate})
    made, pools = await _rig(loader, policy=ValidationPolicy(latency_factor=10.0, latency_rounds=3))
    await made.agent.request(A)  # its warm-up was the incumbent's first inference
    order.clear()
    incumbent.gate = first_probe
    swap = made.agent.request(B)
    await until(lambda: incumbent.started == 2, what="the first probe on the device thread")
    served = [pools[1].submit(order.append, "served") for _ in range(2)]  # batches queued meanwhile

    first_probe.set()
    await asyncio.wait_for(swap, 5)

    assert all(batch.done() for batch in served)
    assert order[:5] == ["candidate", "incumbent", "served", "served", "candidate"]
    assert order.count("candidate") == 1 + 3  # its warm-up batch, then the rounds
    assert order.count("incumbent") == 3


async def test_warm_up_runs_on_the_device_thread_one_batch_per_job() -> None:
    threads: list[str] = []
    held = threading.Event()
    candidate = FakeDetector(
        gate=held, on_detect=lambda: threads.append(threading.current_thread().name)
    )
    loader = FakeLoader({"a": FakeDetector(), "b": candidate}, warmup_batches=(1, 1, 4))
    made, pools = await _rig(loader)
    await made.agent.request(A)
    swap = made.agent.request(B)
    await until(lambda: candidate.started == 1, what="the first warm-up batch")
    served = pools[1].submit(threads.append, "served")  # a batch queued meanwhile

    held.set()
    active = await asyncio.wait_for(swap, 5)

    assert served.done()
    assert candidate.batches == [1, 1, 4]
    assert [name.split("_")[0] for name in threads] == ["device", "served", "device", "device"]
    assert active.load.warmup_s == 0.0  # measured on the agent's clock, which did not move
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_a_candidate_that_fails_its_warm_up_is_refused_and_closed(rig: Rig) -> None:
    await rig.agent.request(A)
    broken = FakeDetector(on_detect=_raise_out_of_memory)
    rig.loader.detectors["b"] = broken

    with pytest.raises(LoadError, match="failed its warm-up run: out of memory"):
        await asyncio.wait_for(rig.agent.request(B), 5)

    assert broken.closed
    assert rig.slot.active is not None
    assert rig.slot.active.ref == A


def _raise_out_of_memory() -> None:
    raise RuntimeError("out of memory")


async def test_old_model_is_freed_once_the_new_one_has_served_the_retire_delay() -> None:
    old, new = FakeDetector(), FakeDetector()
    made, pools = await _rig(FakeLoader({"a": old, "b": new}), retire_delay_s=2.0)
    await made.agent.request(A)
    await made.agent.request(B)
    await asyncio.sleep(0.05)  # give a wrongly eager close the chance to happen

    assert not old.closed
    made.clock.advance(2.0)
    await until(lambda: old.closed, what="the old model closed after the delay")
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_a_new_load_frees_the_retiring_model_before_building() -> None:
    a, b, c = FakeDetector(), FakeDetector(), FakeDetector()
    loader = FakeLoader({"a": a, "b": b, "c": c})
    made, pools = await _rig(loader, retire_delay_s=3600.0)
    await made.agent.request(A)
    await made.agent.request(B)
    built: list[bool] = []
    c.on_detect = lambda: built.append(a.closed)  # c's warm-up: after a was freed?

    await asyncio.wait_for(made.agent.request(C), 5)

    assert built == [True]
    await made.agent.stop()  # stopping cuts b's delay short too
    assert b.closed
    for pool in pools:
        pool.shutdown()
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_failed_load_keeps_old_model_and_reports_reason(rig: Rig) -> None:
    await rig.agent.request(A)
    rig.loader.fail["b"] = "model b@222222 could not be built: bad pickle"

    with pytest.raises(LoadError, match="bad pickle"):
        await asyncio.wait_for(rig.agent.request(B), 5)

    assert rig.slot.active is not None
    assert rig.slot.active.ref == A
    status = rig.agent.status
    assert status.phase is SlotPhase.FAILED
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


async def test_a_request_while_the_old_model_retires_loads_only_the_newest(rig: Rig) -> None:
    d = make_ref("d", "4")
    rig.loader.detectors["d"] = FakeDetector()
    rig.loader.honours_cancel = False  # the agent itself must not start a cancelled load
    await rig.agent.request(A)
    with rig.slot.lease():  # a batch still on A: A's retirement waits for it
        await rig.agent.request(B)
        stale = rig.agent.request(C)
        await until(lambda: rig.agent.status.loading == C, what="C waiting for A to close")
        newest = rig.agent.request(d)

    with pytest.raises(Superseded):
        await asyncio.wait_for(stale, 5)
    assert (await asyncio.wait_for(newest, 5)).ref == d
    assert rig.loader.loads == ["a", "b", "d"]  # C was never fetched


async def test_min_interval_holds_new_model_but_not_a_return_to_previous(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="inference_node.swapping.agent")
    loader = FakeLoader({"a": FakeDetector(), "b": FakeDetector(), "c": FakeDetector()})
    clock = FakeClock()
    made, pools = await _rig(loader, interval_s=30.0, clock=clock)
    await made.agent.request(A)
    clock.advance(31)
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
    made, pools = await _rig(loader, retry_first_s=5.0)
    await made.agent.request(A)
    seen: list[str] = []
    made.agent.add_listener(lambda active: seen.append(active.ref.name))
    refused_at = made.clock.now

    with pytest.raises(ArtifactError, match="HTTP 503"):
        await asyncio.wait_for(made.agent.request(B), 5)
    first = made.agent.status
    made.clock.advance(5.0)  # only the agent's clock moves: it alone decides when to retry
    await until(lambda: made.agent.status.retry_at == made.clock.now + 10.0, what="the 2nd refusal")
    second = made.agent.status
    made.clock.advance(10.0)
    await until(lambda: made.slot.active is not None and made.slot.active.ref == B)

    assert (first.phase, first.retry_at) == (SlotPhase.FAILED, refused_at + 5.0)
    assert first.last_error.endswith("; trying again in 5s")
    assert second.last_error.endswith("; trying again in 10s")  # the backoff doubles
    assert loader.loads == ["a", "b", "b", "b"]  # two failed fetches, then the one that worked
    assert seen == ["b"]  # the retry's swap reaches listeners: nobody is awaiting it
    assert made.agent.status.phase is SlotPhase.SERVING
    assert made.agent.status.retry_at is None
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_a_latency_refusal_is_tried_again_once_the_device_is_quieter() -> None:
    slow = FakeDetector(delay_s=0.03)
    loader = FakeLoader({"a": FakeDetector(delay_s=0.002), "b": slow})
    policy = ValidationPolicy(latency_factor=1.5, latency_rounds=3)
    made, pools = await _rig(loader, policy=policy, retry_first_s=5.0)
    await made.agent.request(A)

    with pytest.raises(ValidationFailed, match="too slow"):
        await asyncio.wait_for(made.agent.request(B), 5)
    assert made.agent.status.retry_at == made.clock.now + 5.0
    slow.delay_s = 0.002  # whatever made it slow has passed
    made.clock.advance(5.0)
    await until(lambda: made.slot.active is not None and made.slot.active.ref == B)

    assert made.agent.status.phase is SlotPhase.SERVING
    await made.agent.stop()
    for pool in pools:
        pool.shutdown()


async def test_a_refusal_that_would_repeat_is_not_tried_again(rig: Rig) -> None:
    await rig.agent.request(A)
    rig.loader.fail["b"] = "model b@222222 could not be built: bad pickle"

    with pytest.raises(LoadError):
        await asyncio.wait_for(rig.agent.request(B), 5)

    status = rig.agent.status
    assert (status.phase, status.retry_at) == (SlotPhase.FAILED, None)
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
