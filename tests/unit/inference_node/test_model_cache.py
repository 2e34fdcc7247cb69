from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from inference_node.errors import (
    Draining,
    LoadCancelled,
    ModelLoadFailed,
    ModelNotAllowed,
    ModelNotFound,
    ModelTooLarge,
)
from inference_node.model import ModelRef
from inference_node.serving.catalog import StaticCatalog
from inference_node.serving.model_cache import ModelCache
from inference_node.swapping.loader import LoadReport
from inference_node.telemetry.metrics import NodeMetrics
from tests.fakes import FakeDetector, FakeLoader, make_ref
from tests.waits import until

MODELS = {"a": "1", "b": "2", "c": "3", "d": "4"}


class SizedDetector(FakeDetector):
    """A fake detector whose weights measure ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def weight_bytes(self) -> int:
        return self.size


@dataclass
class Parts:
    cache: ModelCache
    loader: FakeLoader
    detectors: dict[str, SizedDetector]
    metrics: NodeMetrics

    def sample(self, metric: str, model: str) -> float:
        value = self.metrics.registry.get_sample_value(metric, {"model": model})
        return value or 0.0


PartsFactory = Callable[..., Parts]


@pytest.fixture
async def make_parts() -> AsyncIterator[PartsFactory]:
    executor = ThreadPoolExecutor(1)
    made: list[Parts] = []

    def make(
        *,
        sizes: dict[str, int] | None = None,
        budget: int = 1000,
        allowed: frozenset[str] = frozenset(MODELS),
    ) -> Parts:
        sizes = sizes or dict.fromkeys(MODELS, 100)
        detectors = {name: SizedDetector(size) for name, size in sizes.items()}
        loader = FakeLoader(detectors=dict(detectors))
        metrics = NodeMetrics()
        catalog = StaticCatalog({name: make_ref(name, digit) for name, digit in MODELS.items()})
        cache = ModelCache(
            loader,
            loader_executor=executor,
            catalog=catalog,
            allowed=allowed,
            budget_bytes=budget,
            metrics=metrics,
        )
        made.append(Parts(cache=cache, loader=loader, detectors=detectors, metrics=metrics))
        return made[-1]

    yield make
    for parts in made:
        if parts.loader.gate is not None:
            parts.loader.gate.set()
        await parts.cache.stop()
    executor.shutdown()


async def test_eight_concurrent_first_requests_share_one_load(make_parts: PartsFactory) -> None:
    parts = make_parts()
    parts.loader.gate = threading.Event()
    waiting = [asyncio.ensure_future(parts.cache.ensure_loaded("a")) for _ in range(8)]
    await until(lambda: parts.loader.running == 1)

    parts.loader.gate.set()
    loaded = await asyncio.gather(*waiting)

    assert parts.loader.loads == ["a"]
    assert {model.detector for model in loaded} == {parts.detectors["a"]}
    assert parts.sample("yolofleet_model_cache_loads_total", "a") == 1
    assert parts.sample("yolofleet_model_cache_misses_total", "a") == 8
    await parts.cache.ensure_loaded("a")
    assert parts.sample("yolofleet_model_cache_hits_total", "a") == 1
    assert parts.loader.loads == ["a"]


async def test_budget_is_never_exceeded_over_a_sequence_of_loads(
    make_parts: PartsFactory,
) -> None:
    sizes = {"a": 400, "b": 300, "c": 500, "d": 200}
    parts = make_parts(sizes=sizes, budget=1000)

    for name in ["a", "b", "c", "a", "d", "b", "c", "d", "a", "c", "b"]:
        await parts.cache.ensure_loaded(name)

        held = sum(sizes[loaded] for loaded in parts.cache.loaded)
        assert parts.cache.held_bytes == held <= 1000
        assert parts.metrics.registry.get_sample_value("yolofleet_model_cache_bytes") == held
        assert name in parts.cache.loaded
        assert not parts.detectors[name].closed

    evicted = set(sizes) - set(parts.cache.loaded)
    assert all(parts.detectors[name].closed for name in evicted)


async def test_least_recently_used_model_is_evicted_first(make_parts: PartsFactory) -> None:
    parts = make_parts(budget=300)
    for name in ["a", "b", "c"]:
        await parts.cache.ensure_loaded(name)
    await parts.cache.ensure_loaded("a")

    await parts.cache.ensure_loaded("d")

    assert parts.cache.loaded == ("c", "a", "d")
    assert parts.detectors["b"].closed
    assert not parts.detectors["a"].closed
    assert parts.sample("yolofleet_model_cache_evictions_total", "b") == 1


async def test_unleased_models_are_evicted_before_a_leased_one(make_parts: PartsFactory) -> None:
    parts = make_parts(budget=200)
    await parts.cache.ensure_loaded("a")

    async with parts.cache.lease("a"):
        await parts.cache.ensure_loaded("b")
        await parts.cache.ensure_loaded("c")

        assert parts.cache.loaded == ("a", "c")
        assert parts.detectors["b"].closed
        assert not parts.detectors["a"].closed


async def test_leased_model_is_closed_only_after_its_batch_ends(make_parts: PartsFactory) -> None:
    parts = make_parts(budget=100)
    async with parts.cache.lease("a"):
        pass  # an earlier batch on the same model must not count as drained later

    async with parts.cache.lease("a") as leased:
        loading = asyncio.ensure_future(parts.cache.ensure_loaded("b"))
        await until(lambda: parts.loader.loads == ["a", "b"])
        await asyncio.sleep(0.05)

        assert leased.detector is parts.detectors["a"]
        assert not parts.detectors["a"].closed
        assert not loading.done()
        assert parts.cache.loaded == ()
        assert parts.cache.held_bytes == 100

    assert (await loading).name == "b"
    assert parts.detectors["a"].closed
    assert parts.cache.loaded == ("b",)
    assert parts.cache.held_bytes == 100


async def test_model_not_on_the_allow_list_is_refused_without_loading(
    make_parts: PartsFactory,
) -> None:
    parts = make_parts(allowed=frozenset({"a", "b"}))

    with pytest.raises(ModelNotAllowed, match=r"'c' is not allowed on this node \(allowed: a, b\)"):
        await parts.cache.ensure_loaded("c")
    with pytest.raises(ModelNotAllowed):
        async with parts.cache.lease("c"):
            pass

    assert parts.loader.loads == []
    assert parts.sample("yolofleet_model_cache_misses_total", "c") == 0


async def test_allowed_model_missing_from_the_catalog_is_not_found(
    make_parts: PartsFactory,
) -> None:
    parts = make_parts(allowed=frozenset({"a", "ghost"}))

    with pytest.raises(ModelNotFound, match="'ghost' is not registered"):
        await parts.cache.ensure_loaded("ghost")

    assert parts.loader.loads == []


async def test_failed_load_reaches_every_waiter_and_is_not_cached(
    make_parts: PartsFactory,
) -> None:
    parts = make_parts()
    parts.loader.fail = {"a": "checkpoint member data/3 is corrupt"}
    parts.loader.gate = threading.Event()
    waiting = [asyncio.ensure_future(parts.cache.ensure_loaded("a")) for _ in range(3)]
    await until(lambda: parts.loader.running == 1)

    parts.loader.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)

    assert all(isinstance(outcome, ModelLoadFailed) for outcome in outcomes)
    assert "'a' could not be loaded: checkpoint member data/3 is corrupt" in str(outcomes[0])
    assert parts.cache.loaded == ()
    assert parts.cache.held_bytes == 0
    parts.loader.fail = {}
    assert (await parts.cache.ensure_loaded("a")).name == "a"
    assert parts.loader.loads == ["a", "a"]


async def test_model_larger_than_the_whole_budget_is_refused_and_remembered(
    make_parts: PartsFactory,
) -> None:
    parts = make_parts(sizes={"a": 1500, "b": 100}, budget=1000)
    await parts.cache.ensure_loaded("b")

    with pytest.raises(ModelTooLarge, match=r"needs 1\.5 KiB .* budget is 1000 bytes"):
        await parts.cache.ensure_loaded("a")
    with pytest.raises(ModelTooLarge):
        await parts.cache.ensure_loaded("a")

    assert parts.loader.loads == ["b", "a"]
    assert parts.detectors["a"].closed
    assert parts.cache.loaded == ("b",)
    assert parts.cache.held_bytes == 100


async def test_stop_closes_every_cached_model(make_parts: PartsFactory) -> None:
    parts = make_parts()
    await parts.cache.ensure_loaded("a")
    await parts.cache.ensure_loaded("b")

    await parts.cache.stop()

    assert parts.detectors["a"].closed
    assert parts.detectors["b"].closed
    assert parts.cache.held_bytes == 0


class HangingLoader:
    """Blocks until its load is cancelled, as a download from a hung server does."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def load(
        self, ref: ModelRef, *, cancel: threading.Event | None = None
    ) -> tuple[FakeDetector, LoadReport]:
        self.started.set()
        if cancel is not None and cancel.wait(30):
            raise LoadCancelled(f"model {ref}: load cancelled")
        raise AssertionError("the load was never cancelled")


