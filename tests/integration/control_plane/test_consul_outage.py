"""Consul goes down mid-rollout: the controller decides nothing it cannot record, then resumes.

Its own dev Consul (with a data directory, so a restart keeps every key) instead of the module's
shared one, since this test stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from control_plane.consul.store import ConsulStore
from control_plane.controller import Controller
from control_plane.core.state import Phase
from tests.integration.control_plane.simnodes import FakeMetricSource, SimFleet, SimNode, register
from tests.integration.control_plane.test_controller import FAST, GROUP, NODES
from tests.unit.control_plane.builders import NEW, OLD, samples
from tests.waits import eventually
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.keys import KeyLayout

TICK_FAILED = "tick failed"
HOLD_S = 1.0


@pytest.fixture
def own_consul(tmp_path: Path) -> Iterator[DevConsul]:
    consul = DevConsul(data_dir=tmp_path / "consul").start()
    yield consul
    if consul.running:
        consul.stop()


@pytest.fixture
def own_client(own_consul: DevConsul) -> Iterator[ConsulClient]:
    client = ConsulClient(ConsulSettings.from_address(own_consul.address, timeout=2.0))
    yield client
    client.close()


@pytest.fixture
async def sim_fleet(own_client: ConsulClient) -> AsyncIterator[SimFleet]:
    layout = KeyLayout()
    register(own_client, layout, OLD, NEW)
    nodes = [SimNode(client=own_client, layout=layout, group=GROUP, node_id=n) for n in NODES]
    fleet = SimFleet(nodes).start()
    yield fleet
    await fleet.stop()


def _failed_ticks(caplog: pytest.LogCaptureFixture) -> int:
    return sum(TICK_FAILED in record.getMessage() for record in caplog.records)


async def test_rollout_waits_out_a_consul_outage_and_completes(
    own_consul: DevConsul,
    own_client: ConsulClient,
    sim_fleet: SimFleet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="control_plane")
    store = ConsulStore(own_client, KeyLayout())
    controller = Controller(store, FakeMetricSource(good=samples(500)))

    async def all_report() -> bool:
        return len((await store.observe(GROUP)).nodes) == len(NODES)

    await eventually(all_report, what="every node to report")
    loop = asyncio.create_task(controller.run([GROUP], interval_s=0.02))
    try:
        await controller.start_rollout(GROUP, OLD, steps="100", thresholds=FAST)

        async def first_deployed() -> bool:
            return (await store.read_rollout(GROUP)).state.phase is Phase.COMPLETED

        await eventually(first_deployed, what=f"{OLD} on every node", timeout_s=20.0)
        await controller.start_rollout(GROUP, NEW, steps="25,100", hold_s=HOLD_S, thresholds=FAST)

        async def holding() -> bool:
            return (await store.read_rollout(GROUP)).state.phase is Phase.HOLDING

        await eventually(holding, what="the first step to hold", timeout_s=20.0)
        hold_ends = (await store.read_rollout(GROUP)).state.phase_since + HOLD_S
        own_consul.stop()
        down_from = len(caplog.records)
        failed = _failed_ticks(caplog)

        async def ticks_fail() -> bool:
            return _failed_ticks(caplog) >= failed + 5 and time.time() > hold_ends + 0.5

        # The outage outlasts the hold: a controller acting on what it last read would have
        # advanced the step; this one records nothing and waits.
        await eventually(ticks_fail, what="ticks to fail while Consul is down", timeout_s=20.0)
        during = caplog.records[down_from:]
        own_consul.start()

        async def completed() -> bool:
            return (await store.read_rollout(GROUP)).state.phase is Phase.COMPLETED

        await eventually(completed, what="the rollout to complete", timeout_s=20.0)
        done = (await store.read_rollout(GROUP)).state

        async def every_node_on_new() -> bool:
            return sim_fleet.served() == {NEW}

        # The loop keeps running: completion is recorded first, the new target written after.
        await eventually(every_node_on_new, what=f"every node to serve {NEW}", timeout_s=20.0)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop

    assert not [r for r in during if " phase %s -> %s" in str(r.msg)]  # nothing decided
    assert [(e.target, e.outcome) for e in done.history] == [
        (OLD, Phase.COMPLETED),
        (NEW, Phase.COMPLETED),
    ]
    assert done.stable == NEW
