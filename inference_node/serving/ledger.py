"""``Ledger``: the one place a finished request's outcome is written down.

Each request is counted once, in the node's three records alike: the Prometheus request series
(by model version and status code), the GetStats windows (``stats.StatsRecorder``) and the
per-digest Prometheus families that mirror them (``NodeMetrics.observe_model``), so the two
sources of canary figures agree. Which outcomes count against a model is ``stats``' rule
(``outcome_of``); which model a failure counts against is decided by whoever knows it: the
batcher for a request it took (``Router.blame``), the server only for a request refused before
it reached the batcher (then through ``refused``, which asks the router).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from inference_node.errors import to_status
from inference_node.model import Detection, ModelRef
from inference_node.serving.routing import Router
from inference_node.telemetry.metrics import NodeMetrics
from inference_node.telemetry.stats import ModelId, Outcome, StatsRecorder, outcome_of


class Ledger:
    """Records answered and failed requests; lives on the node's event loop."""

    def __init__(
        self,
        *,
        stats: StatsRecorder,
        metrics: NodeMetrics,
        router: Router,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stats = stats
        self._metrics = metrics
        self._router = router
        self._clock = clock

    def answered(
        self,
        ref: ModelRef,
        *,
        latency_s: float,
        queue_s: float,
        inference_s: float,
        detections: Sequence[Detection],
    ) -> None:
        """``ref`` answered a request ``latency_s`` after it arrived."""
        self._metrics.observe_request(
            version=ref.version, code="OK", queue_s=queue_s, inference_s=inference_s,
            total_s=latency_s,
        )  # fmt: skip
        self._count(ref, latency_s=latency_s, outcome=Outcome.OK, detections=detections)

    def failed(self, exc: BaseException, *, model: ModelRef | None, latency_s: float) -> None:
        """A request failed with ``exc``; it counts against ``model`` (None: against none)."""
        self._metrics.observe_request(
            version="", code=to_status(exc)[0].name, queue_s=0, inference_s=0, total_s=0
        )
        if model is not None:
            self._count(model, latency_s=latency_s, outcome=outcome_of(exc))

    def refused(self, exc: BaseException, *, model_name: str, latency_s: float) -> None:
        """A request naming ``model_name`` was refused before it reached the batcher."""
        blamed = self._router.blame(self._router.route(model_name))
        self.failed(exc, model=blamed, latency_s=latency_s)

    def _count(
        self,
        ref: ModelRef,
        *,
        latency_s: float,
        outcome: Outcome,
        detections: Sequence[Detection] = (),
    ) -> None:
        model = ModelId.of(ref)
        self._stats.record(
            model, at=self._clock(), latency_s=latency_s, outcome=outcome, detections=detections
        )
        if outcome is not Outcome.NOT_COUNTED:
            self._metrics.observe_model(
                ref.sha256,
                latency_s=latency_s,
                failed=outcome is Outcome.MODEL_ERROR,
                detections=detections,
            )
