"""Detect, DetectStream, GetStatus and health over a real gRPC server with a real model."""

from __future__ import annotations

import math
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from inference_node.errors import DigestMismatch
from inference_node.model import ModelRef
from inference_node.serving.requests import BatchLimits
from inference_node.telemetry.metrics import SWAP_FAILURE_STAGES
from tests.integration.harness import RunningNode, encode, iou
from tests.waits import wait_for
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb

KNOWN_SEEDS = range(9000, 9006)


def test_detect_finds_known_shapes(shared_node: RunningNode, refs: dict[str, ModelRef]) -> None:
    matched = total = 0
    for seed in KNOWN_SEEDS:
        truth = render_image(seed)

        reply = shared_node.stub.Detect(
            pb.DetectRequest(image=encode(truth.image), request_id=f"s{seed}"), timeout=30
        )

        assert reply.request_id == f"s{seed}"
        assert (reply.image_width, reply.image_height) == truth.image.size
        assert reply.model.sha256 == refs["v1"].sha256
        for box in truth.boxes:
            total += 1
            matched += any(
                d.class_name == box.class_name
                and iou((d.box.x1, d.box.y1, d.box.x2, d.box.y2), (box.x1, box.y1, box.x2, box.y2))
                > 0.5
                for d in reply.detections
            )
    assert total > 0
    assert matched / total >= 0.8, f"only {matched}/{total} known shapes found"


def test_boxes_are_in_original_image_pixels(shared_node: RunningNode) -> None:
    truth = render_image(9100, min_shapes=1, max_shapes=1)
    big = truth.image.resize((truth.image.width * 3, truth.image.height * 2))
    box = truth.boxes[0]

    reply = shared_node.stub.Detect(pb.DetectRequest(image=encode(big)), timeout=30)

    best = max(reply.detections, key=lambda d: d.confidence)
    scaled = (box.x1 * 3, box.y1 * 2, box.x2 * 3, box.y2 * 2)
    assert (reply.image_width, reply.image_height) == big.size
    assert iou((best.box.x1, best.box.y1, best.box.x2, best.box.y2), scaled) > 0.5


def test_detect_stream_answers_in_request_order(shared_node: RunningNode) -> None:
    frames = [render_image(9200 + i) for i in range(24)]
    requests = (
        pb.DetectRequest(image=encode(frame.image), request_id=str(i))
        for i, frame in enumerate(frames)
    )

    replies = list(shared_node.stub.DetectStream(requests, timeout=60))

    assert [r.request_id for r in replies] == [str(i) for i in range(24)]
    assert [r.image_width for r in replies] == [f.image.width for f in frames]


def test_status_reports_active_model(shared_node: RunningNode, refs: dict[str, ModelRef]) -> None:
    status = shared_node.status()

    assert status.active_model.sha256 == refs["v1"].sha256
    assert status.phase == pb.SLOT_PHASE_SERVING
    assert status.device == "cpu"
    assert status.generation >= 1
    assert not status.memory.available


