"""The gRPC servicer: protobuf in, decoded requests through the batcher, protobuf out.

It decodes, submits and encodes, nothing else: a request is admitted by the batcher on
arrival (``Batcher.admit``), its image is decoded on the decode pool within the bytes its
ticket may hold, the typed ``DetectRequest`` is submitted, and the answer's boxes are mapped
back to original-image pixels. The batcher records a submitted request's outcome in the
``Ledger``; the server records only a request refused before it was submitted. Errors become
statuses in one place, ``guard.ErrorInterceptor``; a DetectStream frame that fails gets its
own error inside the stream instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

import grpc

from inference_node.errors import InvalidParameter, NodeError, to_status
from inference_node.model import Detection, DetectParams, ModelRef
from inference_node.serving.admission import Admission, Ticket
from inference_node.serving.batcher import Batcher
from inference_node.serving.frames import Frame, FrameWindow
from inference_node.serving.guard import ErrorInterceptor, Malformed
from inference_node.serving.imaging import DecodedImage, ImageLimits, open_image
from inference_node.serving.ledger import Ledger
from inference_node.serving.requests import DetectRequest, DetectResult
from inference_node.serving.status import NodeSnapshot, SlotPhase, StatusSource
from inference_node.telemetry.stats import NodeStatsSnapshot, StatsRecorder
from yolofleet.v1 import inference_pb2 as pb
from yolofleet.v1 import inference_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

STREAM_METHOD = "/yolofleet.v1.Inference/DetectStream"
__all__ = ["STREAM_METHOD", "ErrorInterceptor", "InferenceServicer"]
# ErrorInterceptor lives in ``guard``; it is re-exported for code that imports it from here.


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(
        self,
        batcher: Batcher,
        status: StatusSource,
        *,
        admission: Admission,
        decode_executor: Executor,
        limits: ImageLimits,
        max_det_limit: int,
        ledger: Ledger,
        stats: StatsRecorder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._batcher = batcher
        self._status = status
        self._admission = admission
        self._decode = decode_executor
        self._limits = limits
        self._max_det_limit = max_det_limit
        self._ledger = ledger
        self._stats = stats
        self._clock = clock

    async def Detect(
        self, request: pb.DetectRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DetectResponse:
        with self._admission.rpc():
            return await self._detect(request)

    async def DetectStream(
        self,
        request_iterator: AsyncIterator[Frame],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DetectResponse]:
        """Answer frames in order, each with its detections or its own error, keeping at most
        ``stream_window`` in flight; end the stream when it idles past ``stream_idle_s``."""
        with self._admission.rpc(stream=True):
            limits = self._admission.limits
            frames = FrameWindow(
                request_iterator, self._frame, window=limits.stream_window,
                idle_s=limits.stream_idle_s,
            )  # fmt: skip
            try:
                async for response in frames.answers():
                    yield response
            finally:
                frames.cancel()

    async def GetStatus(
        self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeStatus:
        return _to_status_proto(self._status.snapshot())

    async def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeStats:
        return _to_stats_proto(self._stats.window(request.since_unix, self._clock()))

    async def _frame(self, frame: Frame) -> pb.DetectResponse:
        """One stream frame's answer: its detections, or the status it failed with."""
        try:
            if isinstance(frame, Malformed):
                raise frame.error(STREAM_METHOD)
            return await self._detect(frame)
        except Exception as exc:
            if not isinstance(exc, NodeError):
                logger.error("method=%s frame failed unexpectedly", STREAM_METHOD, exc_info=exc)
            code, message = to_status(exc)
            request_id = frame.request_id if isinstance(frame, pb.DetectRequest) else ""
            return pb.DetectResponse(
                request_id=request_id,
                error=pb.FrameError(code=code.value[0], status=code.name, message=message),
            )

    async def _detect(self, request: pb.DetectRequest) -> pb.DetectResponse:
        received = time.perf_counter()
        try:
            params = self._params(request)
            ticket = self._batcher.admit(wire_bytes=len(request.image))
        except Exception as exc:
            self._refused(request, exc, received=received)
            raise
        with ticket:
            try:
                decoded, decode_s = await asyncio.get_running_loop().run_in_executor(
                    self._decode, self._decode_image, request.image, ticket
                )
            except Exception as exc:
                self._refused(request, exc, received=received)
                raise
            typed = DetectRequest(
                image=decoded.pixels,
                params=params,
                model_name=request.model,
                request_id=request.request_id,
                decode_s=decode_s,
                received_at=received,
            )
            result = await self._batcher.submit(typed, ticket)  # the batcher records its outcome
        total_s = time.perf_counter() - received
        detections = tuple(decoded.to_original(d) for d in result.detections)
        return _to_response(request, result, decoded, detections, total_s=total_s)

    def _decode_image(self, data: bytes, ticket: Ticket) -> tuple[DecodedImage, float]:
        """Runs on the decode pool: the header is checked and the decode's peak bytes are
        reserved before a pixel is decoded; afterwards only the pixels stay counted."""
        started = time.perf_counter()
        plan = open_image(data, self._limits)
        ticket.reserve(plan.peak_bytes)
        decoded = plan.decode()
        ticket.settle(decoded.nbytes)
        return decoded, time.perf_counter() - started

    def _refused(self, request: pb.DetectRequest, exc: Exception, *, received: float) -> None:
        """A request that failed before it was submitted (bad parameters, admission, decoding)."""
        latency_s = time.perf_counter() - received
        self._ledger.refused(exc, model_name=request.model, latency_s=latency_s)

    def _params(self, message: pb.DetectRequest) -> DetectParams:
        defaults = DetectParams()
        conf = message.conf if message.HasField("conf") else defaults.conf
        iou = message.iou if message.HasField("iou") else defaults.iou
        max_det = message.max_det if message.HasField("max_det") else defaults.max_det
        if not 0.0 <= conf <= 1.0:
            raise InvalidParameter(f"conf must be within [0, 1], got {conf:g}")
        if not 0.0 <= iou <= 1.0:
            raise InvalidParameter(f"iou must be within [0, 1], got {iou:g}")
        if not 1 <= max_det <= self._max_det_limit:
            raise InvalidParameter(
                f"max_det must be within [1, {self._max_det_limit}], got {max_det}"
            )
        if any(class_id < 0 for class_id in message.classes):
            raise InvalidParameter(f"class ids must be >= 0, got {list(message.classes)}")
        return DetectParams(conf=conf, iou=iou, max_det=max_det, classes=frozenset(message.classes))


