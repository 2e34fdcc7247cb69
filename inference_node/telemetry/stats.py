"""Windowed per-model serving figures: what each model did on this node, second by second.

``StatsRecorder`` keeps one bucket per wall-clock second for the last ``retention_s`` seconds
(a ring), each holding a tally per model. ``window(since, now)`` adds up the seconds that
overlap ``[since, now]``. These are what canary analysis compares across nodes, so every count
adds up across seconds and nodes.

Which requests count (``outcome_of``, from the gRPC code the caller sees):

- OK: a request, an image, its detections, confidences and classes, for the model that answered.
- A model error (``counts_as_model_error``: INTERNAL or UNKNOWN, a failure while running the
  model): a request and an error, for the model it was aimed at: the generation that ran it,
  or, before any model ran, the slot's model when the request went to the slot (the router's
  ``blame``; ``inference_node/serving/ledger.py`` records it). A failure with no live model, or
  for a model loaded on demand, is not counted.
- Anything else is not counted at all: a caller's error (INVALID_ARGUMENT, NOT_FOUND,
  PERMISSION_DENIED, FAILED_PRECONDITION), a refusal before the model ran (RESOURCE_EXHAUSTED
  when the queue is full, UNAVAILABLE while draining or with no model), a caller that gave up
  (CANCELLED, DEADLINE_EXCEEDED). None of them says anything about the model, and counting
  them would move a canary's error rate with its load, its shutdown or its callers' input.

Pure: the caller passes the time. Not thread-safe: the node records and reads on its event loop.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise

import grpc

from inference_node.errors import to_status
from inference_node.model import Detection, ModelRef

RETENTION_S = 15 * 60
"""Seconds of history a node keeps by default."""

_STEPS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.5)
STATS_LATENCY_BOUNDS_S = (
    *(round(step * 10.0**decade, 6) for decade in range(-3, 1) for step in _STEPS),
    10.0,
)
"""The latency bucket bounds GetStats (and the per-digest Prometheus families) count in: 12 per
decade from 1 ms to 10 s, adjacent bounds at most 1.34x apart, every bound of the node's other
latency histograms among them. Canary analysis compares tail shares at latencies a tolerance
ratio apart; coarser buckets (the older 1.5-2.5x steps around a 40 ms p99) blur that
comparison by as much as the tolerance itself."""


MODEL_ERRORS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
"""The codes of failures while running the model: the only errors canary analysis counts."""


class Outcome(StrEnum):
    OK = "ok"
    MODEL_ERROR = "model_error"
    """The model failed while running the request."""
    NOT_COUNTED = "not_counted"
    """The request failed for a reason that says nothing about the model."""


def counts_as_model_error(code: grpc.StatusCode) -> bool:
    """Whether a request that failed with ``code`` counts against the model (see the module doc)."""
    return code in MODEL_ERRORS


def outcome_of(exc: BaseException) -> Outcome:
    """How a failed request counts: against the model, or not at all."""
    code, _ = to_status(exc)
    return Outcome.MODEL_ERROR if counts_as_model_error(code) else Outcome.NOT_COUNTED


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class ModelId:
    """A model as the stats name it: the digest, with the name and version it was served as."""

    name: str
    version: str
    sha256: str

    @classmethod
    def of(cls, ref: ModelRef) -> ModelId:
        return cls(name=ref.name, version=ref.version, sha256=ref.sha256)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelStats:
    """What one model did over a window. ``latency_counts[i]`` fell at or below
    ``latency_bounds_s[i]`` (and above the bound before); the last count is above every bound.
    """

    model: ModelId
    requests: int
    errors: int
    latency_bounds_s: tuple[float, ...]
    latency_counts: tuple[int, ...]
    images: int
    detections: int
    confidence_sum: float
    class_counts: tuple[tuple[str, int], ...]
    """Detections per class name, sorted by name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatsSnapshot:
    """Every model's figures over ``[window_start_unix, window_end_unix]``, sorted by model."""

    window_start_unix: float
    window_end_unix: float
    models: tuple[ModelStats, ...]


