"""The cluster epoch over real HTTP to the dev Consul: written once, agreed on, new after a wipe."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.consul.epoch import Epoch, EpochKeeper
from control_plane.core.errors import RecordCorrupt, StoreUnavailable
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.keys import KeyLayout


def keeper(client: ConsulClient, layout: KeyLayout, name: str = "a") -> EpochKeeper:
    ids = itertools.count(1)
    return EpochKeeper(client, layout, new_id=lambda: f"{name}-{next(ids)}")


async def test_the_first_ensure_writes_the_epoch_and_later_ones_read_it(
    client: ConsulClient, layout: KeyLayout
) -> None:
    epochs = keeper(client, layout)
    assert await epochs.current() is None

    first = await epochs.ensure(100.0)
    again = await epochs.ensure(200.0)

    assert first == again == Epoch(id="a-1", created=100.0)
    assert epochs.seen == first
    stored = client.get(layout.epoch)
    assert stored is not None
    assert stored.key == f"{layout.prefix}cluster/epoch"
    assert json.loads(stored.value) == {"id": "a-1", "created": 100.0}


async def test_replicas_bootstrapping_at_once_agree_on_one_epoch(
    client: ConsulClient, layout: KeyLayout
) -> None:
    replicas = [keeper(client, layout, name) for name in ("a", "b", "c", "d")]

    found = await asyncio.gather(*(r.ensure(5.0) for r in replicas))

    assert len({epoch.id for epoch in found}) == 1
    stored = await replicas[0].current()
    assert stored == found[0]


async def test_a_wiped_key_gets_a_new_epoch_and_the_change_is_logged(
    client: ConsulClient, layout: KeyLayout, caplog: pytest.LogCaptureFixture
) -> None:
    epochs = keeper(client, layout)
    before = await epochs.ensure(1.0)
    client.delete(layout.prefix, recurse=True)

    with caplog.at_level(logging.WARNING, logger="control_plane.consul.epoch"):
        after = await epochs.ensure(2.0)

    assert after == Epoch(id="a-2", created=2.0) != before
    assert epochs.seen == after
    assert f"cluster epoch changed from {before.id} to {after.id}" in caplog.text


@pytest.mark.parametrize(
    ("value", "says"),
    [
        pytest.param(b"not json", "is not valid JSON", id="not-json"),
        pytest.param(b'{"id": 7, "created": 1.0}', "must be a string", id="id-not-text"),
        pytest.param(b'{"id": "", "created": 1.0}', "an empty id", id="empty-id"),
    ],
)
async def test_an_unreadable_epoch_is_reported_not_replaced(
    client: ConsulClient, layout: KeyLayout, value: bytes, says: str
) -> None:
    client.put(layout.epoch, value)

    with pytest.raises(RecordCorrupt) as corrupt:
        await keeper(client, layout).ensure(1.0)

    assert layout.epoch in str(corrupt.value)
    assert says in str(corrupt.value)
    stored = client.get(layout.epoch)
    assert stored is not None
    assert stored.value == value


@pytest.fixture
def data_dir_consul(tmp_path: Path) -> Iterator[DevConsul]:
    dev = DevConsul(data_dir=tmp_path / "consul").start()
    yield dev
    dev.stop()


async def test_the_epoch_survives_a_restart_and_not_a_wipe(data_dir_consul: DevConsul) -> None:
    client = ConsulClient(ConsulSettings.from_address(data_dir_consul.address, timeout=5.0))
    try:
        epochs = keeper(client, KeyLayout())
        first = await epochs.ensure(1.0)

        await asyncio.to_thread(data_dir_consul.restart)
        kept = await epochs.current()
        await asyncio.to_thread(data_dir_consul.restart, wipe=True)
        wiped = await epochs.current()
        fresh = await epochs.ensure(3.0)
    finally:
        client.close()

    assert kept == first
    assert wiped is None
    assert fresh.id != first.id


async def test_an_unreachable_consul_is_store_unavailable() -> None:
    dev = DevConsul().start()
    address = dev.address
    dev.stop()
    client = ConsulClient(ConsulSettings.from_address(address, timeout=1.0))
    try:
        with pytest.raises(StoreUnavailable) as unavailable:
            await keeper(client, KeyLayout()).ensure(1.0)
    finally:
        client.close()

    assert "cluster epoch" in str(unavailable.value)