def _to_response(
    request: pb.DetectRequest,
    result: DetectResult,
    decoded: DecodedImage,
    detections: tuple[Detection, ...],
    *,
    total_s: float,
) -> pb.DetectResponse:
    ref = result.ref
    return pb.DetectResponse(
        request_id=request.request_id,
        detections=[
            pb.Detection(
                box=pb.Box(x1=d.x1, y1=d.y1, x2=d.x2, y2=d.y2),
                confidence=d.confidence,
                class_id=d.class_id,
                class_name=d.class_name,
            )
            for d in detections
        ],
        model=pb.ModelInfo(name=ref.name, version=ref.version, sha256=ref.sha256),
        image_width=decoded.original_width,
        image_height=decoded.original_height,
        timings=pb.Timings(
            decode_ms=result.decode_s * 1000,
            queue_ms=result.queue_s * 1000,
            inference_ms=result.inference_s * 1000,
            total_ms=total_s * 1000,
        ),
        generation=result.generation,
        batch_size=result.batch_size,
    )


def _to_stats_proto(snapshot: NodeStatsSnapshot) -> pb.NodeStats:
    return pb.NodeStats(
        window_start_unix=snapshot.window_start_unix,
        window_end_unix=snapshot.window_end_unix,
        models=[
            pb.ModelStats(
                model=pb.ModelInfo(
                    name=stats.model.name, version=stats.model.version, sha256=stats.model.sha256
                ),
                requests=stats.requests,
                errors=stats.errors,
                latency_bounds_s=stats.latency_bounds_s,
                latency_counts=stats.latency_counts,
                images=stats.images,
                detections=stats.detections,
                confidence_sum=stats.confidence_sum,
                class_counts=dict(stats.class_counts),
            )
            for stats in snapshot.models
        ],
    )


def _model_info(ref: ModelRef | None) -> pb.ModelInfo:
    if ref is None:
        return pb.ModelInfo()
    return pb.ModelInfo(name=ref.name, version=ref.version, sha256=ref.sha256)


def _to_status_proto(snapshot: NodeSnapshot) -> pb.NodeStatus:
    memory = snapshot.memory
    return pb.NodeStatus(
        active_model=_model_info(snapshot.active),
        phase=_PHASES[snapshot.phase],
        generation=snapshot.generation,
        device=snapshot.device,
        last_swap_unix=snapshot.last_swap_unix,
        last_swap_duration_s=snapshot.last_swap_duration_s,
        last_error=snapshot.last_error,
        memory=pb.DeviceMemory(
            available=memory.available,
            used_bytes=memory.used_bytes,
            total_bytes=memory.total_bytes,
            utilization_percent=memory.utilization_percent,
        ),
        pending=snapshot.pending,
        loading_model=_model_info(snapshot.loading),
    )


_PHASES = {
    SlotPhase.EMPTY: pb.SLOT_PHASE_EMPTY,
    SlotPhase.LOADING: pb.SLOT_PHASE_LOADING,
    SlotPhase.SERVING: pb.SLOT_PHASE_SERVING,
    SlotPhase.FAILED: pb.SLOT_PHASE_FAILED,
    SlotPhase.DRAINING: pb.SLOT_PHASE_DRAINING,
}
