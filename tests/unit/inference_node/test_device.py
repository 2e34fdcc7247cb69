"""GPU logic behind its seams: NVML telemetry, device choice, memory release and status figures.

Only the hardware is faked: a fake ``pynvml`` module stands in for the driver library, and
``torch.cuda``'s own functions are monkeypatched to describe GPUs this machine does not have.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from inference_node.serving.status import SlotPhase, StatusSource
from inference_node.swapping.agent import SwapAgent
from inference_node.swapping.slot import ModelSlot
from inference_node.swapping.validate import ValidationPolicy
from inference_node.telemetry.device import (
    NO_MEMORY_FIGURES,
    DeviceMemory,
    NullTelemetry,
    NvmlTelemetry,
    apply_threads,
    quota_cores,
    release_device_memory,
    resolve_device,
    serving_threads,
    telemetry_for,
    usable_cores,
)
from inference_node.telemetry.metrics import NodeMetrics
from tests.fakes import FakeLoader

GIB = 1024**3
FIRST_UUID = "GPU-11111111-1111-1111-1111-111111111111"
SECOND_UUID = "GPU-22222222-2222-2222-2222-222222222222"


class FakeNVMLError(Exception):
    """Stands in for ``pynvml.NVMLError``."""


@dataclass
class FakeGpu:
    used_bytes: int
    total_bytes: int
    utilization_percent: int


@dataclass(frozen=True)
class FakeMemoryInfo:
    used: int
    total: int
    free: int


@dataclass(frozen=True)
class FakeUtilization:
    gpu: int
    memory: int


class FakeNvml(types.ModuleType):
    """A ``pynvml`` module whose GPUs are ``FakeGpu`` records keyed by UUID."""

    NVMLError = FakeNVMLError

    def __init__(self, gpus: dict[str, FakeGpu]) -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.init_error: Exception | None = None
        self.sample_error: Exception | None = None
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid not in self.gpus:
            raise FakeNVMLError("Not Found")
        return uuid

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return list(self.gpus)[index]

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> FakeMemoryInfo:
        if self.sample_error is not None:
            raise self.sample_error
        gpu = self.gpus[handle]
        return FakeMemoryInfo(
            used=gpu.used_bytes, total=gpu.total_bytes, free=gpu.total_bytes - gpu.used_bytes
        )

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> FakeUtilization:
        return FakeUtilization(gpu=self.gpus[handle].utilization_percent, memory=0)


@dataclass(frozen=True)
class FakeDeviceProperties:
    uuid: str


class FakeTelemetry:
    """A ``GpuTelemetry`` reporting whatever ``memory`` holds at the time of each sample."""

    def __init__(self, memory: DeviceMemory) -> None:
        self.memory = memory
        self.samples = 0
        self.closed = False

    def sample(self) -> DeviceMemory:
        self.samples += 1
        return self.memory

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """Two GPUs in NVML's order; imports of ``pynvml`` get this module."""
    fake = FakeNvml(
        {
            FIRST_UUID: FakeGpu(used_bytes=1 * GIB, total_bytes=16 * GIB, utilization_percent=10),
            SECOND_UUID: FakeGpu(used_bytes=3 * GIB, total_bytes=24 * GIB, utilization_percent=75),
        }
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def _cuda(monkeypatch: pytest.MonkeyPatch, *, uuids: tuple[str, ...]) -> None:
    """Make torch see one CUDA device per UUID, in that order (``cuda:0`` is ``uuids[0]``)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(uuids))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(uuids))
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda index: FakeDeviceProperties(uuid=uuids[index].removeprefix("GPU-")),
    )


# NvmlTelemetry


def test_nvml_telemetry_reports_memory_and_utilisation(nvml: FakeNvml) -> None:
    telemetry = NvmlTelemetry(SECOND_UUID)

    memory = telemetry.sample()

    assert memory == DeviceMemory(
        available=True, used_bytes=3 * GIB, total_bytes=24 * GIB, utilization_percent=75
    )


def test_nvml_error_during_sample_reports_no_figures_and_warns(
    nvml: FakeNvml, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry = NvmlTelemetry(FIRST_UUID)
    nvml.sample_error = FakeNVMLError("GPU is lost")

    with caplog.at_level(logging.WARNING, logger="inference_node.telemetry.device"):
        memory = telemetry.sample()

    assert memory == NO_MEMORY_FIGURES
    assert "GPU is lost" in caplog.text


def test_nvml_telemetry_recovers_after_a_failed_sample(nvml: FakeNvml) -> None:
    telemetry = NvmlTelemetry(FIRST_UUID)
    nvml.sample_error = FakeNVMLError("GPU is lost")
    telemetry.sample()
    nvml.sample_error = None

    memory = telemetry.sample()

    assert memory.available
    assert memory.used_bytes == 1 * GIB


def test_close_shuts_nvml_down(nvml: FakeNvml) -> None:
    telemetry = NvmlTelemetry(FIRST_UUID)

    telemetry.close()

    assert nvml.calls == ["init", "shutdown"]


def test_unknown_gpu_raises_and_leaves_nvml_shut_down(nvml: FakeNvml) -> None:
    with pytest.raises(FakeNVMLError):
        NvmlTelemetry("GPU-00000000-0000-0000-0000-000000000000")

    assert nvml.calls == ["init", "shutdown"]


# telemetry_for


def test_cuda_device_gets_nvml_telemetry(nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    _cuda(monkeypatch, uuids=(FIRST_UUID,))

    telemetry = telemetry_for("cuda:0")

    assert isinstance(telemetry, NvmlTelemetry)
    assert telemetry.sample().total_bytes == 16 * GIB


def test_nvml_figures_are_for_the_gpu_torch_calls_cuda_n(
    nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CUDA_VISIBLE_DEVICES=1 (or a fastest-first order): torch's cuda:0 is NVML's second GPU
    _cuda(monkeypatch, uuids=(SECOND_UUID, FIRST_UUID))

    first, second = telemetry_for("cuda:0"), telemetry_for("cuda:1")

    assert first.sample().total_bytes == 24 * GIB
    assert second.sample().total_bytes == 16 * GIB


def test_bare_cuda_means_the_first_visible_gpu(
    nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cuda(monkeypatch, uuids=(SECOND_UUID,))

    telemetry = telemetry_for("cuda")

    assert telemetry.sample().total_bytes == 24 * GIB


def test_nvml_init_failure_falls_back_to_null_telemetry_with_warning(
    nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _cuda(monkeypatch, uuids=(FIRST_UUID,))
    nvml.init_error = FakeNVMLError("Driver Not Loaded")

    with caplog.at_level(logging.WARNING, logger="inference_node.telemetry.device"):
        telemetry = telemetry_for("cuda:0")

    assert isinstance(telemetry, NullTelemetry)
    assert telemetry.sample() == NO_MEMORY_FIGURES
    assert "device=cuda:0 nvml unavailable" in caplog.text
    assert "Driver Not Loaded" in caplog.text


def test_missing_pynvml_falls_back_to_null_telemetry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _cuda(monkeypatch, uuids=(FIRST_UUID,))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes ``import pynvml`` fail

    with caplog.at_level(logging.WARNING, logger="inference_node.telemetry.device"):
        telemetry = telemetry_for("cuda:0")

    assert isinstance(telemetry, NullTelemetry)
    assert "nvml unavailable" in caplog.text


def test_cpu_gets_null_telemetry_without_touching_nvml(nvml: FakeNvml) -> None:
    telemetry = telemetry_for("cpu")

    assert isinstance(telemetry, NullTelemetry)
    assert telemetry.sample() == NO_MEMORY_FIGURES
    assert nvml.calls == []


# resolve_device


@pytest.mark.parametrize(
    ("requested", "gpus", "expected"),
    [
        pytest.param("auto", 2, "cuda:0", id="auto-with-gpus"),
        pytest.param("auto", 0, "cpu", id="auto-without-cuda"),
        pytest.param("cpu", 2, "cpu", id="cpu-with-gpus"),
        pytest.param("cpu", 0, "cpu", id="cpu-without-cuda"),
        pytest.param("cuda", 1, "cuda:0", id="bare-cuda"),
        pytest.param("cuda:0", 1, "cuda:0", id="cuda-0"),
        pytest.param("cuda:1", 2, "cuda:1", id="cuda-1-of-2"),
    ],
)
def test_resolve_device(
    requested: str, gpus: int, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cuda(monkeypatch, uuids=(FIRST_UUID, SECOND_UUID)[:gpus])

    assert resolve_device(requested) == expected


@pytest.mark.parametrize(
    ("requested", "gpus", "message"),
    [
        pytest.param("cuda:2", 2, "only 2 GPUs exist", id="index-out-of-range"),
        pytest.param("cuda:0", 0, "no CUDA device is available", id="no-cuda"),
        pytest.param("cuda", 0, "no CUDA device is available", id="bare-cuda-no-cuda"),
        pytest.param("cuda:-1", 2, "is not one of", id="negative-index"),
        pytest.param("cuda:x", 2, "is not one of", id="garbage-index"),
        pytest.param("cuda:", 2, "is not one of", id="empty-index"),
        pytest.param("gpu", 2, "is not one of", id="unknown-name"),
        pytest.param("CUDA:0", 2, "is not one of", id="upper-case"),
        pytest.param(" cuda:0", 2, "is not one of", id="leading-space"),
        pytest.param("", 2, "is not one of", id="empty"),
    ],
)
def test_resolve_device_refuses(
    requested: str, gpus: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cuda(monkeypatch, uuids=(FIRST_UUID, SECOND_UUID)[:gpus])

    with pytest.raises(ValueError, match=message):
        resolve_device(requested)


# release_device_memory


class EmptyCacheCalls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.mark.parametrize(
    ("device", "cuda_available", "expected_calls"),
    [
        pytest.param("cuda:0", True, 1, id="cuda-0"),
        pytest.param("cuda:1", True, 1, id="cuda-1"),
        pytest.param("cuda", True, 1, id="bare-cuda"),
        pytest.param("cpu", True, 0, id="cpu-on-a-gpu-host"),
        pytest.param("cpu", False, 0, id="cpu"),
        pytest.param("cuda:0", False, 0, id="cuda-without-cuda"),
    ],
)
def test_release_empties_the_cuda_cache_only_for_cuda_devices(
    device: str, cuda_available: bool, expected_calls: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_cache = EmptyCacheCalls()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_available)
    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)

    release_device_memory(device)

    assert empty_cache.count == expected_calls


# apply_threads


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """The intra-op thread count before the test; restored after it."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_apply_threads_none_keeps_the_operators_omp_num_threads(
    torch_threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch_threads))

    assert apply_threads(None) == torch_threads
    assert torch.get_num_threads() == torch_threads


