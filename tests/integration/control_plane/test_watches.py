"""WatchRollout at scale on a real control plane over the dev Consul: shared watches, a bounded
pool, a cap on streams.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc
import pytest

from control_plane.app import AppConfig, ControlPlane
from control_plane.consul.store import ConsulStore
from control_plane.consul.watches import GroupWatches
from control_plane.core.document import RolloutDoc
from tests.waits import until
from yolofleet.consul import ConsulClient
from yolofleet.consul.devserver import DevConsul
from yolofleet.keys import KeyLayout
from yolofleet.v1 import control_pb2 as pb
from yolofleet.v1 import control_pb2_grpc as pb_grpc

GROUPS = ("zone-a", "zone-b", "zone-c")
STREAMS = 300
POOL = 8
POLLS = 4


@asynccontextmanager
async def running(
    dev_consul: DevConsul, layout: KeyLayout, **fields: Any
) -> AsyncIterator[tuple[ControlPlane, pb_grpc.ControlPlaneStub]]:
    config = AppConfig(
        consul=dev_consul.address, port=0, key_prefix=layout.prefix, interval_s=0.5, **fields
    )
    plane = ControlPlane(config)
    await plane.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
            yield plane, pb_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await plane.stop()


async def poke(store: ConsulStore, group: str) -> int:
    """A new revision of the group's document (what any write of the leader would make)."""
    doc = await store.read_rollout(group)
    state = replace(doc.state, reason="changed by the test")
    return await store.write_rollout(RolloutDoc(spec=doc.spec, state=state))


async def test_300_streams_share_one_watch_per_group_on_a_bounded_pool(
    dev_consul: DevConsul, layout: KeyLayout
) -> None:
    config = {"blocking_threads": POOL, "poll_threads": POLLS}
    async with running(dev_consul, layout, **config) as (plane, stub):
        before = threading.active_count()
        streams = [
            stub.WatchRollout(pb.GroupRequest(group=GROUPS[i % len(GROUPS)]))
            for i in range(STREAMS)
        ]
        first = await asyncio.gather(*(s.read() for s in streams))
        during = threading.active_count()
        watching = plane.watches.watching
        revisions = {group: await poke(plane.store, group) for group in GROUPS}
        second = await asyncio.gather(*(s.read() for s in streams))
        after = threading.active_count()
        open_streams = plane.streams.open
        for stream in streams:
            stream.cancel()
        await until(lambda: plane.watches.watching == (), timeout_s=20, what="watches to stop")
        await until(lambda: plane.streams.open == 0, timeout_s=20, what="streams to close")

    assert [r.revision for r in first] == [0] * STREAMS
    assert [(r.group, r.revision) for r in second] == [
        (GROUPS[i % len(GROUPS)], revisions[GROUPS[i % len(GROUPS)]]) for i in range(STREAMS)
    ]
    assert {r.reason for r in second} == {"changed by the test"}
    assert watching == GROUPS
    assert open_streams == STREAMS
    assert during - before <= POOL + POLLS, f"{during - before} threads for {STREAMS} streams"
    assert after - before <= POOL + POLLS, f"{after - before} threads for {STREAMS} streams"


async def test_a_late_subscriber_gets_the_latest_state_at_once(
    dev_consul: DevConsul, layout: KeyLayout
) -> None:
    async with running(dev_consul, layout) as (plane, stub):
        early = stub.WatchRollout(pb.GroupRequest(group="zone-a"))
        await early.read()
        revision = await poke(plane.store, "zone-a")
        seen = await early.read()
        late = stub.WatchRollout(pb.GroupRequest(group="zone-a"))
        joined = await late.read()
        watching = plane.watches.watching
        early.cancel()
        late.cancel()

    assert seen.revision == joined.revision == revision
    assert watching == ("zone-a",)


async def test_streams_beyond_the_cap_are_refused_with_resource_exhausted(
    dev_consul: DevConsul, layout: KeyLayout
) -> None:
    async with running(dev_consul, layout, max_watch_streams=2) as (plane, stub):
        held = [stub.WatchRollout(pb.GroupRequest(group="zone-a")) for _ in range(2)]
        for stream in held:
            await stream.read()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.WatchRollout(pb.GroupRequest(group="zone-b")).read()
        held[0].cancel()
        await until(lambda: plane.streams.open == 1, timeout_s=10, what="a stream to close")
        admitted = stub.WatchRollout(pb.GroupRequest(group="zone-b"))
        again = await admitted.read()
        for stream in (held[1], admitted):
            stream.cancel()

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-watch-streams 2" in (refused.value.details() or "")
    assert again.group == "zone-b"


async def test_an_invalid_group_is_refused_and_frees_its_slot(
    dev_consul: DevConsul, layout: KeyLayout
) -> None:
    async with running(dev_consul, layout, max_watch_streams=1) as (_plane, stub):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.WatchRollout(pb.GroupRequest(group="a/b")).read()
        fine = stub.WatchRollout(pb.GroupRequest(group="zone-a"))
        admitted = await fine.read()
        fine.cancel()

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert admitted.group == "zone-a"


async def test_a_close_that_is_cancelled_midway_ends_cancelled(
    client: ConsulClient, store: ConsulStore
) -> None:
    watches: GroupWatches[RolloutDoc] = GroupWatches(
        client, key=store.layout.rollout, read=store.read_rollout
    )
    async with watches.subscribe("zone-a") as changes:
        await anext(changes)
        closing = asyncio.create_task(watches.close())
        await asyncio.sleep(0)  # close() now waits for the watch task it cancelled

        closing.cancel()
        outcome = await asyncio.gather(closing, return_exceptions=True)

    assert isinstance(outcome[0], asyncio.CancelledError)
    assert watches.watching == ()


async def test_a_failing_error_hook_still_ends_every_stream_of_the_group(
    client: ConsulClient, store: ConsulStore
) -> None:
    def unreadable(group: str) -> Any:
        raise ValueError(f"rollout of {group} is unreadable")

    def hook(error: BaseException) -> None:
        raise RuntimeError("the metrics hook failed too")

    watches: GroupWatches[RolloutDoc] = GroupWatches(
        client, key=store.layout.rollout, read=unreadable, on_error=hook
    )
    async with watches.subscribe("zone-a") as changes:
        with pytest.raises(ValueError, match="unreadable"):
            await asyncio.wait_for(anext(changes), timeout=10)

    assert watches.watching == ()
