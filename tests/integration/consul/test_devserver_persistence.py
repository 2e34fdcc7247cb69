"""The dev Consul across restarts: a data dir keeps the state, a wipe sends indexes backwards."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from yolofleet.consul import ConsulClient, ConsulSettings, KeyWatch, KVPair, SessionBehavior
from yolofleet.consul.devserver import DevConsul
from yolofleet.consul.retry import BackoffPolicy
from yolofleet.consul.snapshot import SNAPSHOT_NAME
from yolofleet.paths import PROJECT_ROOT

PROCESS_DEADLINE = 20.0


@pytest.fixture
def persistent_client(persistent_dev_consul: DevConsul) -> Iterator[ConsulClient]:
    client = ConsulClient(ConsulSettings.from_address(persistent_dev_consul.address))
    yield client
    client.close()


def test_restart_with_data_dir_keeps_kv_and_indexes(
    persistent_dev_consul: DevConsul, persistent_client: ConsulClient
) -> None:
    persistent_client.put("models/shapes-v1", b'{"sha256": "ab"}', flags=7)
    persistent_client.put("groups/a/target", b"v1")
    before = persistent_client.get("models/shapes-v1")
    index_before = persistent_client.read("groups/a/target").index

    persistent_dev_consul.restart()

    assert persistent_client.get("models/shapes-v1") == before
    assert persistent_client.list("groups/") == (
        KVPair(
            key="groups/a/target",
            value=b"v1",
            create_index=index_before,
            modify_index=index_before,
        ),
    )
    persistent_client.put("groups/a/target", b"v2")
    assert persistent_client.read("groups/a/target").index > index_before


def test_restart_with_data_dir_keeps_sessions_and_their_locks(
    persistent_dev_consul: DevConsul, persistent_client: ConsulClient
) -> None:
    session_id = persistent_client.create_session(
        name="node-1", ttl=30.0, behavior=SessionBehavior.DELETE
    )
    persistent_client.put("nodes/a/n1", b"serving", acquire=session_id)

    persistent_dev_consul.restart()

    info = persistent_client.renew_session(session_id)
    pair = persistent_client.get("nodes/a/n1")
    assert info.behavior is SessionBehavior.DELETE
    assert pair is not None
    assert pair.session == session_id


def test_snapshot_is_written_as_json_in_the_data_dir(
    persistent_dev_consul: DevConsul, persistent_client: ConsulClient, tmp_path: Path
) -> None:
    persistent_client.put("k", b"v")

    persistent_dev_consul.stop()

    snapshot = tmp_path / "consul" / SNAPSHOT_NAME
    assert '"key":"k"' in snapshot.read_text(encoding="utf-8")
    assert [p.name for p in snapshot.parent.iterdir()] == [SNAPSHOT_NAME]


def test_restart_wipe_forgets_everything(
    persistent_dev_consul: DevConsul, persistent_client: ConsulClient
) -> None:
    persistent_client.put("k", b"v")

    persistent_dev_consul.restart(wipe=True)

    assert persistent_client.get("k") is None


def test_restart_without_data_dir_forgets_everything(own_dev_consul: DevConsul) -> None:
    client = ConsulClient(ConsulSettings.from_address(own_dev_consul.address))
    client.put("k", b"v")

    own_dev_consul.restart()

    assert client.get("k") is None
    client.close()


def test_wiped_server_sends_the_index_backwards_and_the_watch_recovers(
    own_dev_consul: DevConsul, wait_until_async: Any, run_async: Any
) -> None:
    client = ConsulClient(ConsulSettings.from_address(own_dev_consul.address, timeout=2.0))
    for revision in range(20):
        client.put("target", f"old-{revision}".encode())
    old_index = client.read("target").index
    seen: list[KVPair | None] = []

    async def scenario() -> None:
        watch = KeyWatch(client, "target", wait=0.3, backoff=BackoffPolicy(initial=0.02))
        task = asyncio.create_task(_collect(watch, seen))
        await wait_until_async(lambda: seen, message="the first value")
        own_dev_consul.restart()  # no data dir: the agent comes back empty
        client.put("target", b"fresh")
        await wait_until_async(
            lambda: seen[-1] is not None and seen[-1].value == b"fresh",
            message="the value written after the wipe",
        )
        task.cancel()

    run_async(scenario())
    client.close()

    fresh = seen[-1]
    assert seen[0] is not None
    assert seen[0].value == b"old-19"
    assert fresh is not None
    assert fresh.modify_index < old_index


async def _collect(watch: KeyWatch, seen: list[KVPair | None]) -> None:
    async for pair in watch:
        seen.append(pair)


# ---- the yolofleet dev-consul command ----------------------------------------------------


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``yolofleet dev-consul`` and return it with the address it logged."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "yolofleet.cli", "dev-consul", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stderr, lines), daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=PROCESS_DEADLINE)
        except queue.Empty:
            process.kill()
            process.wait()
            raise AssertionError("yolofleet dev-consul logged no address") from None
        found = re.search(r"listening address=(\S+)", line)
        if found:
            return process, found.group(1)


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    stream.close()


def _terminate(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=PROCESS_DEADLINE)


def test_cli_serves_until_sigterm_and_keeps_its_data_dir(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "consul")
    process, address = _start_cli("--port", "0", "--data-dir", data_dir)
    client = ConsulClient(ConsulSettings.from_address(address))
    client.put("greeting", b"hello")
    client.close()

    first_exit = _terminate(process)
    port = address.rsplit(":", 1)[1]
    process, again = _start_cli("--port", port, "--data-dir", data_dir)
    client = ConsulClient(ConsulSettings.from_address(again))
    kept = client.get("greeting")
    client.close()
    second_exit = _terminate(process)

    assert (first_exit, second_exit) == (0, 0)
    assert again == address
    assert kept is not None
    assert kept.value == b"hello"
