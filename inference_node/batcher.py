"""The node's request queue and its single inference worker.

Requests are decoded on a small thread pool, queued, and cut into batches of at most
``max_size``. The worker leases the slot *once per batch* and runs the whole batch on the
device thread, so no batch mixes two models and nothing but that thread runs the live model.
It waits up to ``max_wait_s`` for more requests only while some are known to be on their way
(decoding); otherwise an idle worker starts at once, so a lone request pays no batching delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from inference_node.errors import Draining, ModelNotFound, NoModelLoaded, Overloaded
from inference_node.metrics import NodeMetrics
from inference_node.model import Detection, DetectParams, Image, ModelRef
from inference_node.slot import Active, ModelSlot

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectRequest:
    """A decoded, checked request."""

    image: Image
    params: DetectParams
    model_name: str = ""
    request_id: str = ""
    decode_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectResult:
    """Detections and the model that produced them."""

    detections: tuple[Detection, ...]
    ref: ModelRef
    generation: int
    queue_s: float
    inference_s: float
    batch_size: int
    decode_s: float
    image_width: int
    image_height: int


@dataclass(slots=True, kw_only=True)
class Pending:
    request: DetectRequest
    future: asyncio.Future[DetectResult]
    enqueued_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLimits:
    max_size: int = 16
    max_wait_s: float = 0.002
    max_queue: int = 256


class Batcher:
    """Queues requests and runs them in batches on the device thread."""

    def __init__(
        self,
        slot: ModelSlot,
        *,
        device_executor: Executor,
        decode_executor: Executor,
        limits: BatchLimits,
        metrics: NodeMetrics,
    ) -> None:
        self._slot = slot
        self._device = device_executor
        self._decode = decode_executor
        self._limits = limits
        self._metrics = metrics
        self._queue: deque[Pending] = deque()
        self._has_work = asyncio.Event()
        self._arriving = 0
        self._running = 0
        self._accepting = True
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None

    @property
    def running(self) -> int:
        """Requests in the batch on the device right now."""
        return self._running

    @property
    def queued(self) -> int:
        """Requests decoded and waiting for a batch."""
        return len(self._queue)

    @property
    def pending(self) -> int:
        """Requests decoding, queued or running."""
        return self._arriving + len(self._queue) + self._running

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def submit(self, decode: Callable[[], DetectRequest]) -> DetectResult:
        """Decode on the decode pool, queue, and wait for the batch that runs this request."""
        self._admit()
        self._arriving += 1
        self._idle.clear()
        try:
            request = await asyncio.get_running_loop().run_in_executor(self._decode, decode)
        finally:
            self._arriving -= 1
        self._admit()
        pending = Pending(request=request, future=asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._has_work.set()
        try:
            return await pending.future
        finally:
            self._settle_idle()

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking requests and wait for queued ones to finish; False on timeout."""
        self._accepting = False
        self._settle_idle()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(Draining("node stopped before this request ran"))
        self._queue.clear()

    def _admit(self) -> None:
        if not self._accepting:
            raise Draining("node is shutting down")
        if self._slot.active is None:
            raise NoModelLoaded("no model is live on this node yet")
        if len(self._queue) >= self._limits.max_queue:
            raise Overloaded(f"request queue is full ({self._limits.max_queue} waiting)")

    def _settle_idle(self) -> None:
        if self.pending == 0:
            self._idle.set()

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            self._running = len(batch)
            try:
                await self._run_batch(batch)
            except Exception as exc:  # loop boundary: fail this batch, keep serving
                logger.error("batch of %d failed", len(batch), exc_info=True)
                _fail(batch, exc)
            finally:
                self._running = 0
                self._settle_idle()

    async def _next_batch(self) -> list[Pending]:
        while not self._queue:
            self._has_work.clear()
            await self._has_work.wait()
        batch = self._take_ready([])
        deadline = time.perf_counter() + self._limits.max_wait_s
        while len(batch) < self._limits.max_size and self._arriving:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._has_work.clear()
            try:
                await asyncio.wait_for(self._has_work.wait(), remaining)
            except TimeoutError:
                break
            batch = self._take_ready(batch)
        return [pending for pending in batch if not pending.future.done()]

    def _take_ready(self, batch: list[Pending]) -> list[Pending]:
        while self._queue and len(batch) < self._limits.max_size:
            batch.append(self._queue.popleft())
        return batch

    async def _run_batch(self, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        with self._slot.lease() as active:
            runnable = self._refuse_other_models(batch, active)
            if not runnable:
                return
            images = [pending.request.image for pending in runnable]
            params = [pending.request.params for pending in runnable]
            started = time.perf_counter()
            found = await loop.run_in_executor(self._device, active.detector.detect, images, params)
            inference_s = time.perf_counter() - started
        self._metrics.observe_batch(len(runnable))
        logger.debug(
            "batch size=%d generation=%d %.1fms",
            len(runnable),
            active.generation,
            inference_s * 1000,
        )
        for pending, detections in zip(runnable, found, strict=True):
            if not pending.future.done():
                pending.future.set_result(
                    DetectResult(
                        detections=tuple(detections),
                        ref=active.ref,
                        generation=active.generation,
                        queue_s=started - pending.enqueued_at,
                        inference_s=inference_s,
                        batch_size=len(runnable),
                        decode_s=pending.request.decode_s,
                        image_width=pending.request.image.shape[1],
                        image_height=pending.request.image.shape[0],
                    )
                )

    @staticmethod
    def _refuse_other_models(batch: list[Pending], active: Active) -> list[Pending]:
        runnable = []
        for pending in batch:
            wanted = pending.request.model_name
            if wanted and wanted != active.ref.name:
                pending.future.set_exception(
                    ModelNotFound(
                        f"model {wanted!r} is not served here (serving {active.ref.name})"
                    )
                )
            else:
                runnable.append(pending)
        return runnable


def _fail(batch: list[Pending], exc: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
