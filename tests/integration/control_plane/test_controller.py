"""Whole rollouts over the dev Consul: the controller loop against simulated nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from control_plane.consul.leader import LeaderLock
from control_plane.consul.store import ConsulStore
from control_plane.controller import Controller
from control_plane.core.spec import Thresholds
from control_plane.core.state import GroupState, Phase, Result
from tests.integration.control_plane.simnodes import FakeMetricSource, SimFleet, SimNode, register
from tests.unit.control_plane.builders import NEW, OLD, samples
from tests.waits import eventually
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.keys import KeyLayout

GROUP = "zone-a"
NODES = ("n0", "n1", "n2", "n3")
FAST = Thresholds(min_samples=100, report_deadline_s=5.0, analysis_deadline_s=5.0)
P, H, C, R = Phase.PROGRESSING, Phase.HOLDING, Phase.COMPLETED, Phase.ROLLED_BACK


def transitions(caplog: pytest.LogCaptureFixture) -> list[tuple[Phase, str]]:
    """(new phase, reason) of every ``phase a -> b`` line the controller logged."""
    return [
        (Phase(str(record.args[2])), str(record.args[4]))  # type: ignore[index]
        for record in caplog.records
        if record.name == "control_plane.controller" and " phase %s -> %s" in str(record.msg)
    ]


class Scenario:
    def __init__(
        self,
        client: ConsulClient,
        layout: KeyLayout,
        metrics: FakeMetricSource,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        self.client, self.layout, self.metrics, self.caplog = client, layout, metrics, caplog
        self.store = ConsulStore(client, layout)
        self.controller = Controller(self.store, metrics)
        self.loop: asyncio.Task[None] | None = None

    def start_loop(self, controller: Controller | None = None) -> None:
        self.controller = controller or self.controller
        self.loop = asyncio.create_task(self.controller.run([GROUP], interval_s=0.02))

    async def stop_loop(self) -> None:
        if self.loop is not None:
            self.loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.loop

    async def state(self) -> GroupState:
        return (await self.store.read_rollout(GROUP)).state

    async def settle(self) -> GroupState:
        async def settled() -> bool:
            return not (await self.state()).phase.running

        await eventually(settled, what="the rollout to settle")
        done = await self.state()

        async def logged() -> bool:  # the log line follows the write it reports
            return transitions(self.caplog)[-1:] == [(done.phase, done.reason)]

        await eventually(logged, what=f"the move to {done.phase} to be logged")
        return done

    async def rollout(self, target: str, *, steps: str, hold_s: float = 0.1) -> GroupState:
        await self.start(target, steps=steps, hold_s=hold_s)
        return await self.settle()

    async def start(self, target: str, *, steps: str, hold_s: float) -> None:
        """Records the start and waits for the leader's tick to apply it."""
        _, intent_id = await self.controller.start_rollout(
            GROUP, target, steps=steps, hold_s=hold_s, thresholds=FAST
        )

        async def applied() -> bool:
            outcome = (await self.store.read_rollout(GROUP)).outcome(intent_id)
            assert outcome is None or outcome.result is Result.APPLIED, outcome
            return outcome is not None

        await eventually(applied, what=f"the start of {target} to be applied")


@pytest.fixture
async def fleet(client: ConsulClient, layout: KeyLayout) -> AsyncIterator[SimFleet]:
    register(client, layout, OLD, NEW)
    nodes = [
        SimNode(client=client, layout=layout, group=GROUP, node_id=n, broken=frozenset({"broken"}))
        for n in NODES
    ]
    sim = SimFleet(nodes).start()
    yield sim
    await sim.stop()


@pytest.fixture
async def scenario(
    client: ConsulClient, layout: KeyLayout, fleet: SimFleet, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Scenario]:
    """Every node reports, the loop runs, and the group's first model (OLD) is deployed."""
    caplog.set_level(logging.INFO, logger="control_plane")
    metrics = FakeMetricSource(good=samples(500))
    world = Scenario(client, layout, metrics, caplog)
    store = world.store

    async def all_report() -> bool:
        return len((await store.observe(GROUP)).nodes) == len(NODES)

    await eventually(all_report, what="every node to report")
    world.start_loop()
    first = await world.rollout(OLD, steps="100")
    assert first.phase is C, first.reason
    await eventually(_serving(fleet, OLD), what=f"every node to serve {OLD}")
    yield world
    await world.stop_loop()


