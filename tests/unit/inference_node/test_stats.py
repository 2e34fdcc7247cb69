from __future__ import annotations

from itertools import pairwise

import grpc
import pytest

from inference_node.errors import (
    Draining,
    InvalidImage,
    InvalidParameter,
    ModelNotAllowed,
    ModelNotFound,
    NoModelLoaded,
    Overloaded,
)
from inference_node.model import Detection
from inference_node.telemetry.metrics import LATENCY_BUCKETS
from inference_node.telemetry.stats import (
    STATS_LATENCY_BOUNDS_S,
    ModelId,
    ModelStats,
    Outcome,
    StatsRecorder,
    counts_as_model_error,
    outcome_of,
)
from tests.fakes import make_ref

V1 = ModelId.of(make_ref("shapes", "1"))
V2 = ModelId.of(make_ref("shapes", "2"))
BOUNDS = (0.01, 0.1, 1.0)
T0 = 1_700_000_000.0


def detection(class_name: str, confidence: float) -> Detection:
    return Detection(
        x1=0, y1=0, x2=1, y2=1, confidence=confidence, class_id=0, class_name=class_name
    )


def recorder(retention_s: int = 60) -> StatsRecorder:
    return StatsRecorder(retention_s=retention_s, latency_bounds_s=BOUNDS)


def ok(stats: StatsRecorder, at: float, *, model: ModelId = V1, latency_s: float = 0.005) -> None:
    stats.record(model, at=at, latency_s=latency_s, outcome=Outcome.OK)


def only(models: tuple[ModelStats, ...]) -> ModelStats:
    assert len(models) == 1
    return models[0]


def test_ok_request_counts_image_detections_confidence_and_classes() -> None:
    stats = recorder()
    found = (detection("circle", 0.9), detection("square", 0.5), detection("circle", 0.7))

    stats.record(V1, at=T0, latency_s=0.05, outcome=Outcome.OK, detections=found)
    snapshot = stats.window(T0, T0 + 0.5)

    model = only(snapshot.models)
    assert model.model == V1
    assert (model.requests, model.errors, model.images, model.detections) == (1, 0, 1, 3)
    assert model.confidence_sum == pytest.approx(2.1)
    assert model.class_counts == (("circle", 2), ("square", 1))
    assert model.latency_bounds_s == BOUNDS
    assert model.latency_counts == (0, 1, 0, 0)


@pytest.mark.parametrize(
    ("latency_s", "bucket"),
    [
        pytest.param(0.0, 0, id="zero"),
        pytest.param(0.01, 0, id="on-first-bound"),
        pytest.param(0.0100001, 1, id="just-above-first-bound"),
        pytest.param(1.0, 2, id="on-last-bound"),
        pytest.param(7.0, 3, id="above-every-bound"),
    ],
)
def test_latency_falls_in_bucket_at_or_below_its_bound(latency_s: float, bucket: int) -> None:
    stats = recorder()

    ok(stats, T0, latency_s=latency_s)

    counts = only(stats.window(T0, T0).models).latency_counts
    assert counts == tuple(1 if i == bucket else 0 for i in range(len(BOUNDS) + 1))


def test_default_bounds_are_fine_steps_that_keep_every_other_histograms_bound() -> None:
    bounds = StatsRecorder().latency_bounds_s
    steps = [b / a for a, b in pairwise(bounds)]

    assert bounds == STATS_LATENCY_BOUNDS_S
    assert (bounds[0], bounds[-1], len(bounds)) == (0.001, 10.0, 49)
    assert min(steps) > 1
    assert max(steps) < 1.34
    assert set(LATENCY_BUCKETS) <= set(bounds)


def test_model_error_counts_request_and_error_but_no_image() -> None:
    stats = recorder()

    stats.record(V1, at=T0, latency_s=0.2, outcome=Outcome.MODEL_ERROR)
    ok(stats, T0)

    model = only(stats.window(T0, T0 + 1).models)
    assert (model.requests, model.errors, model.images) == (2, 1, 1)
    assert sum(model.latency_counts) == model.requests


def test_a_failure_that_is_not_the_models_is_not_counted() -> None:
    stats = recorder()

    stats.record(V1, at=T0, latency_s=0.001, outcome=Outcome.NOT_COUNTED)

    assert stats.window(T0, T0 + 1).models == ()


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        pytest.param(InvalidImage("bad bytes"), Outcome.NOT_COUNTED, id="invalid-image"),
        pytest.param(InvalidParameter("conf"), Outcome.NOT_COUNTED, id="invalid-parameter"),
        pytest.param(ModelNotFound("nope"), Outcome.NOT_COUNTED, id="model-not-found"),
        pytest.param(ModelNotAllowed("no"), Outcome.NOT_COUNTED, id="model-not-allowed"),
        pytest.param(NoModelLoaded("empty"), Outcome.NOT_COUNTED, id="no-model"),
        pytest.param(Draining("stopping"), Outcome.NOT_COUNTED, id="draining"),
        pytest.param(Overloaded("full"), Outcome.NOT_COUNTED, id="overloaded"),
        pytest.param(RuntimeError("cuda"), Outcome.MODEL_ERROR, id="failure-running-the-model"),
    ],
)
def test_outcome_of_counts_only_the_models_own_failures(exc: Exception, outcome: Outcome) -> None:
    assert outcome_of(exc) is outcome


