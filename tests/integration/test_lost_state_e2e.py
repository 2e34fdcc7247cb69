"""End to end: Consul wiped and restarted mid-rollout; nothing moves until ``ctl adopt``.

Three real fleet nodes (in process), the control plane as a subprocess, the dev Consul with a
data directory, driven by ``ctl``. A canary rollout of v2 is holding on one node when the dev
Consul is stopped, its data wiped and restarted on the same port. The nodes keep serving and
re-report; the models are registered again; ``ctl rollout`` is refused with the lost reason and
``ctl status`` shows it, while no node changes the digest it serves; ``ctl adopt`` makes v1
(what most nodes serve) stable, the stranded canary returns to it, and a rollout is accepted.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from inference_node.config import FleetConfig
from tests.integration.harness import RunningNode, encode, free_port
from tests.integration.test_rollout_e2e import PYTHON, REPO, ControlPlaneProcess
from tests.waits import wait_for
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.demo_models import DemoModels
from yolofleet.keys import KeyLayout
from yolofleet.records import NodePhase, node_state_from_json
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

GROUP = "zone-lost"
NODE_IDS = ("n1", "n2", "n3")
LAYOUT = KeyLayout("yolofleet/")
EXIT_REFUSED = 3


@dataclass
class Env:
    consul: DevConsul
    client: ConsulClient
    nodes: dict[str, RunningNode]
    plane: ControlPlaneProcess
    models: DemoModels
    image: bytes

    def ctl(self, *args: str, timeout_s: float = 90.0) -> subprocess.CompletedProcess[str]:
        command = [PYTHON, "-m", "control_plane.ctl", "--control-plane", self.plane.address]
        return subprocess.run(
            [*command, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s
        )

    def ctl_ok(self, *args: str) -> str:
        done = self.ctl(*args)
        assert done.returncode == 0, f"ctl {' '.join(args)} exited {done.returncode}: {done}"
        return done.stdout

    def register(self) -> dict[str, str]:
        digests = {}
        for name, path in (("shapes-v1", self.models.v1), ("shapes-v2", self.models.v2)):
            self.ctl_ok("models", "register", str(path), "--name", name)
            shown = json.loads(self.ctl_ok("models", "show", name, "--output", "json"))
            digests[name] = str(shown["sha256"])
        return digests

    def reported(self) -> dict[str, str | None]:
        """Each node's digest as it reports it in Consul (None: no report, or not serving)."""
        found: dict[str, str | None] = {}
        for node_id in self.nodes:
            pair = self.client.get(LAYOUT.node(GROUP, node_id))
            state = node_state_from_json(pair.value) if pair else None
            serving = state is not None and state.phase is not NodePhase.DRAINING
            found[node_id] = state.sha256 if state is not None and serving else None
        return found

    def answered(self) -> dict[str, str]:
        """Each node's digest as a Detect reply carries it."""
        return {
            node_id: node.stub.Detect(pb.DetectRequest(image=self.image), timeout=60).model.sha256
            for node_id, node in self.nodes.items()
        }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, models: DemoModels) -> Iterator[Env]:
    from tests.integration.conftest import node_config

    root = tmp_path_factory.mktemp("lost-state-e2e")
    consul = DevConsul(data_dir=root / "consul").start()
    client = ConsulClient(ConsulSettings.from_address(consul.address))
    nodes: dict[str, RunningNode] = {}
    plane: ControlPlaneProcess | None = None
    try:
        for node_id in NODE_IDS:
            fleet = FleetConfig(
                group=GROUP, node_id=node_id, consul=consul.address, session_ttl_s=2.0
            )
            nodes[node_id] = RunningNode(node_config(root / node_id, fleet=fleet))
        plane = ControlPlaneProcess(consul.address, root / "artifacts", free_port())
        image = encode(render_image(0).image)
        yield Env(consul, client, nodes, plane, models, image)
    finally:
        if plane is not None:
            plane.stop()
        for node in nodes.values():
            node.stop()
        client.close()
        consul.stop()


def test_wiped_consul_mid_rollout_refuses_rollouts_until_adopt(env: Env) -> None:
    wait_for(
        lambda: all(env.client.get(LAYOUT.node(GROUP, n)) for n in NODE_IDS),
        timeout_s=60,
        what="every node to report",
    )
    digests = env.register()
    v1, v2 = digests["shapes-v1"], digests["shapes-v2"]
    env.ctl_ok("rollout", "shapes-v1", "--group", GROUP, "--canary", "100", "--wait", "60")
    env.ctl_ok("status", GROUP, "--watch", "--timeout", "180")
    assert set(env.reported().values()) == {v1}
    out = env.ctl_ok(
        "rollout", "shapes-v2", "--group", GROUP, "--canary", "25",
        "--steps", "25,100", "--hold", "600", "--wait", "60",
    )  # fmt: skip
    wait_for(
        lambda: sorted(map(str, env.reported().values())) == sorted([v1, v1, v2]),
        timeout_s=180,
        what="one canary to serve v2",
    )
    before = env.reported()
    (canary,) = [n for n, sha in before.items() if sha == v2]
    assert f"on {canary}" in out

    env.consul.restart(wipe=True)  # stopped, data wiped, started on the same port

    wait_for(lambda: env.reported() == before, timeout_s=60, what="the nodes to report again")
    unregistered = env.ctl("rollout", "shapes-v2", "--group", GROUP, "--canary", "25")
    assert unregistered.returncode == EXIT_REFUSED, unregistered
    assert env.register() == digests
    refused = env.ctl("rollout", "shapes-v2", "--group", GROUP, "--canary", "25")
    status = env.ctl_ok("status", GROUP)

    assert refused.returncode == EXIT_REFUSED, refused
    assert "no rollout document explains them" in refused.stderr
    assert f"run `ctl adopt {GROUP}` before any rollout" in refused.stderr
    (lost,) = [line.split(None, 1)[1] for line in status.splitlines() if line.startswith("LOST ")]
    assert lost.startswith(f"group {GROUP}: has 2 nodes serving shapes-v1")
    assert env.reported() == before
    assert env.answered() == before

    adopted = env.ctl_ok("adopt", GROUP, "--wait", "60")

    assert f"adopted group {GROUP} after lost state: stable shapes-v1" in adopted
    assert f"stranded canaries back to shapes-v1: {canary} (shapes-v2)" in adopted
    wait_for(lambda: set(env.reported().values()) == {v1}, timeout_s=180, what="canary back")
    assert set(env.answered().values()) == {v1}
    history = env.ctl_ok("history", GROUP)
    assert "adopted" in history
    status = json.loads(env.ctl_ok("status", GROUP, "--output", "json"))
    assert (status["phase"], status.get("lost", "")) == ("adopted", "")

    accepted = env.ctl_ok(
        "rollout", "shapes-v2", "--group", GROUP, "--canary", "25", "--wait", "60"
    )

    assert "25% canary on" in accepted