def _serving(fleet: SimFleet, model: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return fleet.served() == {model}

    return check


async def test_good_rollout_completes_step_by_step(
    scenario: Scenario, fleet: SimFleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()

    done = await scenario.rollout(NEW, steps="25,50,100")

    assert [phase for phase, _ in transitions(caplog)] == [P, H, P, H, P, H, C]
    assert done.stable == NEW
    assert done.previous_stable == OLD
    await eventually(_serving(fleet, NEW), what=f"every node to serve {NEW}")
    target = await scenario.store.read_target(GROUP)
    assert target is not None
    assert target.stable is not None
    assert (target.stable.name, target.canary, target.canary_nodes) == (NEW, None, ())
    assert all(since <= until for since, until in scenario.metrics.windows)


async def test_regression_rolls_back_naming_the_check(
    scenario: Scenario, fleet: SimFleet, caplog: pytest.LogCaptureFixture
) -> None:
    scenario.metrics.per_model = {NEW: samples(500, errors=50)}
    caplog.clear()

    done = await scenario.rollout(NEW, steps="25,50,100", hold_s=5.0)

    assert [phase for phase, _ in transitions(caplog)] == [P, H, R]
    assert "analysis failed 2 times in a row at step 1/3 (25%): error_rate" in done.reason
    assert done.reason.endswith(f"rolled back to {OLD}")
    assert done.stable == OLD
    await eventually(_serving(fleet, OLD), what=f"every node back on {OLD}")


async def test_canary_failing_to_load_rolls_back(
    scenario: Scenario, client: ConsulClient, layout: KeyLayout, caplog: pytest.LogCaptureFixture
) -> None:
    register(client, layout, "broken")
    caplog.clear()

    done = await scenario.rollout("broken", steps="25,100")

    assert [phase for phase, _ in transitions(caplog)] == [P, R]
    assert "canary node n0 failed to load broken: broken failed validation" in done.reason

    async def cleared() -> bool:
        target = await scenario.store.read_target(GROUP)
        stable = target.stable.name if target is not None and target.stable else None
        return target is not None and (stable, target.canary) == (OLD, None)

    await eventually(cleared, what="the canary to be cleared from the target")


async def test_new_controller_continues_a_rollout_mid_way(
    scenario: Scenario,
    settings: ConsulSettings,
    layout: KeyLayout,
    fleet: SimFleet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.clear()
    await scenario.start(NEW, steps="25,100", hold_s=0.5)

    async def holding() -> bool:
        return (await scenario.state()).phase is H

    await eventually(holding, what="the first hold")
    await scenario.stop_loop()
    other = ConsulClient(settings)
    try:
        scenario.start_loop(Controller(ConsulStore(other, layout), scenario.metrics))
        done = await scenario.settle()
    finally:
        await scenario.stop_loop()
        other.close()

    # The first loop may be cancelled between a write and its log line, so the stored
    # history, not the log, says the rollout ran once and completed.
    assert [entry.outcome for entry in done.history] == [C, C]
    assert done.history[-1].target == NEW
    assert done.stable == NEW
    assert transitions(caplog)[-1][0] is C
    assert "step 2/2 (100%) passed analysis" in done.reason
    await eventually(_serving(fleet, NEW), what=f"every node to serve {NEW}")


async def test_leader_lock_passes_to_the_other_candidate(
    settings: ConsulSettings, layout: KeyLayout
) -> None:
    clients = [ConsulClient(settings), ConsulClient(settings)]
    first, second = (
        LeaderLock(c, layout, holder=name, ttl=2.0, check_s=0.02)
        for c, name in zip(clients, ("cp-a", "cp-b"), strict=True)
    )
    try:
        await first.start()
        await second.start()

        async def one_leads() -> bool:
            return first.is_leader or second.is_leader

        await eventually(one_leads, what="a leader")
        holder, waiting = (first, second) if first.is_leader else (second, first)
        assert not waiting.is_leader

        await holder.close()

        async def taken_over() -> bool:
            return waiting.is_leader

        await eventually(taken_over, what="the other candidate to take over", timeout_s=5.0)
        assert not holder.is_leader
    finally:
        await first.close()
        await second.close()
        for c in clients:
            c.close()
