"""Bad records in the dev Consul (over HTTP) never fail a listing: the service returns the valid
ones and the invalid ones apart with their reason, and ``ctl`` (a real subprocess) prints both.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from control_plane.app import rollout_watches
from control_plane.consul.store import ConsulStore
from control_plane.controller import Controller
from control_plane.service.servicer import ControlPlaneService
from tests.integration.control_plane.simnodes import FakeMetricSource, register
from tests.unit.control_plane.builders import OLD, samples
from yolofleet.consul import ConsulClient
from yolofleet.keys import KeyLayout
from yolofleet.records import NodePhase, NodeState, to_json
from yolofleet.v1 import control_pb2 as pb
from yolofleet.v1 import control_pb2_grpc as pb_grpc

GROUP = "zone-a"
BAD_MODEL = "bad-classes"


@dataclass
class Plane:
    stub: pb_grpc.ControlPlaneStub
    address: str
    layout: KeyLayout


@pytest.fixture
async def plane(client: ConsulClient, layout: KeyLayout) -> AsyncIterator[Plane]:
    store = ConsulStore(client, layout)
    controller = Controller(store, FakeMetricSource(good=samples(500)))
    service = ControlPlaneService(
        store=store, controller=controller, watches=rollout_watches(client, store, controller)
    )
    server = grpc.aio.server()
    pb_grpc.add_ControlPlaneServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield Plane(pb_grpc.ControlPlaneStub(channel), f"127.0.0.1:{port}", layout)  # type: ignore[no-untyped-call]
    await channel.close()
    await server.stop(0)


@pytest.fixture
def bad_records(client: ConsulClient, layout: KeyLayout) -> tuple[str, str]:
    """A good node and a good model, next to a node record whose ``node_id`` is 7 and a model
    record whose ``class_names`` are integers; returns the two bad keys.
    """
    good = NodeState(node_id="n1", group=GROUP, phase=NodePhase.WAITING)
    client.put(layout.node(GROUP, "n1"), to_json(good))
    bad_node = layout.node(GROUP, "n2")
    client.put(bad_node, json.dumps({"node_id": 7}).encode())
    register(client, layout, OLD)
    pair = client.get(layout.model(OLD))
    assert pair is not None
    record = json.loads(pair.value)
    record.update(name=BAD_MODEL, class_names=[0, 1])
    bad_model = layout.model(BAD_MODEL)
    client.put(bad_model, json.dumps(record).encode())
    return bad_node, bad_model


async def test_list_nodes_returns_valid_nodes_and_the_invalid_record_with_its_reason(
    plane: Plane, bad_records: tuple[str, str]
) -> None:
    bad_node, _ = bad_records

    reply = await plane.stub.ListNodes(pb.ListNodesRequest())

    assert [n.node_id for n in reply.nodes] == ["n1"]
    assert [r.key for r in reply.invalid] == [bad_node]
    assert "node_id" in reply.invalid[0].reason


async def test_list_models_returns_valid_models_and_the_invalid_record_with_its_reason(
    plane: Plane, bad_records: tuple[str, str]
) -> None:
    _, bad_model = bad_records

    reply = await plane.stub.ListModels(pb.ListModelsRequest())

    assert [m.name for m in reply.models] == [OLD]
    assert [r.key for r in reply.invalid] == [bad_model]
    assert "class_names" in reply.invalid[0].reason


async def test_ctl_prints_valid_records_and_one_line_per_invalid_one(
    plane: Plane, bad_records: tuple[str, str]
) -> None:
    bad_node, bad_model = bad_records

    nodes = await ctl(plane, "nodes")
    models = await ctl(plane, "models", "list")

    assert nodes.splitlines()[1].split()[:2] == [GROUP, "n1"]
    [node_line] = [line for line in nodes.splitlines() if line.startswith("invalid record")]
    assert node_line.startswith(f"invalid record {bad_node}: ")
    assert "node_id" in node_line
    assert models.splitlines()[1].split()[0] == OLD
    [model_line] = [line for line in models.splitlines() if line.startswith("invalid record")]
    assert model_line.startswith(f"invalid record {bad_model}: ")
    assert "class_names" in model_line


async def ctl(plane: Plane, *args: str) -> str:
    """``python -m control_plane.ctl ARGS`` against the plane; its stdout (exit code 0)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "control_plane.ctl",
        "--control-plane",
        plane.address,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()
