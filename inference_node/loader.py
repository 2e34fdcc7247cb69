"""Turn a ``ModelRef`` into a warmed-up ``Detector`` on the pinned device.

Fetch the artifact (``file://``, ``http(s)://``, see :mod:`inference_node.artifacts`), check
its sha256 and zip integrity *before* anything is unpickled, keep the verified file in a
content-addressed cache (``<cache>/<sha256>.pt``; a cache hit fetches nothing), build the
network, warm it up. Knows nothing of slots, batching or Consul.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference_node.artifacts import FetchLimits, StagedArtifact, shown_uri, stage_artifact
from inference_node.detector import TorchDetector
from inference_node.errors import ArtifactError, DigestMismatch, LoadError
from inference_node.model import Detector, DetectParams, ModelRef, ModelSpec

logger = logging.getLogger(__name__)

WARMUP_BATCH_ONE_ROUNDS = 2
"""Single-image passes: allocator and kernel selection settle after the first; the second checks."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    """How a candidate's load went: durations and the memory its weights hold."""

    fetch_s: float
    build_s: float
    warmup_s: float
    weight_bytes: int


class ModelLoader:
    """Loads verified artifacts onto one device, caching them by content digest."""

    def __init__(
        self,
        *,
        device: str,
        cache_dir: Path,
        warmup_batch: int,
        fetch_limits: FetchLimits | None = None,
    ) -> None:
        self._device = device
        self._cache_dir = cache_dir
        self._warmup_batch = warmup_batch
        self._fetch_limits = fetch_limits or FetchLimits()
        cache_dir.mkdir(parents=True, exist_ok=True)

    def load(
        self, ref: ModelRef, *, cancel: threading.Event | None = None
    ) -> tuple[Detector, LoadReport]:
        """Fetch, verify, build and warm up ``ref``; raises a ``SwapError`` subclass on failure.

        ``cancel`` is not watched yet: the caller closes the result of a cancelled load.
        """
        started = time.perf_counter()
        artifact = self.fetch_verified(ref)
        fetched = time.perf_counter()
        detector = self._build(ref, artifact)
        built = time.perf_counter()
        self._warm_up(ref, detector)
        report = LoadReport(
            fetch_s=fetched - started,
            build_s=built - fetched,
            warmup_s=time.perf_counter() - built,
            weight_bytes=detector.weight_bytes(),
        )
        return detector, report

    def fetch_verified(self, ref: ModelRef) -> Path:
        """The cached artifact of ``ref``, fetched and verified on a cache miss.

        Raises ``ArtifactError`` (cannot fetch), ``DigestMismatch`` or ``LoadError`` (not a
        valid checkpoint); nothing enters the cache unless every check passed.
        """
        if not _SHA256.fullmatch(ref.sha256):
            raise ArtifactError(
                f"model {ref}: expected sha256 {ref.sha256!r} is not 64 lowercase hex digits"
            )
        cached = self._cache_dir / f"{ref.sha256}.pt"
        if cached.exists():
            logger.debug("artifact cache hit model=%s sha256=%s", ref, ref.sha256[:12])
            return cached
        staged = stage_artifact(ref, directory=self._cache_dir, limits=self._fetch_limits)
        try:
            _check_digest(ref, staged)
            _check_zip_integrity(ref, staged.path)
            os.replace(staged.path, cached)
        except BaseException:
            staged.path.unlink(missing_ok=True)
            raise
        return cached

    def _build(self, ref: ModelRef, artifact: Path) -> TorchDetector:
        from ultralytics import YOLO  # type: ignore[attr-defined]  # late: offline mode first

        try:
            yolo = YOLO(str(artifact), task=None)
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
            raise LoadError(f"model {ref} could not be built from {artifact.name}: {exc}") from exc
        return TorchDetector(module, spec=spec, device=self._device)

    def _warm_up(self, ref: ModelRef, detector: Detector) -> None:
        size = detector.spec.input_size
        blank = np.zeros((size, size, 3), dtype=np.uint8)
        try:
            for _ in range(WARMUP_BATCH_ONE_ROUNDS):
                detector.detect([blank], [DetectParams()])
            if self._warmup_batch > 1:  # one full batch: its buffers are the largest allocated
                detector.detect([blank] * self._warmup_batch, [DetectParams()] * self._warmup_batch)
        except Exception as exc:  # a model that cannot run a blank batch never goes live
            detector.close()
            raise LoadError(f"model {ref} failed its warm-up run: {exc}") from exc


def _check_digest(ref: ModelRef, staged: StagedArtifact) -> None:
    if staged.sha256 != ref.sha256:
        raise DigestMismatch(
            f"model {ref} refused: sha256 of {shown_uri(ref.uri)} is {staged.sha256[:12]}…, "
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
