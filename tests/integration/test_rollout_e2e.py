"""End to end: four real fleet nodes, the control plane as a subprocess, driven by ``ctl``.

Client threads send Detect to every node for the whole module; each scenario asserts that no
Detect failed while it ran, and checks the model each node ends on both in its Consul node state
and in a Detect reply. The scenarios build on each other, in file order: v1 then v2 (completed,
10 -> 50 -> 100 % with the default analysis), broken (a class vanishes: rolled back by the default
guardrails within its first hold), drift (rolled back by analysis), alt (refused by the canary's
class gate, rolled back), undo (back to v1), and v2 again with the control plane killed and
replaced during the hold.

Measured durations are appended to ``timings.txt`` in the module's tmp dir and printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import grpc
import pytest

from control_plane.core.spec import DEFAULT_HOLD_S, Thresholds
from inference_node.config import FleetConfig
from tests.integration.harness import RunningNode, encode, free_port
from tests.waits import wait_for
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.demo_models import DemoModels
from yolofleet.keys import KeyLayout
from yolofleet.records import NodePhase, NodeState, node_state_from_json
from yolofleet.synthetic import render_image
from yolofleet.v1 import control_pb2, control_pb2_grpc
from yolofleet.v1 import inference_pb2 as pb

GROUP = "zone-e2e"
NODE_IDS = ("n1", "n2", "n3", "n4")
LAYOUT = KeyLayout("yolofleet/")
PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]
LOAD_THREADS = 2
STARTUP_S = 60.0
SETTLE_S = 150.0
SERVING_LINE = re.compile(r"control plane serving grpc_port=(\d+) artifact_port=(\d+)")


class ControlPlaneProcess:
    """``python -m control_plane`` in a subprocess; stderr is drained into ``lines``."""

    def __init__(self, consul: str, artifact_dir: Path, artifact_port: int) -> None:
        command = [
            PYTHON, "-m", "control_plane", "--consul", consul, "--port", "0",
            "--interval", "0.5", "--artifact-dir", str(artifact_dir),
            "--artifact-port", str(artifact_port),
        ]  # fmt: skip
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()
        if not self._ready.wait(STARTUP_S):
            self.kill()
            raise AssertionError(f"control plane did not start: {self.lines[-20:]}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            match = SERVING_LINE.search(line)
            if match:
                self.port = int(match.group(1))
                self._ready.set()

    def kill(self) -> None:
        """SIGKILL: no drain, no lock release (a crash)."""
        self.proc.kill()
        self.proc.wait(30)
        self._close()

    def _close(self) -> None:
        self._drain.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close()


@dataclass
class Load:
    """Client threads sending Detect round-robin to every node; failures are recorded."""

    nodes: list[RunningNode]
    images: list[bytes]
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, count: int) -> None:
        for index in range(count):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, offset: int) -> None:
        # Each image goes to every node in turn, so every node sees the same traffic (the
        # same class mix) and canary and baseline differ only by their model.
        turn = offset * len(self.nodes) * 5
        while not self._stop.is_set():
            node = self.nodes[turn % len(self.nodes)]
            image = self.images[(turn // len(self.nodes)) % len(self.images)]
            turn += 1
            try:
                node.stub.Detect(pb.DetectRequest(image=image), timeout=30)
            except grpc.RpcError as exc:
                with self._lock:
                    self.failures.append(f"{node.address}: {exc.code().name} {exc.details()}")
            else:
                with self._lock:
                    self.ok += 1

    def mark(self) -> tuple[int, int]:
        with self._lock:
            return self.ok, len(self.failures)

    def check_since(self, mark: tuple[int, int]) -> None:
        with self._lock:
            ok, failed = self.ok - mark[0], self.failures[mark[1] :]
        assert not failed, f"{len(failed)} Detect(s) failed during the scenario: {failed[:5]}"
        assert ok > 0, "no Detect succeeded during the scenario: is the load running?"

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


@dataclass
class Env:
    consul: DevConsul
    client: ConsulClient
    nodes: dict[str, RunningNode]
    load: Load
    plane: ControlPlaneProcess
    artifact_dir: Path
    artifact_port: int
    timings: Path
    models: DemoModels
    digests: dict[str, str] = field(default_factory=dict)

    def ctl(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [PYTHON, "-m", "control_plane.ctl", "--control-plane", self.plane.address]
        return subprocess.run(
            [*command, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s
        )

    def ctl_ok(self, *args: str, timeout_s: float = 60.0) -> str:
        done = self.ctl(*args, timeout_s=timeout_s)
        assert done.returncode == 0, f"ctl {' '.join(args)} exited {done.returncode}: {done}"
        return done.stdout

    def status(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.ctl_ok("status", GROUP, "--output", "json"))
        return loaded

    def state(self, node_id: str) -> NodeState | None:
        pair = self.client.get(LAYOUT.node(GROUP, node_id))
        return node_state_from_json(pair.value) if pair else None

    def serving(self, node_id: str, sha256: str) -> bool:
        state = self.state(node_id)
        return state is not None and state.phase is NodePhase.SERVING and state.sha256 == sha256

    def assert_all_on(self, name: str, timeout_s: float = 60.0) -> None:
        """Every node reports ``name``'s digest in Consul, and a Detect reply carries it."""
        sha256 = self.digests[name]
        wait_for(
            lambda: all(self.serving(node_id, sha256) for node_id in self.nodes),
            timeout_s=timeout_s,
            what=f"every node to report serving {name}",
        )
        for node_id, node in self.nodes.items():
            reply = node.stub.Detect(pb.DetectRequest(image=self.load.images[0]), timeout=30)
            assert reply.model.sha256 == sha256, f"{node_id} answered with {reply.model}"

    def record(self, what: str, seconds: float) -> None:
        line = f"{what}: {seconds:.2f}s"
        with self.timings.open("a") as out:
            out.write(line + "\n")
        print(f"[timing] {line}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, models: DemoModels) -> Iterator[Env]:
    from tests.integration.conftest import node_config

    root = tmp_path_factory.mktemp("rollout-e2e")
    consul = DevConsul(data_dir=root / "consul").start()
    client = ConsulClient(ConsulSettings.from_address(consul.address))
    nodes: dict[str, RunningNode] = {}
    load: Load | None = None
    plane: ControlPlaneProcess | None = None
    try:
        for node_id in NODE_IDS:
            fleet = FleetConfig(
                group=GROUP, node_id=node_id, consul=consul.address, session_ttl_s=2.0
            )
            nodes[node_id] = RunningNode(node_config(root / node_id, fleet=fleet))
        artifact_port = free_port()
        plane = ControlPlaneProcess(consul.address, root / "artifacts", artifact_port)
        images = [encode(render_image(seed).image) for seed in range(40)]
        load = Load(nodes=list(nodes.values()), images=images)
        made = Env(
            consul=consul,
            client=client,
            nodes=nodes,
            load=load,
            plane=plane,
            artifact_dir=root / "artifacts",
            artifact_port=artifact_port,
            timings=root / "timings.txt",
            models=models,
        )
        yield made
        plane = made.plane
    finally:
        if load is not None:
            load.stop()
        if plane is not None:
            plane.stop()
        for node in nodes.values():
            node.stop()
        client.close()
        consul.stop()


def _wait_group_known(env: Env) -> None:
    def known() -> bool:
        done = env.ctl("nodes", GROUP, "--output", "json")
        return done.returncode == 0 and len(json.loads(done.stdout)) == len(NODE_IDS)

    wait_for(known, timeout_s=30, what=f"the control plane to list {len(NODE_IDS)} nodes")


def _watch(env: Env, timeout_s: float = SETTLE_S) -> subprocess.CompletedProcess[str]:
    return env.ctl(
        "status", GROUP, "--watch", "--timeout", str(timeout_s), timeout_s=timeout_s + 30
    )


def test_first_model_then_canary_rollout_to_v2_completes(env: Env) -> None:
    _wait_group_known(env)
    for name, path in (
        ("shapes-v1", env.models.v1),
        ("shapes-v2", env.models.v2),
        ("shapes-drift", env.models.drift),
        ("shapes-alt", env.models.alt),
        ("shapes-broken", env.models.broken),
    ):
        out = env.ctl_ok("models", "register", str(path), "--name", name)
        assert f"registered model {name}" in out
        shown = json.loads(env.ctl_ok("models", "show", name, "--output", "json"))
        env.digests[name] = shown["sha256"]

    env.ctl_ok("rollout", "shapes-v1", "--group", GROUP, "--canary", "25")
    watched = _watch(env)
    assert watched.returncode == 0, watched
    env.assert_all_on("shapes-v1")
    env.load.start(LOAD_THREADS)
    wait_for(lambda: env.load.mark()[0] >= 20, timeout_s=60, what="the client load to run")

    mark = env.load.mark()
    v2 = env.digests["shapes-v2"]
    started = time.monotonic()
    out = env.ctl_ok("rollout", "shapes-v2", "--group", GROUP, "--canary", "10", "--hold", "3")
    picked = re.search(r"10% canary on (\S+) \(revision", out)
    assert picked, out
    canaries = [picked.group(1)]  # one node: 10% of four, rounded up
    assert canaries[0] in NODE_IDS, out
    wait_for(
        lambda: all(env.serving(node_id, v2) for node_id in canaries),
        timeout_s=60,
        what=f"canary {canaries} to serve shapes-v2",
    )
    env.record("rollout command -> canary serving v2", time.monotonic() - started)

    watched = _watch(env)
    assert watched.returncode == 0, watched
    env.record("rollout of v2 (10,50,100, hold 3s) -> completed", time.monotonic() - started)
    status = env.status()
    assert status["phase"] == "completed"
    assert status["steps"] == [10, 50, 100]
    assert status["stable"] == "shapes-v2"
    env.assert_all_on("shapes-v2")
    env.load.check_since(mark)


def test_broken_model_is_rolled_back_by_the_default_guardrails_within_one_hold(env: Env) -> None:
    """Every default (--canary 10, which ctl requires, is the default first step): 60 s hold,
    default steps and thresholds. The broken model passes every node gate (it finds every
    shape) but calls triangles circles, so the triangle class vanishes from its output."""
    env.assert_all_on("shapes-v2")
    mark = env.load.mark()
    broken, v2 = env.digests["shapes-broken"], env.digests["shapes-v2"]
    out = env.ctl_ok("rollout", "shapes-broken", "--group", GROUP, "--canary", "10")
    picked = re.search(r"10% canary on (\S+) \(revision", out)
    assert picked, out
    canary = picked.group(1)
    wait_for(lambda: env.serving(canary, broken), timeout_s=60, what=f"{canary} to serve broken")
    live, live_unix = time.monotonic(), time.time()

    hold_s = DEFAULT_HOLD_S
    wait_for(
        lambda: env.serving(canary, v2),
        timeout_s=hold_s + SETTLE_S,
        what=f"{canary} to be rolled back to shapes-v2",
    )
    regression_s = time.monotonic() - live
    env.record("broken canary live -> rolled back, canary on v2 again", regression_s)
    assert regression_s < hold_s, f"rolled back after {regression_s:.1f}s, past the first hold"

    status = env.status()
    assert status["phase"] == "rolled_back", status
    assert status["stable"] == "shapes-v2"
    decided_unix = status["phase_since_unix"]
    assert isinstance(decided_unix, float)
    env.record("broken canary live -> rollback decided", decided_unix - live_unix)
    assert (status["steps"], status["hold_s"]) == ([10, 50, 100], hold_s)
    thresholds = status["thresholds"]
    assert isinstance(thresholds, dict)
    defaults = {f.name: float(getattr(Thresholds(), f.name)) for f in fields(Thresholds)}
    assert {name: float(thresholds[name]) for name in defaults} == defaults
    reason = str(status["reason"])
    assert "analysis failed 2 times in a row at step 1/3 (10%)" in reason, reason
    assert "class_share: most dropped class 'triangle'" in reason, reason
    checks = status["checks"]
    assert isinstance(checks, list)
    failed = {check["name"] for check in checks if check["outcome"] == "fail"}
    assert "class_share" in failed, checks
    assert failed <= {"class_share", "detections_per_image", "mean_confidence"}, checks
    env.assert_all_on("shapes-v2")
    print(f"[broken] {reason}")
    env.load.check_since(mark)


def test_drifting_model_is_rolled_back_by_analysis(env: Env) -> None:
    env.assert_all_on("shapes-v2")
    mark = env.load.mark()
    started = time.monotonic()
    env.ctl_ok(
        "rollout", "shapes-drift", "--group", GROUP, "--canary", "25", "--hold", "3",
        "--max-confidence-drift", "0.08", "--failures", "2",
    )  # fmt: skip

    watched = _watch(env)
    assert watched.returncode == 1, watched
    env.assert_all_on("shapes-v2")
    env.record("rollout of drift -> rolled back, every node on v2", time.monotonic() - started)

    status = env.status()
    assert status["phase"] == "rolled_back"
    assert status["stable"] == "shapes-v2"
    reason = str(status["reason"])
    assert "analysis failed 2 times in a row" in reason, reason
    thresholds = status["thresholds"]
    assert isinstance(thresholds, dict)
    assert (thresholds["confidence_drift"], thresholds["consecutive_failures"]) == (0.08, 2)
    checks = status["checks"]
    assert isinstance(checks, list)
    failed = [check for check in checks if check["outcome"] == "fail"]
    output_checks = {"class_mix", "detections_per_image", "mean_confidence"}
    assert failed, checks
    assert {check["name"] for check in failed} <= output_checks, failed
    for check in failed:
        assert check["name"] in reason
        assert int(check["canary_samples"]) >= 100  # the default min_samples
        assert int(check["baseline_samples"]) >= 100
        assert check["canary_value"] != check["baseline_value"], check
        assert check["threshold"] > 0
    print(f"[drift] {reason}")
    env.load.check_since(mark)


def test_model_with_other_classes_is_refused_by_canary_and_rolled_back(env: Env) -> None:
    env.assert_all_on("shapes-v2")
    mark = env.load.mark()
    started = time.monotonic()
    env.ctl_ok("rollout", "shapes-alt", "--group", GROUP, "--canary", "25", "--hold", "3")

    watched = _watch(env)
    assert watched.returncode == 1, watched
    env.assert_all_on("shapes-v2")
    env.record("rollout of alt -> refused, rolled back", time.monotonic() - started)

    status = env.status()
    assert status["phase"] == "rolled_back"
    reason = str(status["reason"])
    assert "failed to load shapes-alt" in reason, reason
    env.load.check_since(mark)


def test_undo_returns_every_node_to_the_previous_stable(env: Env) -> None:
    env.assert_all_on("shapes-v2")
    mark = env.load.mark()
    started = time.monotonic()
    out = env.ctl_ok("undo", GROUP, "--to", "shapes-v1")
    assert out.startswith(f"undo of {GROUP} to shapes-v1 applied: {GROUP}: rolled_back"), out

    env.assert_all_on("shapes-v1")
    env.record("undo -> every node on v1", time.monotonic() - started)
    status = env.status()
    assert status["stable"] == "shapes-v1"
    env.load.check_since(mark)


def test_rollout_continues_after_the_control_plane_is_killed_mid_hold(env: Env) -> None:
    env.assert_all_on("shapes-v1")
    mark = env.load.mark()
    started = time.monotonic()
    env.ctl_ok(
        "rollout", "shapes-v2", "--group", GROUP, "--canary", "25",
        "--steps", "25,100", "--hold", "5",
    )  # fmt: skip

    def holding_first_step() -> bool:
        with grpc.insecure_channel(env.plane.address) as channel:
            stub = control_pb2_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
            rollout = stub.GetRollout(control_pb2.GroupRequest(group=GROUP), timeout=10)
        return bool(rollout.phase == "holding" and rollout.step_index == 0)

    wait_for(holding_first_step, timeout_s=60, what="the rollout to hold its first step")
    env.plane.kill()
    killed = time.monotonic()
    env.plane = ControlPlaneProcess(env.consul.address, env.artifact_dir, env.artifact_port)
    env.record("control plane killed -> replacement serving", time.monotonic() - killed)

    watched = _watch(env)
    assert watched.returncode == 0, watched
    env.assert_all_on("shapes-v2")
    env.record(
        "rollout with control plane killed mid-hold -> completed", time.monotonic() - started
    )
    env.record("control plane killed -> rollout completed", time.monotonic() - killed)
    status = env.status()
    assert status["phase"] == "completed"
    assert status["stable"] == "shapes-v2"
    env.load.check_since(mark)
    assert os.path.exists(env.timings)
    print(env.timings.read_text())


def test_a_standby_replica_answers_reads_and_takes_over_from_a_killed_leader(env: Env) -> None:
    env.assert_all_on("shapes-v2")
    mark = env.load.mark()
    leader = env.plane
    standby = ControlPlaneProcess(env.consul.address, env.artifact_dir, free_port())
    try:
        env.ctl_ok(
            "rollout", "shapes-v1", "--group", GROUP, "--canary", "25",
            "--steps", "25,100", "--hold", "2", "--min-samples", "50",
            "--min-latency-samples", "100",
        )  # fmt: skip

        def standby_sees_the_hold() -> bool:
            with grpc.insecure_channel(standby.address) as channel:
                stub = control_pb2_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
                rollout = stub.GetRollout(control_pb2.GroupRequest(group=GROUP), timeout=10)
            return bool(rollout.phase == "holding" and rollout.canary == "shapes-v1")

        wait_for(standby_sees_the_hold, timeout_s=60, what="the standby to read the hold")
        assert not any("-> True" in line for line in standby.lines), "standby led too early"
        leader.kill()
        killed = time.monotonic()
        env.plane = standby  # ctl now talks to the standby; the fixture stops it at the end

        watched = _watch(env)
    except BaseException:
        standby.stop()
        raise

    assert watched.returncode == 0, watched
    env.record("leader killed -> standby completed the rollout", time.monotonic() - killed)
    took_over = [line for line in standby.lines if "False -> True: acquired the lock" in line]
    assert took_over, standby.lines[-20:]
    env.assert_all_on("shapes-v1")
    assert env.status()["stable"] == "shapes-v1"
    env.load.check_since(mark)
