"""Turn a ``ModelRef`` into a warmed-up ``Detector`` on the pinned device.

Fetch the artifact (``file://``, ``http(s)://``, see
:mod:`inference_node.swapping.artifacts`), check its sha256 and zip integrity *before* anything
is unpickled, keep the verified file in the bounded artifact cache
(:mod:`inference_node.swapping.artifact_cache`; a verified hit fetches nothing), build the
network (``build``), and warm it up: ``load`` runs the warm-up on the calling thread (the
on-demand cache's loader), while the swap agent takes ``build`` and runs the rounds of
``warmup_batches`` itself, one device-thread job at a time between served batches. The
artifact stays pinned in the cache (never evicted) from the start of a
load until the detector built from it is closed. A ``cancel`` event, or
``shutdown()`` for every load at once, stops a load mid-fetch (within ``WATCH_TICK_S``) or
between build steps with ``LoadCancelled``. Knows nothing of slots, batching or Consul.
"""

from __future__ import annotations

import logging
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from inference_node.errors import DigestMismatch, LoadCancelled, LoadError
from inference_node.model import Detector, DetectParams, ModelRef, ModelSpec
from inference_node.serving.detector import TorchDetector
from inference_node.swapping.artifact_cache import DEFAULT_MAX_BYTES, ArtifactCache, Pin
from inference_node.swapping.artifacts import (
    Fetched,
    FetchLimits,
    check_source,
    fetch_into,
    shown_uri,
)

logger = logging.getLogger(__name__)

WARMUP_BATCH_ONE_ROUNDS = 1
"""Single-image passes. The first inference of a new model pays its kernel selection and first
allocations (on this project's 2-core hosts: +5 ms for an architecture the process has run
before, +60 ms for a new one); the second costs what a served one does, so one is enough."""


def warmup_batches(device: str, max_batch: int) -> tuple[int, ...]:
    """The batch sizes a new model is warmed up with, in order.

    Single images, then on a GPU one full batch: its buffers are the largest the caching
    allocator hands out and cuDNN picks kernels per shape. On the CPU a full batch costs as
    much device time as the served batch it would delay, and buys only the first page faults
    of a larger activation buffer.
    """
    full = (max_batch,) if device.startswith("cuda") and max_batch > 1 else ()
    return (1,) * WARMUP_BATCH_ONE_ROUNDS + full


def warm_up_batch(ref: ModelRef, detector: Detector, size: int) -> None:
    """One warm-up inference of ``size`` blank images; ``LoadError`` if the model cannot run it."""
    side = detector.spec.input_size
    blank = np.zeros((side, side, 3), dtype=np.uint8)
    try:
        detector.detect([blank] * size, [DetectParams()] * size)
    except Exception as exc:  # a model that cannot run a blank batch never goes live
        raise LoadError(f"model {ref} failed its warm-up run: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    """How a candidate's load went: durations and the memory its weights hold."""

    fetch_s: float
    build_s: float
    warmup_s: float
    weight_bytes: int


class Loader(Protocol):
    """Fetches, verifies, builds and warms up a model; stops early when ``cancel`` is set."""

    def load(
        self, ref: ModelRef, *, cancel: threading.Event | None = None
    ) -> tuple[Detector, LoadReport]: ...


class Builder(Protocol):
    """Fetches, verifies and builds a model, leaving its warm-up (``warmup_batches``) to the
    caller; stops early when ``cancel`` is set."""

    @property
    def warmup_batches(self) -> tuple[int, ...]: ...

    def build(
        self, ref: ModelRef, *, cancel: threading.Event | None = None
    ) -> tuple[Detector, LoadReport]: ...


class _Cancel:
    """Set when the caller's event or the loader's shutdown event is set."""

    def __init__(self, *events: threading.Event | None) -> None:
        self._events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)


class PinnedDetector(TorchDetector):
    """A detector whose artifact stays pinned in the cache until the detector is closed."""

    def __init__(self, module: torch.nn.Module, *, spec: ModelSpec, device: str, pin: Pin) -> None:
        super().__init__(module, spec=spec, device=device)
        self.pin = pin

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.pin.release()


