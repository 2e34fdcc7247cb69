"""Prometheus metrics of one node, on a registry of its own (several nodes may share a process).

Request series carry ``model_version`` so canary analysis can compare models on one node.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from inference_node.device import DeviceMemory
from inference_node.model import ModelRef

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 64)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


class NodeMetrics:
    """Every metric the node exports, and small methods to record them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "yolofleet_requests", "Detect requests finished", ["model_version", "code"], registry=r
        )
        self.queue_seconds = Histogram(
            "yolofleet_queue_seconds", "Time from enqueue to batch start", ["model_version"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference_seconds = Histogram(
            "yolofleet_inference_seconds", "Batch inference time seen by each request",
            ["model_version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.total_seconds = Histogram(
            "yolofleet_request_seconds", "Time from receipt to response", ["model_version"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "yolofleet_batch_size", "Images per batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.pending = Gauge("yolofleet_pending_requests", "Requests not yet answered", registry=r)
        self.swaps = Counter("yolofleet_swaps", "Models that went live", registry=r)
        self.swap_failures = Counter(
            "yolofleet_swap_failures", "Candidates refused", ["stage"], registry=r
        )
        self.load_seconds = Histogram(
            "yolofleet_load_seconds", "Candidate fetch+build+warm-up time",
            buckets=LOAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.active_model = Gauge(
            "yolofleet_active_model", "1 for the model being served",
            ["name", "version", "sha256"], registry=r,
        )  # fmt: skip
        self.cache_hits = Counter(
            "yolofleet_model_cache_hits", "Requests whose on-demand model was loaded already",
            ["model"], registry=r,
        )  # fmt: skip
        self.cache_misses = Counter(
            "yolofleet_model_cache_misses", "Requests whose on-demand model had to be loaded",
            ["model"], registry=r,
        )  # fmt: skip
        self.cache_loads = Counter(
            "yolofleet_model_cache_loads", "On-demand models loaded", ["model"], registry=r
        )
        self.cache_evictions = Counter(
            "yolofleet_model_cache_evictions", "On-demand models evicted to make room",
            ["model"], registry=r,
        )  # fmt: skip
        self.cache_load_seconds = Histogram(
            "yolofleet_model_cache_load_seconds", "On-demand model fetch+build+warm-up time",
            buckets=LOAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.cache_bytes = Gauge(
            "yolofleet_model_cache_bytes",
            "Weight bytes held by on-demand models (the assigned model is not counted)",
            registry=r,
        )
        self.device_memory_used = Gauge(
            "yolofleet_device_memory_used_bytes", "Device memory in use (NVML)", registry=r
        )
        self.device_memory_total = Gauge(
            "yolofleet_device_memory_total_bytes", "Device memory in all (NVML)", registry=r
        )

    def track(self, *, pending: Callable[[], int], memory: Callable[[], DeviceMemory]) -> None:
        """Read pending requests and device memory when scraped."""
        self.pending.set_function(pending)
        self.device_memory_used.set_function(lambda: memory().used_bytes)
        self.device_memory_total.set_function(lambda: memory().total_bytes)

    def observe_request(
        self, *, version: str, code: str, queue_s: float, inference_s: float, total_s: float
    ) -> None:
        self.requests.labels(version, code).inc()
        if code == "OK":
            self.queue_seconds.labels(version).observe(queue_s)
            self.inference_seconds.labels(version).observe(inference_s)
            self.total_seconds.labels(version).observe(total_s)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def went_live(self, ref: ModelRef, *, old: ModelRef | None, load_s: float) -> None:
        self.swaps.inc()
        self.load_seconds.observe(load_s)
        if old is not None:
            self.active_model.remove(old.name, old.version, old.sha256)
        self.active_model.labels(ref.name, ref.version, ref.sha256).set(1)

    def swap_failed(self, stage: str) -> None:
        self.swap_failures.labels(stage).inc()

    def cache_lookup(self, model: str, *, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).labels(model).inc()

    def cache_loaded(self, model: str, *, load_s: float) -> None:
        self.cache_loads.labels(model).inc()
        self.cache_load_seconds.observe(load_s)

    def cache_evicted(self, model: str) -> None:
        self.cache_evictions.labels(model).inc()

    def cache_holds(self, held_bytes: int) -> None:
        self.cache_bytes.set(held_bytes)
