"""The gRPC servicer: protobuf in, our dataclasses through the batcher, protobuf out.

Errors are turned into statuses in one place, ``ErrorInterceptor``, via ``errors.to_status``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from inference_node.batcher import Batcher, DetectRequest, DetectResult
from inference_node.errors import InvalidParameter, NodeError, to_status
from inference_node.imaging import ImageLimits, decode_image
from inference_node.metrics import NodeMetrics
from inference_node.model import Detection, DetectParams, ModelRef
from inference_node.stats import ModelId, NodeStatsSnapshot, Outcome, StatsRecorder, outcome_of
from inference_node.status import NodeSnapshot, SlotPhase, StatusSource
from yolofleet.v1 import inference_pb2 as pb
from yolofleet.v1 import inference_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

STREAM_WINDOW = 8
"""Frames of one stream in flight at once; more wait, which pushes back on the sender."""


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(
        self,
        batcher: Batcher,
        status: StatusSource,
        *,
        limits: ImageLimits,
        max_det_limit: int,
        metrics: NodeMetrics,
        stats: StatsRecorder,
        active_model: Callable[[], ModelRef | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._batcher = batcher
        self._status = status
        self._limits = limits
        self._max_det_limit = max_det_limit
        self._metrics = metrics
        self._stats = stats
        self._active_model = active_model
        self._clock = clock

    async def Detect(
        self, request: pb.DetectRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DetectResponse:
        return await self._detect(request)

    async def DetectStream(
        self,
        request_iterator: AsyncIterator[pb.DetectRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DetectResponse]:
        window: asyncio.Queue[asyncio.Task[pb.DetectResponse] | None] = asyncio.Queue(STREAM_WINDOW)

        async def read_frames() -> None:
            try:
                async for frame in request_iterator:
                    await window.put(asyncio.ensure_future(self._detect(frame)))
            finally:
                await window.put(None)

        reader = asyncio.ensure_future(read_frames())
        try:
            while (task := await window.get()) is not None:
                yield await task
            await reader
        finally:
            reader.cancel()
            while not window.empty():
                leftover = window.get_nowait()
                if leftover is not None:
                    leftover.cancel()

    async def GetStatus(
        self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeStatus:
        return _to_status_proto(self._status.snapshot())

    async def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeStats:
        return _to_stats_proto(self._stats.window(request.since_unix, self._clock()))

    async def _detect(self, request: pb.DetectRequest) -> pb.DetectResponse:
        received = time.perf_counter()
        try:
            result = await self._batcher.submit(lambda: self._to_request(request))
        except Exception as exc:
            self._metrics.observe_request(
                version="", code=to_status(exc)[0].name, queue_s=0, inference_s=0, total_s=0
            )
            self._record_failure(request, exc, latency_s=time.perf_counter() - received)
            raise
        total_s = time.perf_counter() - received
        self._metrics.observe_request(
            version=result.ref.version,
            code="OK",
            queue_s=result.queue_s,
            inference_s=result.inference_s,
            total_s=total_s,
        )
        self._count(
            ModelId.of(result.ref),
            latency_s=total_s,
            outcome=Outcome.OK,
            detections=result.detections,
        )
        return _to_response(request, result, total_s=total_s)

    def _record_failure(
        self, request: pb.DetectRequest, exc: Exception, *, latency_s: float
    ) -> None:
        """A server-side failure counts against the active model when the request went to the
        slot (it named no model, or the active one); any other failure is not attributed.
        """
        active = self._active_model()
        if active is None or request.model not in ("", active.name):
            return
        self._count(ModelId.of(active), latency_s=latency_s, outcome=outcome_of(exc))

    def _count(
        self,
        model: ModelId,
        *,
        latency_s: float,
        outcome: Outcome,
        detections: tuple[Detection, ...] = (),
    ) -> None:
        """Count one finished request in the GetStats windows and, alike, in the per-digest
        Prometheus families, so the two sources of canary figures agree.
        """
        self._stats.record(
            model, at=self._clock(), latency_s=latency_s, outcome=outcome, detections=detections
        )
        if outcome is not Outcome.NOT_COUNTED:
            self._metrics.observe_model(
                model.sha256,
                latency_s=latency_s,
                failed=outcome is Outcome.MODEL_ERROR,
                detections=detections,
            )

    def _to_request(self, message: pb.DetectRequest) -> DetectRequest:
        """Runs on the decode pool: check parameters, then decode the image."""
        params = self._params(message)
        started = time.perf_counter()
        image = decode_image(message.image, self._limits)
        return DetectRequest(
            image=image,
            params=params,
            model_name=message.model,
            request_id=message.request_id,
            decode_s=time.perf_counter() - started,
        )

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
    request: pb.DetectRequest, result: DetectResult, *, total_s: float
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
            for d in result.detections
        ],
        model=pb.ModelInfo(name=ref.name, version=ref.version, sha256=ref.sha256),
        image_width=result.image_width,
        image_height=result.image_height,
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

Handler = Callable[..., Any]


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns ``NodeError`` (and anything unexpected) into the status ``to_status`` chooses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _guard_stream(handler.stream_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _guard_unary(behavior: Handler, method: str) -> Handler:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except Exception as exc:
            await _abort(context, exc, method)

    return guarded


def _guard_stream(behavior: Handler, method: str) -> Handler:
    async def guarded(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            async for response in behavior(request_iterator, context):
                yield response
        except Exception as exc:
            await _abort(context, exc, method)

    return guarded


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception, method: str) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if not isinstance(exc, NodeError):
        logger.error("method=%s failed unexpectedly", method, exc_info=exc)
    code, message = to_status(exc)
    await context.abort(code, message)
