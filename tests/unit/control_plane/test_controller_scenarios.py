"""Whole rollouts through the real ``Controller`` over ``MemoryStore``: many ticks, no I/O.

The same controller runs over the dev Consul in ``tests/integration/control_plane``; here the
store is in memory, the clock moves only when told and nodes obey their target at once, so each
scenario reads as the operator's and the fleet's moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from control_plane.controller import Controller
from control_plane.core.errors import Deposed, NothingToDo, RolloutConflict, StoreConflict
from control_plane.core.fleet import FleetView
from control_plane.core.metrics import NodeSamples
from control_plane.core.samples import Samples
from control_plane.core.state import GroupState, Intent, Phase, Result
from control_plane.core.store import Fence
from tests.unit.control_plane.builders import GROUP, NEW, OLD, THRESHOLDS, digest, samples
from tests.unit.control_plane.memory_store import MemoryStore

NODES = ("n0", "n1", "n2", "n3")
HOLD_S = 30.0
MAX_TICKS = 40


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t


@dataclass
class Traffic:
    """Every node did ``good`` with the model it reports, or ``per_model[model]``."""

    good: Samples = field(default_factory=lambda: samples(1000))
    per_model: Mapping[str, Samples] = field(default_factory=dict)

    async def sample(
        self, group: str, fleet: FleetView, *, since: float, until: float
    ) -> NodeSamples:
        by_digest = {digest(name): s for name, s in self.per_model.items()}
        return {
            n.node_id: {n.sha256: by_digest.get(n.sha256, self.good)}
            for n in fleet.nodes
            if n.sha256 is not None
        }


class World:
    def __init__(self, traffic: Traffic | None = None) -> None:
        self.store = MemoryStore()
        self.store.register(OLD, NEW)
        for node_id in NODES:
            self.store.report(GROUP, node_id, None)
        self.clock = Clock()
        self.controller = Controller(self.store, traffic or Traffic(), self.clock)

    async def tick(self) -> GroupState:
        """One tick, then the nodes obey the target and time moves past a hold."""
        state = await self.controller.tick(GROUP)
        self.store.converge(GROUP)
        self.clock.t += HOLD_S + 1
        return state

    async def until(self, *phases: Phase) -> GroupState:
        for _ in range(MAX_TICKS):
            state = await self.tick()
            if state.phase in phases:
                return state
        raise AssertionError(f"{GROUP} never reached {phases}; it is {state.phase}: {state}")

    async def start(self, model: str, *, steps: str) -> str:
        _, intent_id = await self.controller.start_rollout(
            GROUP, model, steps=steps, hold_s=HOLD_S, thresholds=THRESHOLDS, now=self.clock.t
        )
        return intent_id

    async def outcome(self, intent_id: str) -> Result | None:
        found = (await self.store.read_rollout(GROUP)).outcome(intent_id)
        return found.result if found is not None else None


async def settled_on_old(traffic: Traffic | None = None) -> World:
    """A group whose first model, ``OLD``, went to every node."""
    w = World(traffic)
    await w.start(OLD, steps="100")
    done = await w.until(Phase.COMPLETED)
    assert done.stable == OLD
    assert set(w.store.serving(GROUP).values()) == {OLD}
    return w


@pytest.fixture
async def world() -> World:
    return await settled_on_old()


async def test_canary_steps_then_completes_and_every_node_serves_the_new_model(
    world: World,
) -> None:
    started = await world.start(NEW, steps="25,50,100")

    canary = await world.until(Phase.HOLDING)
    target = world.store.target(GROUP)

    assert await world.outcome(started) is Result.APPLIED
    assert canary.canary == NEW
    assert len(canary.canary_nodes) == 1
    assert target is not None
    assert target.canary is not None
    assert target.canary.name == NEW
    assert target.canary_nodes == canary.canary_nodes
    done = await world.until(Phase.COMPLETED)
    assert (done.stable, done.canary) == (NEW, None)
    assert set(world.store.serving(GROUP).values()) == {NEW}


async def test_promote_full_during_the_canary_completes_the_rollout(world: World) -> None:
    w = world
    await w.start(NEW, steps="25,50")
    await w.until(Phase.HOLDING)

    _, promoted = await w.controller.record_intent(GROUP, Intent.PROMOTE_FULL)
    done = await w.until(Phase.COMPLETED)

    assert await w.outcome(promoted) is Result.APPLIED
    assert done.stable == NEW
    assert set(w.store.serving(GROUP).values()) == {NEW}


async def test_a_regressing_canary_is_rolled_back_and_its_node_returns_to_stable() -> None:
    w = await settled_on_old(Traffic(per_model={NEW: samples(1000, errors=300)}))
    await w.start(NEW, steps="25,50,100")

    rolled_back = await w.until(Phase.ROLLED_BACK)
    w.store.converge(GROUP)
    target = w.store.target(GROUP)

    assert rolled_back.stable == OLD
    assert rolled_back.canary is None
    assert "error" in rolled_back.reason
    assert target is not None
    assert target.canary is None
    assert set(w.store.serving(GROUP).values()) == {OLD}


async def test_abort_supersedes_a_pending_promote_and_a_later_promote_is_refused(
    world: World,
) -> None:
    await world.start(NEW, steps="25,50")
    await world.until(Phase.HOLDING)

    _, promoted = await world.controller.record_intent(GROUP, Intent.PROMOTE_FULL)
    _, aborted = await world.controller.record_intent(GROUP, Intent.ABORT)
    with pytest.raises(RolloutConflict, match="abort"):
        await world.controller.record_intent(GROUP, Intent.PROMOTE_FULL)
    state = await world.tick()

    assert state.phase is Phase.ABORTED
    assert await world.outcome(promoted) is Result.SUPERSEDED
    assert await world.outcome(aborted) is Result.APPLIED
    assert state.stable == OLD
    assert set(world.store.serving(GROUP).values()) == {OLD}


async def test_an_intent_for_an_idle_group_is_refused_with_a_reason() -> None:
    w = World()

    with pytest.raises(NothingToDo, match=r"\S+") as refused:
        await w.controller.record_intent(GROUP, Intent.PAUSE)

    assert GROUP in str(refused.value)
    assert w.store.writes == 0


async def test_a_write_at_a_stale_revision_is_refused_and_changes_nothing(world: World) -> None:
    stale = await world.store.read_rollout(GROUP)
    await world.start(NEW, steps="25,50")
    writes = world.store.writes

    with pytest.raises(StoreConflict, match="changed since revision"):
        await world.store.write_rollout(stale)
    with pytest.raises(StoreConflict, match="changed since revision"):
        await world.store.commit(stale, changed=True, fence=None)

    assert world.store.writes == writes
    assert (await world.store.read_rollout(GROUP)).pending is not None


async def test_a_deposed_leaders_tick_lands_no_write(world: World) -> None:
    await world.start(NEW, steps="25,50")
    world.store.leader = Fence(key="leader", session="new-leader")
    before = world.store.target(GROUP)
    writes = world.store.writes

    with pytest.raises(Deposed):
        await world.controller.tick(GROUP, fence=Fence(key="leader", session="old-leader"))

    assert world.store.writes == writes
    assert world.store.target(GROUP) == before
    assert (await world.store.read_rollout(GROUP)).state.phase is Phase.COMPLETED
