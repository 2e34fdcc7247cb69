"""`ctl status --watch` (a real subprocess) across a real control-plane subprocess killed and
started again on the same port, over the dev Consul.

The test holds the leader lock itself, so the control plane only serves reads and the test
writes each rollout state; the watch must print every phase once and exit with the code of the
phase it settles in.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from control_plane.consul.store import ConsulStore
from control_plane.core.document import RolloutDoc
from control_plane.core.spec import build_spec
from control_plane.core.state import GroupState, Phase
from tests.integration.harness import free_port
from tests.waits import wait_for
from yolofleet.consul import ConsulClient
from yolofleet.consul.devserver import DevConsul
from yolofleet.keys import KeyLayout

GROUP = "zone-w"
PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[3]
STARTUP_S = 60.0


class Process:
    """A subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, command: list[str]) -> None:
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip())

    def wait_for_line(self, text: str, *, errors: bool = False, timeout_s: float = 30) -> None:
        lines = self.errors if errors else self.lines
        wait_for(
            lambda: any(text in line for line in lines) or self.proc.poll() is not None,
            timeout_s=timeout_s,
            what=f"{text!r} from {self.proc.args!r}",
        )
        assert any(text in line for line in lines), f"exited early: {self.errors[-20:]}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.close()

    def close(self) -> None:
        """Waits for the exit, then for the readers, then closes the pipes."""
        self.proc.wait(30)
        for reader in self._readers:
            reader.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def control_plane(dev_consul: DevConsul, layout: KeyLayout, port: int) -> Process:
    command = [
        PYTHON, "-m", "control_plane", "--consul", dev_consul.address,
        "--port", str(port), "--artifact-port", "0", "--key-prefix", layout.prefix,
        "--interval", "0.5",
    ]  # fmt: skip
    plane = Process(command)
    plane.wait_for_line(f"grpc_port={port}", errors=True, timeout_s=STARTUP_S)
    return plane


@pytest.fixture
def leader_held(client: ConsulClient, layout: KeyLayout) -> Iterator[None]:
    """The test holds the leader lock: no control plane ticks, so only the test writes."""
    session = client.create_session(name="test-holds-the-lock", ttl=None)
    assert client.put(layout.leader, b"the test", acquire=session)
    yield
    client.destroy_session(session)


async def test_status_watch_survives_a_control_plane_restart(
    dev_consul: DevConsul, client: ConsulClient, layout: KeyLayout, leader_held: None
) -> None:
    store = ConsulStore(client, layout)
    spec = build_spec(GROUP, "m2", created=time.time(), steps="10,50,100", hold_s=60)
    state = GroupState(
        group=GROUP, stable="m1", canary="m2", canary_nodes=("n1",), phase=Phase.PROGRESSING
    )
    revision = await store.write_rollout(RolloutDoc(spec=spec, state=state))
    port = free_port()
    plane = control_plane(dev_consul, layout, port)
    address = f"127.0.0.1:{port}"
    command = [
        PYTHON, "-m", "control_plane.ctl", "--control-plane", address,
        "status", GROUP, "--watch", "--timeout", "2m",
    ]  # fmt: skip
    watch = Process(command)
    planes = [plane]
    try:
        watch.wait_for_line(f"{GROUP}: progressing", timeout_s=STARTUP_S)
        plane.kill()
        watch.wait_for_line("lost the watch", errors=True)
        state = replace(state, phase=Phase.HOLDING, step_index=1, revision=revision)
        revision = await store.write_rollout(RolloutDoc(spec=spec, state=state))
        planes.append(control_plane(dev_consul, layout, port))
        watch.wait_for_line(f"{GROUP}: holding", timeout_s=STARTUP_S)
        done = replace(state, phase=Phase.COMPLETED, canary=None, stable="m2", revision=revision)
        await store.write_rollout(RolloutDoc(spec=spec, state=done))
        code = watch.proc.wait(STARTUP_S)
    finally:
        for process in (watch, *planes):
            process.kill()

    phases = [line.split(",")[0] for line in watch.lines]
    assert code == 0, watch.errors
    assert phases == [f"{GROUP}: progressing", f"{GROUP}: holding", f"{GROUP}: completed"]
    assert any("reconnecting" in line for line in watch.errors)
