"""Pinned models over the dev Consul: resolved once at request time, never per tick; documents
and targets from before pins are migrated once."""

from __future__ import annotations

import json

from control_plane.consul.store import ConsulStore
from control_plane.controller import Controller
from control_plane.core.state import Phase
from tests.integration.control_plane.simnodes import FakeMetricSource, digest, register
from tests.unit.control_plane.builders import GROUP, NEW, OLD, samples
from yolofleet.consul import ConsulClient
from yolofleet.keys import KeyLayout
from yolofleet.records import ModelRecord, NodePhase, NodeState, target_from_json, to_json


class CountingStore(ConsulStore):
    """A ``ConsulStore`` that counts registry reads."""

    def __init__(self, client: ConsulClient, layout: KeyLayout) -> None:
        super().__init__(client, layout)
        self.model_reads: list[str] = []

    async def get_model(self, name: str) -> ModelRecord:
        self.model_reads.append(name)
        return await super().get_model(name)


def serve(client: ConsulClient, layout: KeyLayout, model: str | None, *node_ids: str) -> None:
    """The nodes report serving ``model`` (None: waiting for their first one)."""
    for node_id in node_ids:
        state = NodeState(
            node_id=node_id,
            group=GROUP,
            phase=NodePhase.SERVING if model else NodePhase.WAITING,
            model=model,
            sha256=digest(model) if model else None,
            desired=model,
        )
        client.put(layout.node(GROUP, node_id), to_json(state))


async def test_ticks_never_read_the_registry(client: ConsulClient, layout: KeyLayout) -> None:
    register(client, layout, OLD, NEW)
    store = CountingStore(client, layout)
    controller = Controller(store, FakeMetricSource(good=samples(500)))
    serve(client, layout, None, "n0", "n1")
    await controller.start_rollout(GROUP, OLD, steps="100")
    requested = list(store.model_reads)
    await controller.tick(GROUP)
    serve(client, layout, OLD, "n0", "n1")

    for _ in range(5):
        state = await controller.tick(GROUP)

    assert requested == [OLD]
    assert store.model_reads == [OLD]  # no tick looked a model up
    assert state.phase is Phase.COMPLETED
    assert state.pin(OLD) is not None
    target = await store.read_target(GROUP)
    assert target is not None
    assert target.stable == state.pin(OLD)


async def test_a_document_and_target_from_before_pins_are_migrated_once(
    client: ConsulClient, layout: KeyLayout
) -> None:
    register(client, layout, OLD, NEW)
    store = CountingStore(client, layout)
    controller = Controller(store, FakeMetricSource(good=samples(500)))
    serve(client, layout, None, "n0", "n1")
    await controller.start_rollout(GROUP, OLD, steps="100")
    await controller.tick(GROUP)
    serve(client, layout, OLD, "n0", "n1")
    await controller.tick(GROUP)
    body = json.loads(client.get(layout.rollout(GROUP)).value)  # type: ignore[union-attr]
    del body["state"]["pins"], body["pending"], body["outcomes"]
    body["format"] = 1
    client.put(layout.rollout(GROUP), json.dumps(body).encode())
    client.put(layout.group_target(GROUP), b'{"stable": "shapes-v1", "generation": 4}')
    store.model_reads.clear()

    first = await controller.tick(GROUP)
    second = await controller.tick(GROUP)

    assert store.model_reads == [OLD]  # resolved once, then kept in the document
    assert first.pin(OLD) is not None
    assert second.pin(OLD) == first.pin(OLD)
    target = target_from_json(client.get(layout.group_target(GROUP)).value)  # type: ignore[union-attr]
    assert (target.stable, target.generation) == (first.pin(OLD), 5)
