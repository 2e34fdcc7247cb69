"""The real ``MetricSource``: each live node's ``GetStats`` RPC, asked concurrently.

Protobuf appears here and nowhere else on the control plane's node side: ``ModelStats`` become
``Samples`` keyed by node id and model sha256. A node that does not answer within the timeout
is left out (logged once until it answers again); ``NodeUnreachable`` is raised only when no
node answered at all, so a blip on one node never decides a verdict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import grpc

from control_plane.core.errors import NodeUnreachable
from control_plane.core.fleet import FleetView, NodeView
from control_plane.core.metrics import NodeSamples
from control_plane.core.samples import LatencyHistogram, Samples
from yolofleet.v1 import inference_pb2, inference_pb2_grpc

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0


class GrpcMetricSource:
    """Asks every live node with an endpoint for its stats since the window start."""

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._unreachable: set[str] = set()

    async def sample(
        self, group: str, fleet: FleetView, *, since: float, until: float
    ) -> NodeSamples:
        asked = [node for node in fleet.nodes if node.live and node.endpoint]
        if not asked:
            return {}
        answers = await asyncio.gather(*(self._ask(group, node, since) for node in asked))
        per_node = {
            node.node_id: answer
            for node, answer in zip(asked, answers, strict=True)
            if answer is not None
        }
        if not per_node:
            raise NodeUnreachable(
                f"group {group}: none of {len(asked)} node(s) answered GetStats within "
                f"{self._timeout_s:g}s; is the fleet up?"
            )
        return per_node

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def _ask(self, group: str, node: NodeView, since: float) -> dict[str, Samples] | None:
        channel = self._channel(node.endpoint)
        stub = inference_pb2_grpc.InferenceStub(channel)  # type: ignore[no-untyped-call]
        request = inference_pb2.GetStatsRequest(since_unix=since)
        try:
            stats = await stub.GetStats(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            self._failed(group, node, f"{exc.code().name}: {exc.details()}")
            return None
        if node.node_id in self._unreachable:
            self._unreachable.discard(node.node_id)
            logger.info("group=%s node=%s answers GetStats again", group, node.node_id)
        return samples_by_digest(stats.models)

    def _failed(self, group: str, node: NodeView, why: str) -> None:
        if node.node_id not in self._unreachable:
            self._unreachable.add(node.node_id)
            logger.warning(
                "group=%s node=%s endpoint=%s skipped, GetStats failed: %s",
                group,
                node.node_id,
                node.endpoint,
                why,
            )

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        if endpoint not in self._channels:
            self._channels[endpoint] = grpc.aio.insecure_channel(endpoint)
        return self._channels[endpoint]


def samples_by_digest(models: Iterable[inference_pb2.ModelStats]) -> dict[str, Samples]:
    """One node's ``ModelStats`` as ``Samples`` per model sha256."""
    return {stats.model.sha256: to_samples(stats) for stats in models if stats.model.sha256}


def to_samples(stats: inference_pb2.ModelStats) -> Samples:
    counts = tuple(int(count) for count in stats.latency_counts)
    return Samples(
        requests=int(stats.requests),
        errors=int(stats.errors),
        latency=LatencyHistogram(
            bounds=tuple(float(bound) for bound in stats.latency_bounds_s),
            counts=counts or (0,),
        ),
        images=int(stats.images),
        detections=int(stats.detections),
        confidence_sum=float(stats.confidence_sum),
        class_counts=tuple(sorted((str(k), int(v)) for k, v in stats.class_counts.items())),
    )
