"""The client layer over real HTTP: settings, errors, the key watch, CAS updates, the keeper."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from yolofleet.consul import (
    CASConflict,
    ConsulClient,
    ConsulConfigError,
    ConsulRejected,
    ConsulSettings,
    ConsulUnavailable,
    KeyWatch,
    KVPair,
    SessionBehavior,
    SessionKeeper,
    SessionNotFound,
    update_key,
)
from yolofleet.consul.devserver import DevConsul
from yolofleet.consul.retry import BackoffPolicy
from yolofleet.consul.settings import read_timeout

FAST_RETRY = BackoffPolicy(initial=0.02, maximum=0.2)


class CountingClient(ConsulClient):
    """A real client that counts its reads and renewals, so tests can wait on them."""

    def __init__(self, settings: ConsulSettings) -> None:
        super().__init__(settings)
        self.reads = 0
        self.failed_reads = 0
        self.renewals = 0

    def read(self, key: str, *, index: int = 0, wait: float | None = None) -> Any:
        self.reads += 1
        try:
            return super().read(key, index=index, wait=wait)
        except ConsulUnavailable:
            self.failed_reads += 1
            raise

    def renew_session(self, session_id: str) -> Any:
        self.renewals += 1
        return super().renew_session(session_id)


def client_for(dev: DevConsul, *, timeout: float = 5.0) -> ConsulClient:
    return ConsulClient(ConsulSettings.from_address(dev.address, timeout=timeout))


@pytest.fixture
def client(own_dev_consul: DevConsul) -> Iterator[ConsulClient]:
    c = client_for(own_dev_consul)
    yield c
    c.close()


@pytest.fixture
def counting(own_dev_consul: DevConsul) -> Iterator[CountingClient]:
    c = CountingClient(ConsulSettings.from_address(own_dev_consul.address, timeout=5.0))
    yield c
    c.close()


def values(seen: list[KVPair | None]) -> list[bytes | None]:
    return [pair.value if pair else None for pair in seen]


async def collect(watch: KeyWatch, seen: list[KVPair | None]) -> None:
    async for pair in watch:
        seen.append(pair)


# ---- settings and errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("10.0.0.5:8600", ("http", "10.0.0.5", 8600), id="host-port"),
        pytest.param("https://consul.internal", ("https", "consul.internal", 8501), id="https"),
        pytest.param("http://[::1]:8500", ("http", "::1", 8500), id="ipv6"),
    ],
)
def test_settings_parse_addresses(address: str, expected: tuple[str, str, int]) -> None:
    settings = ConsulSettings.from_address(address)

    assert (settings.scheme, settings.host, settings.port) == expected


def test_settings_from_env_reads_consul_cli_variables() -> None:
    env = {
        "CONSUL_HTTP_ADDR": "consul.internal:8501",
        "CONSUL_HTTP_SSL": "true",
        "CONSUL_HTTP_TOKEN": "s3cret",
        "CONSUL_CACERT": "/etc/consul/ca.pem",
        "CONSUL_CLIENT_CERT": "/etc/consul/client.pem",
        "CONSUL_CLIENT_KEY": "/etc/consul/client-key.pem",
    }

    settings = ConsulSettings.from_env(env)

    assert settings.url == "https://consul.internal:8501"
    assert settings.token == "s3cret"
    assert settings.verify == "/etc/consul/ca.pem"
    assert settings.cert == ("/etc/consul/client.pem", "/etc/consul/client-key.pem")


def test_an_address_flag_replaces_only_the_address_from_the_environment() -> None:
    env = {"CONSUL_HTTP_ADDR": "elsewhere:8500", "CONSUL_HTTP_TOKEN": "s3cret"}

    settings = ConsulSettings.from_env(env, address="consul.yolofleet.svc:8500")
    explicit = ConsulSettings.from_env({"CONSUL_HTTP_SSL": "true"}, address="http://c:8500")

    assert (settings.url, settings.token) == ("http://consul.yolofleet.svc:8500", "s3cret")
    assert explicit.url == "http://c:8500"  # a scheme in the flag beats CONSUL_HTTP_SSL


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"CONSUL_HTTP_ADDR": "unix:///var/run/consul.sock"}, id="unix-socket"),
        pytest.param({"CONSUL_HTTP_ADDR": "consul:http"}, id="bad-port"),
        pytest.param({"CONSUL_HTTP_SSL": "maybe"}, id="bad-bool"),
        pytest.param({"CONSUL_CLIENT_KEY": "/k.pem"}, id="key-without-cert"),
    ],
)
def test_settings_from_env_refuses_unusable_values(env: dict[str, str]) -> None:
    with pytest.raises(ConsulConfigError):
        ConsulSettings.from_env(env)


def test_read_timeout_outlasts_the_blocking_wait_and_its_jitter() -> None:
    plain = read_timeout("http://c:8500/v1/kv/a", 2.0)
    blocking = read_timeout("http://c:8500/v1/kv/a?index=7&wait=16s", 2.0)

    assert plain == 2.0
    assert blocking == 2.0 + 17.0


def test_unreachable_agent_raises_consul_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ConsulClient(ConsulSettings.from_address(f"127.0.0.1:{port}", timeout=2.0))

    with pytest.raises(ConsulUnavailable, match="connection refused"):
        client.get("anything")
    client.close()


def test_silent_agent_times_out_instead_of_hanging() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        client = ConsulClient(ConsulSettings.from_address(f"127.0.0.1:{port}", timeout=0.3))

        with pytest.raises(ConsulUnavailable, match="timed out"):
            client.read("anything", index=5, wait=0.1)
        client.close()


def test_session_keeper_refuses_to_start_with_a_ttl_the_agent_rejects(
    client: ConsulClient, run_async: Any
) -> None:
    keeper = SessionKeeper(client, name="too-short", ttl=0.01)

    with pytest.raises(ConsulRejected, match="Session TTL"):
        run_async(keeper.start())


def test_renewing_an_unknown_session_raises_session_not_found(client: ConsulClient) -> None:
    with pytest.raises(SessionNotFound):
        client.renew_session("00000000-0000-0000-0000-000000000000")


# ---- the key watch -----------------------------------------------------------------------


def test_watch_yields_changes_only_not_wake_ups(
    counting: CountingClient, wait_until_async: Any, run_async: Any
) -> None:
    counting.put("cfg", b"v1")
    seen: list[KVPair | None] = []

    async def scenario() -> None:
        task = asyncio.create_task(collect(KeyWatch(counting, "cfg", wait=0.1), seen))
        await wait_until_async(lambda: seen, message="the first value")
        await wait_until_async(lambda: counting.reads >= 5, message="several timed-out reads")
        assert values(seen) == [b"v1"]
        counting.put("cfg", b"v1")  # same value: Consul writes nothing
        counting.put("cfg", b"v2")
        await wait_until_async(lambda: len(seen) >= 2, message="the change")
        reads = counting.reads
        await wait_until_async(lambda: counting.reads >= reads + 3, message="more wake-ups")
        task.cancel()

    run_async(scenario())

    assert values(seen) == [b"v1", b"v2"]
    assert seen[0] is not None
    assert seen[1] is not None
    assert seen[1].modify_index > seen[0].modify_index


def test_watch_yields_none_for_a_missing_then_deleted_key(
    client: ConsulClient, wait_until_async: Any, run_async: Any
) -> None:
    seen: list[KVPair | None] = []

    async def scenario() -> None:
        task = asyncio.create_task(collect(KeyWatch(client, "node", wait=5.0), seen))
        await wait_until_async(lambda: seen, message="the first read")
        client.put("node", b"up")
        await wait_until_async(lambda: len(seen) >= 2, message="the key to appear")
        client.delete("node")
        await wait_until_async(lambda: len(seen) >= 3, message="the delete")
        task.cancel()

    run_async(scenario())

    assert values(seen) == [None, b"up", None]


def test_watch_survives_a_server_restart_and_sees_later_writes(
    persistent_dev_consul: DevConsul, wait_until_async: Any, run_async: Any
) -> None:
    dev = persistent_dev_consul
    watcher = CountingClient(ConsulSettings.from_address(dev.address, timeout=2.0))
    writer = client_for(dev)
    writer.put("target", b"before")
    seen: list[KVPair | None] = []

    async def scenario() -> None:
        watch = KeyWatch(watcher, "target", wait=5.0, backoff=FAST_RETRY)
        task = asyncio.create_task(collect(watch, seen))
        await wait_until_async(lambda: seen, message="the first value")
        dev.stop()
        await wait_until_async(lambda: watcher.failed_reads >= 2, message="failed reads")
        dev.start()
        writer.put("target", b"after")
        await wait_until_async(lambda: len(seen) >= 2, message="the value written after restart")
        task.cancel()

    run_async(scenario())
    watcher.close()
    writer.close()

    assert values(seen) == [b"before", b"after"]


# ---- check-and-set -----------------------------------------------------------------------


def test_update_key_under_two_concurrent_writers_loses_no_update(
    own_dev_consul: DevConsul,
) -> None:
    rounds = 25
    errors: list[BaseException] = []

    def increment(current: KVPair | None) -> bytes:
        return str(int(current.value) + 1 if current else 1).encode()

    def writer() -> None:
        c = client_for(own_dev_consul)
        try:
            for _ in range(rounds):
                update_key(c, "counter", increment, attempts=100)
        except BaseException as exc:
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    check = client_for(own_dev_consul)
    stored = check.get("counter")
    check.close()
    assert errors == []
    assert stored is not None
    assert int(stored.value) == 2 * rounds


def test_update_key_gives_up_with_cas_conflict(client: ConsulClient) -> None:
    client.put("contended", b"0")
    rivals: list[int] = []

    def mutate_while_a_rival_writes(current: KVPair | None) -> bytes:
        rivals.append(1)
        client.put("contended", f"rival-{len(rivals)}".encode())
        return b"mine"

    with pytest.raises(CASConflict, match="contended after 3 attempts"):
        update_key(client, "contended", mutate_while_a_rival_writes, attempts=3, sleep=no_sleep)

    assert len(rivals) == 3


def test_update_key_skips_the_write_when_nothing_changes(client: ConsulClient) -> None:
    client.put("steady", b"same")
    before = client.get("steady")

    stored = update_key(client, "steady", lambda current: b"same")

    assert stored == b"same"
    assert client.get("steady") == before


def no_sleep(_seconds: float) -> None:
    return None


# ---- the session keeper ------------------------------------------------------------------


def test_session_keeper_renews_before_the_ttl_runs_out(
    counting: CountingClient, wait_until_async: Any, run_async: Any
) -> None:
    created: list[str] = []

    async def on_session(session_id: str) -> None:
        created.append(session_id)
        assert counting.put("nodes/n1", b"serving", acquire=session_id)

    async def scenario() -> str:
        keeper = SessionKeeper(counting, name="n1", ttl=0.4, on_session=on_session)
        session_id = await keeper.start()
        await wait_until_async(lambda: counting.renewals >= 4, message="four renewals")
        assert counting.session_info(session_id) is not None
        await keeper.close()
        return session_id

    session_id = run_async(scenario())

    assert created == [session_id]
    assert counting.get("nodes/n1") is None  # behavior=delete: destroying the session removed it


def test_session_keeper_recreates_a_lost_session_and_calls_back(
    own_dev_consul: DevConsul, wait_until: Any, wait_until_async: Any, run_async: Any
) -> None:
    dev = own_dev_consul
    client = client_for(dev, timeout=2.0)
    created: list[str] = []

    async def on_session(session_id: str) -> None:
        created.append(session_id)
        await asyncio.to_thread(client.put, "nodes/n1", b"serving", acquire=session_id)

    def holder() -> str | None:
        pair = client.get("nodes/n1")
        return pair.session if pair else None

    async def scenario() -> None:
        keeper = SessionKeeper(
            client,
            name="n1",
            ttl=0.5,
            behavior=SessionBehavior.DELETE,
            on_session=on_session,
            backoff=FAST_RETRY,
        )
        await keeper.start()
        dev.restart()  # no data dir: the agent comes back empty, the session is gone
        await wait_until_async(lambda: len(created) >= 2, message="a new session")
        await asyncio.to_thread(
            wait_until, lambda: holder() == created[-1], message="the key to be re-acquired"
        )
        await keeper.close()

    run_async(scenario())
    client.close()

    assert len(created) == 2
    assert created[0] != created[1]