@pytest.mark.parametrize(
    ("code", "counts"),
    [
        pytest.param(grpc.StatusCode.INTERNAL, True, id="internal"),
        pytest.param(grpc.StatusCode.UNKNOWN, True, id="unknown"),
        pytest.param(grpc.StatusCode.RESOURCE_EXHAUSTED, False, id="overloaded"),
        pytest.param(grpc.StatusCode.UNAVAILABLE, False, id="draining-or-no-model"),
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, False, id="bad-input"),
        pytest.param(grpc.StatusCode.NOT_FOUND, False, id="unknown-model"),
        pytest.param(grpc.StatusCode.PERMISSION_DENIED, False, id="disallowed-model"),
        pytest.param(grpc.StatusCode.FAILED_PRECONDITION, False, id="model-too-large"),
        pytest.param(grpc.StatusCode.CANCELLED, False, id="caller-cancelled"),
        pytest.param(grpc.StatusCode.DEADLINE_EXCEEDED, False, id="caller-deadline"),
    ],
)
def test_only_failures_running_the_model_count_as_model_errors(
    code: grpc.StatusCode, counts: bool
) -> None:
    assert counts_as_model_error(code) is counts


def test_models_are_kept_apart() -> None:
    stats = recorder()

    ok(stats, T0, model=V1)
    ok(stats, T0, model=V2)
    ok(stats, T0 + 1, model=V2)
    stats.record(V2, at=T0 + 1, latency_s=0.5, outcome=Outcome.MODEL_ERROR)

    v1, v2 = stats.window(T0, T0 + 2).models
    assert (v1.model, v1.requests, v1.errors) == (V1, 1, 0)
    assert (v2.model, v2.requests, v2.errors) == (V2, 3, 1)


def test_window_covers_whole_seconds_overlapping_since_to_now() -> None:
    stats = recorder()
    for offset in (0.2, 1.2, 2.7, 3.1, 5.9):
        ok(stats, T0 + offset)

    snapshot = stats.window(T0 + 1.5, T0 + 3.2)

    assert only(snapshot.models).requests == 3  # seconds 1, 2 and 3
    assert snapshot.window_start_unix == T0 + 1
    assert snapshot.window_end_unix == T0 + 3.2


def test_window_with_nothing_recorded_is_empty() -> None:
    stats = recorder()
    ok(stats, T0)

    snapshot = stats.window(T0 + 10, T0 + 20)

    assert snapshot.models == ()
    assert snapshot.window_start_unix == T0 + 10


def test_old_seconds_roll_out_of_the_ring() -> None:
    stats = recorder(retention_s=10)
    ok(stats, T0)
    ok(stats, T0 + 3)

    ok(stats, T0 + 10)  # reuses the ring slot of T0
    snapshot = stats.window(0, T0 + 10.5)

    assert only(snapshot.models).requests == 2
    assert snapshot.window_start_unix == T0 + 1


def test_seconds_older_than_retention_are_left_out_even_if_not_overwritten() -> None:
    stats = recorder(retention_s=10)
    ok(stats, T0)

    snapshot = stats.window(0, T0 + 10)

    assert snapshot.models == ()


def test_record_older_than_its_ring_slot_is_dropped() -> None:
    stats = recorder(retention_s=10)
    ok(stats, T0 + 10)

    ok(stats, T0)  # same slot, already reused by a newer second

    assert only(stats.window(0, T0 + 10).models).requests == 1


def test_since_after_now_gives_an_empty_window_ending_now() -> None:
    stats = recorder()
    ok(stats, T0)

    snapshot = stats.window(T0 + 5, T0)

    assert snapshot.models == ()
    assert snapshot.window_start_unix == snapshot.window_end_unix == T0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"retention_s": 0}, "retention_s", id="no-retention"),
        pytest.param({"latency_bounds_s": (0.1, 0.1)}, "increasing", id="repeated-bound"),
        pytest.param({"latency_bounds_s": (0.0, 1.0)}, "positive", id="zero-bound"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StatsRecorder(**kwargs)  # type: ignore[arg-type]
