"""Lost Consul state over the dev Consul: the controller loop against simulated nodes.

Each test deploys the group's first model, starts a canary rollout of the next one, then loses
the state the rollout lived in (the rollout document, the target and the cluster epoch, keeping
the nodes' own reports, as after a wipe the nodes re-report) and checks that nothing moves and
every request is refused until ``adopt``, which brings the stranded canaries back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from control_plane.app import rollout_watches
from control_plane.consul.epoch import EpochKeeper
from control_plane.consul.store import ConsulStore
from control_plane.controller import Controller
from control_plane.core.errors import AdoptRefused, GroupLost, NothingToDo
from control_plane.core.spec import Thresholds
from control_plane.core.state import GroupState, Intent, Phase, Result
from control_plane.service.servicer import ControlPlaneService
from tests.integration.control_plane.simnodes import FakeMetricSource, SimFleet, SimNode, register
from tests.unit.control_plane.builders import NEW, OLD, samples
from tests.waits import eventually
from yolofleet.consul import ConsulClient
from yolofleet.keys import KeyLayout
from yolofleet.records import ModelRecord
from yolofleet.records import to_json as record_json
from yolofleet.v1 import control_pb2 as pb
from yolofleet.v1 import control_pb2_grpc as pb_grpc

GROUP = "zone-a"
NODES = ("n0", "n1", "n2", "n3")
SLOW = Thresholds(min_samples=100, report_deadline_s=30.0, analysis_deadline_s=30.0)


class World:
    def __init__(self, client: ConsulClient, layout: KeyLayout, fleet: SimFleet) -> None:
        self.client, self.layout, self.fleet = client, layout, fleet
        self.store = ConsulStore(client, layout)
        self.epochs = EpochKeeper(client, layout)
        metrics = FakeMetricSource(good=samples(500))
        self.controller = Controller(self.store, metrics, epochs=self.epochs)
        self.loop: asyncio.Task[None] | None = None

    async def state(self) -> GroupState:
        return (await self.store.read_rollout(GROUP)).state

    async def applied(self, intent_id: str) -> GroupState:
        async def done() -> bool:
            return (await self.store.read_rollout(GROUP)).outcome(intent_id) is not None

        await eventually(done, what=f"intent {intent_id} to be applied")
        doc = await self.store.read_rollout(GROUP)
        outcome = doc.outcome(intent_id)
        assert outcome is not None
        assert outcome.result is Result.APPLIED, outcome.detail
        return doc.state

    async def start(self, target: str, *, steps: str) -> GroupState:
        _, intent_id = await self.controller.start_rollout(
            GROUP, target, steps=steps, hold_s=600.0, thresholds=SLOW
        )
        return await self.applied(intent_id)

    async def served_by_canaries(self, phase: Phase) -> None:
        async def holding() -> bool:
            return (await self.state()).phase is phase

        await eventually(holding, what=f"the rollout to reach {phase}")

    def lose_state(self) -> None:
        """What a wipe leaves: nodes re-report, but the document, target and epoch are gone."""
        for key in (self.layout.rollout(GROUP), self.layout.group_target(GROUP), self.layout.epoch):
            self.client.delete(key)

    def served(self) -> dict[str, str | None]:
        return {node.node_id: node.serving for node in self.fleet.nodes}


@pytest.fixture
async def world(
    client: ConsulClient, layout: KeyLayout, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[World]:
    """Every node serves OLD (the group's first model), the loop runs with an epoch keeper."""
    caplog.set_level(logging.INFO, logger="control_plane")
    register(client, layout, OLD, NEW)
    sim = SimFleet(
        [SimNode(client=client, layout=layout, group=GROUP, node_id=n) for n in NODES]
    ).start()
    w = World(client, layout, sim)

    async def all_report() -> bool:
        return len((await w.store.observe(GROUP)).nodes) == len(NODES)

    await eventually(all_report, what="every node to report")
    w.loop = asyncio.create_task(w.controller.run([GROUP], interval_s=0.02))
    first = await w.start(OLD, steps="100")
    assert first.phase is Phase.DEPLOYING, first.reason

    async def everywhere() -> bool:
        return sim.served() == {OLD} and (await w.state()).phase is Phase.COMPLETED

    await eventually(everywhere, what=f"every node to serve {OLD}")
    yield w
    w.loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await w.loop
    await sim.stop()


async def test_lost_mid_canary_nothing_moves_until_adopt(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.start(NEW, steps="25,100")
    await world.served_by_canaries(Phase.HOLDING)
    before = world.served()
    assert before == {"n0": NEW, "n1": OLD, "n2": OLD, "n3": OLD}
    epoch = world.epochs.seen
    caplog.clear()

    world.lose_state()

    with pytest.raises(GroupLost) as refused:
        await world.controller.start_rollout(GROUP, NEW, steps="25,100", hold_s=1.0)
    reason = str(refused.value)
    assert f"group {GROUP}: has 3 nodes serving {OLD}" in reason
    assert f"and 1 serving {NEW}" in reason
    assert "but no rollout document explains them: Consul state was lost or wiped" in reason
    assert reason.endswith(f"run `ctl adopt {GROUP}` before any rollout")
    with pytest.raises(GroupLost):
        await world.controller.record_intent(GROUP, Intent.ABORT)

    async def new_epoch() -> bool:
        seen = world.epochs.seen
        return seen is not None and seen != epoch

    await eventually(new_epoch, what="the leader's tick to begin a new epoch")
    ticked = await world.controller.tick(GROUP)  # one more whole tick, to be sure
    assert ticked.revision == 0
    assert "lost state; nothing moves until adopted" in caplog.text
    assert world.client.get(world.layout.group_target(GROUP)) is None
    assert world.client.get(world.layout.rollout(GROUP)) is None
    assert world.served() == before
    assert await world.controller.lost(await world.store.read_rollout(GROUP)) == reason

    _, intent_id = await world.controller.adopt(GROUP)
    adopted = await world.applied(intent_id)

    assert adopted.phase is Phase.ADOPTED
    assert (adopted.stable, adopted.canary, adopted.canary_nodes) == (OLD, None, ())
    assert f"stranded canaries back to {OLD}: n0 ({NEW})" in adopted.reason
    assert adopted.history[-1].outcome is Phase.ADOPTED
    assert adopted.stranded == (NEW,)
    stored = await world.store.read_rollout(GROUP)
    assert world.epochs.seen is not None
    assert epoch is not None
    assert stored.epoch == world.epochs.seen.id != epoch.id
    target = await world.store.read_target(GROUP)
    assert target is not None
    assert target.stable is not None
    assert (target.stable.name, target.canary) == (OLD, None)

    async def canary_back() -> bool:
        return world.fleet.served() == {OLD}

    await eventually(canary_back, what=f"the stranded canary to return to {OLD}")
    assert await world.controller.lost(await world.store.read_rollout(GROUP)) == ""
    restarted = await world.start(NEW, steps="25,100")
    assert restarted.phase is Phase.PROGRESSING
    assert restarted.canary_nodes == ("n0",)


async def test_an_even_split_needs_the_operator_to_name_stable(world: World) -> None:
    await world.start(NEW, steps="50,100")
    await world.served_by_canaries(Phase.HOLDING)
    world.lose_state()

    with pytest.raises(AdoptRefused) as tie:
        await world.controller.adopt(GROUP)
    assert f"`ctl adopt {GROUP} --stable {OLD} | {NEW}`" in str(tie.value)

    _, intent_id = await world.controller.adopt(GROUP, stable=NEW)
    adopted = await world.applied(intent_id)

    assert adopted.stable == NEW
    assert "named by the operator" in adopted.reason

    async def everyone_on_new() -> bool:
        return world.fleet.served() == {NEW}

    await eventually(everyone_on_new, what=f"every node to serve {NEW}")


async def test_a_document_from_another_epoch_is_lost_until_adopted(world: World) -> None:
    world.client.delete(world.layout.epoch)  # e.g. restored from another cluster's snapshot

    async def refused() -> bool:
        try:
            await world.controller.start_rollout(GROUP, NEW, steps="25,100", hold_s=1.0)
        except GroupLost as exc:
            return "written under cluster epoch" in str(exc)
        raise AssertionError("a rollout was accepted into a group from another epoch")

    await eventually(refused, what="the leader to begin a new epoch")
    _, intent_id = await world.controller.adopt(GROUP)
    adopted = await world.applied(intent_id)

    assert adopted.phase is Phase.ADOPTED
    assert [entry.outcome for entry in adopted.history] == [Phase.COMPLETED, Phase.ADOPTED]
    assert adopted.history[-1].stable_before == OLD


async def test_adopting_a_consistent_group_changes_nothing(world: World) -> None:
    with pytest.raises(NothingToDo, match=f"group {GROUP} is consistent, not lost"):
        await world.controller.adopt(GROUP)


@pytest.fixture
async def stub(world: World) -> AsyncIterator[pb_grpc.ControlPlaneStub]:
    service = ControlPlaneService(
        store=world.store,
        controller=world.controller,
        watches=rollout_watches(world.client, world.store, world.controller),
    )
    server = grpc.aio.server()
    pb_grpc.add_ControlPlaneServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
    await channel.close()
    await server.stop(0)


async def test_over_grpc_rollout_refused_status_says_lost_adopt_applies(
    world: World, stub: pb_grpc.ControlPlaneStub
) -> None:
    await world.start(NEW, steps="25,100")
    await world.served_by_canaries(Phase.HOLDING)
    world.lose_state()
    start = pb.StartRolloutRequest(group=GROUP, model=NEW, canary_percent=25)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.StartRollout(start)
    status = await stub.GetRollout(pb.GroupRequest(group=GROUP))
    recorded = await stub.Adopt(pb.AdoptRequest(group=GROUP))
    adopted = await world.applied(recorded.intent_id)
    after = await stub.GetRollout(pb.GroupRequest(group=GROUP))
    history = await stub.History(pb.GroupRequest(group=GROUP))

    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert f"run `ctl adopt {GROUP}` before any rollout" in str(refused.value.details())
    assert status.lost == refused.value.details()
    assert (recorded.pending.intent, recorded.pending.model) == ("adopt", OLD)
    assert adopted.phase is Phase.ADOPTED
    assert (after.phase, after.stable, after.lost) == ("adopted", OLD, "")
    assert after.stable_sha256 == adopted.pins[0].sha256
    assert (history.entries[-1].outcome, history.entries[-1].model) == ("adopted", OLD)


async def test_over_grpc_adopt_of_an_unknown_group_or_model_is_refused(
    world: World, stub: pb_grpc.ControlPlaneStub
) -> None:
    world.lose_state()

    with pytest.raises(grpc.aio.AioRpcError) as unknown_group:
        await stub.Adopt(pb.AdoptRequest(group="zone-z"))
    with pytest.raises(grpc.aio.AioRpcError) as unserved:
        await stub.Adopt(pb.AdoptRequest(group=GROUP, stable="shapes-v9"))

    assert unknown_group.value.code() is grpc.StatusCode.NOT_FOUND
    assert unserved.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "serves shapes-v9" in str(unserved.value.details())


async def test_adopt_needs_the_registry_to_hold_what_the_nodes_serve(world: World) -> None:
    world.lose_state()
    world.client.delete(world.layout.model(OLD))  # the registry was lost too

    with pytest.raises(AdoptRefused) as unregistered:
        await world.controller.adopt(GROUP)
    world.client.put(
        world.layout.model(OLD),
        record_json(
            ModelRecord(
                name=OLD,
                uri=f"file:///{OLD}.pt",
                sha256="e" * 64,
                size=1,
                class_names=("circle",),
                input_size=160,
            )
        ),
    )
    with pytest.raises(AdoptRefused) as other_build:
        await world.controller.adopt(GROUP)

    assert f"register the file they serve (`ctl models register PATH --name {OLD}`)" in str(
        unregistered.value
    )
    assert f"the registry's {OLD} is sha256 eeeeeeeeeeee… but nodes" in str(other_build.value)
    assert world.client.get(world.layout.rollout(GROUP)) is None  # nothing recorded
