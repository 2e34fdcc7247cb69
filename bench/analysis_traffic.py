"""Simulated per-request traffic for the analysis benchmark, numpy-vectorised over rollouts.

``simulate(model, nodes=..., rate=..., ...)`` draws what ``nodes`` nodes serving ``model`` did
in every tick of ``rollouts`` rollouts: requests (Poisson at ``rate`` per node per second), the
model's own errors (binomial), each request's latency bucket (multinomial over the lognormal's
bucket probabilities), detections per answered image (binomial: ``objects`` objects, each found
with probability ``found``), their confidences (Beta, summed with a normal approximation) and
classes (multinomial). It returns running totals, tick by tick, so ``samples_at`` gives the
``Samples`` of the window from its start to any tick: what the metric source would report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from control_plane.core.samples import LatencyHistogram, Samples
from inference_node.telemetry.metrics import LATENCY_BUCKETS
from inference_node.telemetry.stats import STATS_LATENCY_BOUNDS_S

Counts = npt.NDArray[np.int64]
CLASSES = ("circle", "square", "triangle")


@dataclass(frozen=True, slots=True, kw_only=True)
class Model:
    """How a model behaves per request."""

    error_rate: float = 0.005
    latency_median_s: float = 0.02
    latency_sigma: float = 0.3
    """Of log latency: p99 = median * exp(2.326 * sigma), 40 ms for the default."""
    objects: int = 6
    found: float = 0.5
    """Detections per image ~ Binomial(objects, found): 3 on average."""
    confidence_a: float = 8.0
    confidence_b: float = 2.0
    """Confidences ~ Beta(a, b): 0.8 on average."""
    class_shares: tuple[float, ...] = (0.45, 0.35, 0.20)

    def slower(self, factor: float) -> Model:
        return replace(self, latency_median_s=self.latency_median_s * factor)

    def bucket_probabilities(self) -> npt.NDArray[np.float64]:
        edges = [0.0, *(self._cdf(b) for b in STATS_LATENCY_BOUNDS_S), 1.0]
        return np.diff(np.array(edges))

    def _cdf(self, x: float) -> float:
        z = (math.log(x) - math.log(self.latency_median_s)) / self.latency_sigma
        return 0.5 * math.erfc(-z / math.sqrt(2))


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """Running totals per rollout (axis 0) and tick (axis 1)."""

    requests: Counts
    errors: Counts
    latency: Counts
    """(rollouts, ticks, buckets)"""
    detections: Counts
    confidence_sum: npt.NDArray[np.float64]
    classes: Counts
    """(rollouts, ticks, classes)"""


def simulate(
    model: Model,
    *,
    nodes: int,
    rate: float,
    tick_s: float,
    ticks: int,
    rollouts: int,
    rng: np.random.Generator,
) -> Totals:
    shape = (rollouts, ticks)
    requests = rng.poisson(rate * nodes * tick_s, size=shape)
    errors = rng.binomial(requests, model.error_rate)
    latency = rng.multinomial(requests, model.bucket_probabilities())
    images = requests - errors
    detections = rng.binomial(images * model.objects, model.found)
    a, b = model.confidence_a, model.confidence_b
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    confidence = rng.normal(detections * mean, np.sqrt(detections * var))
    confidence = np.clip(confidence, 0.0, detections)
    classes = rng.multinomial(detections, np.array(model.class_shares))
    return Totals(
        requests=requests.cumsum(axis=1),
        errors=errors.cumsum(axis=1),
        latency=latency.cumsum(axis=1),
        detections=detections.cumsum(axis=1),
        confidence_sum=confidence.cumsum(axis=1),
        classes=classes.cumsum(axis=1),
    )


def samples_at(totals: Totals, rollout: int, tick: int) -> Samples:
    """One side's ``Samples`` from the window's start to the end of ``tick``."""
    requests = int(totals.requests[rollout, tick])
    errors = int(totals.errors[rollout, tick])
    classes = totals.classes[rollout, tick]
    return Samples(
        requests=requests,
        errors=errors,
        latency=LatencyHistogram(
            bounds=STATS_LATENCY_BOUNDS_S,
            counts=tuple(int(n) for n in totals.latency[rollout, tick]),
        ),
        images=requests - errors,
        detections=int(totals.detections[rollout, tick]),
        confidence_sum=float(totals.confidence_sum[rollout, tick]),
        class_counts=tuple((name, int(n)) for name, n in zip(CLASSES, classes, strict=True) if n),
    )


def coarsened(samples: Samples, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> Samples:
    """``samples`` with its latency histogram in the coarser ``bounds`` (each one of its own
    bounds): what a node counting in ``bounds`` would have reported for the same requests."""
    fine = samples.latency
    if not set(bounds) <= set(fine.bounds):
        raise ValueError("the coarser bounds must be among the histogram's own")
    counts = [0] * (len(bounds) + 1)
    for upper, count in zip((*fine.bounds, math.inf), fine.counts, strict=True):
        counts[next((i for i, b in enumerate(bounds) if upper <= b), len(bounds))] += count
    return replace(samples, latency=LatencyHistogram(bounds=bounds, counts=tuple(counts)))
