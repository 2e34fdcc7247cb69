"""Two control-plane processes on the dev Consul: a leader frozen mid-tick lands no write.

Replica A leads with a 1 s session. Its tick is caught inside the analysis (one node's GetStats
answers slowly), holding the rollout document it read, and frozen there with SIGSTOP. Its
session expires, B takes the lock after the lock-delay and moves the rollout on (a promote).
A is resumed with SIGCONT and finishes its tick with the old document: its commit would put the
step-1 canary set back over B's step-2 target, and the transaction refuses it (check-session):
A logs the fenced tick, the target generation only ever grows, and no node swaps back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from control_plane.consul.store import ConsulStore
from control_plane.core.state import Phase
from tests.integration.control_plane.simnodes import SimFleet, SimNode, register
from tests.unit.control_plane.builders import NEW, OLD
from tests.waits import eventually
from yolofleet.consul import ConsulClient, KeyWatch
from yolofleet.consul.devserver import DevConsul
from yolofleet.keys import KeyLayout
from yolofleet.records import RecordInvalid, target_from_json
from yolofleet.v1 import control_pb2 as pb
from yolofleet.v1 import control_pb2_grpc as pb_grpc
from yolofleet.v1 import inference_pb2, inference_pb2_grpc

GROUP = "zone-f"
REPO = Path(__file__).resolve().parents[3]
TTL_S = 1.0
SLOW_STATS_S = 1.5
STATS_TIMEOUT_S = 60.0
"""Longer than any freeze: the frozen leader's GetStats calls are still in time when it wakes,
so its stale tick always reaches its commit (and is fenced off) instead of failing before it."""
SERVING_LINE = re.compile(r"control plane serving grpc_port=(\d+)")
FENCED = "tick fenced off, nothing written"


class Replica:
    """``python -m control_plane`` with a short leader TTL; stderr kept in ``lines``."""

    def __init__(self, consul: str, layout: KeyLayout) -> None:
        command = [
            sys.executable, "-m", "control_plane", "--consul", consul, "--port", "0",
            "--artifact-port", "0", "--interval", "0.1", "--leader-ttl", str(TTL_S),
            "--stats-timeout", str(STATS_TIMEOUT_S),
            "--key-prefix", layout.prefix,
        ]  # fmt: skip
        self.lines: list[str] = []
        self.port = 0
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()
        if not self._ready.wait(60):
            self.stop()
            raise AssertionError(f"control plane did not start: {self.lines[-20:]}")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            if match := SERVING_LINE.search(line):
                self.port = int(match.group(1))
                self._ready.set()

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._drain.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Stats(inference_pb2_grpc.InferenceServicer):
    """A node's GetStats that answers (no figures) after ``delay_s``; ``called`` marks a call."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.called = asyncio.Event()

    async def GetStats(self, request: Any, context: Any) -> inference_pb2.NodeStats:
        self.called.set()
        await asyncio.sleep(self.delay_s)
        return inference_pb2.NodeStats(window_start_unix=request.since_unix)


async def stats_server(servicer: Stats) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def replicas(dev_consul: DevConsul, layout: KeyLayout) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


@pytest.fixture
async def slow() -> AsyncIterator[tuple[Stats, str, str]]:
    """(the slow servicer, its endpoint, a fast one's endpoint)."""
    slow_stats, fast_stats = Stats(SLOW_STATS_S), Stats(0.0)
    slow_server, slow_at = await stats_server(slow_stats)
    fast_server, fast_at = await stats_server(fast_stats)
    yield slow_stats, slow_at, fast_at
    await slow_server.stop(0)
    await fast_server.stop(0)


def leader_pid(client: ConsulClient, layout: KeyLayout) -> int | None:
    pair = client.get(layout.leader)
    if pair is None or pair.session is None:
        return None
    holder = pair.value.decode()  # "<host>-<pid>-<random>"
    return int(holder.rsplit("-", 2)[1])


