"""The router: routes read nothing, bookings hold their model, the slot is read under leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from inference_node.errors import ModelNotFound, NoModelLoaded
from inference_node.serving.catalog import StaticCatalog
from inference_node.serving.model_cache import ModelCache
from inference_node.serving.routing import SLOT, Route, Router, Target
from inference_node.swapping.loader import LoadReport
from inference_node.swapping.slot import ModelSlot
from inference_node.telemetry.metrics import NodeMetrics
from tests.fakes import FakeDetector, FakeLoader, make_ref
from tests.waits import until

REPORT = LoadReport(fetch_s=0, build_s=0, warmup_s=0, weight_bytes=0)


@dataclass
class Parts:
    slot: ModelSlot
    cache: ModelCache
    router: Router
    loader: FakeLoader


@pytest.fixture
async def parts() -> AsyncIterator[Parts]:
    """Slot serving "m" (generation 1); "a" and "b" allowed on demand, room for one of them."""
    loading = ThreadPoolExecutor(1)
    loader = FakeLoader(detectors={"a": FakeDetector(), "b": FakeDetector()})
    cache = ModelCache(
        loader,
        loader_executor=loading,
        catalog=StaticCatalog({"a": make_ref("a", "1"), "b": make_ref("b", "2")}),
        allowed=frozenset({"a", "b"}),
        budget_bytes=1500,
        metrics=NodeMetrics(),
    )
    slot = ModelSlot()
    slot.swap(make_ref("m", "9"), FakeDetector(), load=REPORT, started_at=0)
    yield Parts(slot=slot, cache=cache, router=Router(slot, cache), loader=loader)
    await cache.stop()
    loading.shutdown()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("", Route(target=Target.ASSIGNED), id="no-name-is-the-assigned-model"),
        pytest.param("m", Route(target=Target.NAMED, name="m"), id="a-name-is-kept"),
    ],
)
def test_route_reads_nothing(name: str, expected: Route) -> None:
    assert Router(ModelSlot()).route(name) == expected


async def test_prepare_without_a_live_model_is_unavailable() -> None:
    router = Router(ModelSlot())

    with pytest.raises(NoModelLoaded):
        router.check_live()
    with pytest.raises(NoModelLoaded):
        await router.prepare(router.route(""))


async def test_another_model_without_a_cache_is_not_found() -> None:
    slot = ModelSlot()
    slot.swap(make_ref("m"), FakeDetector(), load=REPORT, started_at=0)
    router = Router(slot)

    with pytest.raises(ModelNotFound, match=r"'other' is not served here \(serving m\)"):
        await router.prepare(router.route("other"))


@pytest.mark.parametrize("name", [pytest.param("", id="unnamed"), pytest.param("m", id="named")])
async def test_slot_bookings_run_on_the_model_live_when_the_batch_starts(
    parts: Parts, name: str
) -> None:
    booking = await parts.router.prepare(parts.router.route(name))
    parts.slot.swap(make_ref("m", "8"), FakeDetector(), load=REPORT, started_at=0)

    with parts.router.lease(booking) as leased:
        assert (leased.generation, parts.slot.leases_on(2)) == (2, 1)
        assert leased.takes(booking)
    assert (booking.cached, booking.group) == (None, SLOT)
    assert parts.slot.leases_on(2) == 0


async def test_a_named_booking_is_not_taken_once_the_slot_serves_another_name(
    parts: Parts,
) -> None:
    named = await parts.router.prepare(parts.router.route("m"))
    unnamed = await parts.router.prepare(parts.router.route(""))
    parts.slot.swap(make_ref("other"), FakeDetector(), load=REPORT, started_at=0)

    with parts.router.lease(unnamed) as leased:
        assert (leased.takes(named), leased.takes(unnamed)) == (False, True)


async def test_a_cached_booking_holds_its_model_through_eviction_until_released(
    parts: Parts,
) -> None:
    booking_a = await parts.router.prepare(parts.router.route("a"))
    loading_b = asyncio.ensure_future(parts.router.prepare(parts.router.route("b")))
    await until(lambda: parts.cache.loaded == ())  # "a" evicted, but held: "b" waits for room

    with parts.router.lease(booking_a) as leased:
        booking_a.release()  # the request let go; the batch's own lease keeps "a" open
        assert (leased.ref.name, leased.generation, leased.takes(booking_a)) == ("a", 0, True)
        assert not parts.loader.detectors["a"].closed
        assert not loading_b.done()
    booking_b = await asyncio.wait_for(loading_b, 5)

    assert parts.loader.detectors["a"].closed
    assert (str(booking_b.group), parts.cache.loaded, parts.loader.loads) == (
        "b",
        ("b",),
        ["a", "b"],
    )


@pytest.mark.parametrize(
    ("name", "blamed"),
    [
        pytest.param("", "m", id="unnamed-counts-against-the-slot-model"),
        pytest.param("m", "m", id="naming-the-slot-model"),
        pytest.param("a", None, id="an-on-demand-model-is-not-counted"),
    ],
)
def test_blame_without_a_lease(parts: Parts, name: str, blamed: str | None) -> None:
    ref = parts.router.blame(parts.router.route(name))

    assert (ref.name if ref else None) == blamed


async def test_blame_names_the_model_leased_and_nothing_when_none_is_live(parts: Parts) -> None:
    booking = await parts.router.prepare(parts.router.route(""))
    with parts.router.lease(booking) as leased:
        parts.slot.swap(make_ref("m", "8"), FakeDetector(), load=REPORT, started_at=0)
        assert parts.router.blame(booking.route, leased) == make_ref("m", "9")

    assert Router(ModelSlot()).blame(Route(target=Target.ASSIGNED)) is None