class ModelLoader:
    """Loads verified artifacts onto one device, caching them by content digest.

    Safe to call from several loader threads at once (the slot's and the on-demand cache's).
    """

    def __init__(
        self,
        *,
        device: str,
        cache_dir: Path,
        warmup_batch: int,
        fetch_limits: FetchLimits | None = None,
        cache_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._device = device
        self.warmup_batches = warmup_batches(device, warmup_batch)
        self._fetch_limits = fetch_limits or FetchLimits()
        self._stopping = threading.Event()
        self.artifacts = ArtifactCache(cache_dir, max_bytes=cache_bytes)
        self.artifacts.remove_orphans()

    def shutdown(self) -> None:
        """Cancel every load in progress and every later one (the node is stopping)."""
        self._stopping.set()

    def load(
        self, ref: ModelRef, *, cancel: threading.Event | None = None
    ) -> tuple[Detector, LoadReport]:
        """Fetch, verify, build and warm up ``ref`` on this thread; raises a ``SwapError``
        subclass on failure (``LoadCancelled`` when ``cancel`` is set or the loader shuts
        down meanwhile).
        """
        detector, report = self.build(ref, cancel=cancel)
        cancelled = _Cancel(cancel, self._stopping)
        started = time.perf_counter()
        try:
            for size in self.warmup_batches:
                _check_cancel(ref, cancelled, "while warming up")
                warm_up_batch(ref, detector, size)
            _check_cancel(ref, cancelled, "after warming up")
        except BaseException:  # cancelled, or warm-up failed (e.g. out of device memory)
            detector.close()  # frees its memory and its artifact pin
            raise
        return detector, replace(report, warmup_s=time.perf_counter() - started)

    def build(
        self, ref: ModelRef, *, cancel: threading.Event | None = None
    ) -> tuple[Detector, LoadReport]:
        """Fetch, verify and build ``ref``, not warmed up (the report's ``warmup_s`` is 0)."""
        cancelled = _Cancel(cancel, self._stopping)
        started = time.perf_counter()
        pin = self._fetch_pinned(ref, cancelled)
        fetched = time.perf_counter()
        try:
            _check_cancel(ref, cancelled, "before building")
            detector = self._build(ref, pin)
        except BaseException:
            pin.release()
            raise
        try:
            _check_cancel(ref, cancelled, "after building")
        except BaseException:
            detector.close()  # frees its memory and its artifact pin
            raise
        report = LoadReport(
            fetch_s=fetched - started,
            build_s=time.perf_counter() - fetched,
            warmup_s=0.0,
            weight_bytes=detector.weight_bytes(),
        )
        return detector, report

    def fetch_verified(self, ref: ModelRef, *, cancel: threading.Event | None = None) -> Path:
        """The cached artifact of ``ref``, fetched and verified on a miss (not pinned after).

        Raises ``ArtifactError``/``ArtifactRefused`` (cannot fetch), ``DigestMismatch`` or
        ``LoadError`` (not a valid checkpoint); nothing enters the cache unless every check
        passed.
        """
        pin = self._fetch_pinned(ref, _Cancel(cancel, self._stopping))
        pin.release()
        return pin.path

    def _fetch_pinned(self, ref: ModelRef, cancel: _Cancel) -> Pin:
        check_source(ref)  # before any I/O: a malformed digest or scheme never is
        pin = self.artifacts.lookup(ref.sha256, cancel=cancel)
        if pin is not None:
            logger.debug("artifact cache hit model=%s sha256=%s", ref, ref.sha256[:12])
            return pin
        with self.artifacts.staging() as staging:
            fetched = fetch_into(ref, staging.fd, limits=self._fetch_limits, cancel=cancel)
            _check_digest(ref, fetched)
            _check_zip_integrity(ref, staging.path)
            return self.artifacts.admit(staging, sha256=ref.sha256)

    def _build(self, ref: ModelRef, pin: Pin) -> PinnedDetector:
        from ultralytics import YOLO  # type: ignore[attr-defined]  # late: offline mode first

        try:
            yolo = YOLO(str(pin.path), task=None)
            module = yolo.model
            assert isinstance(module, torch.nn.Module)
            spec = ModelSpec(
                class_names=tuple(yolo.names[i] for i in sorted(yolo.names)),
                input_size=_input_size(getattr(module, "args", {})),
                task=str(yolo.task),
            )
            module = module.fuse().eval().to(self._device)
            if self._device.startswith("cuda"):
                module = module.half()
        except Exception as exc:  # unpickling and building raise anything; all mean "unusable"
            raise LoadError(f"model {ref} could not be built from {pin.path.name}: {exc}") from exc
        return PinnedDetector(module, spec=spec, device=self._device, pin=pin)


def _check_cancel(ref: ModelRef, cancel: _Cancel, when: str) -> None:
    if cancel.is_set():
        raise LoadCancelled(f"model {ref}: load cancelled {when}")


def _check_digest(ref: ModelRef, fetched: Fetched) -> None:
    if fetched.sha256 != ref.sha256:
        raise DigestMismatch(
            f"model {ref} refused: sha256 of {shown_uri(ref.uri)} is {fetched.sha256[:12]}…, "
            f"expected {ref.sha256[:12]}…"
        )


def _check_zip_integrity(ref: ModelRef, path: Path) -> None:
    """A torch checkpoint is a zip: check every member's CRC before unpickling anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise LoadError(f"model {ref} refused: artifact is not a valid checkpoint: {exc}") from exc
    if broken is not None:
        raise LoadError(f"model {ref} refused: checkpoint member {broken} is corrupt")


def _input_size(args: object) -> int:
    imgsz = args.get("imgsz", 640) if isinstance(args, dict) else 640
    if isinstance(imgsz, list | tuple):
        imgsz = max(imgsz)
    return int(imgsz)