class TargetLog:
    """Every group target written, as (generation, canary nodes), seen by a blocking watch."""

    def __init__(self, client: ConsulClient, layout: KeyLayout) -> None:
        self.seen: list[tuple[int, tuple[str, ...]]] = []
        self._watch = KeyWatch(client, layout.group_target(GROUP), wait=1.0, min_interval=0)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for pair in self._watch:
            if pair is None:
                continue
            with contextlib.suppress(RecordInvalid):
                target = target_from_json(pair.value)
                entry = (target.generation, target.canary_nodes)
                if not self.seen or self.seen[-1] != entry:
                    self.seen.append(entry)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def applied(store: ConsulStore, reply: pb.Rollout) -> str:
    """Waits for the leader's tick to record the outcome of the intent ``reply`` recorded."""
    found: list[str] = []

    async def recorded() -> bool:
        outcome = (await store.read_rollout(GROUP)).outcome(reply.intent_id)
        if outcome is not None:
            found.append(f"{outcome.result}: {outcome.detail}")
        return outcome is not None

    await eventually(recorded, what=f"the outcome of intent {reply.intent_id}", timeout_s=30)
    return found[-1]


async def test_a_frozen_leader_resumed_after_takeover_lands_no_write(
    dev_consul: DevConsul,
    client: ConsulClient,
    layout: KeyLayout,
    replicas: list[Replica],
    slow: tuple[Stats, str, str],
) -> None:
    slow_stats, slow_at, fast_at = slow
    store = ConsulStore(client, layout)
    register(client, layout, OLD, NEW)
    endpoints = {"n0": slow_at, "n1": fast_at}
    nodes = [
        SimNode(client=client, layout=layout, group=GROUP, node_id=f"n{i}",
                endpoint=endpoints.get(f"n{i}", ""))
        for i in range(4)
    ]  # fmt: skip
    fleet = SimFleet(nodes).start()
    targets = TargetLog(client, layout)
    try:

        async def all_report() -> bool:
            return len((await store.observe(GROUP)).nodes) == 4

        await eventually(all_report, what="every node to report")
        a = Replica(dev_consul.address, layout)
        replicas.append(a)
        await eventually(_leads(client, layout, a), what="A to lead")
        b = Replica(dev_consul.address, layout)
        replicas.append(b)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{b.port}")
        stub = pb_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]

        first = await stub.StartRollout(pb.StartRolloutRequest(group=GROUP, model=OLD, steps=[100]))
        assert (await applied(store, first)).startswith("applied")
        await eventually(_phase(store, Phase.COMPLETED), what=f"{OLD} on every node")
        started = await stub.StartRollout(
            pb.StartRolloutRequest(
                group=GROUP, model=NEW, steps=[25, 50, 100], hold_s=600.0,
                thresholds=pb.Thresholds(analysis_deadline_s=600.0, report_deadline_s=60.0),
            )
        )  # fmt: skip
        assert (await applied(store, started)).startswith("applied")
        await eventually(_phase(store, Phase.HOLDING), what="step 1 to hold")

        slow_stats.called.clear()
        await asyncio.wait_for(slow_stats.called.wait(), timeout=10)  # A is inside a tick
        a.proc.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        await eventually(_leads(client, layout, b), what="B to take the lock")
        took_over_s = time.monotonic() - frozen_at
        promoted = await stub.Promote(pb.PromoteRequest(group=GROUP))
        outcome = await applied(store, promoted)
        acted_s = time.monotonic() - frozen_at
        step_2 = (await store.read_rollout(GROUP)).state
        a.proc.send_signal(signal.SIGCONT)
        try:
            await eventually(_logged(a, FENCED), what="A's stale tick to be fenced off")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; A's log ends with {a.lines[-12:]}") from None

        after = (await store.read_rollout(GROUP)).state
        full = await stub.Promote(pb.PromoteRequest(group=GROUP, full=True))
        assert (await applied(store, full)).startswith("applied")
        await eventually(_phase(store, Phase.COMPLETED), what=f"{NEW} to become stable")
        await eventually(_served(fleet, NEW), what=f"every node to serve {NEW}")
    finally:
        await targets.stop()
        await fleet.stop()

    print(f"leader frozen -> standby holds the lock: {took_over_s:.2f}s; -> its tick applied "
          f"an intent: {acted_s:.2f}s")  # fmt: skip
    assert outcome.startswith("applied"), outcome
    assert step_2.step_index == 1
    assert (after.step_index, after.revision) == (1, step_2.revision)  # A changed nothing
    assert leader_pid(client, layout) == b.proc.pid
    generations = [generation for generation, _ in targets.seen]
    assert generations == sorted(set(generations)), targets.seen
    canary_sets = [nodes for _, nodes in targets.seen if nodes]
    assert canary_sets == sorted(canary_sets, key=len), targets.seen  # never shrank back
    for node in nodes:
        assert node.history in ([OLD, NEW],), (node.node_id, node.history)


