"""A hung artifact server cannot freeze a real node: on-demand models still load beside the
stuck slot load, and stop() returns within seconds (standalone and fleet nodes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from inference_node.config import FleetConfig
from inference_node.model import ModelRef
from inference_node.serving.catalog import StaticCatalog
from tests.integration.conftest import node_config
from tests.integration.harness import RunningNode, encode
from tests.integration.hostile_http import Hostile
from tests.waits import wait_for
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.demo_models import DemoModels
from yolofleet.keys import KeyLayout
from yolofleet.records import GroupTarget, ModelPin, NodePhase, node_state_from_json, to_json
from yolofleet.registry import register_model
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

IMAGE = encode(render_image(7).image)
STOP_WITHIN_S = 8.0
"""stop() drains (nothing queued), stops gRPC with a 1 s grace and waits <= 5 s for threads."""
LAYOUT = KeyLayout("yolofleet/")


@pytest.fixture
def trickling() -> Iterator[Hostile]:
    with Hostile("trickle_body").running() as server:
        yield server


def _stop_timed(node: RunningNode) -> float:
    started = time.monotonic()
    node.stop()
    return time.monotonic() - started


def test_on_demand_model_loads_while_the_slot_load_hangs_and_stop_is_prompt(
    tmp_path: Path, refs: dict[str, ModelRef], trickling: Hostile
) -> None:
    catalog = StaticCatalog({"shapes-v2": replace(refs["v2"], name="shapes-v2")})
    config = node_config(tmp_path, allowed_models=frozenset({"shapes-v2"}))
    node = RunningNode(config, catalog=catalog)
    stopped = False
    try:
        node.swap_to(refs["v1"])
        node.request_swap(replace(refs["drift"], uri=trickling.url))
        wait_for(lambda: trickling.requests == 1, timeout_s=30, what="the hung download")

        reply = node.stub.Detect(pb.DetectRequest(image=IMAGE, model="shapes-v2"), timeout=60)

        assert reply.model.name == "shapes-v2"
        assert node.status().loading_model.name == "shapes"  # the slot's download is still stuck
        assert node.stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30).model.name == "shapes"
        took = _stop_timed(node)
        stopped = True
    finally:
        if not stopped:
            node.stop()

    assert took <= STOP_WITHIN_S
    assert not trickling.release.is_set()  # the server never let go: stop did not wait for it


@pytest.fixture
def dev_consul(tmp_path: Path) -> Iterator[DevConsul]:
    server = DevConsul(data_dir=tmp_path / "consul").start()
    yield server
    server.stop()


@pytest.fixture
def consul(dev_consul: DevConsul) -> Iterator[ConsulClient]:
    client = ConsulClient(ConsulSettings.from_address(dev_consul.address))
    yield client
    client.close()


def test_fleet_node_stuck_on_a_hung_artifact_server_stops_within_seconds(
    tmp_path: Path,
    dev_consul: DevConsul,
    consul: ConsulClient,
    models: DemoModels,
    trickling: Hostile,
) -> None:
    record = register_model(
        consul, LAYOUT, path=models.v1, name="shapes-hung", uri=trickling.url, now=time.time()
    )
    assert consul.put(
        LAYOUT.group_target("zone-h"), to_json(GroupTarget(stable=ModelPin.of(record)))
    )
    fleet = FleetConfig(group="zone-h", node_id="h1", consul=dev_consul.address, session_ttl_s=2.0)
    node = RunningNode(node_config(tmp_path, fleet=fleet))
    stopped = False
    try:
        wait_for(
            lambda: _phase(consul, "zone-h", "h1") is NodePhase.LOADING and trickling.requests,
            timeout_s=30,
            what="the fleet node to be stuck loading from the hung server",
        )
        took = _stop_timed(node)
        stopped = True
    finally:
        if not stopped:
            node.stop()

    assert took <= STOP_WITHIN_S


def _phase(consul: ConsulClient, group: str, node_id: str) -> NodePhase | None:
    pair = consul.get(LAYOUT.node(group, node_id))
    return node_state_from_json(pair.value).phase if pair else None
