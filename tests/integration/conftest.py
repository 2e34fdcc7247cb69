"""Session-wide real models and a shared node; per-test nodes come from ``start_node``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from inference_node.config import GateConfig, NodeConfig
from inference_node.model import ModelRef
from inference_node.node_parts import ref_for_file
from inference_node.serving.requests import BatchLimits
from tests.integration.harness import RunningNode
from yolofleet.demo_models import DemoModels, ensure_models


@pytest.fixture(scope="session")
def models() -> DemoModels:
    """The project's trained demo models (trained once, then cached on disk)."""
    return ensure_models()


@pytest.fixture(scope="session")
def refs(models: DemoModels) -> dict[str, ModelRef]:
    return {
        "v1": ref_for_file(models.v1, name="shapes"),
        "v2": ref_for_file(models.v2, name="shapes"),
        "alt": ref_for_file(models.alt, name="shapes"),
        "slow": ref_for_file(models.slow, name="shapes"),
        "drift": ref_for_file(models.drift, name="shapes"),
        "broken": ref_for_file(models.broken, name="shapes"),
    }


def node_config(tmp: Path, **overrides: object) -> NodeConfig:
    base = NodeConfig(
        port=0,
        device="cpu",
        threads=1,  # several nodes share this machine's cores: one torch thread each
        min_swap_interval_s=0.0,
        batch=BatchLimits(max_size=8, max_wait_s=0.002, max_queue=64),
        gates=GateConfig(latency_factor=None),
        artifact_cache=tmp / "artifacts",
        drain_timeout_s=10.0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """Start nodes for one test; each is stopped at teardown."""
    started: list[RunningNode] = []

    def start(**overrides: object) -> RunningNode:
        node = RunningNode(node_config(tmp_path, **overrides))
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture(scope="session")
def shared_node(
    tmp_path_factory: pytest.TempPathFactory, refs: dict[str, ModelRef]
) -> Iterator[RunningNode]:
    """One node serving v1 for tests that only send requests."""
    node = RunningNode(node_config(tmp_path_factory.mktemp("shared")))
    node.swap_to(refs["v1"])
    yield node
    node.stop()