def test_health_serving_only_after_first_model_is_warm(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node()
    health = health_pb2_grpc.HealthStub(node.channel)
    check = health_pb2.HealthCheckRequest(service="yolofleet.v1.Inference")
    before = health.Check(check, timeout=5).status
    try:
        node.stub.Detect(pb.DetectRequest(image=encode(render_image(1).image)), timeout=5)
        unavailable = None
    except grpc.RpcError as exc:
        unavailable = exc.code()

    node.swap_to(refs["v1"])

    wait_for(
        lambda: health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.SERVING,
        timeout_s=10,
        what="health to flip to SERVING",
    )
    assert before == health_pb2.HealthCheckResponse.NOT_SERVING
    assert unavailable == grpc.StatusCode.UNAVAILABLE
    assert node.status().phase == pb.SLOT_PHASE_SERVING


def test_stats_count_the_detects_of_their_window(
    shared_node: RunningNode, refs: dict[str, ModelRef]
) -> None:
    since = math.floor(time.time()) + 1
    time.sleep(max(0.0, since - time.time()))  # a whole second no earlier test has reached
    images = [encode(render_image(seed).image) for seed in range(9300, 9305)]
    replies = [shared_node.stub.Detect(pb.DetectRequest(image=i), timeout=30) for i in images]
    with pytest.raises(grpc.RpcError) as bad:
        shared_node.stub.Detect(pb.DetectRequest(image=b"not an image"), timeout=30)

    stats = shared_node.stub.GetStats(pb.GetStatsRequest(since_unix=since), timeout=10)

    found = [d for reply in replies for d in reply.detections]
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stats.window_start_unix == since
    assert stats.window_end_unix >= since
    assert len(stats.models) == 1
    model = stats.models[0]
    assert model.model.sha256 == refs["v1"].sha256
    assert (model.requests, model.errors, model.images) == (5, 0, 5)
    assert model.detections == len(found) > 0
    assert dict(model.class_counts) == Counter(d.class_name for d in found)
    assert sum(model.class_counts.values()) == model.detections
    assert model.confidence_sum == pytest.approx(sum(d.confidence for d in found), rel=1e-5)
    assert len(model.latency_counts) == len(model.latency_bounds_s) + 1
    assert sum(model.latency_counts) == model.requests


def test_model_metrics_count_what_stats_count(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    """The per-digest Prometheus families agree with GetStats: answered images count, and
    neither refusals of a full queue nor callers' errors do (they are not the model's failures).
    """
    node = start_node(metrics_port=0, batch=BatchLimits(max_size=1, max_wait_s=0.0, max_queue=1))
    node.swap_to(refs["v1"])
    images = [encode(render_image(seed).image) for seed in range(9400, 9424)]

    with ThreadPoolExecutor(len(images)) as pool:
        codes = list(pool.map(node.detect_code, images))
    refused = node.detect_code(b"not an image")
    stats = node.stub.GetStats(pb.GetStatsRequest(since_unix=0), timeout=10)
    exported = _scrape(node.node.metrics_port, sha256=refs["v1"].sha256)

    model = stats.models[0]
    buckets = exported["yolofleet_model_request_seconds_bucket"]
    cumulative = [buckets[f"le={float(b)!r}"] for b in model.latency_bounds_s]
    cumulative.append(buckets["le=inf"])
    classes = exported["yolofleet_model_class_detections_total"]
    requests = exported["yolofleet_model_requests_total"]
    assert refused == grpc.StatusCode.INVALID_ARGUMENT
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert [m.model.sha256 for m in stats.models] == [refs["v1"].sha256]
    assert model.requests == codes.count(grpc.StatusCode.OK)
    assert model.errors == 0
    assert requests["outcome=ok"] == model.requests
    assert requests["outcome=error"] == model.errors
    assert [b - a for a, b in zip([0.0, *cumulative], cumulative, strict=False)] == list(
        model.latency_counts
    )
    assert exported["yolofleet_model_images_total"][""] == model.images
    assert exported["yolofleet_model_detections_total"][""] == model.detections > 0
    assert exported["yolofleet_model_confidence_sum_total"][""] == pytest.approx(
        model.confidence_sum, rel=1e-9
    )
    assert classes == {f"class_name={k}": v for k, v in model.class_counts.items()}


def test_every_swap_failure_stage_is_scraped_at_zero_before_the_first_refusal(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef]
) -> None:
    node = start_node(metrics_port=0)
    node.swap_to(refs["v1"])
    before = _swap_failures(node.node.metrics_port)

    with pytest.raises(DigestMismatch):
        node.swap_to(replace(refs["v2"], sha256="f" * 64))
    after = _swap_failures(node.node.metrics_port)
    reply = node.stub.Detect(pb.DetectRequest(image=encode(render_image(5).image)), timeout=30)

    assert before == dict.fromkeys(SWAP_FAILURE_STAGES, 0.0)
    assert after == {**before, "DigestMismatch": 1.0}
    assert reply.model.sha256 == refs["v1"].sha256


def _swap_failures(port: int | None) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "yolofleet_swap_failures_total"
    }


def _scrape(port: int | None, *, sha256: str) -> dict[str, dict[str, float]]:
    """The node's /metrics samples of one digest: sample name -> other labels -> value, the
    other labels written ``k=v`` (``le`` as a float's repr).
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if labels.pop("sha256", None) != sha256:
                continue
            if "le" in labels:
                labels["le"] = repr(float(labels["le"]))
            other = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            values.setdefault(sample.name, {})[other] = sample.value
    return values
