from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from inference_node.errors import (
    Draining,
    ModelNotAllowed,
    ModelNotFound,
    NoModelLoaded,
    Overloaded,
    Unavailable,
)
from inference_node.model import DetectParams
from inference_node.serving.batcher import Batcher
from inference_node.serving.catalog import StaticCatalog
from inference_node.serving.ledger import Ledger
from inference_node.serving.model_cache import ModelCache
from inference_node.serving.requests import BatchLimits, DetectRequest
from inference_node.serving.routing import Router
from inference_node.swapping.loader import LoadReport
from inference_node.swapping.slot import ModelSlot
from inference_node.telemetry.metrics import NodeMetrics
from inference_node.telemetry.stats import StatsRecorder
from tests.fakes import FakeDetector, FakeLoader, make_ref
from tests.waits import until

REPORT = LoadReport(fetch_s=0, build_s=0, warmup_s=0, weight_bytes=0)
IMAGE = np.zeros((8, 8, 3), dtype=np.uint8)


def request(model_name: str = "") -> DetectRequest:
    return DetectRequest(image=IMAGE, params=DetectParams(), model_name=model_name)


def make_batcher(
    slot: ModelSlot,
    *,
    device: Executor,
    limits: BatchLimits,
    cache: ModelCache | None = None,
    metrics: NodeMetrics | None = None,
    stats: StatsRecorder | None = None,
) -> Batcher:
    metrics = metrics or NodeMetrics()
    router = Router(slot, cache)
    ledger = Ledger(stats=stats or StatsRecorder(), metrics=metrics, router=router)
    return Batcher(router, device_executor=device, limits=limits, metrics=metrics, ledger=ledger)


@pytest.fixture
async def parts() -> AsyncIterator[tuple[ModelSlot, Batcher]]:
    device = ThreadPoolExecutor(1)
    decode = ThreadPoolExecutor(2)
    slot = ModelSlot()
    batcher = make_batcher(
        slot, device=device, limits=BatchLimits(max_size=4, max_wait_s=0.0, max_queue=8)
    )
    batcher.start()
    yield slot, batcher
    await batcher.stop()
    device.shutdown()
    decode.shutdown()


async def test_submit_without_model_is_unavailable(parts: tuple[ModelSlot, Batcher]) -> None:
    _, batcher = parts

    with pytest.raises(NoModelLoaded):
        await batcher.submit(request())


async def test_batches_respect_max_size_and_never_mix_models(
    parts: tuple[ModelSlot, Batcher],
) -> None:
    slot, batcher = parts
    gate = threading.Event()
    first = FakeDetector(gate=gate)
    second = FakeDetector()
    slot.swap(make_ref("m", "1"), first, load=REPORT, started_at=0)
    blocked = asyncio.ensure_future(batcher.submit(request()))
    await until(lambda: batcher.pending == 1 and not batcher.queued)
    queued = [asyncio.ensure_future(batcher.submit(request())) for _ in range(6)]
    await until(lambda: batcher.queued == 6)

    slot.swap(make_ref("m", "2"), second, load=REPORT, started_at=0)
    gate.set()
    results = await asyncio.gather(blocked, *queued)

    assert results[0].generation == 1
    assert {r.generation for r in results[1:]} == {2}
    assert first.batches == [1]
    assert second.batches == [4, 2]


async def test_full_queue_is_refused_with_overloaded(parts: tuple[ModelSlot, Batcher]) -> None:
    slot, batcher = parts
    gate = threading.Event()
    slot.swap(make_ref("m"), FakeDetector(gate=gate), load=REPORT, started_at=0)
    running = asyncio.ensure_future(batcher.submit(request()))
    await until(lambda: batcher.pending == 1 and not batcher.queued)
    queued = [asyncio.ensure_future(batcher.submit(request())) for _ in range(8)]
    await until(lambda: batcher.queued == 8)

    with pytest.raises(Overloaded):
        await batcher.submit(request())

    gate.set()
    assert len(await asyncio.gather(running, *queued)) == 9


async def test_request_for_another_model_is_not_found(parts: tuple[ModelSlot, Batcher]) -> None:
    slot, batcher = parts
    slot.swap(make_ref("shapes"), FakeDetector(), load=REPORT, started_at=0)

    with pytest.raises(ModelNotFound, match="'other' is not served here"):
        await batcher.submit(request("other"))
    result = await batcher.submit(request("shapes"))

    assert result.ref.name == "shapes"


async def test_lone_request_runs_without_waiting_for_partners() -> None:
    device, decode = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    slot = ModelSlot()
    slot.swap(make_ref("m"), FakeDetector(), load=REPORT, started_at=0)
    batcher = make_batcher(
        slot, device=device, limits=BatchLimits(max_size=16, max_wait_s=30.0, max_queue=8)
    )
    batcher.start()

    result = await asyncio.wait_for(batcher.submit(request()), 5)

    assert result.batch_size == 1
    await batcher.stop()
    device.shutdown()
    decode.shutdown()


