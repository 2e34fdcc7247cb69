"""What crosses the batcher's boundary: ``DetectRequest`` in, ``DetectResult`` out, and the
``BatchLimits`` it is built with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from inference_node.model import Detection, DetectParams, Image, ModelRef


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectRequest:
    """A decoded, checked request."""

    image: Image
    params: DetectParams
    model_name: str = ""
    request_id: str = ""
    decode_s: float = 0.0
    received_at: float = field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when the request arrived; its latency is counted from here."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectResult:
    """Detections and the model that produced them.

    ``generation`` is the slot generation that answered, or 0 for a model from the cache.
    """

    detections: tuple[Detection, ...]
    ref: ModelRef
    generation: int
    queue_s: float
    inference_s: float
    batch_size: int
    decode_s: float
    image_width: int
    image_height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLimits:
    max_size: int = 16
    max_wait_s: float = 0.002
    max_queue: int = 256
