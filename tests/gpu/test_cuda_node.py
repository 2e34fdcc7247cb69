"""A node on ``cuda:0`` (half precision, channels-last) against the CPU node and the device."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest
import torch

from inference_node.model import ModelRef
from inference_node.telemetry.device import nvml_uuid
from tests.integration.harness import RunningNode, encode, iou
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

SEEDS = range(9000, 9006)
MIN_CONFIDENCE = 0.5
"""Compare detections clear of the score threshold; half precision moves scores slightly."""
MIN_IOU = 0.9
SWAPS = 20
MEMORY_TOLERANCE = 0.05
STEADY_READS = 10


@pytest.fixture
def gpu_node(start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]) -> RunningNode:
    """A node on ``cuda:0`` serving shapes-v1."""
    node = start_node(device="cuda:0")
    node.swap_to(refs["v1"])
    return node


def _box(detection: pb.Detection) -> tuple[float, float, float, float]:
    return (detection.box.x1, detection.box.y1, detection.box.x2, detection.box.y2)


def _unmatched(ours: Sequence[pb.Detection], theirs: Sequence[pb.Detection]) -> list[pb.Detection]:
    """Our confident detections that ``theirs`` has no same-class box for (IoU > MIN_IOU)."""
    return [
        mine
        for mine in ours
        if mine.confidence >= MIN_CONFIDENCE
        and not any(
            other.class_name == mine.class_name and iou(_box(mine), _box(other)) > MIN_IOU
            for other in theirs
        )
    ]


def test_cuda_node_detects_what_the_cpu_node_detects(
    gpu_node: RunningNode, start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    cpu_node = start_node(device="cpu")
    cpu_node.swap_to(refs["v1"])
    compared = 0

    for seed in SEEDS:
        request = pb.DetectRequest(image=encode(render_image(seed).image))
        on_cpu = cpu_node.stub.Detect(request, timeout=30)
        on_gpu = gpu_node.stub.Detect(request, timeout=30)

        assert on_gpu.model.sha256 == on_cpu.model.sha256 == refs["v1"].sha256
        assert _unmatched(on_cpu.detections, on_gpu.detections) == [], f"seed {seed}: CPU only"
        assert _unmatched(on_gpu.detections, on_cpu.detections) == [], f"seed {seed}: GPU only"
        compared += sum(d.confidence >= MIN_CONFIDENCE for d in on_cpu.detections)
    assert compared > 0, "the CPU node found nothing to compare"
    assert gpu_node.status().device == "cuda:0"


def _settled_allocation(*, timeout_s: float = 30.0) -> int:
    """Bytes torch holds on ``cuda:0`` once they stop changing (the retired model is closed)."""
    deadline = time.monotonic() + timeout_s
    last, steady = torch.cuda.memory_allocated(0), 0
    while steady < STEADY_READS:
        if time.monotonic() > deadline:
            raise AssertionError(f"cuda:0 allocation still changing after {timeout_s}s")
        time.sleep(0.05)
        now = torch.cuda.memory_allocated(0)
        steady, last = (steady + 1 if now == last else 0), now
    return last


def test_swaps_give_device_memory_back(gpu_node: RunningNode, refs: dict[str, ModelRef]) -> None:
    gpu_node.swap_to(refs["v2"])
    baseline = _settled_allocation()
    settled = []

    for index in range(SWAPS):
        gpu_node.swap_to(refs["v1"] if index % 2 == 0 else refs["v2"])
        settled.append(_settled_allocation())

    assert baseline > 0
    drift = [abs(after - baseline) / baseline for after in settled]
    assert max(drift) <= MEMORY_TOLERANCE, (
        f"allocated bytes after each swap {settled} drift from {baseline} after the first"
    )


def test_status_reports_device_memory_of_the_gpu_in_use(gpu_node: RunningNode) -> None:
    status = gpu_node.status()

    assert status.device == "cuda:0"
    assert status.memory.available
    assert 0 < status.memory.used_bytes <= status.memory.total_bytes
    assert status.memory.used_bytes >= torch.cuda.memory_reserved(0)


def test_nvml_knows_the_gpu_torch_calls_cuda_0() -> None:
    import pynvml

    pynvml.nvmlInit()
    try:
        count = pynvml.nvmlDeviceGetCount()
        uuids = {
            pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)
        }
    finally:
        pynvml.nvmlShutdown()

    assert nvml_uuid("cuda:0") in uuids
