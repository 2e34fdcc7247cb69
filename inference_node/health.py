"""The standard ``grpc.health.v1`` service, driven by the slot and by shutdown."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health, health_pb2

from inference_node.slot import Active

INFERENCE_SERVICE = "yolofleet.v1.Inference"


class NodeHealth:
    """NOT_SERVING until the first model is live and warm, and again while draining."""

    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()
        self._draining = False
        self._updates: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)

    def on_swap(self, active: Active) -> None:
        """Swap listener: the first live model flips the node to SERVING."""
        del active
        if not self._draining:
            self._set_soon(health_pb2.HealthCheckResponse.SERVING)

    async def draining(self) -> None:
        self._draining = True
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", INFERENCE_SERVICE):
            await self.servicer.set(service, status)

    def _set_soon(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        task = asyncio.get_running_loop().create_task(self._set(status))
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)
