from __future__ import annotations

import asyncio

import pytest

from inference_node.errors import NoModelLoaded
from inference_node.swapping.loader import LoadReport
from inference_node.swapping.slot import ModelSlot
from tests.fakes import FakeDetector, make_ref

REPORT = LoadReport(fetch_s=0, build_s=0, warmup_s=0, weight_bytes=0)


def test_lease_on_empty_slot_raises_no_model_loaded() -> None:
    slot = ModelSlot()

    with pytest.raises(NoModelLoaded), slot.lease():
        pass


def test_swap_returns_old_and_bumps_generation() -> None:
    slot = ModelSlot()
    first, second = make_ref("a", "1"), make_ref("b", "2")

    assert slot.swap(first, FakeDetector(), load=REPORT, started_at=0) is None
    old = slot.swap(second, FakeDetector(), load=REPORT, started_at=0)

    assert old is not None
    assert old.ref == first
    assert old.generation == 1
    assert slot.active is not None
    assert slot.active.ref == second
    assert slot.active.generation == 2


async def test_drained_waits_for_lease_taken_before_swap() -> None:
    slot = ModelSlot()
    slot.swap(make_ref("a", "1"), FakeDetector(), load=REPORT, started_at=0)
    lease = slot.lease()
    leased = lease.__enter__()
    old = slot.swap(make_ref("b", "2"), FakeDetector(), load=REPORT, started_at=0)
    assert old is leased
    waiter = asyncio.ensure_future(slot.drained(old))
    await asyncio.sleep(0)
    assert not waiter.done()

    lease.__exit__(None, None, None)

    await asyncio.wait_for(waiter, 1)
    assert slot.leases_on(old.generation) == 0


async def test_drained_returns_at_once_without_leases() -> None:
    slot = ModelSlot()
    slot.swap(make_ref("a", "1"), FakeDetector(), load=REPORT, started_at=0)
    old = slot.swap(make_ref("b", "2"), FakeDetector(), load=REPORT, started_at=0)
    assert old is not None

    await asyncio.wait_for(slot.drained(old), 1)


def test_new_lease_after_swap_sees_new_model() -> None:
    slot = ModelSlot()
    slot.swap(make_ref("a", "1"), FakeDetector(), load=REPORT, started_at=0)
    with slot.lease() as before:
        slot.swap(make_ref("b", "2"), FakeDetector(), load=REPORT, started_at=0)
        with slot.lease() as after:
            assert (before.ref.name, after.ref.name) == ("a", "b")
