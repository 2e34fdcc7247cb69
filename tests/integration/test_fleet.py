"""Three real nodes driven by their group's target in the dev Consul, over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from control_plane.artifact_server import ArtifactServer
from inference_node.config import FleetConfig
from inference_node.link.fleet import ConsulCatalog
from inference_node.model import ModelRef
from tests.integration.harness import RunningNode, encode, free_port
from tests.waits import wait_for
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.demo_models import DemoModels
from yolofleet.digests import file_sha256
from yolofleet.keys import KeyLayout
from yolofleet.records import (
    GroupTarget,
    ModelPin,
    NodePhase,
    NodeState,
    node_state_from_json,
    to_json,
)
from yolofleet.registry import get_model, register_model
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

GROUP = "zone-a"
NO_STATE = NodeState(node_id="", group="", phase=NodePhase.WAITING)
LAYOUT = KeyLayout("yolofleet/")
IMAGE = encode(render_image(31).image)


@pytest.fixture(scope="module")
def consul_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevConsul]:
    server = DevConsul(data_dir=tmp_path_factory.mktemp("consul")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(consul_server: DevConsul) -> Iterator[ConsulClient]:
    made = ConsulClient(ConsulSettings.from_address(consul_server.address))
    yield made
    made.close()


@pytest.fixture(scope="module")
def registered(client: ConsulClient, models: DemoModels) -> dict[str, str]:
    """Registry names of the demo models, mapped to their digests."""
    names = {"shapes-v1": models.v1, "shapes-v2": models.v2}
    return {
        name: register_model(client, LAYOUT, path=path, name=name, now=time.time()).sha256
        for name, path in names.items()
    }


def registered_uri(client: ConsulClient, name: str) -> str:
    return get_model(client, LAYOUT, name).uri


def pin(client: ConsulClient, name: str) -> ModelPin:
    """The pin a control plane resolves ``name`` to when a rollout is requested."""
    return ModelPin.of(get_model(client, LAYOUT, name))


def set_target(client: ConsulClient, target: GroupTarget) -> None:
    assert client.put(LAYOUT.group_target(GROUP), to_json(target))


def node_state(client: ConsulClient, node_id: str) -> NodeState | None:
    pair = client.get(LAYOUT.node(GROUP, node_id))
    return node_state_from_json(pair.value) if pair else None


def wait_serving(client: ConsulClient, ids: list[str], sha256: str, timeout_s: float = 90) -> None:
    def all_serving() -> bool:
        states = [node_state(client, node_id) for node_id in ids]
        return all(s and s.phase is NodePhase.SERVING and s.sha256 == sha256 for s in states)

    wait_for(all_serving, timeout_s=timeout_s, what=f"{ids} to report serving {sha256[:12]}")


@pytest.fixture(scope="module")
def fleet(
    consul_server: DevConsul, client: ConsulClient, registered: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, RunningNode]]:  # fmt: skip
    from tests.integration.conftest import node_config

    nodes = {}
    for node_id in ("n1", "n2", "n3"):
        fleet_config = FleetConfig(
            group=GROUP, node_id=node_id, consul=consul_server.address, session_ttl_s=2.0
        )
        config = node_config(tmp_path_factory.mktemp(node_id), fleet=fleet_config)
        nodes[node_id] = RunningNode(config)
    yield nodes
    for node in nodes.values():
        node.stop()


def test_nodes_wait_without_target_then_follow_stable_and_canary(
    client: ConsulClient, registered: dict[str, str], fleet: dict[str, RunningNode]
) -> None:
    wait_for(
        lambda: all(
            (s := node_state(client, i)) is not None and s.phase is NodePhase.WAITING for i in fleet
        ),
        timeout_s=30,
        what="every node to report waiting",
    )

    set_target(client, GroupTarget(stable=pin(client, "shapes-v1"), generation=1))
    wait_serving(client, list(fleet), registered["shapes-v1"])
    set_target(
        client,
        GroupTarget(
            stable=pin(client, "shapes-v1"),
            canary=pin(client, "shapes-v2"),
            canary_nodes=("n2",),
            generation=2,
        ),
    )
    wait_serving(client, ["n2"], registered["shapes-v2"])

    replies = {
        i: n.stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30) for i, n in fleet.items()
    }
    assert replies["n2"].model.sha256 == registered["shapes-v2"]
    assert replies["n1"].model.sha256 == registered["shapes-v1"]
    assert replies["n3"].model.sha256 == registered["shapes-v1"]
    state = node_state(client, "n1")
    assert state is not None
    assert state.endpoint == fleet["n1"].address


def test_target_with_bad_digest_is_reported_failed_and_old_model_serves(
    client: ConsulClient, registered: dict[str, str], fleet: dict[str, RunningNode],
    models: DemoModels,
) -> None:  # fmt: skip
    set_target(client, GroupTarget(stable=pin(client, "shapes-v1"), generation=3))
    wait_serving(client, list(fleet), registered["shapes-v1"])
    lying = replace(pin(client, "shapes-v2"), name="shapes-lying", sha256="f" * 64)

    set_target(client, GroupTarget(stable=lying, generation=4))

    wait_for(
        lambda: all(
            (s := node_state(client, i)) is not None and s.phase is NodePhase.FAILED for i in fleet
        ),
        timeout_s=60,
        what="every node to report the digest failure",
    )
    state = node_state(client, "n3")
    assert state is not None
    assert "sha256" in state.last_error
    assert state.sha256 == registered["shapes-v1"]
    reply = fleet["n3"].stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)
    assert reply.model.sha256 == registered["shapes-v1"]


def test_malformed_target_and_target_without_pins_are_reported_and_old_model_serves(
    client: ConsulClient, registered: dict[str, str], fleet: dict[str, RunningNode]
) -> None:
    set_target(client, GroupTarget(stable=pin(client, "shapes-v1"), generation=10))
    wait_serving(client, list(fleet), registered["shapes-v1"])

    assert client.put(LAYOUT.group_target(GROUP), b"{not json")
    wait_for(
        lambda: "not valid JSON" in ((node_state(client, "n1") or NO_STATE).last_error),
        timeout_s=30,
        what="n1 to report the malformed target",
    )
    # written by a control plane from before pins: a model name the node must not look up
    assert client.put(LAYOUT.group_target(GROUP), b'{"stable": "shapes-v2", "generation": 11}')
    wait_for(
        lambda: "without a pin" in ((node_state(client, "n2") or NO_STATE).last_error),
        timeout_s=30,
        what="n2 to report the target without pins",
    )

    state = node_state(client, "n2")
    assert state is not None
    assert state.phase is NodePhase.FAILED
    assert state.sha256 == registered["shapes-v1"]
    reply = fleet["n2"].stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)
    assert reply.model.sha256 == registered["shapes-v1"]


def test_registered_model_is_loaded_on_demand_through_consul_catalog(
    client: ConsulClient, registered: dict[str, str], tmp_path: Path
) -> None:
    from tests.integration.conftest import node_config

    catalog = ConsulCatalog(client, LAYOUT)
    node = RunningNode(
        node_config(tmp_path, allowed_models=frozenset({"shapes-v2"})), catalog=catalog
    )
    try:
        node.swap_to(
            ModelRef(name="shapes-v1", version="v1", uri=registered_uri(client, "shapes-v1"),
                     sha256=registered["shapes-v1"])
        )  # fmt: skip

        reply = node.stub.Detect(pb.DetectRequest(image=IMAGE, model="shapes-v2"), timeout=60)
    finally:
        node.stop()

    assert reply.model.sha256 == registered["shapes-v2"]


def test_consul_outage_fails_no_detect_and_later_target_is_picked_up(
    consul_server: DevConsul, client: ConsulClient, registered: dict[str, str],
    fleet: dict[str, RunningNode],
) -> None:  # fmt: skip
    set_target(client, GroupTarget(stable=pin(client, "shapes-v1"), generation=5))
    wait_serving(client, list(fleet), registered["shapes-v1"])
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            for node in fleet.values():
                try:
                    node.stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)
                    served[0] += 1
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")

    senders = [threading.Thread(target=send) for _ in range(2)]
    for sender in senders:
        sender.start()
    try:
        consul_server.stop()
        during = served[0]
        wait_for(lambda: served[0] > during + 20, timeout_s=60, what="Detects during the outage")
        consul_server.start()
        set_target(client, GroupTarget(stable=pin(client, "shapes-v2"), generation=6))
        wait_serving(client, list(fleet), registered["shapes-v2"])
    finally:
        stop.set()
        for sender in senders:
            sender.join(60)

    assert failures == []


def test_killed_node_disappears_within_two_ttls(
    consul_server: DevConsul, client: ConsulClient, registered: dict[str, str], tmp_path: Path
) -> None:
    ttl_s = 2.0
    set_target(client, GroupTarget(stable=pin(client, "shapes-v1"), generation=7))
    process = subprocess.Popen(
        [sys.executable, "-m", "inference_node", "--group", GROUP, "--node-id", "doomed",
         "--consul", consul_server.address, "--session-ttl", str(ttl_s), "--port", "0",
         "--device", "cpu", "--threads", "1", "--min-swap-interval", "0"],
        env={**os.environ, "YOLOFLEET_CACHE": str(tmp_path)}, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_serving(client, ["doomed"], registered["shapes-v1"], timeout_s=120)

        process.send_signal(signal.SIGKILL)
        process.wait(30)
        killed_at = time.monotonic()
        wait_for(
            lambda: node_state(client, "doomed") is None,
            timeout_s=2 * ttl_s + 2,
            what="the killed node's state key to expire",
        )
        gone_after = time.monotonic() - killed_at
    finally:
        if process.poll() is None:
            process.kill()

    assert gone_after <= 2 * ttl_s


def test_a_failed_fetch_is_retried_and_reported_serving_without_a_new_target(
    client: ConsulClient,
    registered: dict[str, str],
    fleet: dict[str, RunningNode],
    models: DemoModels,
    tmp_path: Path,
) -> None:
    set_target(client, GroupTarget(stable=pin(client, "shapes-v1"), generation=30))
    wait_serving(client, list(fleet), registered["shapes-v1"])
    port = free_port()
    late = register_model(
        client, LAYOUT, path=models.drift, name="shapes-late", now=time.time(),
        uri=f"http://127.0.0.1:{port}/artifacts/{file_sha256(models.drift)}",
    )  # fmt: skip

    set_target(client, GroupTarget(stable=ModelPin.of(late), generation=31))
    wait_for(
        lambda: all(
            (s := node_state(client, i)) is not None
            and s.phase is NodePhase.FAILED
            and "trying again in" in s.last_error
            for i in fleet
        ),
        timeout_s=30,
        what="every node to report the failed fetch and its retry",
    )
    for node in fleet.values():  # the old model keeps answering meanwhile
        reply = node.stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)
        assert reply.model.sha256 == registered["shapes-v1"]
    (tmp_path / f"{late.sha256}.pt").write_bytes(models.drift.read_bytes())
    with ArtifactServer(tmp_path, "127.0.0.1", port):
        wait_serving(client, list(fleet), late.sha256, timeout_s=60)
