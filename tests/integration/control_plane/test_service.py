"""The ControlPlane gRPC service in process, over the dev Consul, and the GetStats metric source."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from control_plane.app import PublishedArtifacts, rollout_watches
from control_plane.artifact_server import ArtifactServer
from control_plane.consul.store import ConsulStore
from control_plane.controller import Controller
from control_plane.core.errors import NodeUnreachable
from control_plane.core.fleet import FleetView, NodeView
from control_plane.core.state import Phase
from control_plane.service.servicer import ControlPlaneService
from control_plane.sources.nodes import GrpcMetricSource
from tests.integration.control_plane.simnodes import (
    FakeMetricSource,
    SimFleet,
    SimNode,
    digest,
    register,
)
from tests.unit.control_plane.builders import NEW, OLD, samples
from tests.waits import eventually
from yolofleet.consul import ConsulClient
from yolofleet.demo_models import ensure_models
from yolofleet.keys import KeyLayout
from yolofleet.records import NodePhase, NodeState, to_json
from yolofleet.v1 import control_pb2 as pb
from yolofleet.v1 import control_pb2_grpc as pb_grpc
from yolofleet.v1 import inference_pb2, inference_pb2_grpc

GROUP = "zone-a"
Code = grpc.StatusCode


@dataclass
class Plane:
    stub: pb_grpc.ControlPlaneStub
    store: ConsulStore
    controller: Controller
    artifacts: ArtifactServer


@pytest.fixture
async def plane(client: ConsulClient, layout: KeyLayout) -> AsyncIterator[Plane]:
    store = ConsulStore(client, layout)
    controller = Controller(store, FakeMetricSource(good=samples(500)))
    artifacts = ArtifactServer({}).start()
    service = ControlPlaneService(
        store=store,
        controller=controller,
        watches=rollout_watches(client, store, controller),
        artifacts=PublishedArtifacts(artifacts, None, artifacts.url),
    )
    server = grpc.aio.server()
    pb_grpc.add_ControlPlaneServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
    yield Plane(stub, store, controller, artifacts)
    await channel.close()
    await server.stop(0)
    artifacts.stop()


def snapshot(client: ConsulClient, layout: KeyLayout) -> dict[str, tuple[bytes, int]]:
    return {pair.key: (pair.value, pair.modify_index) for pair in client.list(layout.prefix)}


def report(client: ConsulClient, layout: KeyLayout, *node_ids: str) -> None:
    for node_id in node_ids:
        state = NodeState(node_id=node_id, group=GROUP, phase=NodePhase.WAITING)
        client.put(layout.node(GROUP, node_id), to_json(state))


async def test_register_publishes_the_artifact_and_lists_the_model(plane: Plane) -> None:
    models = ensure_models()

    record = await plane.stub.RegisterModel(
        pb.RegisterModelRequest(path=str(models.v1), name="shapes-v1", notes="first")
    )
    listed = await plane.stub.ListModels(pb.ListModelsRequest())
    got = await plane.stub.GetModel(pb.GetModelRequest(name="shapes-v1"))

    assert record.uri == plane.artifacts.url_for(record.sha256)
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(record.uri).read())
    assert hashlib.sha256(body).hexdigest() == record.sha256
    assert [m.name for m in listed.models] == ["shapes-v1"]
    assert got == record
    assert got.notes == "first"
    assert got.class_names


async def test_register_refuses_another_artifact_under_a_taken_name(plane: Plane) -> None:
    models = ensure_models()
    await plane.stub.RegisterModel(pb.RegisterModelRequest(path=str(models.v1), name="m"))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await plane.stub.RegisterModel(pb.RegisterModelRequest(path=str(models.v2), name="m"))

    assert refused.value.code() is Code.ALREADY_EXISTS


async def test_get_unknown_model_is_not_found(plane: Plane) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await plane.stub.GetModel(pb.GetModelRequest(name="nope"))

    assert refused.value.code() is Code.NOT_FOUND
    assert "nope" in (refused.value.details() or "")


def _start(**fields: Any) -> Callable[[Plane], Awaitable[Any]]:
    request = pb.StartRolloutRequest(**{"group": GROUP, "model": NEW, **fields})
    return lambda plane: plane.stub.StartRollout(request)


REFUSALS = [
    pytest.param(_start(model="nope", canary_percent=10), Code.NOT_FOUND, id="unknown-model"),
    pytest.param(_start(canary_percent=0), Code.INVALID_ARGUMENT, id="canary-0"),
    pytest.param(_start(canary_percent=101), Code.INVALID_ARGUMENT, id="canary-101"),
    pytest.param(_start(steps=[50, 20]), Code.INVALID_ARGUMENT, id="steps-decrease"),
    pytest.param(_start(group="nowhere", canary_percent=10), Code.NOT_FOUND, id="unknown-group"),
    pytest.param(_start(group="", canary_percent=10), Code.INVALID_ARGUMENT, id="empty-group"),
    pytest.param(_start(canary_percent=10), Code.FAILED_PRECONDITION, id="second-rollout"),
    pytest.param(
        lambda p: p.stub.Resume(pb.GroupRequest(group=GROUP)),
        Code.FAILED_PRECONDITION,
        id="resume-not-paused",
    ),
    pytest.param(
        lambda p: p.stub.Undo(pb.UndoRequest(group=GROUP, to_model="other")),
        Code.FAILED_PRECONDITION,
        id="undo-while-running",
    ),
    pytest.param(
        _start(canary_percent=10, thresholds=pb.Thresholds(p99_latency_ratio=0.5)),
        Code.INVALID_ARGUMENT,
        id="p99-ratio-below-1",
    ),
    pytest.param(
        _start(canary_percent=10, thresholds=pb.Thresholds(consecutive_failures=0)),
        Code.INVALID_ARGUMENT,
        id="zero-failures",
    ),
]


@pytest.mark.parametrize(("call", "code"), REFUSALS)
async def test_refused_rollout_requests_write_nothing(
    plane: Plane,
    client: ConsulClient,
    layout: KeyLayout,
    call: Callable[[Plane], Awaitable[Any]],
    code: grpc.StatusCode,
) -> None:
    register(client, layout, OLD, NEW)
    report(client, layout, "n0", "n1")
    await plane.stub.StartRollout(pb.StartRolloutRequest(group=GROUP, model=OLD, steps=[100]))
    first = await plane.controller.tick(GROUP)  # the leader's tick applies the start
    assert first.phase is Phase.DEPLOYING  # nodes never report it, so the rollout keeps running
    before = snapshot(client, layout)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(plane)

    assert refused.value.code() is code, refused.value.details()
    assert refused.value.details()
    assert snapshot(client, layout) == before


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda p: p.stub.Promote(pb.PromoteRequest(group=GROUP)), id="promote"),
        pytest.param(lambda p: p.stub.Abort(pb.GroupRequest(group=GROUP)), id="abort"),
        pytest.param(lambda p: p.stub.Pause(pb.GroupRequest(group=GROUP)), id="pause"),
    ],
)
async def test_intents_with_nothing_running_are_refused(
    plane: Plane,
    client: ConsulClient,
    layout: KeyLayout,
    call: Callable[[Plane], Awaitable[Any]],
) -> None:
    report(client, layout, "n0")
    before = snapshot(client, layout)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(plane)

    assert refused.value.code() is Code.FAILED_PRECONDITION
    assert snapshot(client, layout) == before


@pytest.fixture
async def fleet(client: ConsulClient, layout: KeyLayout) -> AsyncIterator[SimFleet]:
    register(client, layout, OLD, NEW)
    nodes = [SimNode(client=client, layout=layout, group=GROUP, node_id=f"n{i}") for i in range(4)]
    sim = SimFleet(nodes).start()
    yield sim
    await sim.stop()


async def test_rollout_runs_to_completion_seen_through_get_and_watch(
    plane: Plane, fleet: SimFleet
) -> None:
    async def all_report() -> bool:
        return len((await plane.store.observe(GROUP)).nodes) == 4

    await eventually(all_report, what="every node to report")
    loop = asyncio.create_task(plane.controller.run([GROUP], interval_s=0.02))
    seen: list[pb.Rollout] = []

    async def watch() -> None:
        async for rollout in plane.stub.WatchRollout(pb.GroupRequest(group=GROUP)):
            seen.append(rollout)

    watcher = asyncio.create_task(watch())
    try:
        await plane.stub.StartRollout(pb.StartRolloutRequest(group=GROUP, model=OLD, steps=[100]))
        await _settled(plane, stable=OLD)

        started = await plane.stub.StartRollout(
            pb.StartRolloutRequest(
                group=GROUP,
                model=NEW,
                canary_percent=25,
                hold_s=0.0,
                thresholds=pb.Thresholds(confidence_drift=0.3, consecutive_failures=3),
            )
        )
        done = await _settled(plane, stable=NEW)
        assert started.intent_id
        assert not started.checks  # the reply is the recorded intent, not yet applied

        async def watched_completion() -> bool:
            return bool(seen) and seen[-1].revision == done.revision

        await eventually(watched_completion, what="the watch to see the completed rollout")

        async def every_node_on_new() -> bool:
            listed = await plane.stub.ListNodes(pb.ListNodesRequest())
            return {n.model for n in listed.nodes} == {NEW} and len(listed.nodes) == 4

        # completion rewrites the target; the last baseline node switches after that
        await eventually(every_node_on_new, what="every node to report the new stable model")
    finally:
        for task in (watcher, loop):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # the first rollout the watch saw with the start's outcome (it may have moved on since)
    begun = next(r for r in seen if any(o.id == started.intent_id for o in r.intents))
    outcome = next(o for o in begun.intents if o.id == started.intent_id)
    assert (outcome.result, outcome.intent) == ("applied", "start")
    assert outcome.detail.startswith("step 1/3: shapes-v2 on 1 of 4 live nodes (25%)")
    assert list(begun.steps) == [25, 50, 100]
    assert begun.thresholds.confidence_drift == 0.3
    assert begun.thresholds.consecutive_failures == 3
    assert begun.thresholds.p99_latency_ratio == 1.5  # unset: the default
    assert done.thresholds == begun.thresholds  # stored with the spec
    assert {r.canary_sha256 for r in seen if r.canary} == {digest(NEW)}  # the pin's digest
    assert done.stable_sha256 == digest(NEW)
    assert done.phase == "completed"
    assert {c.outcome for c in done.checks} == {"pass"}
    phases = [rollout.phase for rollout in seen]
    assert phases[0] == "idle"
    assert {"deploying", "progressing", "holding", "completed"} <= set(phases)
    assert [r.revision for r in seen] == sorted({r.revision for r in seen})
    history = await plane.stub.History(pb.GroupRequest(group=GROUP))
    assert [(e.model, e.previous, e.outcome) for e in history.entries] == [
        (OLD, "", "completed"),
        (NEW, OLD, "completed"),
    ]
    nodes = await plane.stub.ListNodes(pb.ListNodesRequest())
    assert {(n.node_id, n.model) for n in nodes.nodes} == {(f"n{i}", NEW) for i in range(4)}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await plane.stub.Undo(pb.UndoRequest(group=GROUP, to_model="never-stable"))
    assert refused.value.code() is Code.FAILED_PRECONDITION
    assert "never a stable model of group" in (refused.value.details() or "")
    groups = await plane.stub.ListGroups(pb.ListGroupsRequest())
    assert list(groups.groups) == [GROUP]


async def _settled(plane: Plane, *, stable: str) -> pb.Rollout:
    async def settled() -> bool:
        now: pb.Rollout = await plane.stub.GetRollout(pb.GroupRequest(group=GROUP))
        return now.phase == "completed" and now.stable == stable

    await eventually(settled, what=f"{stable} to become stable")
    done: pb.Rollout = await plane.stub.GetRollout(pb.GroupRequest(group=GROUP))
    return done


class StatsNode(inference_pb2_grpc.InferenceServicer):
    """Answers GetStats with one model's figures, as a node does."""

    async def GetStats(self, request: Any, context: Any) -> inference_pb2.NodeStats:
        stats = inference_pb2.ModelStats(
            model=inference_pb2.ModelInfo(name="m", version="abc", sha256="ab" * 32),
            requests=10,
            errors=1,
            latency_bounds_s=[0.01, 0.1],
            latency_counts=[6, 3, 1],
            images=9,
            detections=18,
            confidence_sum=14.4,
            class_counts={"circle": 10, "square": 8},
        )
        return inference_pb2.NodeStats(window_start_unix=request.since_unix, models=[stats])


