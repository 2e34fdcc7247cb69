"""The node's request queue and its single inference worker.

Requests are admitted on arrival (``admit``: counted, with their bytes, before the server
decodes them), then submitted decoded (``submit``), routed and booked by the ``Router`` (an
on-demand model is loaded *before* the request is queued, so the worker never loads nor looks
anything up), queued, and cut into batches of one model each (``batch_queue``). The worker
takes *one lease per batch* from the router and runs the requests that lease takes on the
device thread, so no batch mixes two models and nothing but that thread runs a served model.
Every submitted request's outcome goes to the ``Ledger`` here, with the model that answered it
(or that the failure counts against).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from contextlib import nullcontext

from inference_node.errors import Draining, NodeError, Overloaded, Unavailable
from inference_node.model import Detection, Detector, ModelRef
from inference_node.serving.admission import Admission, AdmissionLimits, Ticket
from inference_node.serving.batch_queue import BatchQueue, Pending
from inference_node.serving.ledger import Ledger
from inference_node.serving.requests import BatchLimits, DetectRequest, DetectResult
from inference_node.serving.routing import Booking, Group, Leased, Route, Router, Target
from inference_node.telemetry.metrics import NodeMetrics

logger = logging.getLogger(__name__)


class Batcher:
    """Queues requests and runs them in batches, one model per batch, on the device thread."""

    def __init__(
        self,
        router: Router,
        *,
        device_executor: Executor,
        limits: BatchLimits,
        metrics: NodeMetrics,
        ledger: Ledger,
        admission: Admission | None = None,
    ) -> None:
        self._router = router
        self._ledger = ledger
        self._device = device_executor
        self._limits = limits
        self._admission = admission or Admission(AdmissionLimits(), max_waiting=limits.max_queue)
        self._metrics = metrics
        self._queue = BatchQueue(limits)
        self._preparing = 0
        self._running = 0
        self._in_flight = 0
        self._accepting = True
        self._stopped = False
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
        """Requests decoding, waiting for their model to load, queued or running."""
        return self._admission.arriving + self._preparing + len(self._queue) + self._running

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    def admit(self, *, wire_bytes: int = 0) -> Ticket:
        """Count a request from its arrival, before it is decoded, or refuse it at once.

        Close the ticket when the request is answered; ``drain`` waits for every open one.
        """
        self._admit()
        ticket = self._admission.arrive(
            wire_bytes=wire_bytes, running=self._running, on_close=self._request_done
        )
        self._in_flight += 1
        self._idle.clear()
        return ticket

    async def submit(self, request: DetectRequest, ticket: Ticket | None = None) -> DetectResult:
        """Load the named model if needed, queue the decoded request, and wait for its answer.

        ``ticket`` is the request's admission (``admit``); without one it is admitted here.
        """
        route = self._router.route(request.model_name)
        pending: Pending | None = None
        try:
            with self.admit() if ticket is None else nullcontext(ticket) as admitted:
                admitted.submitted()
                booking = await self._prepare(route)
                try:
                    self._check_room()
                    loop = asyncio.get_running_loop()
                    pending = Pending(request=request, booking=booking, future=loop.create_future())
                    self._queue.append(pending)
                    result = await pending.future
                finally:
                    booking.release()
        except Exception as exc:
            leased = pending.leased if pending is not None else None
            latency_s = time.perf_counter() - request.received_at
            self._ledger.failed(exc, model=self._router.blame(route, leased), latency_s=latency_s)
            raise
        self._ledger.answered(
            result.ref, latency_s=time.perf_counter() - request.received_at,
            queue_s=result.queue_s, inference_s=result.inference_s, detections=result.detections,
        )  # fmt: skip
        return result

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking requests and wait until every request taken is answered; False on timeout."""
        self._accepting = False
        self._settle_idle()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._accepting, self._stopped = False, True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._queue.fail_all(Draining("node stopped before this request ran"))

    def _admit(self) -> None:
        if not self._accepting:
            raise Draining("node is shutting down")
        self._router.check_live()
        self._check_room()

    def _check_room(self) -> None:
        """Checked again once decoded: a request taken before a drain began still runs."""
        if self._stopped:
            raise Draining("node stopped before this request ran")
        if len(self._queue) >= self._limits.max_queue:
            raise Overloaded(f"request queue is full ({self._limits.max_queue} waiting)")

    def _request_done(self) -> None:
        self._in_flight -= 1
        self._settle_idle()

    def _settle_idle(self) -> None:
        if self._in_flight == 0:
            self._idle.set()

    async def _prepare(self, route: Route) -> Booking:
        """Book ``route`` before its request is queued; a named model may load meanwhile, and
        requests waiting for that count against the queue limit."""
        if route.target is Target.ASSIGNED:
            return await self._router.prepare(route)
        if self._preparing + len(self._queue) >= self._limits.max_queue:
            raise Overloaded(f"request queue is full ({self._limits.max_queue} waiting)")
        self._preparing += 1
        try:
            return await self._router.prepare(route)
        finally:
            self._preparing -= 1

    async def _run(self) -> None:
        while True:
            route, batch = await self._queue.next_batch(lambda: self._admission.arriving)
            if not batch:
                continue
            self._running = len(batch)
            try:
                await self._run_batch(route, batch)
            except NodeError as exc:  # e.g. the batch's model could not be loaded again
                logger.warning("batch of %d for model=%s refused: %s", len(batch), route, exc)
                _fail(batch, exc)
            except Exception as exc:  # loop boundary: fail this batch, keep serving
                logger.error("batch of %d failed", len(batch), exc_info=True)
                _fail(batch, exc)
            finally:
                self._running = 0

    async def _run_batch(self, route: Group, batch: list[Pending]) -> None:
        """One lease for the batch; a request it does not take (it named a model the slot
        stopped serving while it waited) fails with UNAVAILABLE, so the caller retries."""
        with self._router.lease(batch[0].booking) as leased:
            runnable: list[Pending] = []
            for pending in batch:
                if leased.takes(pending.booking):
                    pending.leased = leased
                    runnable.append(pending)
                else:
                    self._running -= 1
                    _fail([pending], _moved(pending, leased))
            if not runnable:
                return
            started, inference_s, found = await self._infer(leased.detector, runnable)
        self._answer(
            runnable, found, ref=leased.ref, generation=leased.generation, started=started,
            inference_s=inference_s,
        )  # fmt: skip

    async def _infer(
        self, detector: Detector, batch: list[Pending]
    ) -> tuple[float, float, list[list[Detection]]]:
        """Run ``batch`` on the device thread: when it started, how long it took, what it found."""
        images = [pending.request.image for pending in batch]
        params = [pending.request.params for pending in batch]
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._device, detector.detect, images, params)
        return started, time.perf_counter() - started, found

    def _answer(
        self,
        batch: list[Pending],
        found: list[list[Detection]],
        *,
        ref: ModelRef,
        generation: int,
        started: float,
        inference_s: float,
    ) -> None:
        self._metrics.observe_batch(len(batch))
        logger.debug(
            "batch size=%d model=%s generation=%d %.1fms",
            len(batch), ref, generation, inference_s * 1000,
        )  # fmt: skip
        for pending, detections in zip(batch, found, strict=True):
            if not pending.future.done():
                pending.future.set_result(
                    DetectResult(
                        detections=tuple(detections),
                        ref=ref,
                        generation=generation,
                        queue_s=started - pending.enqueued_at,
                        inference_s=inference_s,
                        batch_size=len(batch),
                        decode_s=pending.request.decode_s,
                        image_width=pending.request.image.shape[1],
                        image_height=pending.request.image.shape[0],
                    )
                )


def _moved(pending: Pending, leased: Leased) -> Unavailable:
    return Unavailable(
        f"model {pending.request.model_name!r} stopped being served here while the request "
        f"waited (now serving {leased.ref.name}); retry"
    )


def _fail(batch: list[Pending], exc: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
