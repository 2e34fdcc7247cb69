"""``InferenceNode``: builds a node's parts from a ``NodeConfig`` and runs them on one loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from inference_node.config import NodeConfig
from inference_node.model import ModelRef
from inference_node.node_parts import loader_executor, local_catalog, validation_policy
from inference_node.serving.admission import Admission
from inference_node.serving.batcher import Batcher
from inference_node.serving.catalog import ModelCatalog
from inference_node.serving.guard import ErrorInterceptor
from inference_node.serving.health import INFERENCE_SERVICE, NodeHealth
from inference_node.serving.ledger import Ledger
from inference_node.serving.model_cache import ModelCache
from inference_node.serving.routing import Router
from inference_node.serving.server import InferenceServicer
from inference_node.serving.status import StatusSource
from inference_node.swapping.agent import SwapAgent
from inference_node.swapping.executors import shut_down_executors
from inference_node.swapping.loader import ModelLoader
from inference_node.swapping.slot import Active, ModelSlot
from inference_node.telemetry.device import (
    GpuTelemetry,
    apply_threads,
    release_device_memory,
    resolve_device,
    telemetry_for,
)
from inference_node.telemetry.metrics import NodeMetrics
from inference_node.telemetry.rpc_count import RpcCounter
from inference_node.telemetry.stats import StatsRecorder
from inference_node.telemetry.watchdog import DeviceHeartbeat, Watchdog, WatchedExecutor
from yolofleet.offline import ensure_offline
from yolofleet.v1 import inference_pb2_grpc

logger = logging.getLogger(__name__)

T = TypeVar("T")

GRPC_OVERHEAD_BYTES = 1 << 20
CONTROL_RPC_HEADROOM = 32
"""RPCs beyond the inference cap that gRPC still takes, so health, status and stats answer
while inference calls are at their cap."""
EXECUTOR_SHUTDOWN_S = 5.0
"""How long stop() waits for worker threads to finish; a thread still busy after is left."""


class InferenceNode:
    """One node: gRPC server, health, reflection, metrics, slot, batcher and swap agent."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        telemetry: GpuTelemetry | None = None,
        catalog: ModelCatalog | None = None,
    ) -> None:
        ensure_offline()
        self.config = config
        self._catalog = catalog if catalog is not None else local_catalog(config)
        self.cache: ModelCache | None = None
        self.device = resolve_device(config.device)
        self.threads = apply_threads(config.threads)  # after ensure_offline: its import is done
        self.metrics = NodeMetrics()
        self.stats = StatsRecorder()
        self.slot = ModelSlot()
        self.health = NodeHealth()
        self._telemetry = telemetry or telemetry_for(self.device)
        self.heartbeat = DeviceHeartbeat()
        self._device_executor = WatchedExecutor(
            ThreadPoolExecutor(1, thread_name_prefix="device"), self.heartbeat
        )
        self._slot_loader_executor = loader_executor("slot-loader")
        self._cache_loader_executor = loader_executor("cache-loader")  # never behind a slot load
        self._loader: ModelLoader | None = None
        self._decode_executor = ThreadPoolExecutor(2, thread_name_prefix="decode")
        self._server: grpc.aio.Server | None = None
        self._metrics_http: WSGIServer | None = None
        self.port = 0
        self.metrics_port: int | None = None
        self.threads_finished = True
        """False after ``stop()`` when a worker thread was still busy (a load stuck in the
        kernel): the process should exit without joining it."""

    async def start(self) -> None:
        """Build the parts, bind the ports and start serving (NOT_SERVING until a model is live)."""
        config = self.config
        policy = validation_policy(config)
        loader = ModelLoader(
            device=self.device,
            cache_dir=config.artifact_cache,
            warmup_batch=config.batch.max_size,
            cache_bytes=config.artifact_cache_bytes,
        )
        self._loader = loader
        self.cache = self._model_cache(loader)
        self.admission = Admission(config.admission, max_waiting=config.batch.max_queue)
        router = Router(self.slot, self.cache)
        self.ledger = Ledger(stats=self.stats, metrics=self.metrics, router=router)
        self.batcher = Batcher(
            router,
            device_executor=self._device_executor,
            limits=config.batch,
            metrics=self.metrics,
            ledger=self.ledger,
            admission=self.admission,
        )
        self.agent = SwapAgent(
            self.slot,
            loader,
            loader_executor=self._slot_loader_executor,
            device_executor=self._device_executor,
            policy=policy,
            min_swap_interval_s=config.min_swap_interval_s,
            metrics=self.metrics,
            listeners=(self.health.on_swap, self._announce),
        )
        self.watchdog = Watchdog(
            self.heartbeat, max_batch=config.batch.max_size,
            configured_s=config.watchdog_timeout_s,
            listeners=(self.health.on_stall, self.metrics.on_stall),
        )  # fmt: skip
        self.status = StatusSource(
            self.slot, self.agent, self._telemetry, device=self.device,
            pending=lambda: self.batcher.pending, stalled=lambda: self.watchdog.reason,
        )  # fmt: skip
        self.metrics.track(pending=lambda: self.batcher.pending, memory=self._telemetry.sample)
        await self._start_grpc()
        self._start_metrics_http()
        await self.health.start()
        self.batcher.start()
        self.watchdog.start()
        self.agent.start()
        logger.info(
            "node listening grpc=%s:%d metrics=%s device=%s threads=%d",
            config.host, self.port, self.metrics_port, self.device, self.threads,
        )  # fmt: skip

    async def swap_to(self, ref: ModelRef) -> Active:
        """Ask for ``ref`` and wait until it is live (or raise why it was refused)."""
        return await self.agent.request(ref)

    def run_on_device(self, function: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``function`` on the device thread between batches (call it on the node's loop).

        For tools and tests that need the device thread itself: a probe, or a stand-in for a
        wedged driver call.
        """
        return asyncio.get_running_loop().run_in_executor(self._device_executor, function)

    async def begin_shutdown(self) -> None:
        """Health NOT_SERVING, so balancers stop sending; requests are still served."""
        self.status.draining = True
        await self.health.draining()

    async def stop(self) -> None:
        """Graceful stop, in the order that loses no accepted request.

        NOT_SERVING first; then the gRPC server stops: it sends GOAWAY, so clients move new
        calls to another node (or see UNAVAILABLE at once), while the calls it already took
        run to the end within ``drain_timeout_s``. The batcher keeps serving them, and only
        once the server is done does it drain and stop. Then everything is freed.
        """
        await self.begin_shutdown()
        if self._server is not None:
            await self._server.stop(grace=self.config.drain_timeout_s)
        drained = await self.batcher.drain(self.config.drain_timeout_s)
        if not drained:
            logger.warning("drain timed out after %.1fs", self.config.drain_timeout_s)
        await self.batcher.stop()
        if self._loader is not None:
            self._loader.shutdown()  # in-flight fetches and builds end with LoadCancelled
        await self.watchdog.stop()
        await self.agent.stop()
        if self.cache is not None:
            await self.cache.stop()
        retired = self.slot.retire_all()
        if retired is not None:
            retired.detector.close()
            release_device_memory(retired.detector.device)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self.threads_finished = await shut_down_executors(
            (
                self._device_executor,
                self._slot_loader_executor,
                self._cache_loader_executor,
                self._decode_executor,
            ),
            timeout_s=EXECUTOR_SHUTDOWN_S,
        )
        self._telemetry.close()
        detect = self.metrics.rpc_counts("Detect")
        logger.info(
            "node stopped drained=%s detect_accepted=%d detect_ok=%d detect_error=%d "
            "detect_cancelled=%d",
            drained, detect["started"], detect["ok"], detect["error"], detect["cancelled"],
        )  # fmt: skip

    async def _start_grpc(self) -> None:
        config = self.config
        max_message = config.images.max_bytes + GRPC_OVERHEAD_BYTES
        server = grpc.aio.server(
            interceptors=[RpcCounter(self.metrics), ErrorInterceptor()],
            maximum_concurrent_rpcs=self.admission.limits.max_rpcs + CONTROL_RPC_HEADROOM,
            options=[
                ("grpc.max_receive_message_length", max_message),
                ("grpc.so_reuseport", 0),
            ],
        )
        servicer = InferenceServicer(
            self.batcher,
            self.status,
            admission=self.admission,
            decode_executor=self._decode_executor,
            limits=config.images,
            max_det_limit=config.max_det_limit,
            ledger=self.ledger,
            stats=self.stats,
        )
        inference_pb2_grpc.add_InferenceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, server)
        services = (INFERENCE_SERVICE, "grpc.health.v1.Health", reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, server)
        self.port = server.add_insecure_port(f"{config.host}:{config.port}")
        if self.port == 0:
            raise OSError(f"could not bind gRPC port {config.host}:{config.port}")
        await server.start()
        self._server = server

    def _start_metrics_http(self) -> None:
        if self.config.metrics_port is None:
            return
        server, _thread = start_http_server(
            self.config.metrics_port, addr=self.config.host, registry=self.metrics.registry
        )
        self._metrics_http = server
        self.metrics_port = server.server_port

    def _model_cache(self, loader: ModelLoader) -> ModelCache | None:
        """The on-demand cache, when the node has a catalog to find models in."""
        if self._catalog is None:
            if self.config.allowed_models:
                logger.warning(
                    "allowed models %s cannot be loaded: this node has no model catalog",
                    ", ".join(sorted(self.config.allowed_models)),
                )
            return None
        return ModelCache(
            loader,
            loader_executor=self._cache_loader_executor,
            catalog=self._catalog,
            allowed=self.config.allowed_models,
            budget_bytes=self.config.model_memory_budget_bytes,
            metrics=self.metrics,
        )

    def _announce(self, active: Active) -> None:
        if active.generation == 1:
            logger.info(
                "node serving model=%s grpc_port=%d metrics_port=%s device=%s",
                active.ref, self.port, self.metrics_port, self.device,
            )  # fmt: skip
