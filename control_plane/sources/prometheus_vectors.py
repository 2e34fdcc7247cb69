"""Prometheus' answers as our figures: the metric ``Family`` a query asks for, an instant vector's
``Series`` (``parse_vector``), and the per-node, per-digest ``Samples`` they add up to
(``node_samples``). Prometheus' JSON stays here and in ``prometheus.py``, which asks the questions.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, assert_never

from control_plane.core.errors import MetricsUnavailable
from control_plane.core.fleet import FleetView
from control_plane.core.samples import LatencyHistogram, Samples

logger = logging.getLogger(__name__)


class Family(StrEnum):
    """The node's per-digest families (as exposed), and the labels each is summed by."""

    REQUESTS = "yolofleet_model_requests_total"
    LATENCY = "yolofleet_model_request_seconds_bucket"
    IMAGES = "yolofleet_model_images_total"
    DETECTIONS = "yolofleet_model_detections_total"
    CONFIDENCE = "yolofleet_model_confidence_sum_total"
    CLASSES = "yolofleet_model_class_detections_total"

    @property
    def extra_label(self) -> str | None:
        match self:
            case Family.REQUESTS:
                return "outcome"
            case Family.LATENCY:
                return "le"
            case Family.CLASSES:
                return "class_name"
            case Family.IMAGES | Family.DETECTIONS | Family.CONFIDENCE:
                return None
            case _:
                assert_never(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One element of an instant vector: its labels, sorted by name, and its value."""

    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, name: str) -> str:
        return next((value for key, value in self.labels if key == name), "")


def parse_vector(body: bytes, *, source: str) -> tuple[Series, ...]:
    """The series of a ``/api/v1/query`` answer; ``MetricsUnavailable`` if it is not an instant
    vector in Prometheus' JSON. Series whose value is not a finite number are left out.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetricsUnavailable(
            f"Prometheus at {source} answered something not JSON: {exc}"
        ) from exc
    if not isinstance(document, dict) or document.get("status") != "success":
        raise MetricsUnavailable(
            f"Prometheus at {source} refused the query: {why_refused(document)}"
        )
    try:
        data = document["data"]
        if data["resultType"] != "vector":
            raise ValueError(f"a {data['resultType']} instead of an instant vector")
        return tuple(s for s in (_series(item) for item in data["result"]) if s is not None)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise MetricsUnavailable(
            f"Prometheus at {source} answered a query with malformed data "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def node_samples(
    answers: Mapping[Family, Sequence[Series]], fleet: FleetView, *, node_label: str
) -> dict[str, dict[str, Samples]]:
    """Per live node of ``fleet`` and digest, the samples the vectors add up to. Nodes and
    digests with nothing counted are left out, as GetStats leaves out models it did not count.
    """
    live = set(fleet.live_ids)
    figures: dict[tuple[str, str], _Figures] = {}
    for family, vector in answers.items():
        for series in vector:
            node, sha256 = series.label(node_label), series.label("sha256")
            if node in live and sha256:
                figures.setdefault((node, sha256), _Figures()).add(family, series)
    per_node: dict[str, dict[str, Samples]] = {}
    for (node, sha256), counted in sorted(figures.items()):
        samples = counted.samples()
        if any((samples.requests, samples.latency.total, samples.images, samples.detections)):
            per_node.setdefault(node, {})[sha256] = samples
    return per_node


@dataclass(slots=True)
class _Figures:
    """One node's and digest's raw increases, as Prometheus answered them."""

    ok: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    images: float = 0.0
    detections: float = 0.0
    confidence: float = 0.0
    classes: dict[str, float] = field(default_factory=dict)

    def add(self, family: Family, series: Series) -> None:
        value = series.value
        match family:
            case Family.REQUESTS:
                outcome = series.label("outcome")
                if outcome == "ok":
                    self.ok += value
                elif outcome == "error":
                    self.errors += value
            case Family.LATENCY:
                le = _bound(series.label("le"))
                self.buckets[le] = self.buckets.get(le, 0.0) + value
            case Family.IMAGES:
                self.images += value
            case Family.DETECTIONS:
                self.detections += value
            case Family.CONFIDENCE:
                self.confidence += value
            case Family.CLASSES:
                name = series.label("class_name")
                self.classes[name] = self.classes.get(name, 0.0) + value
            case _:
                assert_never(family)

    def samples(self) -> Samples:
        errors = _whole(self.errors)
        detections = _whole(self.detections)
        scale = detections / self.detections if self.detections > 0 else 0.0
        classes = ((name, _whole(value)) for name, value in sorted(self.classes.items()))
        return Samples(
            requests=_whole(self.ok) + errors,
            errors=errors,
            latency=_histogram(self.buckets),
            images=_whole(self.images),
            detections=detections,
            confidence_sum=self.confidence * scale,
            class_counts=tuple((name, count) for name, count in classes if count != 0),
        )


def _histogram(cumulative: Mapping[float, float]) -> LatencyHistogram:
    """Cumulative ``le`` buckets (rounded, made non-decreasing as ``histogram_quantile`` does)
    as per-bucket counts; the last count is above every finite bound.
    """
    if not cumulative:
        return LatencyHistogram()
    bounds = tuple(sorted(le for le in cumulative if le != math.inf))
    counts: list[int] = []
    below = 0
    for le in (*bounds, math.inf):
        running = max(below, _whole(cumulative.get(le, 0.0)))
        counts.append(running - below)
        below = running
    return LatencyHistogram(bounds=bounds, counts=tuple(counts))


def _whole(value: float) -> int:
    """An extrapolated increase as a count: rounded half up."""
    return math.floor(value + 0.5)


def _bound(text: str) -> float:
    try:
        return float(text)  # "+Inf" reads as math.inf
    except ValueError:
        raise MetricsUnavailable(
            f"Prometheus answered a latency bucket bound le={text!r} that is not a number"
        ) from None


def _series(item: Any) -> Series | None:
    metric, pair = item["metric"], item["value"]
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        raise ValueError(f"a sample value {pair!r} is not [time, number as text]")
    text = pair[1]
    value = float(text)
    labels = tuple(sorted((str(k), str(v)) for k, v in metric.items()))
    if not math.isfinite(value):
        logger.warning("Prometheus series %s has value %s; left out", dict(labels), text)
        return None
    return Series(labels=labels, value=value)


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def why_refused(document: Any) -> str:
    """Prometheus' own error text from an answer, or a description of the answer."""
    if isinstance(document, dict) and document.get("error"):
        return f"{document.get('errorType', 'error')}: {document['error']}"
    return "no error message in its answer" if document is not None else "not a JSON answer"