@pytest.fixture
async def stats_endpoint() -> AsyncIterator[str]:
    server = grpc.aio.server()
    node = StatsNode()
    inference_pb2_grpc.add_InferenceServicer_to_server(node, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


def _fleet(**endpoints: str) -> FleetView:
    return FleetView.of(
        NodeView(node_id=node_id, phase=NodePhase.SERVING, endpoint=endpoint)
        for node_id, endpoint in endpoints.items()
    )


async def test_metric_source_converts_stats_and_skips_unreachable_nodes(
    stats_endpoint: str,
) -> None:
    source = GrpcMetricSource(timeout_s=2.0)

    try:
        got = await source.sample(
            GROUP, _fleet(up=stats_endpoint, down="127.0.0.1:1"), since=0.0, until=1.0
        )
    finally:
        await source.close()

    assert set(got) == {"up"}
    one = got["up"]["ab" * 32]
    assert (one.requests, one.errors, one.images, one.detections) == (10, 1, 9, 18)
    assert one.latency.bounds == (0.01, 0.1)
    assert one.latency.counts == (6, 3, 1)
    assert one.confidence_sum == pytest.approx(14.4)
    assert one.class_counts == (("circle", 10), ("square", 8))


async def test_metric_source_raises_when_no_node_answers() -> None:
    source = GrpcMetricSource(timeout_s=1.0)

    try:
        with pytest.raises(NodeUnreachable, match="none of 1 node"):
            await source.sample(GROUP, _fleet(down="127.0.0.1:1"), since=0.0, until=1.0)
    finally:
        await source.close()


async def test_lost_state_refuses_a_rollout_until_adopt(
    plane: Plane, fleet: SimFleet, client: ConsulClient, layout: KeyLayout
) -> None:
    async def ticked_to(phase: str) -> bool:
        return (await plane.controller.tick(GROUP)).phase == phase

    async def all_report() -> bool:
        return len((await plane.store.observe(GROUP)).nodes) == 4

    await eventually(all_report, what="every node to report")
    await plane.stub.StartRollout(pb.StartRolloutRequest(group=GROUP, model=OLD, steps=[100]))
    await eventually(lambda: ticked_to("completed"), what=f"{OLD} on every node")
    client.delete(layout.rollout(GROUP))  # Consul lost the group's state
    client.delete(layout.group_target(GROUP))
    before = snapshot(client, layout)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await plane.stub.StartRollout(
            pb.StartRolloutRequest(group=GROUP, model=NEW, canary_percent=25)
        )
    await plane.controller.tick(GROUP)
    unmoved = snapshot(client, layout)
    adopted = await plane.stub.Adopt(pb.AdoptRequest(group=GROUP))
    state = await plane.controller.tick(GROUP)
    started = await plane.stub.StartRollout(
        pb.StartRolloutRequest(group=GROUP, model=NEW, canary_percent=25)
    )
    begun = await plane.controller.tick(GROUP)

    assert refused.value.code() is Code.FAILED_PRECONDITION
    assert "ctl adopt zone-a" in (refused.value.details() or "")
    assert unmoved == before  # nothing written, no node moved
    assert adopted.pending.intent == "adopt"
    assert adopted.pending.model == OLD
    assert (state.phase, state.stable) == (Phase.ADOPTED, OLD)
    assert f"adopted group {GROUP} after lost state" in state.history[-1].reason
    target = await plane.store.read_target(GROUP)
    assert target is not None
    assert target.stable is not None
    assert target.stable.sha256 == digest(OLD)
    assert started.intent_id
    assert (begun.phase, len(begun.canary_nodes)) == (Phase.PROGRESSING, 1)
