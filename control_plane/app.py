"""Wiring only: ``AppConfig`` to a running control plane, and a graceful stop.

One ``ControlPlane`` holds the Consul client and store, the controller (ticking only while
this replica holds the leader lock), the metric source (nodes' ``GetStats``, or Prometheus when
``prometheus_url`` is set), the artifact server, the gRPC server (ControlPlane, health and
reflection), one shared watch per group behind the WatchRollout streams (at most
``max_watch_streams``), and its own Prometheus metrics on ``metrics_port``. Every replica
answers RPCs. Blocking calls run on the bounded pool of ``yolofleet.consul.aiothread``, sized
here to ``blocking_threads`` (calls) and ``poll_threads`` (blocking queries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import HTTPServer
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from control_plane.artifact_server import ArtifactServer
from control_plane.consul.epoch import EpochKeeper
from control_plane.consul.leader import LeaderLock
from control_plane.consul.store import ConsulStore
from control_plane.consul.watches import DEFAULT_MAX_STREAMS, GroupWatches, StreamLimit
from control_plane.controller import Controller
from control_plane.core.observer import GuardedObserver
from control_plane.service.servicer import ControlPlaneService
from control_plane.service.watched import WatchedRollout, watched_rollout
from control_plane.sources.nodes import DEFAULT_TIMEOUT_S as DEFAULT_STATS_TIMEOUT_S
from control_plane.sources.nodes import GrpcMetricSource
from control_plane.sources.prometheus import PrometheusMetricSource
from control_plane.telemetry import ControlPlaneMetrics
from yolofleet.consul import ConsulClient, ConsulSettings, aiothread
from yolofleet.keys import DEFAULT_PREFIX, KeyLayout
from yolofleet.v1 import control_pb2, control_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlPlane"].full_name
DRAIN_S = 5.0
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConfig:
    consul: str
    host: str = "127.0.0.1"
    port: int = 50070
    artifact_port: int = 0
    artifact_dir: Path | None = None
    artifact_url: str | None = None
    """Base URL nodes reach the artifact endpoint at (a Service's DNS name, a load balancer);
    None: ``http://HOST:PORT`` of the bound socket, with this machine's name for a wildcard
    host. It is written into every registered model's URI, so it must outlive this process."""
    interval_s: float = 2.0
    stats_timeout_s: float = DEFAULT_STATS_TIMEOUT_S
    """Seconds each node has to answer GetStats before an assessment leaves it out."""
    key_prefix: str = DEFAULT_PREFIX
    prometheus_url: str | None = None
    """Prometheus' base URL to read canary figures from; None: each node's ``GetStats``."""
    prometheus_node_label: str = "node_id"
    prometheus_selector: str = ""
    metrics_port: int | None = None
    """Port to serve this replica's Prometheus metrics on (0: any free port); None: none."""
    max_watch_streams: int = DEFAULT_MAX_STREAMS
    """WatchRollout streams served at once; more are refused with RESOURCE_EXHAUSTED."""
    blocking_threads: int = aiothread.DEFAULT_MAX_WORKERS
    """Threads blocking calls (Consul, registry, hashing) share in this process."""
    poll_threads: int = aiothread.DEFAULT_MAX_POLLS
    """Threads Consul blocking queries (one per watched group) share in this process."""
    leader_ttl_s: float = 10.0
    """TTL (and lock-delay) of the leader session; Consul's minimum is 10 s."""


class PublishedArtifacts:
    """``service.Artifacts`` on an ``ArtifactServer``: files are copied into its directory
    as ``<sha256>.pt`` (they survive a restart), or mapped in place when it has none.
    """

    def __init__(self, server: ArtifactServer, directory: Path | None, base_url: str) -> None:
        self._server = server
        self._directory = directory
        self._base_url = base_url

    def publish(self, sha256: str, path: Path) -> str:
        if self._directory is None:
            self._server.publish(sha256, path.resolve())
        else:
            final = self._directory / f"{sha256}.pt"
            if not final.exists():
                partial = self._directory / f".{sha256}.{uuid.uuid4().hex[:8]}.partial"
                shutil.copyfile(path, partial)
                os.replace(partial, final)
        return self._server.url_for(sha256, base=self._base_url)


class ControlPlane:
    """``await plane.start()`` serves; ``await plane.stop()`` drains and releases everything."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.client = ConsulClient(ConsulSettings.from_env(address=config.consul))
        self.store = ConsulStore(self.client, KeyLayout(config.key_prefix))
        self.metrics: GrpcMetricSource | PrometheusMetricSource = (
            GrpcMetricSource(timeout_s=config.stats_timeout_s)
            if config.prometheus_url is None
            else PrometheusMetricSource(
                config.prometheus_url,
                node_label=config.prometheus_node_label,
                selector=config.prometheus_selector,
            )
        )
        calls, polls = aiothread.configure(config.blocking_threads, max_polls=config.poll_threads)
        self.telemetry = ControlPlaneMetrics()
        epochs = EpochKeeper(self.client, self.store.layout)
        self.controller = Controller(
            self.store, self.metrics, observer=GuardedObserver(self.telemetry), epochs=epochs
        )
        holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.leader = LeaderLock(
            self.client,
            self.store.layout,
            holder=holder,
            ttl=config.leader_ttl_s,
            check_s=min(1.0, config.leader_ttl_s / 4),
            observer=GuardedObserver(self.telemetry),
        )
        self.watches = rollout_watches(
            self.client, self.store, self.controller, on_error=self.telemetry.watch_failed
        )
        self.streams = StreamLimit(config.max_watch_streams)
        self.telemetry.track(
            streams=lambda: self.streams.open,
            groups=lambda: len(self.watches.watching),
            threads=lambda: calls.workers + polls.workers,
        )
        if config.artifact_dir is not None:
            config.artifact_dir.mkdir(parents=True, exist_ok=True)
            self.artifacts = ArtifactServer(config.artifact_dir, config.host, config.artifact_port)
        else:
            self.artifacts = ArtifactServer({}, config.host, config.artifact_port)
        self.health = health.aio.HealthServicer()
        self.port = 0
        self.metrics_port: int | None = None
        self._metrics_http: HTTPServer | None = None
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.artifacts.start()
        server = grpc.aio.server()
        service = ControlPlaneService(
            store=self.store,
            controller=self.controller,
            artifacts=PublishedArtifacts(
                self.artifacts, self.config.artifact_dir, self.artifact_base_url()
            ),
            watches=self.watches,
            streams=self.streams,
        )
        control_pb2_grpc.add_ControlPlaneServicer_to_server(service, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        self.port = server.add_insecure_port(f"{self.config.host}:{self.config.port}")
        await server.start()
        self._server = server
        self._start_metrics_http()
        for name in ("", SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self.leader.start()
        self._loop = asyncio.create_task(
            self.controller.run(interval_s=self.config.interval_s, leader=self.leader),
            name="controller-loop",
        )
        artifact_port = int(self.artifacts.url.rsplit(":", 1)[1])
        logger.info(
            "control plane serving grpc_port=%d artifact_port=%d artifact_url=%s metrics_port=%s",
            self.port,
            artifact_port,
            self.artifact_base_url(),
            self.metrics_port,
        )
        if self.config.artifact_url is None and self.config.artifact_port == 0:
            logger.warning(
                "artifact port chosen at random and no --artifact-url: URIs of models "
                "registered now stop working when this process restarts"
            )

    def _start_metrics_http(self) -> None:
        if self.config.metrics_port is None:
            return
        server, _thread = start_http_server(
            self.config.metrics_port, addr=self.config.host, registry=self.telemetry.registry
        )
        self._metrics_http = server
        self.metrics_port = server.server_port

    def artifact_base_url(self) -> str:
        """Where nodes fetch published artifacts from, as written into model URIs."""
        if self.config.artifact_url is not None:
            return self.config.artifact_url
        bound = self.artifacts.url
        if self.config.host in WILDCARD_HOSTS:
            port = bound.rsplit(":", 1)[1]
            return f"http://{socket.getfqdn()}:{port}"
        return bound

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self.leader.close()
        if self._server is not None:
            await self._server.stop(DRAIN_S)
        await self.watches.close()
        if self._metrics_http is not None:
            await asyncio.to_thread(self._metrics_http.shutdown)  # waits up to one poll (0.5 s)
            self._metrics_http.server_close()
        await self.metrics.close()
        self.artifacts.stop()
        self.client.close()
        logger.info("control plane stopped")


def rollout_watches(
    client: ConsulClient,
    store: ConsulStore,
    controller: Controller,
    *,
    on_error: Callable[[BaseException], None] | None = None,
) -> GroupWatches[WatchedRollout]:
    """One shared watch per group's rollout document, feeding every WatchRollout stream."""
    return GroupWatches(
        client,
        key=store.layout.rollout,
        read=watched_rollout(store, controller),
        on_error=on_error,
    )
