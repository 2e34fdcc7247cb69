"""What one side of a canary comparison did: ``Samples`` and its ``LatencyHistogram``.

Every count adds up across nodes, so a side's samples are ``combine`` of its nodes' samples.
The metric source builds these; ``analysis.assess`` compares two of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyHistogram:
    """Request latencies in buckets: ``counts[i]`` fell at or below ``bounds[i]`` and above
    the bound before it; the last count (``len(bounds) + 1`` counts in all) is above every bound.
    Counts are per bucket, not cumulative, so histograms of several nodes add up.
    """

    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = (0,)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile, interpolated inside its bucket as Prometheus does; None if empty."""
        total = self.total
        if total == 0 or not self.bounds:
            return None
        rank = q * total
        below = 0
        for index, count in enumerate(self.counts[:-1]):
            if count and below + count >= rank:
                lower = self.bounds[index - 1] if index else 0.0
                return lower + (self.bounds[index] - lower) * (rank - below) / count
            below += count
        return self.bounds[-1]  # in the open-ended bucket: the highest bound is all we know

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        if other.total == 0:
            return self
        if self.total == 0:
            return other
        if self.bounds != other.bounds:
            raise ValueError("cannot merge latency histograms with different bucket bounds")
        return LatencyHistogram(
            bounds=self.bounds,
            counts=tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Samples:
    """What one side (canary or baseline) did over the analysis window. Every field adds up
    across nodes, so ``combine`` of per-node samples is the side's samples.
    """

    requests: int = 0
    """Requests finished, with or without error."""
    errors: int = 0
    """Requests the model failed (INTERNAL): not refusals (a full queue, draining), not callers'
    errors or cancellations, which say nothing about the model."""
    latency: LatencyHistogram = LatencyHistogram()
    images: int = 0
    """Images answered with detections: the denominator of detections per image."""
    detections: int = 0
    confidence_sum: float = 0.0
    """Sum of every detection's confidence: ``confidence_sum / detections`` is the mean."""
    class_counts: tuple[tuple[str, int], ...] = ()
    """Detections per class name, each name once."""


def combine(samples: Iterable[Samples]) -> Samples:
    """The samples of several nodes of one side, added up."""
    total = Samples()
    for one in samples:
        classes = dict(total.class_counts)
        for name, count in one.class_counts:
            classes[name] = classes.get(name, 0) + count
        total = Samples(
            requests=total.requests + one.requests,
            errors=total.errors + one.errors,
            latency=total.latency.merge(one.latency),
            images=total.images + one.images,
            detections=total.detections + one.detections,
            confidence_sum=total.confidence_sum + one.confidence_sum,
            class_counts=tuple(sorted(classes.items())),
        )
    return total


def implausible(samples: Samples) -> str:
    """Why these samples cannot be right (negative counts, more errors than requests), or ""."""
    counts = {
        "requests": samples.requests,
        "errors": samples.errors,
        "images": samples.images,
        "detections": samples.detections,
    }
    counts.update({f"latency bucket {i}": n for i, n in enumerate(samples.latency.counts)})
    counts.update({f"class {name!r}": n for name, n in samples.class_counts})
    for name, count in counts.items():
        if count < 0:
            return f"{name} count is negative ({count})"
    names = [name for name, _ in samples.class_counts]
    if len(set(names)) != len(names):
        return f"class counts name a class twice: {sorted(names)}"
    if samples.errors > samples.requests:
        return f"{samples.errors} errors out of {samples.requests} requests"
    bounds = samples.latency.bounds
    if len(samples.latency.counts) != len(bounds) + 1:
        return "the latency histogram needs one count per bound plus one above them"
    if samples.latency.total and not bounds:
        return "the latency histogram has observations but no bucket bounds"
    if any(b <= a or not math.isfinite(b) for a, b in pairwise((0.0, *bounds))):
        return f"latency bucket bounds {bounds} are not positive and increasing"
    if not math.isfinite(samples.confidence_sum) or samples.confidence_sum < 0:
        return f"confidence sum is {samples.confidence_sum}"
    if samples.confidence_sum > samples.detections * (1 + 1e-9):
        return f"confidence sum {samples.confidence_sum:g} exceeds {samples.detections} detections"
    return ""
