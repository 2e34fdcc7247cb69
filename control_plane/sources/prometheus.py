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

Prometheus' JSON stays in this module and ``prometheus_vectors.py`` (which parses the answers):
what leaves them is ``Series`` and ``Samples``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from functools import partial
from http.client import HTTPException
from urllib.parse import urlencode

from control_plane.core.errors import MetricsUnavailable
from control_plane.core.fleet import FleetView
from control_plane.core.metrics import NodeSamples
from control_plane.core.samples import Samples, implausible
from control_plane.sources.prometheus_vectors import (
    Family,
    Series,
    json_or_none,
    node_samples,
    parse_vector,
    why_refused,
)
from yolofleet.consul.aiothread import run_blocking

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MIN_WINDOW_S = 15.0
"""Prometheus' default scrape interval: a shorter window holds at most one scrape per series."""

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED_LABELS = frozenset({"sha256", "outcome", "le", "class_name"})


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
                why = why_refused(json_or_none(exc.read()))
            raise MetricsUnavailable(
                f"Prometheus at {self._base_url} refused the query with HTTP {exc.code}: {why}"
            ) from exc
        except (OSError, HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise MetricsUnavailable(
                f"Prometheus at {self._base_url} could not be reached: {reason}"
            ) from exc
        return parse_vector(body, source=self._base_url)