async def test_abort_then_promote_before_a_tick_ends_aborted(
    dev_consul: DevConsul, client: ConsulClient, layout: KeyLayout, replicas: list[Replica]
) -> None:
    store = ConsulStore(client, layout)
    register(client, layout, OLD, NEW)
    nodes = [SimNode(client=client, layout=layout, group=GROUP, node_id=f"n{i}") for i in range(3)]
    fleet = SimFleet(nodes).start()
    try:

        async def all_report() -> bool:
            return len((await store.observe(GROUP)).nodes) == 3

        await eventually(all_report, what="every node to report")
        leader = Replica(dev_consul.address, layout)
        replicas.append(leader)
        await eventually(_leads(client, layout, leader), what="the first replica to lead")
        other = Replica(dev_consul.address, layout)  # answers while the leader is frozen
        replicas.append(other)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{other.port}")
        stub = pb_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
        await applied(store, await stub.StartRollout(
            pb.StartRolloutRequest(group=GROUP, model=OLD, steps=[100])
        ))  # fmt: skip
        await eventually(_phase(store, Phase.COMPLETED), what=f"{OLD} on every node")
        started = await stub.StartRollout(
            pb.StartRolloutRequest(group=GROUP, model=NEW, canary_percent=50, hold_s=600.0)
        )
        await applied(store, started)
        await eventually(_phase(store, Phase.HOLDING), what="the canary to hold")

        # No tick runs between the two requests (if the freeze outlasts the leader's TTL, the
        # other replica takes over and applies them: the outcome is the same).
        leader.proc.send_signal(signal.SIGSTOP)
        try:
            abort = await stub.Abort(pb.GroupRequest(group=GROUP), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Promote(pb.PromoteRequest(group=GROUP, full=True), timeout=10)
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        outcome = await applied(store, abort)
        await eventually(_served(fleet, OLD), what=f"every node back on {OLD}")
    finally:
        await fleet.stop()

    state = (await store.read_rollout(GROUP)).state
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "abort" in (refused.value.details() or "")
    assert outcome.startswith("applied: aborted by the operator"), outcome
    assert (state.phase, state.stable) == (Phase.ABORTED, OLD)


def _leads(client: ConsulClient, layout: KeyLayout, replica: Replica) -> Any:
    async def check() -> bool:
        return await asyncio.to_thread(leader_pid, client, layout) == replica.proc.pid

    return check


def _logged(replica: Replica, text: str) -> Any:
    async def check() -> bool:
        return replica.logged(text)

    return check


def _phase(store: ConsulStore, phase: Phase) -> Any:
    async def check() -> bool:
        return (await store.read_rollout(GROUP)).state.phase is phase

    return check


def _served(fleet: SimFleet, model: str) -> Any:
    async def check() -> bool:
        return fleet.served() == {model}

    return check
