"""Rollout benchmark: how long the control plane takes to act, measured end to end.

Run with ``.venv/bin/python -m bench.rollout [--cycles N] [--nodes N]``. A dev Consul (in this
process), ``--nodes`` inference nodes and one control plane (subprocesses) serve a group under
client load from this process; every command goes through the real ``ctl``. Each cycle, from
``shapes-v1`` stable:

1. ``ctl rollout shapes-v2 --canary 25``: time until every canary node reports serving v2
   (the operator's command, ctl's start-up included); then ``promote --full`` and time until
   every node serves v2.
2. ``ctl rollout shapes-drift --canary 25 --hold 1`` (detections drift: a regressed model):
   time from the canary serving it (the regression starts reaching clients) until the rollout is
   rolled back and every node reports v2 again.
3. ``ctl undo --to shapes-v1``: time until every node serves v1.

Figures (median, min, max per measure, every sample, and failed Detects) go to
``bench/results/rollout-<timestamp>.json``. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from yolofleet.offline import ensure_offline

ensure_offline()

import grpc  # noqa: E402

from bench.load import jpeg  # noqa: E402
from yolofleet.consul import ConsulClient, ConsulSettings  # noqa: E402
from yolofleet.consul.devserver import DevConsul  # noqa: E402
from yolofleet.demo_models import ensure_models  # noqa: E402
from yolofleet.keys import KeyLayout  # noqa: E402
from yolofleet.records import NodePhase, NodeState, node_state_from_json  # noqa: E402
from yolofleet.v1 import inference_pb2 as pb  # noqa: E402
from yolofleet.v1 import inference_pb2_grpc as pb_grpc  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
GROUP = "bench"
LAYOUT = KeyLayout()
CONTROL_PLANE_LINE = re.compile(r"control plane serving grpc_port=(\d+)")
WAIT_S = 60.0
POLL_S = 0.05


class Fleet:
    """Dev Consul, node subprocesses and a control plane subprocess, stopped together."""

    def __init__(self, work: Path, node_count: int) -> None:
        self.consul = DevConsul().start()
        self.client = ConsulClient(ConsulSettings.from_address(self.consul.address))
        self.processes: list[subprocess.Popen[str]] = []
        self.node_ids = [f"n{i}" for i in range(1, node_count + 1)]
        for node_id in self.node_ids:
            self._spawn(
                [sys.executable, "-m", "inference_node", "--group", GROUP, "--node-id", node_id,
                 "--consul", self.consul.address, "--port", "0", "--threads", "1",
                 "--min-swap-interval", "0"],
                log=work / f"{node_id}.log",
                cache=work / node_id,  # each node fetches over HTTP into its own cache
            )  # fmt: skip
        plane = self._spawn(
            [sys.executable, "-m", "control_plane", "--consul", self.consul.address,
             "--port", "0", "--interval", "0.5", "--artifact-port", "0",
             "--artifact-dir", str(work / "artifacts")],
            log=None,
        )  # fmt: skip
        self.control_plane = f"127.0.0.1:{_port_from(plane, CONTROL_PLANE_LINE)}"

    def _spawn(
        self, command: list[str], *, log: Path | None, cache: Path | None = None
    ) -> subprocess.Popen[str]:
        err = log.open("w") if log is not None else subprocess.PIPE
        env = {**os.environ, "YOLOFLEET_CACHE": str(cache)} if cache is not None else None
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, text=True, env=env
        )
        self.processes.append(process)
        return process

    def states(self) -> dict[str, NodeState]:
        found = {}
        for node_id in self.node_ids:
            pair = self.client.get(LAYOUT.node(GROUP, node_id))
            if pair is not None:
                found[node_id] = node_state_from_json(pair.value)
        return found

    def serving(self, node_ids: list[str], sha256: str) -> bool:
        states = self.states()
        return all(
            (s := states.get(n)) is not None and s.phase is NodePhase.SERVING and s.sha256 == sha256
            for n in node_ids
        )

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "control_plane.ctl", "--control-plane", self.control_plane,
             *args],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"ctl {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def status(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.ctl("status", GROUP, "--output", "json"))
        return loaded

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.client.close()
        self.consul.stop()


class Load:
    """Threads sending Detect to every node in turn; counts successes and failures."""

    def __init__(self, endpoints: list[str], threads: int) -> None:
        self._images = [jpeg(seed) for seed in range(20)]
        self._channels = [grpc.insecure_channel(e) for e in endpoints]
        self._stubs = [pb_grpc.InferenceStub(c) for c in self._channels]  # type: ignore[no-untyped-call]
        self.ok, self.failed = 0, 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, offset: int) -> None:
        turn = offset
        while not self._stop.is_set():
            stub = self._stubs[turn % len(self._stubs)]
            image = self._images[(turn // len(self._stubs)) % len(self._images)]
            turn += 1
            try:
                stub.Detect(pb.DetectRequest(image=image), timeout=30)
            except grpc.RpcError:
                with self._lock:
                    self.failed += 1
            else:
                with self._lock:
                    self.ok += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        for channel in self._channels:
            channel.close()


def run(cycles: int, node_count: int, load_threads: int) -> dict[str, object]:
    models = ensure_models()
    work = Path(tempfile.mkdtemp(prefix="yolofleet-bench-rollout-"))
    fleet = Fleet(work, node_count)
    load: Load | None = None
    samples: dict[str, list[float]] = {
        "rollout_command_to_canary_serving_s": [],
        "promote_full_to_every_node_serving_s": [],
        "regression_serving_to_rollback_complete_s": [],
        "regression_command_to_rollback_complete_s": [],
        "undo_command_to_every_node_serving_s": [],
    }
    finished = False
    try:
        _until(lambda: len(fleet.states()) == node_count, "every node to report")
        digests = {}
        for name, path in (("v1", models.v1), ("v2", models.v2), ("drift", models.drift)):
            fleet.ctl("models", "register", str(path), "--name", f"shapes-{name}")
            shown = json.loads(fleet.ctl("models", "show", f"shapes-{name}", "--output", "json"))
            digests[name] = str(shown["sha256"])
        fleet.ctl("rollout", "shapes-v1", "--group", GROUP, "--canary", "100")
        _until(lambda: fleet.status()["phase"] == "completed", "the first deployment to end")
        load = Load([s.endpoint for s in fleet.states().values()], load_threads)
        for cycle in range(1, cycles + 1):
            print(f"cycle {cycle}/{cycles}", file=sys.stderr)
            _cycle(fleet, digests, samples)
        finished = True
    except TimeoutError:
        print(f"status: {fleet.status()}\nnodes: {fleet.states()}", file=sys.stderr)
        raise
    finally:
        if load is not None:
            load.stop()
        fleet.stop()
        refusals = _refusals(work)
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"node logs kept in {work}", file=sys.stderr)
    return {
        "cycles": cycles,
        "nodes": node_count,
        "load_threads": load_threads,
        "controller_interval_s": 0.5,
        "detects_ok": load.ok if load else 0,
        "detects_failed": load.failed if load else 0,
        "node_refusals": refusals,
        "figures": {name: _summary(values) for name, values in samples.items()},
        "samples": samples,
    }


def _cycle(fleet: Fleet, digests: dict[str, str], samples: dict[str, list[float]]) -> None:
    started = time.monotonic()
    out = fleet.ctl("rollout", "shapes-v2", "--group", GROUP, "--canary", "25")
    canaries = re.findall(r"n\d+", out.split(" canary on ", 1)[1])
    _until(lambda: fleet.serving(canaries, digests["v2"]), "the canary to serve v2")
    samples["rollout_command_to_canary_serving_s"].append(time.monotonic() - started)
    started = time.monotonic()
    fleet.ctl("promote", GROUP, "--full")
    _until(lambda: fleet.serving(fleet.node_ids, digests["v2"]), "v2 on every node")
    samples["promote_full_to_every_node_serving_s"].append(time.monotonic() - started)

    started = time.monotonic()
    out = fleet.ctl("rollout", "shapes-drift", "--group", GROUP, "--canary", "25", "--hold", "1")
    canaries = re.findall(r"n\d+", out.split(" canary on ", 1)[1])
    _until(lambda: fleet.serving(canaries, digests["drift"]), "the canary to serve drift")
    regressed = time.monotonic()

    def rolled_back() -> bool:
        return fleet.status()["phase"] == "rolled_back" and fleet.serving(
            fleet.node_ids, digests["v2"]
        )

    _until(rolled_back, "the drift rollout to be rolled back")
    samples["regression_serving_to_rollback_complete_s"].append(time.monotonic() - regressed)
    samples["regression_command_to_rollback_complete_s"].append(time.monotonic() - started)

    started = time.monotonic()
    fleet.ctl("undo", GROUP, "--to", "shapes-v1")
    _until(lambda: fleet.serving(fleet.node_ids, digests["v1"]), "v1 on every node")
    samples["undo_command_to_every_node_serving_s"].append(time.monotonic() - started)


def _refusals(work: Path) -> list[str]:
    """Every "refused" line the nodes logged (e.g. a latency probe on the busy machine)."""
    lines = []
    for log in sorted(work.glob("n*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "refused, old model keeps serving" in line:
                lines.append(f"{log.stem}: {line.split(' refused, ', 1)[1][:200]}")
    return lines


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {WAIT_S:g}s waiting for {what}")
        time.sleep(POLL_S)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def _port_from(process: subprocess.Popen[str], line: re.Pattern[str]) -> int:
    assert process.stderr is not None
    for text in process.stderr:
        match = line.search(text)
        if match:
            threading.Thread(target=_drain, args=(process,), daemon=True).start()
            return int(match.group(1))
    raise RuntimeError(f"process exited before logging {line.pattern!r}")


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stderr is not None
    for _ in process.stderr:
        pass


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.rollout", description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=5, help="rollout cycles to time (default 5)")
    p.add_argument("--nodes", type=int, default=4, help="inference nodes (default 4)")
    p.add_argument("--load-threads", type=int, default=2, help="Detect client threads (2)")
    args = p.parse_args()
    if args.cycles < 1 or args.nodes < 2 or args.load_threads < 1:
        p.error("--cycles and --load-threads must be at least 1, --nodes at least 2")
    figures = run(args.cycles, args.nodes, args.load_threads)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"rollout-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures["figures"], indent=2))
    print(f"Detects: {figures['detects_ok']} ok, {figures['detects_failed']} failed")
    print(f"node refusals: {figures['node_refusals']}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
