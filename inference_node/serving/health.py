"""The standard ``grpc.health.v1`` service, driven by the slot, the watchdog and shutdown."""

from __future__ import annotations

import asyncio
from typing import TypeAlias

from grpc_health.v1 import health, health_pb2

from inference_node.swapping.slot import Active

ServingStatus: TypeAlias = "health_pb2.HealthCheckResponse.ServingStatus.ValueType"

INFERENCE_SERVICE = "yolofleet.v1.Inference"


class NodeHealth:
    """SERVING once the first model is live and warm, while the device thread is not stalled
    and until shutdown begins; NOT_SERVING otherwise. Shutdown is final.
    """

    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()
        self._live = False
        self._stalled = False
        self._draining = False
        self._updates: set[asyncio.Task[None]] = set()

    @property
    def serving(self) -> bool:
        return self._live and not self._stalled and not self._draining

    async def start(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)

    def on_swap(self, active: Active) -> None:
        """Swap listener: the first live model flips the node to SERVING."""
        del active
        self._live = True
        self._publish_soon()

    def on_stall(self, reason: str) -> None:
        """Watchdog listener: NOT_SERVING while ``reason`` is set, back when it is ``""``."""
        self._stalled = bool(reason)
        self._publish_soon()

    async def draining(self) -> None:
        """NOT_SERVING for good: the servicer ignores every later update."""
        self._draining = True
        await self.servicer.enter_graceful_shutdown()

    def _publish_soon(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        task = asyncio.get_running_loop().create_task(self._publish(status))
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def _publish(self, status: ServingStatus) -> None:
        if self._draining:  # a late update never turns a stopping node back to SERVING
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        await self._set(status)

    async def _set(self, status: ServingStatus) -> None:
        for service in ("", INFERENCE_SERVICE):
            await self.servicer.set(service, status)
