"""The node's own value types: what a model is, what it found, and the ``Detector`` seam."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
"""An RGB image, shape (height, width, 3), dtype uint8."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRef:
    """Names one model artifact: what to load and the digest it must have."""

    name: str
    version: str
    uri: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """What a loaded model says about itself."""

    class_names: tuple[str, ...]
    input_size: int
    task: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectParams:
    """Per-request detection settings, already range-checked."""

    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    classes: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Detection:
    """One detected object, its box in original-image pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    confidence: float
    class_id: int
    class_name: str


class Detector(Protocol):
    """A loaded model that turns a batch of images into detections.

    ``detect`` is called by one thread at a time for a given detector: the inference worker
    once the model is live, the loader thread before that.
    """

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def device(self) -> str: ...

    def detect(
        self, images: Sequence[Image], params: Sequence[DetectParams]
    ) -> list[list[Detection]]: ...

    def close(self) -> None: ...

    def weight_bytes(self) -> int: ...