@dataclass(slots=True, kw_only=True)
class _Tally:
    """One model's running figures within one second (or, while summing, within a window)."""

    latency_counts: list[int]
    requests: int = 0
    errors: int = 0
    images: int = 0
    detections: int = 0
    confidence_sum: float = 0.0
    class_counts: dict[str, int] = field(default_factory=dict)

    def add(self, other: _Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for index, count in enumerate(other.latency_counts):
            self.latency_counts[index] += count
        self.images += other.images
        self.detections += other.detections
        self.confidence_sum += other.confidence_sum
        for name, count in other.class_counts.items():
            self.class_counts[name] = self.class_counts.get(name, 0) + count


@dataclass(slots=True, kw_only=True)
class _Second:
    second: int
    models: dict[ModelId, _Tally] = field(default_factory=dict)


class StatsRecorder:
    """Per-second, per-model tallies of finished requests over the last ``retention_s`` seconds."""

    def __init__(
        self,
        *,
        retention_s: int = RETENTION_S,
        latency_bounds_s: Sequence[float] = STATS_LATENCY_BOUNDS_S,
    ) -> None:
        bounds = tuple(latency_bounds_s)
        if retention_s < 1:
            raise ValueError(f"retention_s must be >= 1, got {retention_s}")
        if any(b <= a for a, b in pairwise((0.0, *bounds))):
            raise ValueError(f"latency bounds {bounds} must be positive and increasing")
        self._retention = retention_s
        self._bounds = bounds
        self._ring: list[_Second | None] = [None] * retention_s

    @property
    def latency_bounds_s(self) -> tuple[float, ...]:
        return self._bounds

    def record(
        self,
        model: ModelId,
        *,
        at: float,
        latency_s: float,
        outcome: Outcome,
        detections: Iterable[Detection] = (),
    ) -> None:
        """Count one finished request at unix time ``at`` (see the module doc for the rule)."""
        if outcome is Outcome.NOT_COUNTED:
            return
        tally = self._tally(model, second=math.floor(at))
        if tally is None:
            return
        tally.requests += 1
        tally.latency_counts[bisect.bisect_left(self._bounds, latency_s)] += 1
        if outcome is Outcome.MODEL_ERROR:
            tally.errors += 1
            return
        tally.images += 1
        for detection in detections:
            tally.detections += 1
            tally.confidence_sum += detection.confidence
            name = detection.class_name
            tally.class_counts[name] = tally.class_counts.get(name, 0) + 1

    def window(self, since: float, now: float) -> NodeStatsSnapshot:
        """Figures of the whole seconds overlapping ``[since, now]`` that are still held."""
        last = math.floor(now)
        first = max(math.floor(since), last - self._retention + 1)
        totals: dict[ModelId, _Tally] = {}
        for held in self._ring:
            if held is None or not first <= held.second <= last:
                continue
            for model, tally in held.models.items():
                totals.setdefault(model, self._new_tally()).add(tally)
        return NodeStatsSnapshot(
            window_start_unix=float(first) if first <= last else now,
            window_end_unix=now,
            models=tuple(self._stats(model, totals[model]) for model in sorted(totals)),
        )

    def _tally(self, model: ModelId, *, second: int) -> _Tally | None:
        """The tally for ``model`` in ``second``, reusing the ring slot of an expired second;
        None when ``second`` is older than what the slot already holds (too late to count).
        """
        index = second % self._retention
        held = self._ring[index]
        if held is None or held.second < second:
            held = _Second(second=second)
            self._ring[index] = held
        elif held.second > second:
            return None
        tally = held.models.get(model)
        if tally is None:
            tally = held.models[model] = self._new_tally()
        return tally

    def _new_tally(self) -> _Tally:
        return _Tally(latency_counts=[0] * (len(self._bounds) + 1))

    def _stats(self, model: ModelId, tally: _Tally) -> ModelStats:
        return ModelStats(
            model=model,
            requests=tally.requests,
            errors=tally.errors,
            latency_bounds_s=self._bounds,
            latency_counts=tuple(tally.latency_counts),
            images=tally.images,
            detections=tally.detections,
            confidence_sum=tally.confidence_sum,
            class_counts=tuple(sorted(tally.class_counts.items())),
        )
