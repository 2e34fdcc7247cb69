"""``ErrorInterceptor``: the one place that turns errors and unparsable messages into statuses.

Every unary-request and stream-stream handler is rebuilt with a guard around it: a ``NodeError``
becomes the status ``errors.to_status`` chooses, anything unexpected is logged with its
traceback and becomes INTERNAL. Request bytes that are not a valid protobuf message are not
left to gRPC (UNKNOWN and a traceback per request): the deserializer hands on a ``Malformed``
marker instead, and a unary call answers INVALID_ARGUMENT with one log line. A stream whose
method answers frame by frame (``per_frame_methods``: DetectStream) sees the marker in place
of that frame, so it can answer it and go on; any other stream ends with INVALID_ARGUMENT.

A streaming handler either yields its responses (an async generator, like DetectStream) or
writes them with ``context.write`` and returns (a coroutine, like the health service's
``Watch``); the guard keeps the handler's form, as gRPC serves the two differently.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from inference_node.errors import MalformedRequest, NodeError, to_status

logger = logging.getLogger(__name__)

Handler = Callable[..., Any]
Deserializer = Callable[[bytes], Any]
PER_FRAME_METHODS = frozenset({"/yolofleet.v1.Inference/DetectStream"})
"""Streams that answer an unparsable frame inside the stream and go on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed:
    """Request bytes that could not be parsed, in place of the message they should have been."""

    size: int
    reason: str

    def error(self, method: str) -> MalformedRequest:
        """The refusal to send back, logged once (no traceback: the caller's bytes are bad)."""
        logger.warning(
            "method=%s malformed request bytes=%d reason=%s", method, self.size, self.reason
        )
        return MalformedRequest(
            f"request is not a valid protobuf message ({self.size} bytes: {self.reason})"
        )


def tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    """``deserializer`` returning ``Malformed`` instead of raising on bytes it cannot parse."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError) as exc:
            return Malformed(size=len(data), reason=str(exc) or type(exc).__name__)

    return deserialize


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns ``NodeError`` (and anything unexpected) into the status ``to_status`` chooses."""

    def __init__(self, *, per_frame_methods: frozenset[str] = PER_FRAME_METHODS) -> None:
        self._per_frame = per_frame_methods

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
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _guard_unary_stream(handler.unary_stream, method),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _guard_stream(handler.stream_stream, method, per_frame=method in self._per_frame),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler


def _guard_unary(behavior: Handler, method: str) -> Handler:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if isinstance(request, Malformed):
                raise request.error(method)
            return await behavior(request, context)
        except Exception as exc:
            await _abort(context, exc, method)

    return guarded


def _guard_unary_stream(behavior: Handler, method: str) -> Handler:
    if not inspect.isasyncgenfunction(behavior):  # it writes with context.write
        return _guard_unary(behavior, method)

    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if isinstance(request, Malformed):
                raise request.error(method)
            async for response in behavior(request, context):
                yield response
        except Exception as exc:
            await _abort(context, exc, method)

    return guarded


def _guard_stream(behavior: Handler, method: str, *, per_frame: bool) -> Handler:
    if not inspect.isasyncgenfunction(behavior):  # it writes with context.write
        return _guard_writing_stream(behavior, method, per_frame=per_frame)

    async def guarded(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        requests = request_iterator if per_frame else _parsed(request_iterator, method)
        try:
            async for response in behavior(requests, context):
                yield response
        except Exception as exc:
            await _abort(context, exc, method)

    return guarded


def _guard_writing_stream(behavior: Handler, method: str, *, per_frame: bool) -> Handler:
    async def guarded(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        requests = request_iterator if per_frame else _parsed(request_iterator, method)
        try:
            return await behavior(requests, context)
        except Exception as exc:
            await _abort(context, exc, method)

    return guarded


async def _parsed(requests: AsyncIterator[Any], method: str) -> AsyncIterator[Any]:
    """``requests``, ending with ``MalformedRequest`` at the first that did not parse."""
    async for request in requests:
        if isinstance(request, Malformed):
            raise request.error(method)
        yield request


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception, method: str) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if not isinstance(exc, NodeError):
        logger.error("method=%s failed unexpectedly", method, exc_info=exc)
    code, message = to_status(exc)
    await context.abort(code, message)
