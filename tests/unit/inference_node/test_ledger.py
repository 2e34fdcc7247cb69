"""The ledger counts each finished request once, alike in GetStats and in /metrics."""

from __future__ import annotations

import pytest

from inference_node.errors import InvalidImage, Overloaded
from inference_node.model import Detection
from inference_node.serving.ledger import Ledger
from inference_node.serving.routing import Router
from inference_node.swapping.loader import LoadReport
from inference_node.swapping.slot import ModelSlot
from inference_node.telemetry.metrics import NodeMetrics
from inference_node.telemetry.stats import StatsRecorder
from tests.fakes import FakeDetector, make_ref

REPORT = LoadReport(fetch_s=0, build_s=0, warmup_s=0, weight_bytes=0)
NOW = 1_000_000.0
M = make_ref("m", "9")
BOX = Detection(x1=0, y1=0, x2=1, y2=1, confidence=0.5, class_id=1, class_name="square")


def make_ledger(*, live: bool = True) -> tuple[Ledger, StatsRecorder, NodeMetrics]:
    slot = ModelSlot()
    if live:
        slot.swap(M, FakeDetector(), load=REPORT, started_at=0)
    stats, metrics = StatsRecorder(), NodeMetrics()
    ledger = Ledger(stats=stats, metrics=metrics, router=Router(slot), clock=lambda: NOW)
    return ledger, stats, metrics


def exported(metrics: NodeMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_an_answer_counts_in_stats_and_metrics_alike() -> None:
    ledger, stats, metrics = make_ledger()

    ledger.answered(M, latency_s=0.004, queue_s=0.001, inference_s=0.002, detections=(BOX, BOX))

    (model,) = stats.window(NOW - 1, NOW).models
    assert (model.requests, model.errors, model.images, model.detections) == (1, 0, 1, 2)
    assert model.class_counts == (("square", 2),)
    assert exported(metrics, "yolofleet_model_requests_total", sha256=M.sha256, outcome="ok") == 1
    assert exported(metrics, "yolofleet_model_detections_total", sha256=M.sha256) == 2
    assert exported(metrics, "yolofleet_requests_total", model_version=M.version, code="OK") == 1


@pytest.mark.parametrize(
    ("exc", "code", "counted"),
    [
        pytest.param(RuntimeError("model crashed"), "INTERNAL", True, id="model-error"),
        pytest.param(Overloaded("full"), "RESOURCE_EXHAUSTED", False, id="refused-queue-full"),
        pytest.param(InvalidImage("bad"), "INVALID_ARGUMENT", False, id="caller-error"),
    ],
)
def test_a_failure_counts_against_the_model_given(exc: Exception, code: str, counted: bool) -> None:
    ledger, stats, metrics = make_ledger()

    ledger.failed(exc, model=M, latency_s=0.01)

    models = stats.window(NOW - 1, NOW).models
    assert [(m.requests, m.errors) for m in models] == ([(1, 1)] if counted else [])
    errors = exported(metrics, "yolofleet_model_requests_total", sha256=M.sha256, outcome="error")
    assert errors == (1 if counted else 0)
    assert exported(metrics, "yolofleet_requests_total", model_version="", code=code) == 1


@pytest.mark.parametrize(
    ("name", "live", "blamed"),
    [
        pytest.param("", True, True, id="aimed-at-the-slot"),
        pytest.param("m", True, True, id="naming-the-slot-model"),
        pytest.param("other", True, False, id="another-model"),
        pytest.param("", False, False, id="no-model-live"),
    ],
)
def test_a_refusal_before_the_batcher_counts_against_the_slot_model_it_was_aimed_at(
    name: str, live: bool, blamed: bool
) -> None:
    ledger, stats, _ = make_ledger(live=live)

    ledger.refused(RuntimeError("model crashed"), model_name=name, latency_s=0.01)

    models = stats.window(NOW - 1, NOW).models
    assert [(m.model.sha256, m.errors) for m in models] == ([(M.sha256, 1)] if blamed else [])
