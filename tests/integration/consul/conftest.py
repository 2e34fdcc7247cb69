"""Fixtures for the Consul layer's tests: a dev Consul over real HTTP, or a real agent.

By default every test talks to an in-process :class:`DevConsul`. With ``CONSUL_HTTP_ADDR`` set,
the tests that ``consul_target`` serves run against that agent instead, each under its own key
prefix, which is deleted afterwards together with the sessions the test created. Tests that
need what only the dev server offers (TTLs under 10 s, restarts) ask for ``dev_only`` and are
skipped against a real agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import consul
import pytest
from consul.callback import CB

from tests.waits import until, wait_for
from yolofleet.consul.devserver import DevConsul
from yolofleet.consul.settings import ConsulSettings, make_consul

DEADLINE = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsulTarget:
    """The agent under test; ``dev`` is ``None`` for a real agent."""

    settings: ConsulSettings
    dev: DevConsul | None

    @property
    def url(self) -> str:
        return self.settings.url


def _run_async(main: Awaitable[Any], *, timeout: float = 30.0) -> Any:
    """Run a coroutine to completion with an overall deadline."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main, timeout)

    return asyncio.run(bounded())


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(predicate, timeout=..., message=...)``: ``tests.waits.wait_for``."""

    def wait(predicate: Callable[[], Any], *, timeout: float = DEADLINE, message: str = "") -> Any:
        return wait_for(predicate, timeout_s=timeout, what=message or "condition")

    return wait


@pytest.fixture
def wait_until_async() -> Callable[..., Awaitable[Any]]:
    """The coroutine form of ``wait_until``: ``tests.waits.until``."""

    async def wait(
        predicate: Callable[[], Any], *, timeout: float = DEADLINE, message: str = ""
    ) -> Any:
        return await until(predicate, timeout, message or "condition")

    return wait


@pytest.fixture
def run_async() -> Callable[..., Any]:
    """``run_async(coro, timeout=...)``: ``asyncio.run`` with an overall deadline."""
    return _run_async


@pytest.fixture(scope="session")
def dev_consul() -> Iterator[DevConsul]:
    """One in-process dev Consul for the whole session."""
    with DevConsul() as dev:
        yield dev


@pytest.fixture(scope="session")
def consul_target(request: pytest.FixtureRequest) -> ConsulTarget:
    """The real agent named by ``CONSUL_HTTP_ADDR``, else the session's dev Consul."""
    if os.environ.get("CONSUL_HTTP_ADDR"):
        return ConsulTarget(settings=ConsulSettings.from_env(), dev=None)
    dev: DevConsul = request.getfixturevalue("dev_consul")
    return ConsulTarget(settings=ConsulSettings.from_address(dev.address), dev=dev)


@pytest.fixture
def dev_only(consul_target: ConsulTarget) -> DevConsul:
    """Skip the test unless it runs against the dev Consul."""
    if consul_target.dev is None:
        pytest.skip("needs the dev Consul (short TTLs or restarts); CONSUL_HTTP_ADDR is set")
    return consul_target.dev


@pytest.fixture
def raw(consul_target: ConsulTarget) -> Iterator[consul.Consul]:
    """A py-consul client for the target, as product code makes them."""
    client = make_consul(consul_target.settings)
    yield client
    client.http.session.close()


@pytest.fixture
def prefix(raw: consul.Consul) -> Iterator[str]:
    """A key prefix no other test uses; everything under it is deleted afterwards."""
    name = f"yolofleet-test/{uuid.uuid4().hex[:12]}/"
    yield name
    raw.kv.delete(name, recurse=True)


@pytest.fixture
def new_session(raw: consul.Consul) -> Iterator[Callable[..., str]]:
    """Create sessions through py-consul's HTTP layer (so TTLs under 10 s can be asked for)."""
    created: list[str] = []

    def create(**fields: Any) -> str:
        body = {"Name": f"yolofleet-test-{len(created)}", **fields}
        session_id = str(
            raw.http.put(CB.json(is_id=True), "/v1/session/create", data=json.dumps(body))
        )
        created.append(session_id)
        return session_id

    yield create
    for session_id in created:
        raw.session.destroy(session_id)


@pytest.fixture
def own_dev_consul() -> Iterator[DevConsul]:
    """A dev Consul of the test's own (in memory), free to stop, restart and wipe."""
    dev = DevConsul().start()
    yield dev
    dev.stop()


@pytest.fixture
def persistent_dev_consul(tmp_path: Path) -> Iterator[DevConsul]:
    """A dev Consul of the test's own that keeps its state in ``tmp_path``."""
    dev = DevConsul(data_dir=tmp_path / "consul").start()
    yield dev
    dev.stop()