async def test_drain_finishes_queued_work_then_refuses(parts: tuple[ModelSlot, Batcher]) -> None:
    slot, batcher = parts
    slot.swap(make_ref("m"), FakeDetector(delay_s=0.05), load=REPORT, started_at=0)
    queued = [asyncio.ensure_future(batcher.submit(request())) for _ in range(5)]
    await until(lambda: batcher.pending == 5)

    drained = await batcher.drain(5)

    assert drained
    assert all(task.done() and task.exception() is None for task in queued)
    with pytest.raises(Draining):
        await batcher.submit(request())


@dataclass
class WithCache:
    slot: ModelSlot
    batcher: Batcher
    assigned: FakeDetector
    loader: FakeLoader


@pytest.fixture
async def with_cache() -> AsyncIterator[WithCache]:
    """A batcher serving "m" from the slot and allowed models "a" and "b" from a cache."""
    device, decode, loading = ThreadPoolExecutor(1), ThreadPoolExecutor(2), ThreadPoolExecutor(1)
    metrics = NodeMetrics()
    loader = FakeLoader(detectors={"a": FakeDetector(), "b": FakeDetector()})
    cache = ModelCache(
        loader,
        loader_executor=loading,
        catalog=StaticCatalog({"a": make_ref("a", "1"), "b": make_ref("b", "2")}),
        allowed=frozenset({"a", "b"}),
        budget_bytes=10_000,
        metrics=metrics,
    )
    slot = ModelSlot()
    assigned = FakeDetector(gate=threading.Event())
    slot.swap(make_ref("m", "9"), assigned, load=REPORT, started_at=0)
    batcher = make_batcher(
        slot,
        device=device,
        limits=BatchLimits(max_size=4, max_wait_s=0.0, max_queue=32),
        cache=cache,
        metrics=metrics,
    )
    batcher.start()
    yield WithCache(slot=slot, batcher=batcher, assigned=assigned, loader=loader)
    assert assigned.gate is not None
    assigned.gate.set()
    if loader.gate is not None:
        loader.gate.set()
    await batcher.stop()
    await cache.stop()
    for executor in (device, decode, loading):
        executor.shutdown()


async def test_batches_are_cut_per_model_and_never_mix_models(with_cache: WithCache) -> None:
    parts = with_cache
    await parts.batcher.submit(request("a"))
    await parts.batcher.submit(request("b"))
    blocked = asyncio.ensure_future(parts.batcher.submit(request()))
    await until(lambda: parts.batcher.running == 1)
    names = ["a", "", "b", "a", "m", "a", "b", "a", "", "a"]
    queued = [asyncio.ensure_future(parts.batcher.submit(request(n))) for n in names]
    await until(lambda: parts.batcher.queued == len(names))

    assert parts.assigned.gate is not None
    parts.assigned.gate.set()
    await blocked
    results = await asyncio.gather(*queued)

    for name, result in zip(names, results, strict=True):
        assert result.ref.name == (name or "m")
    assert parts.assigned.batches == [1, 3]
    assert parts.loader.detectors["a"].batches == [1, 4, 1]
    assert parts.loader.detectors["b"].batches == [1, 2]
    assert {r.generation for r in results if r.ref.name != "m"} == {0}


async def test_first_requests_for_an_unloaded_model_share_one_load(
    with_cache: WithCache,
) -> None:
    parts = with_cache
    assert parts.assigned.gate is not None
    parts.assigned.gate.set()
    parts.loader.gate = threading.Event()
    waiting = [asyncio.ensure_future(parts.batcher.submit(request("a"))) for _ in range(8)]
    await until(lambda: parts.loader.running == 1)

    parts.loader.gate.set()
    results = await asyncio.gather(*waiting)

    assert parts.loader.loads == ["a"]
    assert {result.ref.name for result in results} == {"a"}


async def test_assigned_model_answers_while_another_model_loads(with_cache: WithCache) -> None:
    parts = with_cache
    assert parts.assigned.gate is not None
    parts.assigned.gate.set()
    parts.loader.gate = threading.Event()
    loading = asyncio.ensure_future(parts.batcher.submit(request("a")))
    await until(lambda: parts.loader.running == 1)

    result = await asyncio.wait_for(parts.batcher.submit(request()), 5)

    assert result.ref.name == "m"
    assert not loading.done()
    parts.loader.gate.set()
    assert (await loading).ref.name == "a"


async def test_model_not_on_the_allow_list_is_refused(with_cache: WithCache) -> None:
    parts = with_cache
    assert parts.assigned.gate is not None
    parts.assigned.gate.set()

    with pytest.raises(ModelNotAllowed, match="'other' is not allowed on this node"):
        await parts.batcher.submit(request("other"))
    result = await parts.batcher.submit(request("a"))

    assert result.ref.name == "a"
    assert parts.loader.loads == ["a"]


