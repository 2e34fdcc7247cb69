"""A hung artifact server cannot freeze a real node: on-demand models still load beside the
stuck slot load, a newer fleet target goes live within seconds, and stop() returns within
seconds (standalone and fleet nodes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from inference_node.config import FleetConfig
from inference_node.model import ModelRef
from inference_node.serving.catalog import StaticCatalog
from tests.integration.conftest import node_config
from tests.integration.harness import RunningNode, StderrLog, encode
from tests.integration.hostile_http import Hostile
from tests.waits import wait_for
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.demo_models import DemoModels
from yolofleet.keys import KeyLayout
from yolofleet.records import (
    GroupTarget,
    ModelPin,
    ModelRecord,
    NodePhase,
    node_state_from_json,
    to_json,
)
from yolofleet.registry import register_model
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb
from yolofleet.v1 import inference_pb2_grpc as pb_grpc

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


LISTENING = re.compile(r"node listening grpc=[\d.]+:(\d+)")
LIVE_WITHIN_S = 10.0
"""From the newer target's write to the node reporting it live: a load of the small demo model
(copy, build, warm-up, gates) takes 1-3 s here; the hung download must not add to it."""


def test_fleet_process_stuck_on_a_hung_download_applies_a_newer_target_within_seconds(
    tmp_path: Path,
    dev_consul: DevConsul,
    consul: ConsulClient,
    models: DemoModels,
    trickling: Hostile,
) -> None:
    first = register_model(consul, LAYOUT, path=models.v1, name="shapes-first", now=time.time())
    hung = register_model(
        consul, LAYOUT, path=models.drift, name="shapes-hung", uri=trickling.url, now=time.time()
    )
    newer = register_model(consul, LAYOUT, path=models.v2, name="shapes-newer", now=time.time())
    _target(consul, first, generation=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "inference_node", "--group", "zone-p", "--node-id", "p1",
         "--consul", dev_consul.address, "--session-ttl", "2", "--port", "0", "--device", "cpu",
         "--threads", "1", "--min-swap-interval", "0", "--drain-timeout", "2"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "YOLOFLEET_CACHE": str(tmp_path)},
    )  # fmt: skip
    log = StderrLog(process)
    try:
        port = int(log.wait_for_line(LISTENING, timeout_s=120).group(1))
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.InferenceStub(channel)  # type: ignore[no-untyped-call]
        wait_for(lambda: _serving(consul, "zone-p", "p1") == first.sha256, timeout_s=120,
                 what="the first target to go live")  # fmt: skip
        _target(consul, hung, generation=2)
        wait_for(
            lambda: _phase(consul, "zone-p", "p1") is NodePhase.LOADING and trickling.requests,
            timeout_s=30,
            what="the fleet node to be stuck loading from the hung server",
        )
        during = stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)

        _target(consul, newer, generation=3)
        written_at = time.monotonic()
        wait_for(lambda: _serving(consul, "zone-p", "p1") == newer.sha256, timeout_s=120,
                 what="the newer target to go live")  # fmt: skip
        live_after = time.monotonic() - written_at
        after = stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)
        channel.close()
        process.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        code = process.wait(30)
        stop_took = time.monotonic() - signalled_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()

    assert during.model.sha256 == first.sha256  # the old model served while the download hung
    assert live_after <= LIVE_WITHIN_S, "".join(log.log)
    assert after.model.sha256 == newer.sha256
    assert code == 0
    assert stop_took <= STOP_WITHIN_S, "".join(log.log)
    assert not trickling.release.is_set()  # the hung server never let go: the load was cancelled


def _target(consul: ConsulClient, record: ModelRecord, *, generation: int) -> None:
    target = GroupTarget(stable=ModelPin.of(record), generation=generation)
    assert consul.put(LAYOUT.group_target("zone-p"), to_json(target))


def _serving(consul: ConsulClient, group: str, node_id: str) -> str | None:
    pair = consul.get(LAYOUT.node(group, node_id))
    if pair is None:
        return None
    state = node_state_from_json(pair.value)
    return state.sha256 if state.phase is NodePhase.SERVING else None
