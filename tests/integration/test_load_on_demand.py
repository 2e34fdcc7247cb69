"""Requests naming an allowed model load it on demand, once, within the node's memory budget."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from inference_node.model import ModelRef
from inference_node.serving.catalog import StaticCatalog
from inference_node.swapping.loader import ModelLoader
from tests.integration.conftest import node_config
from tests.integration.harness import RunningNode, encode
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

IMAGE = encode(render_image(5).image)
ALLOWED = frozenset({"shapes-v2", "shapes-drift"})

StartNode = Callable[..., RunningNode]


@pytest.fixture(scope="module")
def named(refs: dict[str, ModelRef]) -> dict[str, ModelRef]:
    """The real models under names of their own; shapes-slow is registered but not allowed."""
    return {
        "shapes-v2": replace(refs["v2"], name="shapes-v2"),
        "shapes-drift": replace(refs["drift"], name="shapes-drift"),
        "shapes-slow": replace(refs["slow"], name="shapes-slow"),
    }


@pytest.fixture
def start(
    tmp_path: Path, named: dict[str, ModelRef], refs: dict[str, ModelRef]
) -> Iterator[StartNode]:
    """Start a node assigned shapes-v1 (named "shapes") that finds the others by name."""
    started: list[RunningNode] = []

    def start_node(**overrides: object) -> RunningNode:
        config = node_config(tmp_path, **overrides)
        node = RunningNode(config, catalog=StaticCatalog(named))
        started.append(node)
        node.swap_to(refs["v1"])
        return node

    yield start_node
    for node in started:
        node.stop()


@pytest.fixture(scope="module")
def weight_bytes(
    named: dict[str, ModelRef], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, int]:
    """What each allowed model's weights measure once loaded on the CPU."""
    loader = ModelLoader(device="cpu", cache_dir=tmp_path_factory.mktemp("sizes"), warmup_batch=1)
    sizes = {}
    for name in sorted(ALLOWED):
        detector, _ = loader.load(named[name])
        sizes[name] = detector.weight_bytes()
        detector.close()
    return sizes


def test_eight_concurrent_first_requests_are_served_after_one_load(start: StartNode) -> None:
    node = start(allowed_models=ALLOWED)
    ready = threading.Barrier(8)

    def detect(_: int) -> pb.DetectResponse:
        ready.wait(10)
        reply: pb.DetectResponse = node.stub.Detect(
            pb.DetectRequest(image=IMAGE, model="shapes-v2"), timeout=60
        )
        return reply

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(detect, range(8)))

    assert {reply.model.name for reply in replies} == {"shapes-v2"}
    assert _sample(node, "yolofleet_model_cache_loads_total", "shapes-v2") == 1
    assert _sample(node, "yolofleet_model_cache_misses_total", "shapes-v2") == 8
    again = node.stub.Detect(pb.DetectRequest(image=IMAGE, model="shapes-v2"), timeout=30)
    assert again.model.name == "shapes-v2"
    assert _sample(node, "yolofleet_model_cache_hits_total", "shapes-v2") == 1
    assert _sample(node, "yolofleet_model_cache_loads_total", "shapes-v2") == 1


def test_budget_for_one_extra_model_evicts_the_older_one(
    start: StartNode, weight_bytes: dict[str, int]
) -> None:
    budget = max(weight_bytes.values()) + min(weight_bytes.values()) // 2
    node = start(allowed_models=ALLOWED, model_memory_budget_bytes=budget)
    most_held = _watch_bytes_held(node)

    try:
        for name in ["shapes-v2", "shapes-drift", "", "shapes-v2"]:
            reply = node.stub.Detect(pb.DetectRequest(image=IMAGE, model=name), timeout=60)

            assert reply.model.name == (name or "shapes")
            assert _sample(node, "yolofleet_model_cache_bytes") <= budget
    finally:
        held = most_held()

    assert 0 < held <= budget
    assert _sample(node, "yolofleet_model_cache_evictions_total", "shapes-v2") == 1
    assert _sample(node, "yolofleet_model_cache_evictions_total", "shapes-drift") == 1
    assert _sample(node, "yolofleet_model_cache_loads_total", "shapes-v2") == 2
    cache = node.node.cache
    assert cache is not None
    assert node.on_loop(lambda: cache.loaded) == ("shapes-v2",)
    assigned = node.stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)
    assert assigned.model.name == "shapes"


def test_model_not_on_the_allow_list_is_permission_denied(start: StartNode) -> None:
    node = start(allowed_models=ALLOWED)

    with pytest.raises(grpc.RpcError) as caught:
        node.stub.Detect(pb.DetectRequest(image=IMAGE, model="shapes-slow"), timeout=30)

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == (
        "model 'shapes-slow' is not allowed on this node (allowed: shapes-drift, shapes-v2); "
        "an operator can add it with --allow-model"
    )
    assert _sample(node, "yolofleet_model_cache_loads_total", "shapes-slow") == 0
    reply = node.stub.Detect(pb.DetectRequest(image=IMAGE, model="shapes-drift"), timeout=60)
    assert reply.model.name == "shapes-drift"


def _sample(node: RunningNode, metric: str, model: str | None = None) -> float:
    labels = {"model": model} if model is not None else {}
    return node.node.metrics.registry.get_sample_value(metric, labels) or 0.0


def _watch_bytes_held(node: RunningNode) -> Callable[[], float]:
    """Sample the bytes-held gauge until the returned call, which gives the most it saw."""
    stop = threading.Event()
    most = [0.0]

    def watch() -> None:
        while not stop.wait(0.002):
            most[0] = max(most[0], _sample(node, "yolofleet_model_cache_bytes"))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    def finish() -> float:
        stop.set()
        thread.join(5)
        return most[0]

    return finish
