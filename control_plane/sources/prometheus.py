"""A ``MetricSource`` that reads the nodes' per-digest figures from Prometheus instead of GetStats.

Nodes export the GetStats figures as counters (``inference_node/telemetry/metrics.py``,
``yolofleet_model_*``). For a window ``[since, until]`` this source asks Prometheus' HTTP API
(``GET /api/v1/query``, evaluated at ``until``) for six instant vectors, each
``sum by (<node label>, sha256[, outcome | le | class_name]) (increase(<family>{<selector>}[Ns]))``
with ``N`` the window rounded up to whole seconds, and turns them into ``Samples`` keyed by node id
and digest, as ``GrpcMetricSource`` does.

- The node label is whatever label Prometheus attaches to a target naming its node id (the
  nodes' own series carry none; scrape relabelling adds it, e.g. ``pod`` on Kubernetes with the
  usual relabelling: the node id is the pod name). Label values that are not live nodes of the
  fleet are ignored.
- The selector restricts the series to the group: label matchers with ``{group}`` substituted,
  e.g. ``job="yolofleet",group="{group}"``; empty selects every node's series.
- ``increase()`` extrapolates, so its figures are rounded to whole counts; cumulative ``le``
  buckets become per-bucket counts (the last one above every bound); the confidence sum is scaled
  with the detections' rounding so the mean confidence stays what Prometheus measured.
- A window shorter than ``min_window_s`` (a scrape interval or so) yields nothing, which analysis
  calls inconclusive, rather than a figure made of one scrape's worth of extrapolation.
- Prometheus unreachable, refusing a query or answering something other than its API's JSON
  raises ``MetricsUnavailable``: the controller then leaves the state untouched for that tick.
  Samples that ``samples.implausible`` refuses are dropped with a warning.

Prometheus' JSON stays in this module: what leaves it is ``Series`` and ``Samples``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from http.client import HTTPException
from typing import Any, assert_never
from urllib.parse import urlencode

from control_plane.core.errors import MetricsUnavailable
from control_plane.core.fleet import FleetView
from control_plane.core.metrics import NodeSamples
from control_plane.core.samples import LatencyHistogram, Samples, implausible
from yolofleet.consul.aiothread import run_blocking

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MIN_WINDOW_S = 15.0
"""Prometheus' default scrape interval: a shorter window holds at most one scrape per series."""

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED_LABELS = frozenset({"sha256", "outcome", "le", "class_name"})


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


def node_label_problem(label: str) -> str:
    """Why ``label`` cannot name the node label, or ""."""
    if not LABEL_NAME.fullmatch(label):
        return f"{label!r} is not a Prometheus label name"
    if label in RESERVED_LABELS:
        return f"{label!r} is a label of the node's own series, not one naming the node"
    return ""


def window_seconds(since: float, until: float, *, min_window_s: float) -> int | None:
    """The range of ``increase()`` for ``[since, until]``: whole seconds, rounded up; None when
    shorter than ``min_window_s``.
    """
    window = math.ceil(until - since)
    return window if window >= min_window_s and window > 0 else None


def selector_for(template: str, group: str) -> str:
    """The label matchers for ``group``: ``{group}`` replaced by the name, quoted for PromQL."""
    escaped = group.replace("\\", "\\\\").replace('"', '\\"')
    return template.replace("{group}", escaped)


def queries(window_s: int, *, node_label: str, selector: str) -> dict[Family, str]:
    """The PromQL instant query for each family over the last ``window_s`` seconds."""
    matchers = f"{{{selector}}}" if selector else ""
    built: dict[Family, str] = {}
    for family in Family:
        by = ", ".join(label for label in (node_label, "sha256", family.extra_label) if label)
        built[family] = f"sum by ({by}) (increase({family}{matchers}[{window_s}s]))"
    return built


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
        raise MetricsUnavailable(f"Prometheus at {source} refused the query: {_why(document)}")
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


def plausible_only(per_node: Mapping[str, Mapping[str, Samples]], *, group: str) -> NodeSamples:
    """``per_node`` without the samples ``samples.implausible`` refuses, each logged."""
    kept: dict[str, dict[str, Samples]] = {}
    for node, models in per_node.items():
        for sha256, samples in models.items():
            problem = implausible(samples)
            if problem:
                logger.warning(
                    "group=%s node=%s model=%s Prometheus samples dropped, implausible: %s",
                    group,
                    node,
                    sha256[:12],
                    problem,
                )
            else:
                kept.setdefault(node, {})[sha256] = samples
    return kept


class PrometheusMetricSource:
    """Reads the fleet's per-digest figures for a window from Prometheus (see the module doc)."""

    def __init__(
        self,
        base_url: str,
        *,
        node_label: str = "node_id",
        selector: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        min_window_s: float = DEFAULT_MIN_WINDOW_S,
    ) -> None:
        problem = node_label_problem(node_label)
        if problem:
            raise ValueError(problem)
        self._base_url = base_url.rstrip("/")
        self._node_label = node_label
        self._selector = selector
        self._timeout_s = timeout_s
        self._min_window_s = min_window_s

    async def sample(
        self, group: str, fleet: FleetView, *, since: float, until: float
    ) -> NodeSamples:
        window_s = window_seconds(since, until, min_window_s=self._min_window_s)
        if window_s is None:
            logger.debug(
                "group=%s window %.1fs is under %gs: no figures from Prometheus yet",
                group,
                until - since,
                self._min_window_s,
            )
            return {}
        if not fleet.live_ids:
            return {}
        texts = queries(
            window_s, node_label=self._node_label, selector=selector_for(self._selector, group)
        )
        vectors = await asyncio.gather(
            *(
                run_blocking(partial(self._query, text, at=until), name=f"prometheus-{family}")
                for family, text in texts.items()
            )
        )
        answers = dict(zip(texts, vectors, strict=True))
        per_node = node_samples(answers, fleet, node_label=self._node_label)
        return plausible_only(per_node, group=group)

    async def close(self) -> None:
        """Nothing to release: each query opens and closes its own connection."""

    def _query(self, text: str, *, at: float) -> tuple[Series, ...]:
        """One instant query at unix time ``at`` (blocking: run it off the event loop)."""
        url = f"{self._base_url}/api/v1/query?" + urlencode({"query": text, "time": f"{at:.3f}"})
        try:
            with urllib.request.urlopen(url, timeout=self._timeout_s) as reply:
                body: bytes = reply.read()
        except urllib.error.HTTPError as exc:
            with exc:
                why = _why(_json_or_none(exc.read()))
            raise MetricsUnavailable(
                f"Prometheus at {self._base_url} refused the query with HTTP {exc.code}: {why}"
            ) from exc
        except (OSError, HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise MetricsUnavailable(
                f"Prometheus at {self._base_url} could not be reached: {reason}"
            ) from exc
        return parse_vector(body, source=self._base_url)


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


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _why(document: Any) -> str:
    """Prometheus' own error text from an answer, or a description of the answer."""
    if isinstance(document, dict) and document.get("error"):
        return f"{document.get('errorType', 'error')}: {document['error']}"
    return "no error message in its answer" if document is not None else "not a JSON answer"
