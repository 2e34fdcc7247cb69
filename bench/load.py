"""Closed-loop gRPC load: N clients, each sending the next request when the last returns."""

from __future__ import annotations

import asyncio
import io
import statistics
import time
from dataclasses import dataclass

import grpc

from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb
from yolofleet.v1 import inference_pb2_grpc as pb_grpc


def jpeg(seed: int) -> bytes:
    """A synthetic scene as the JPEG bytes a camera client would send."""
    buffer = io.BytesIO()
    render_image(seed).image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Call:
    started: float
    ended: float
    ok: bool
    sha256: str
    generation: int = 0
    """The slot generation that answered (0 for a failed call or a peer without slots)."""

    @property
    def latency_ms(self) -> float:
        return (self.ended - self.started) * 1000


async def closed_loop(
    address: str,
    image: bytes,
    *,
    clients: int,
    duration_s: float = 0,
    requests: int = 0,
    until: asyncio.Event | None = None,
) -> list[Call]:
    """Run ``clients`` loops for ``duration_s`` seconds, ``requests`` calls each, or until
    ``until`` is set."""
    deadline = time.perf_counter() + duration_s

    def going_on(calls: list[Call]) -> bool:
        if until is not None:
            return not until.is_set()
        if requests:
            return len(calls) < requests
        return time.perf_counter() < deadline

    async def client() -> list[Call]:
        calls: list[Call] = []
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.InferenceStub(channel)  # type: ignore[no-untyped-call]
            await stub.Detect(pb.DetectRequest(image=image), timeout=60)  # connect + warm
            while going_on(calls):
                started = time.perf_counter()
                try:
                    reply = await stub.Detect(pb.DetectRequest(image=image), timeout=60)
                    ended = time.perf_counter()
                    calls.append(Call(started, ended, True, reply.model.sha256, reply.generation))
                except grpc.aio.AioRpcError:
                    calls.append(Call(started, time.perf_counter(), False, ""))
        return calls

    per_client = await asyncio.gather(*(client() for _ in range(clients)))
    return [call for calls in per_client for call in calls]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(calls: list[Call]) -> dict[str, float]:
    ok = [c for c in calls if c.ok]
    span = max(c.ended for c in calls) - min(c.started for c in calls) if calls else 0.0
    latencies = [c.latency_ms for c in ok]
    return {
        "requests": len(calls),
        "failed": len(calls) - len(ok),
        "rps": len(ok) / span if span else 0.0,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
    }
