"""Device choice, torch threads, and the GPU telemetry seam (NVML on a GPU, none on the CPU)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

logger = logging.getLogger(__name__)

_CUDA_DEVICE = re.compile(r"cuda(?::(\d+))?")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceMemory:
    """One sample of device memory and utilisation; ``available`` is False without NVML."""

    available: bool
    used_bytes: int = 0
    total_bytes: int = 0
    utilization_percent: int = 0


NO_MEMORY_FIGURES = DeviceMemory(available=False)


class GpuTelemetry(Protocol):
    """Reads memory and utilisation of the pinned device."""

    def sample(self) -> DeviceMemory: ...

    def close(self) -> None: ...


class NullTelemetry:
    """Telemetry for devices NVML cannot see (the CPU, or a GPU without a driver library)."""

    def sample(self) -> DeviceMemory:
        return NO_MEMORY_FIGURES

    def close(self) -> None:
        return None


class NvmlTelemetry:
    """NVML figures for one GPU, found by its UUID.

    Not by index: NVML counts every GPU in PCI order, while CUDA's ``cuda:N`` counts only the
    ``CUDA_VISIBLE_DEVICES`` (fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``).
    """

    def __init__(self, uuid: str) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        except BaseException:
            pynvml.nvmlShutdown()
            raise

    def sample(self) -> DeviceMemory:
        try:
            memory = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
        except self._nvml.NVMLError as exc:
            logger.warning("nvml sample failed: %s", exc)
            return NO_MEMORY_FIGURES
        return DeviceMemory(
            available=True,
            used_bytes=int(memory.used),
            total_bytes=int(memory.total),
            utilization_percent=int(rates.gpu),
        )

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def resolve_device(requested: str) -> str:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a concrete device, or raise ValueError."""
    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if (cuda := _CUDA_DEVICE.fullmatch(requested)) is not None:
        index = int(cuda.group(1) or 0)
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested} asked for, but no CUDA device is available")
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {requested} asked for, but only {torch.cuda.device_count()} GPUs exist"
            )
        return f"cuda:{index}"
    raise ValueError(f"device {requested!r} is not one of auto, cpu, cuda, cuda:N")


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (and inter-op, while torch still allows it); return the count.

    ``None`` picks the serving default: ``OMP_NUM_THREADS`` when the operator set it, else
    ``serving_threads(usable_cores())``, one core left to the gRPC, decode and event-loop
    threads. Call it before the first inference: each thread torch starts afterwards takes
    the count set here. Inter-op threads can be set only once per process and only before any
    inter-op work, so a later call (a second node in one test process) leaves them as they are.
    """
    if threads is None and not os.environ.get("OMP_NUM_THREADS"):
        threads = serving_threads(usable_cores())
    if threads is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError as exc:
            logger.debug("inter-op threads stay %d: %s", torch.get_num_interop_threads(), exc)
    return torch.get_num_threads()


def serving_threads(cores: int) -> int:
    """Intra-op threads for a node with ``cores`` usable cores: all but one, at least one.

    The device thread's OpenMP team takes every core it is given, and spins in its barriers;
    the servers' threads (gRPC, decoding, the event loop) then wait for a time slice on every
    request. On this project's 2-core hosts one torch thread gave +2 ms over a bare call
    where two gave +8 ms, at ~80 % of the two-thread 16-client throughput.
    """
    return max(1, cores - 1)


def usable_cores(*, cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota = quota_cores(cpu_max.read_text())
    except OSError:
        quota = None
    return max(1, min(cores or 1, quota or cores or 1))


def quota_cores(cpu_max: str) -> int | None:
    """Whole cores allowed by a cgroup v2 ``cpu.max`` line (``"max 100000"``: no quota)."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def telemetry_for(device: str) -> GpuTelemetry:
    """NVML telemetry for a CUDA device when NVML loads, else the null telemetry."""
    if not device.startswith("cuda"):
        return NullTelemetry()
    try:
        return NvmlTelemetry(nvml_uuid(device))
    except Exception as exc:  # pynvml raises its own NVMLError or OSError without a driver
        logger.warning("device=%s nvml unavailable, no memory figures: %s", device, exc)
        return NullTelemetry()


def nvml_uuid(device: str) -> str:
    """The NVML UUID (``GPU-…``) of the GPU torch calls ``device`` (``cuda`` or ``cuda:N``)."""
    index = int(device.partition(":")[2] or 0)
    return f"GPU-{torch.cuda.get_device_properties(index).uuid}"


def release_device_memory(device: str) -> None:
    """Give a freed model's memory back: CUDA's cached blocks, and the C heap's free pages.

    Without the heap trim, glibc keeps freed weight buffers in its arenas and the process grows
    a little with every swap even though nothing leaks.
    """
    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    _trim_heap()


def _trim_heap() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return
    trim(0)
