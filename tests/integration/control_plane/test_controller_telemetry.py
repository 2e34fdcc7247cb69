"""The controller's observer hooks, end to end: ticks over the dev Consul against simulated
nodes land in the control plane's Prometheus registry (a guard for the hook lines).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from control_plane.consul.store import ConsulStore
from control_plane.controller import Controller
from control_plane.core.spec import Thresholds
from control_plane.core.state import Phase
from control_plane.telemetry import ControlPlaneMetrics
from tests.integration.control_plane.simnodes import FakeMetricSource, SimFleet, SimNode, register
from tests.unit.control_plane.builders import OLD, samples
from tests.waits import eventually
from yolofleet.consul import ConsulClient
from yolofleet.keys import KeyLayout

GROUP = "zone-t"
FAST = Thresholds(min_samples=100, report_deadline_s=5.0, analysis_deadline_s=5.0)


@pytest.fixture
async def fleet(client: ConsulClient, layout: KeyLayout) -> AsyncIterator[SimFleet]:
    register(client, layout, OLD, "broken")
    nodes = [
        SimNode(client=client, layout=layout, group=GROUP, node_id=n, broken=frozenset({"broken"}))
        for n in ("n0", "n1")
    ]
    sim = SimFleet(nodes).start()
    yield sim
    await sim.stop()


async def test_ticks_intents_and_a_rollback_are_counted(
    client: ConsulClient, layout: KeyLayout, fleet: SimFleet
) -> None:
    store = ConsulStore(client, layout)
    telemetry = ControlPlaneMetrics()
    controller = Controller(store, FakeMetricSource(good=samples(500)), observer=telemetry)

    def value(name: str, **labels: str) -> float:
        return telemetry.registry.get_sample_value(name, labels) or 0.0

    async def phase_is(phase: Phase) -> bool:
        return (await store.read_rollout(GROUP)).state.phase is phase

    async def observed_back() -> bool:
        return value("yolofleet_rollout_phase", group=GROUP, phase="rolled_back") == 1

    async def all_report() -> bool:
        return len((await store.observe(GROUP)).nodes) == 2

    await eventually(all_report, what="every node to report")
    loop = asyncio.create_task(controller.run([GROUP], interval_s=0.02))
    try:
        await controller.start_rollout(GROUP, OLD, steps="100", hold_s=0.1, thresholds=FAST)
        await eventually(lambda: phase_is(Phase.COMPLETED), what=f"{OLD} to complete")
        await controller.start_rollout(GROUP, "broken", steps="50,100", thresholds=FAST)
        await eventually(lambda: phase_is(Phase.ROLLED_BACK), what="the rollback")
        await eventually(observed_back, what="the rollback to be observed")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop

    rollbacks = "yolofleet_rollout_rollbacks_total"
    assert value(rollbacks, group=GROUP, reason="load_failed") == 1
    assert value("yolofleet_rollout_intents_total", group=GROUP, intent="start") == 2
    assert value("yolofleet_control_plane_tick_seconds_count") >= 2
    assert value("yolofleet_rollout_canary_weight_percent", group=GROUP) == 0
    assert value("yolofleet_rollout_phase", group=GROUP, phase="completed") == 0