def test_apply_threads_none_leaves_a_core_to_the_server(
    torch_threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    assert apply_threads(None) == serving_threads(usable_cores())
    assert torch.get_num_threads() == serving_threads(usable_cores())


@pytest.mark.parametrize(
    ("cores", "threads"),
    [
        pytest.param(1, 1, id="one-core-still-one-thread"),
        pytest.param(2, 1, id="two-cores-one-for-the-server"),
        pytest.param(8, 7, id="eight-cores"),
    ],
)
def test_serving_threads_leaves_one_core(cores: int, threads: int) -> None:
    assert serving_threads(cores) == threads


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [
        pytest.param("max 100000\n", None, id="no-quota"),
        pytest.param("200000 100000\n", 2, id="two-cores"),
        pytest.param("150000 100000", 2, id="fraction-rounds-up"),
        pytest.param("50000 100000", 1, id="half-a-core-is-one"),
    ],
)
def test_quota_cores_reads_cgroup_cpu_max(cpu_max: str, cores: int | None) -> None:
    assert quota_cores(cpu_max) == cores


def test_usable_cores_is_capped_by_the_cgroup_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")

    assert usable_cores(cpu_max=cpu_max) == 1
    assert usable_cores(cpu_max=tmp_path / "absent") == len(os.sched_getaffinity(0))


