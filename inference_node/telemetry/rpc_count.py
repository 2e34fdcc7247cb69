"""``RpcCounter``: counts every RPC the server accepts and how it ended, by method.

It is the outermost interceptor, so it sees a call from the moment the server hands it to a
handler to the moment the handler is done: an answer (``ok``), a status from
``ErrorInterceptor`` (``error``), or a call cancelled before it was answered (``cancelled``:
the client went away, or shutdown's grace period ran out). At shutdown these figures show
whether every accepted request was answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from inference_node.telemetry.metrics import NodeMetrics

Handler = Callable[..., Any]


class RpcCounter(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio is untyped
    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rpartition("/")[2]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, behavior: Handler, method: str) -> Handler:
        async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self._metrics.rpc_started(method)
            outcome = "cancelled"
            try:
                response = await behavior(request, context)
                outcome = "ok"
                return response
            except asyncio.CancelledError:
                raise
            except BaseException:
                outcome = "error"
                raise
            finally:
                self._metrics.rpc_handled(method, outcome)

        return counted

    def _stream(self, behavior: Handler, method: str) -> Handler:
        async def counted(
            request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            self._metrics.rpc_started(method)
            outcome = "cancelled"
            try:
                async for response in behavior(request_iterator, context):
                    yield response
                outcome = "ok"
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except BaseException:
                outcome = "error"
                raise
            finally:
                self._metrics.rpc_handled(method, outcome)

        return counted