async def test_stop_cancels_a_hung_load_and_its_waiter_is_told() -> None:
    loader = HangingLoader()
    with ThreadPoolExecutor(1) as executor:
        cache = ModelCache(
            loader,
            loader_executor=executor,
            catalog=StaticCatalog({"a": make_ref("a", "1")}),
            allowed=frozenset({"a"}),
            budget_bytes=1000,
            metrics=NodeMetrics(),
        )
        waiting = asyncio.ensure_future(cache.ensure_loaded("a"))
        await until(loader.started.is_set)

        await asyncio.wait_for(cache.stop(), 5)

        with pytest.raises(ModelLoadFailed, match=r"'a' could not be loaded: .* cancelled"):
            await waiting


@pytest.mark.parametrize("returns", ["while-stop-waits", "after-stop-gave-up"])
async def test_a_load_that_returns_after_stop_began_has_its_detector_closed(returns: str) -> None:
    gate = threading.Event()
    detector = FakeDetector()
    loader = FakeLoader(detectors={"a": detector}, gate=gate, honours_cancel=False)
    with ThreadPoolExecutor(1) as executor:
        cache = ModelCache(
            loader,
            loader_executor=executor,
            catalog=StaticCatalog({"a": make_ref("a", "1")}),
            allowed=frozenset({"a"}),
            budget_bytes=1000,
            metrics=NodeMetrics(),
            stop_grace_s=5.0 if returns == "while-stop-waits" else 0.05,
        )
        waiting = asyncio.ensure_future(cache.ensure_loaded("a"))
        await until(lambda: loader.running == 1, what="the load to start")

        stopping = asyncio.ensure_future(cache.stop())
        if returns == "while-stop-waits":
            await asyncio.sleep(0.05)
            assert not stopping.done()
            gate.set()  # the loader ignored the cancel: its detector comes back now
        await asyncio.wait_for(stopping, 10)
        gate.set()
        await until(lambda: detector.closed, timeout_s=10, what="the late detector to be closed")

    assert loader.loads == ["a"]
    assert cache.loaded == ()
    assert cache.held_bytes == 0
    with pytest.raises((ModelLoadFailed, Draining, asyncio.CancelledError)):
        await waiting