def test_apply_threads_sets_intra_op_threads(torch_threads: int) -> None:
    wanted = 1 if torch_threads != 1 else 2

    assert apply_threads(wanted) == wanted
    assert torch.get_num_threads() == wanted


# Device memory in status and metrics


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown()


def _status_source(
    telemetry: FakeTelemetry, executor: ThreadPoolExecutor, *, device: str
) -> StatusSource:
    slot = ModelSlot()
    agent = SwapAgent(
        slot,
        FakeLoader({}),
        loader_executor=executor,
        device_executor=executor,
        policy=ValidationPolicy(latency_factor=None),
        min_swap_interval_s=0.0,
        metrics=NodeMetrics(),
    )
    return StatusSource(slot, agent, telemetry, device=device, pending=lambda: 0)


def test_status_reports_the_telemetry_figures(executor: ThreadPoolExecutor) -> None:
    figures = DeviceMemory(
        available=True, used_bytes=5 * GIB, total_bytes=80 * GIB, utilization_percent=42
    )
    status = _status_source(FakeTelemetry(figures), executor, device="cuda:3")

    snapshot = status.snapshot()

    assert snapshot.memory == figures
    assert snapshot.device == "cuda:3"
    assert snapshot.phase is SlotPhase.EMPTY


def test_status_samples_the_device_on_every_snapshot(executor: ThreadPoolExecutor) -> None:
    telemetry = FakeTelemetry(NO_MEMORY_FIGURES)
    status = _status_source(telemetry, executor, device="cuda:0")
    first = status.snapshot()
    telemetry.memory = DeviceMemory(available=True, used_bytes=GIB, total_bytes=8 * GIB)

    second = status.snapshot()

    assert not first.memory.available
    assert second.memory.used_bytes == GIB
    assert telemetry.samples == 2


def test_metrics_read_device_memory_from_telemetry_when_scraped() -> None:
    telemetry = FakeTelemetry(DeviceMemory(available=True, used_bytes=GIB, total_bytes=8 * GIB))
    metrics = NodeMetrics()
    metrics.track(pending=lambda: 0, memory=telemetry.sample)
    telemetry.memory = DeviceMemory(available=True, used_bytes=2 * GIB, total_bytes=8 * GIB)

    used = metrics.registry.get_sample_value("yolofleet_device_memory_used_bytes")
    total = metrics.registry.get_sample_value("yolofleet_device_memory_total_bytes")

    assert used == 2 * GIB
    assert total == 8 * GIB