async def test_requests_waiting_for_a_load_count_against_the_queue_limit(
    with_cache: WithCache,
) -> None:
    parts = with_cache
    parts.loader.gate = threading.Event()
    waiting = [asyncio.ensure_future(parts.batcher.submit(request("a"))) for _ in range(33)]
    await until(lambda: any(task.done() for task in waiting))

    refused = [task for task in waiting if task.done()]
    assert len(refused) == 1
    assert isinstance(refused[0].exception(), Overloaded)
    assert parts.assigned.gate is not None
    parts.assigned.gate.set()
    parts.loader.gate.set()
    results = await asyncio.gather(*(task for task in waiting if task not in refused))
    assert {result.ref.name for result in results} == {"a"}


async def test_a_request_for_a_model_renamed_away_fails_alone_and_is_not_moved(
    with_cache: WithCache,
) -> None:
    """Queued behind a batch, a request naming the slot's model meets a slot that now serves
    another name: it gets UNAVAILABLE (retry); the unnamed one beside it runs on the new model,
    and nothing is loaded on its behalf."""
    parts = with_cache
    blocked = asyncio.ensure_future(parts.batcher.submit(request()))
    await until(lambda: parts.batcher.running == 1)
    named = asyncio.ensure_future(parts.batcher.submit(request("m")))
    unnamed = asyncio.ensure_future(parts.batcher.submit(request()))
    await until(lambda: parts.batcher.queued == 2)
    renamed = FakeDetector()
    parts.slot.swap(make_ref("n", "7"), renamed, load=REPORT, started_at=0)
    assert parts.assigned.gate is not None
    parts.assigned.gate.set()

    with pytest.raises(Unavailable, match="'m' stopped being served here"):
        await named
    assert ((await unnamed).ref.name, (await blocked).ref.name) == ("n", "m")
    assert (renamed.batches, parts.loader.loads) == ([1], [])


async def test_queued_requests_keep_their_evicted_model_and_the_worker_never_loads() -> None:
    """With room for one on-demand model, requests queued for "a" are answered by "a" even once
    "b" is asked for; "b" loads after them, before it is queued: one load each."""
    device, loading = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    metrics = NodeMetrics()
    loader = FakeLoader(detectors={"a": FakeDetector(), "b": FakeDetector()})
    catalog = StaticCatalog({"a": make_ref("a", "1"), "b": make_ref("b", "2")})
    cache = ModelCache(
        loader, loader_executor=loading, catalog=catalog, allowed=frozenset({"a", "b"}),
        budget_bytes=1500, metrics=metrics,
    )  # fmt: skip
    slot = ModelSlot()
    gate = threading.Event()
    slot.swap(make_ref("m", "9"), FakeDetector(gate=gate), load=REPORT, started_at=0)
    batcher = make_batcher(
        slot, device=device, limits=BatchLimits(max_size=4, max_wait_s=0.0, max_queue=8),
        cache=cache, metrics=metrics,
    )  # fmt: skip
    batcher.start()
    blocked = asyncio.ensure_future(batcher.submit(request()))
    await until(lambda: batcher.running == 1)
    for_a = [asyncio.ensure_future(batcher.submit(request("a"))) for _ in range(3)]
    await until(lambda: batcher.queued == 3)
    for_b = asyncio.ensure_future(batcher.submit(request("b")))
    await until(lambda: cache.loaded == ())  # "a" evicted for "b", still held by its requests

    gate.set()
    answers = await asyncio.gather(blocked, *for_a, for_b)

    assert [answer.ref.name for answer in answers] == ["m", "a", "a", "a", "b"]
    assert (loader.loads, loader.detectors["a"].batches) == (["a", "b"], [3])
    await batcher.stop()
    await cache.stop()
    device.shutdown()
    loading.shutdown()


async def test_the_batcher_counts_answers_and_leaves_out_refusals_and_caller_errors(
    parts: tuple[ModelSlot, Batcher],
) -> None:
    slot, _ = parts
    stats = StatsRecorder()
    device = ThreadPoolExecutor(1)
    batcher = make_batcher(
        slot, device=device, limits=BatchLimits(max_size=1, max_wait_s=0, max_queue=1),
        stats=stats,
    )  # fmt: skip
    gate = threading.Event()
    slot.swap(make_ref("m", "9"), FakeDetector(gate=gate), load=REPORT, started_at=0)
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(request()))
    await until(lambda: batcher.running == 1)
    with pytest.raises(ModelNotFound):  # the caller's error: not counted
        await batcher.submit(request("other"))
    queued = asyncio.ensure_future(batcher.submit(request("m")))
    await until(lambda: batcher.queued == 1)

    with pytest.raises(Overloaded):  # a refusal (queue full) says nothing of the model: not counted
        await batcher.submit(request())
    gate.set()
    await asyncio.gather(running, queued)

    (model,) = stats.window(0, time.time()).models
    assert (model.model.sha256, model.requests, model.errors, model.images) == ("9" * 64, 2, 0, 2)
    await batcher.stop()
    device.shutdown()
