"""Simulated fleet nodes over real Consul, and a fake metric source that follows them.

Each ``SimNode`` watches its group's target, "loads" the model it is told to serve after a short
delay and reports a ``NodeState`` under ``nodes/<group>/<id>``, as a node agent does. Models in
``broken`` fail to load: the node reports FAILED and keeps its old model.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from control_plane.core.fleet import FleetView
from control_plane.core.metrics import NodeSamples
from control_plane.core.samples import Samples
from yolofleet.consul import ConsulClient, KeyWatch
from yolofleet.consul.aiothread import run_blocking
from yolofleet.keys import KeyLayout
from yolofleet.records import GroupTarget, ModelRecord, NodePhase, NodeState, target_from_json
from yolofleet.records import to_json as record_json


def digest(model: str) -> str:
    return (model.encode().hex() * 64)[:64]


def register(client: ConsulClient, layout: KeyLayout, *models: str) -> None:
    for name in models:
        record = ModelRecord(
            name=name,
            uri=f"file:///{name}.pt",
            sha256=digest(name),
            size=1,
            class_names=("circle",),
            input_size=160,
        )
        client.put(layout.model(name), record_json(record))


@dataclass
class SimNode:
    client: ConsulClient
    layout: KeyLayout
    group: str
    node_id: str
    broken: frozenset[str] = frozenset()
    load_s: float = 0.02
    serving: str | None = None
    endpoint: str = ""
    """Reported as the node's endpoint (where the control plane asks GetStats)."""
    history: list[str] = field(default_factory=list)
    """Every model this node began serving, in order."""

    async def run(self) -> None:
        await self._report(NodePhase.WAITING, desired=None)
        watch = KeyWatch(
            self.client, self.layout.group_target(self.group), wait=1.0, min_interval=0
        )
        async for pair in watch:
            target = target_from_json(pair.value) if pair is not None else GroupTarget()
            pinned = target.model_for(self.node_id)
            want = pinned.name if pinned is not None else None
            if want is None or want == self.serving:
                continue
            await self._report(NodePhase.LOADING, desired=want)
            await asyncio.sleep(self.load_s)  # the simulated load time
            if want in self.broken:
                await self._report(
                    NodePhase.FAILED, desired=want, error=f"{want} failed validation"
                )
            else:
                self.serving = want
                self.history.append(want)
                await self._report(NodePhase.SERVING, desired=want)

    async def _report(self, phase: NodePhase, *, desired: str | None, error: str = "") -> None:
        state = NodeState(
            node_id=self.node_id,
            group=self.group,
            phase=phase,
            model=self.serving,
            sha256=digest(self.serving) if self.serving else None,
            desired=desired,
            last_error=error,
            endpoint=self.endpoint,
        )
        put = functools.partial(
            self.client.put, self.layout.node(self.group, self.node_id), record_json(state)
        )
        await run_blocking(put, name=f"sim-node-{self.node_id}")


@dataclass
class SimFleet:
    nodes: list[SimNode]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> SimFleet:
        self.tasks = [asyncio.create_task(node.run()) for node in self.nodes]
        return self

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def served(self) -> set[str | None]:
        return {node.serving for node in self.nodes}


@dataclass
class FakeMetricSource:
    """Each node did ``per_model[model]`` (default ``good``) with the model it reports."""

    good: Samples
    per_model: Mapping[str, Samples] = field(default_factory=dict)
    windows: list[tuple[float, float]] = field(default_factory=list)

    async def sample(
        self, group: str, fleet: FleetView, *, since: float, until: float
    ) -> NodeSamples:
        self.windows.append((since, until))
        by_digest = {digest(name): samples for name, samples in self.per_model.items()}
        return {
            node.node_id: {node.sha256: by_digest.get(node.sha256, self.good)}
            for node in fleet.nodes
            if node.sha256 is not None
        }
