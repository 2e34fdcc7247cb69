"""Fixtures for the control plane over real HTTP: one dev Consul, a fresh key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from control_plane.consul.store import ConsulStore
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.keys import KeyLayout


@pytest.fixture(scope="module")
def dev_consul() -> Iterator[DevConsul]:
    with DevConsul() as dev:
        yield dev


@pytest.fixture
def settings(dev_consul: DevConsul) -> ConsulSettings:
    return ConsulSettings.from_address(dev_consul.address, timeout=5.0)


@pytest.fixture
def client(settings: ConsulSettings) -> Iterator[ConsulClient]:
    consul = ConsulClient(settings)
    yield consul
    consul.close()


@pytest.fixture
def layout(client: ConsulClient) -> Iterator[KeyLayout]:
    """A prefix no other test uses; everything under it is deleted afterwards."""
    keys = KeyLayout(f"yolofleet-test/{uuid.uuid4().hex[:12]}/")
    yield keys
    client.delete(keys.prefix, recurse=True)


@pytest.fixture
def store(client: ConsulClient, layout: KeyLayout) -> ConsulStore:
    return ConsulStore(client, layout)
