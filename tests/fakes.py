"""Fakes for pure-logic unit tests: a detector and a loader that never touch torch, a clock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from inference_node.errors import ArtifactError, LoadError, Superseded
from inference_node.model import Detection, DetectParams, Image, ModelRef, ModelSpec
from inference_node.swapping.loader import LoadReport

SHAPES = ("circle", "square", "triangle")


def make_ref(name: str, digit: str = "a", *, version: str = "") -> ModelRef:
    return ModelRef(
        name=name, version=version or digit * 6, uri=f"fake://{name}", sha256=digit * 64
    )


class FakeDetector:
    """Returns ``detections_per_image`` boxes of class 0 after ``delay_s``, recording batches."""

    def __init__(
        self,
        *,
        spec: ModelSpec | None = None,
        delay_s: float = 0.0,
        detections_per_image: int = 1,
        gate: threading.Event | None = None,
        on_detect: Callable[[], object] | None = None,
    ) -> None:
        self._spec = spec or ModelSpec(class_names=SHAPES, input_size=160, task="detect")
        self.delay_s = delay_s
        self.detections_per_image = detections_per_image
        self.gate = gate
        self.on_detect = on_detect
        """Called as each batch ends (on the thread that ran it)."""
        self.started = 0
        """Batches begun, counted before waiting on ``gate``."""
        self.batches: list[int] = []
        self.closed = False

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def device(self) -> str:
        return "cpu"

    def detect(
        self, images: Sequence[Image], params: Sequence[DetectParams]
    ) -> list[list[Detection]]:
        if self.closed:
            raise RuntimeError("detector used after close")
        self.started += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        self.batches.append(len(images))
        if self.on_detect is not None:
            self.on_detect()
        box = Detection(x1=1, y1=2, x2=3, y2=4, confidence=0.9, class_id=0, class_name="circle")
        return [[box] * self.detections_per_image for _ in images]

    def weight_bytes(self) -> int:
        return 1000

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeLoader:
    """Hands out prepared detectors by model name; records how many loads ran at once."""

    detectors: dict[str, FakeDetector]
    fail: dict[str, str] = field(default_factory=dict)
    fetch_failures: dict[str, int] = field(default_factory=dict)
    """Model name -> how many more loads fail to fetch it (``ArtifactError``) before one works."""
    gate: threading.Event | None = None
    blocked: set[str] = field(default_factory=set)
    """Model names whose load hangs (like a stalled artifact server) until it is cancelled."""
    honours_cancel: bool = True
    """False: a loader that ignores ``cancel`` (its result comes back and must be closed)."""
    loads: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    warmup_batches: tuple[int, ...] = (1,)
    """What the swap agent warms a built detector up with (one device job per batch)."""

    def build(
        self, ref: ModelRef, *, cancel: threading.Event | None = None
    ) -> tuple[FakeDetector, LoadReport]:
        """A fake detector needs no warm-up: building is loading."""
        return self.load(ref, cancel=cancel)

    def load(
        self, ref: ModelRef, *, cancel: threading.Event | None = None
    ) -> tuple[FakeDetector, LoadReport]:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self._wait(ref, cancel)
            self.loads.append(ref.name)
            if ref.name in self.fail:
                raise LoadError(self.fail[ref.name])
            if self.fetch_failures.get(ref.name, 0) > 0:
                self.fetch_failures[ref.name] -= 1
                raise ArtifactError(f"fetching {ref} failed: HTTP 503 from the artifact server")
            detector = self.detectors[ref.name]
            detector.closed = False
            return detector, LoadReport(fetch_s=0, build_s=0, warmup_s=0, weight_bytes=1000)
        finally:
            with self.lock:
                self.running -= 1

    def _wait(self, ref: ModelRef, cancel: threading.Event | None) -> None:
        """Wait on ``gate`` (and hang on ``blocked`` names), stopping early when cancelled."""
        watched = cancel if self.honours_cancel else None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if watched is not None and watched.is_set():
                self.cancelled.append(ref.name)
                raise Superseded(f"load of {ref} cancelled")
            opened = self.gate is None or self.gate.is_set()
            if opened and ref.name not in self.blocked:
                return
            time.sleep(0.002)


class FakeClock:
    """A clock that moves only when told to; ``sleep`` returns once it has moved far enough."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move on (call it on the event loop's thread); wakes the sleepers whose time came."""
        self.now += seconds
        for until, future in self._sleepers:
            if until <= self.now and not future.done():
                future.set_result(None)
        self._sleepers = [(u, f) for u, f in self._sleepers if not f.done()]

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future
