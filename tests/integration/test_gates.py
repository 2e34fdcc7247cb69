"""Each validation gate refuses a bad candidate while the old model keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import torch

from inference_node.config import GateConfig
from inference_node.errors import DigestMismatch, LoadError, SwapError, ValidationFailed
from inference_node.model import ModelRef
from inference_node.node_parts import ref_for_file
from tests.integration.harness import RunningNode, encode
from yolofleet.demo_models import DemoModels
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

IMAGE = encode(render_image(21).image)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint with the right classes and input size but random weights."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)  # type: ignore[no-untyped-call]
    model.names = {0: "circle", 1: "square", 2: "triangle"}
    path = tmp_path_factory.mktemp("untrained") / "untrained.pt"
    torch.save({"model": model, "train_args": {"imgsz": 160}}, path)
    return path


def _assert_refused_and_old_serves(
    node: RunningNode, candidate: ModelRef, old: ModelRef, error: type[SwapError], reason: str
) -> SwapError:
    with pytest.raises(error) as refused:
        node.swap_to(candidate)

    assert reason in str(refused.value)
    reply = node.stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)
    assert reply.model.sha256 == old.sha256
    status = node.status()
    assert status.phase == pb.SLOT_PHASE_FAILED
    assert reason in status.last_error
    assert status.active_model.sha256 == old.sha256
    return refused.value


def test_wrong_digest_is_refused_before_loading(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node()
    node.swap_to(refs["v1"])
    lying = replace(refs["v2"], sha256="0" * 64, version="000000000000")

    _assert_refused_and_old_serves(node, lying, refs["v1"], DigestMismatch, "sha256 of")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(lambda data: data[: len(data) // 2], "not a valid checkpoint", id="truncated"),
        pytest.param(
            lambda data: data[:2000] + bytes(b ^ 0xFF for b in data[2000:2400]) + data[2400:],
            "refused",
            id="corrupt",
        ),
    ],
)
def test_damaged_model_file_is_refused_before_unpickling(
    start_node: Callable[..., RunningNode],
    refs: dict[str, ModelRef],
    models: DemoModels,
    tmp_path: Path,
    damage: Callable[[bytes], bytes],
    reason: str,
) -> None:
    node = start_node()
    node.swap_to(refs["v1"])
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(damage(models.v2.read_bytes()))

    _assert_refused_and_old_serves(
        node, ref_for_file(damaged, name="shapes"), refs["v1"], LoadError, reason
    )


def test_changed_class_list_is_refused(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node()
    node.swap_to(refs["v1"])

    refused = _assert_refused_and_old_serves(
        node, refs["alt"], refs["v1"], ValidationFailed, "class names"
    )

    assert isinstance(refused, ValidationFailed)
    assert refused.gate == "classes"


def test_pinned_class_list_refuses_other_classes(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node(gates=GateConfig(pinned_classes=("cat", "dog"), latency_factor=None))

    with pytest.raises(ValidationFailed, match="pinned list"):
        node.swap_to(refs["v1"])

    with pytest.raises(grpc.RpcError) as caught:
        node.stub.Detect(pb.DetectRequest(image=IMAGE), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_calibration_miss_is_refused(
    start_node: Callable[..., RunningNode],
    refs: dict[str, ModelRef],
    models: DemoModels,
    untrained: Path,
) -> None:
    node = start_node(gates=GateConfig(calibration_dir=models.calibration_dir, latency_factor=None))
    node.swap_to(refs["v1"])

    refused = _assert_refused_and_old_serves(
        node, ref_for_file(untrained, name="shapes"), refs["v1"], ValidationFailed, "calibration/"
    )

    assert isinstance(refused, ValidationFailed)
    assert refused.gate == "calibration"


def test_too_slow_candidate_is_refused(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node(gates=GateConfig(latency_factor=1.5))
    node.swap_to(refs["v1"])

    refused = _assert_refused_and_old_serves(
        node, refs["slow"], refs["v1"], ValidationFailed, "too slow"
    )

    assert isinstance(refused, ValidationFailed)
    assert refused.gate == "latency"


# "broken" finds every shape but calls triangles circles: no gate can see that, only the
# control plane's output guardrails (the class-share check) can.
@pytest.mark.parametrize("candidate", ["v2", "broken"])
def test_good_candidate_passes_every_gate(
    start_node: Callable[..., RunningNode],
    refs: dict[str, ModelRef],
    models: DemoModels,
    candidate: str,
) -> None:
    node = start_node(gates=GateConfig(calibration_dir=models.calibration_dir, latency_factor=2.0))
    node.swap_to(refs["v1"])

    active = node.swap_to(refs[candidate])

    reply = node.stub.Detect(pb.DetectRequest(image=IMAGE), timeout=30)
    assert reply.model.sha256 == refs[candidate].sha256 == active.ref.sha256
    assert node.status().phase == pb.SLOT_PHASE_SERVING
