"""Prometheus metrics of one node, on a registry of its own (several nodes may share a process).

Request series carry ``model_version`` so canary analysis can compare models on one node.

The ``yolofleet_model_*`` families are the GetStats figures (``stats.py``) as counters, per
model digest (``sha256``): they count the same requests (server-side failures as
``outcome="error"``, callers' errors not at all) with the same latency bucket bounds, so
Prometheus' ``increase()`` over a window gives what ``GetStats`` gives for it
(``control_plane/prometheus.py`` reads them).

``yolofleet_swap_failures_total`` is exported at zero for every ``stage`` from the start, so an
alert on its increase fires on the first refusal, and dashboards show every stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from inference_node.errors import ArtifactError, ArtifactRefused, DigestMismatch, LoadError
from inference_node.model import Detection, ModelRef
from inference_node.telemetry.device import DeviceMemory
from inference_node.telemetry.stats import STATS_LATENCY_BOUNDS_S

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 64)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
SWAP_FAILURE_STAGES = (
    *(error.__name__ for error in (ArtifactError, ArtifactRefused, DigestMismatch, LoadError)),
    "classes", "compat", "calibration", "latency",
)  # fmt: skip
"""Every ``stage`` a refusal is counted under: the refusal's error class, or for a failed
validation gate the gate's name (see ``swapping/validate.py``)."""


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
        for stage in SWAP_FAILURE_STAGES:
            self.swap_failures.labels(stage)
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
        self._model_families(r)
        self.device_memory_used = Gauge(
            "yolofleet_device_memory_used_bytes", "Device memory in use (NVML)", registry=r
        )
        self.device_memory_total = Gauge(
            "yolofleet_device_memory_total_bytes", "Device memory in all (NVML)", registry=r
        )
        self._lifecycle_families(r)

    def _lifecycle_families(self, r: CollectorRegistry) -> None:
        """RPCs the server took and how each ended; the device watchdog's verdict."""
        self.rpcs_started = Counter(
            "yolofleet_rpcs_started", "RPCs the server accepted, by method", ["method"],
            registry=r,
        )  # fmt: skip
        self.rpcs_handled = Counter(
            "yolofleet_rpcs_handled", "RPCs the server finished, by method and outcome "
            "(ok, error: a status sent, cancelled: the call ended before an answer)",
            ["method", "outcome"], registry=r,
        )  # fmt: skip
        self.device_stalled = Gauge(
            "yolofleet_device_stalled",
            "1 while the device thread's current job has run past the watchdog timeout",
            registry=r,
        )
        self.watchdog_trips = Counter(
            "yolofleet_watchdog_trips", "Times the device watchdog found the device thread stalled",
            registry=r,
        )  # fmt: skip

    def _model_families(self, r: CollectorRegistry) -> None:
        """The per-digest families that mirror GetStats (see the module doc)."""
        self.model_requests = Counter(
            "yolofleet_model_requests",
            "Requests counted by GetStats, by model digest; outcome=error: a server-side failure",
            ["sha256", "outcome"], registry=r,
        )  # fmt: skip
        self.model_seconds = Histogram(
            "yolofleet_model_request_seconds",
            "Latency of the requests counted by GetStats, with its bucket bounds",
            ["sha256"], buckets=STATS_LATENCY_BOUNDS_S, registry=r,
        )  # fmt: skip
        self.model_images = Counter(
            "yolofleet_model_images", "Images answered, by model digest", ["sha256"], registry=r
        )
        self.model_detections = Counter(
            "yolofleet_model_detections", "Detections returned, by model digest", ["sha256"],
            registry=r,
        )  # fmt: skip
        self.model_confidence = Counter(
            "yolofleet_model_confidence_sum", "Sum of the returned detections' confidences",
            ["sha256"], registry=r,
        )  # fmt: skip
        self.model_class_detections = Counter(
            "yolofleet_model_class_detections", "Detections returned, by model digest and class",
            ["sha256", "class_name"], registry=r,
        )  # fmt: skip

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

    def observe_model(
        self,
        sha256: str,
        *,
        latency_s: float,
        failed: bool,
        detections: Sequence[Detection] = (),
    ) -> None:
        """One request as GetStats counts it: a server-side failure (``failed``), or an answered
        image with its ``detections``. Callers' errors are never passed here.
        """
        self.model_requests.labels(sha256, "error" if failed else "ok").inc()
        self.model_seconds.labels(sha256).observe(latency_s)
        if failed:
            return
        self.model_images.labels(sha256).inc()
        if not detections:
            return
        self.model_detections.labels(sha256).inc(len(detections))
        self.model_confidence.labels(sha256).inc(sum(d.confidence for d in detections))
        classes: dict[str, int] = {}
        for detection in detections:
            classes[detection.class_name] = classes.get(detection.class_name, 0) + 1
        for name, count in classes.items():
            self.model_class_detections.labels(sha256, name).inc(count)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def went_live(self, ref: ModelRef, *, old: ModelRef | None, load_s: float) -> None:
        self.swaps.inc()
        self.load_seconds.observe(load_s)
        if old is not None:
            self.active_model.remove(old.name, old.version, old.sha256)
        self.active_model.labels(ref.name, ref.version, ref.sha256).set(1)
        self._declare_model(ref.sha256)

    def _declare_model(self, sha256: str) -> None:
        """Export the live model's per-digest series at zero before its first request, so
        Prometheus' ``increase()`` counts that request too (it cannot see a series' first value).
        """
        for outcome in ("ok", "error"):
            self.model_requests.labels(sha256, outcome)
        self.model_seconds.labels(sha256)
        self.model_images.labels(sha256)
        self.model_detections.labels(sha256)
        self.model_confidence.labels(sha256)

    def rpc_started(self, method: str) -> None:
        self.rpcs_started.labels(method).inc()

    def rpc_handled(self, method: str, outcome: str) -> None:
        self.rpcs_handled.labels(method, outcome).inc()

    def rpc_counts(self, method: str) -> dict[str, int]:
        """``started`` and each outcome's count for ``method`` (for the stop log and tests)."""
        sample = self.registry.get_sample_value
        counts = {"started": int(sample("yolofleet_rpcs_started_total", {"method": method}) or 0)}
        for outcome in ("ok", "error", "cancelled"):
            labels = {"method": method, "outcome": outcome}
            counts[outcome] = int(sample("yolofleet_rpcs_handled_total", labels) or 0)
        return counts

    def on_stall(self, reason: str) -> None:
        """Watchdog listener: the stalled gauge, and a trip counted each time it goes up."""
        if reason:
            self.watchdog_trips.inc()
        self.device_stalled.set(1 if reason else 0)

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
