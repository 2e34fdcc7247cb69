"""The Prometheus metric source's pure parts: queries, the window, answers to ``Samples``.

The HTTP round trip is covered in ``tests/integration/control_plane/test_prometheus_source.py``.
"""

from __future__ import annotations

import json
import logging

import pytest

from control_plane.core.errors import MetricsUnavailable
from control_plane.core.samples import LatencyHistogram, Samples
from control_plane.sources.prometheus import (
    PrometheusMetricSource,
    node_label_problem,
    plausible_only,
    queries,
    selector_for,
    window_seconds,
)
from control_plane.sources.prometheus_vectors import Family, Series, node_samples, parse_vector
from tests.unit.control_plane.builders import fleet

A, B = "a" * 64, "b" * 64
FLEET = fleet(("n1", "n2", "n3"), draining=("n3",))


def series(value: float, *, node_id: str = "n1", sha256: str = A, **labels: str) -> Series:
    named = {"node_id": node_id, "sha256": sha256, **labels}
    return Series(labels=tuple(sorted(named.items())), value=value)


def answer(result: list[dict[str, object]], *, result_type: str = "vector") -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": result_type, "result": result}}
    ).encode()


def test_queries_sum_increase_by_node_digest_and_each_familys_own_label() -> None:
    built = queries(60, node_label="pod", selector='job="yolofleet",group="zone-a"')

    matchers = '{job="yolofleet",group="zone-a"}[60s]'
    assert built == {
        Family.REQUESTS: "sum by (pod, sha256, outcome) "
        f"(increase(yolofleet_model_requests_total{matchers}))",
        Family.LATENCY: "sum by (pod, sha256, le) "
        f"(increase(yolofleet_model_request_seconds_bucket{matchers}))",
        Family.IMAGES: f"sum by (pod, sha256) (increase(yolofleet_model_images_total{matchers}))",
        Family.DETECTIONS: "sum by (pod, sha256) "
        f"(increase(yolofleet_model_detections_total{matchers}))",
        Family.CONFIDENCE: "sum by (pod, sha256) "
        f"(increase(yolofleet_model_confidence_sum_total{matchers}))",
        Family.CLASSES: "sum by (pod, sha256, class_name) "
        f"(increase(yolofleet_model_class_detections_total{matchers}))",
    }


def test_an_empty_selector_writes_no_braces() -> None:
    built = queries(15, node_label="node_id", selector="")

    assert built[Family.IMAGES] == (
        "sum by (node_id, sha256) (increase(yolofleet_model_images_total[15s]))"
    )


def test_selector_template_gets_the_group_quoted_for_promql() -> None:
    assert selector_for('group="{group}",job="y"', "zone-a") == 'group="zone-a",job="y"'
    assert selector_for('group="{group}"', 'odd"name\\') == 'group="odd\\"name\\\\"'
    assert selector_for("", "zone-a") == ""


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (100.0, 160.0, 60),
        (100.2, 160.0, 60),  # rounded up to whole seconds
        (100.0, 160.4, 61),
        (100.0, 115.0, 15),
        (100.0, 114.9, 15),  # 14.9 s rounds up to the minimum
        (100.0, 113.5, None),  # shorter than a scrape interval: no figure at all
        (100.0, 100.0, None),
        (100.0, 90.0, None),
    ],
)
def test_window_is_whole_seconds_and_at_least_the_minimum(
    since: float, until: float, expected: int | None
) -> None:
    assert window_seconds(since, until, min_window_s=15.0) == expected


async def test_a_short_window_yields_nothing_without_asking() -> None:
    source = PrometheusMetricSource("http://127.0.0.1:1", min_window_s=15.0)  # nothing listens

    assert await source.sample("zone-a", FLEET, since=100.0, until=110.0) == {}


def test_cumulative_buckets_become_per_bucket_counts_with_the_overflow_last() -> None:
    vectors = {
        Family.LATENCY: [
            series(2.0, le="0.01"),
            series(7.0, le="0.1"),
            series(9.0, le="1.0"),
            series(10.0, le="+Inf"),
        ],
        Family.REQUESTS: [series(9.0, outcome="ok"), series(1.0, outcome="error")],
    }

    got = node_samples(vectors, FLEET, node_label="node_id")

    assert got["n1"][A].latency == LatencyHistogram(bounds=(0.01, 0.1, 1.0), counts=(2, 5, 2, 1))
    assert (got["n1"][A].requests, got["n1"][A].errors) == (10, 1)


def test_extrapolated_increases_are_rounded_and_buckets_kept_non_decreasing() -> None:
    vectors = {
        Family.REQUESTS: [series(10.4, outcome="ok"), series(0.6, outcome="error")],
        Family.LATENCY: [series(3.4, le="0.1"), series(3.3, le="1.0"), series(11.2, le="+Inf")],
        Family.IMAGES: [series(10.4)],
        Family.DETECTIONS: [series(20.6)],
        Family.CONFIDENCE: [series(16.48)],  # mean confidence 0.8
        Family.CLASSES: [series(12.4, class_name="circle"), series(8.2, class_name="square")],
    }

    got = node_samples(vectors, FLEET, node_label="node_id")["n1"][A]

    assert (got.requests, got.errors, got.images, got.detections) == (11, 1, 10, 21)
    assert got.latency.counts == (3, 0, 8)
    assert got.confidence_sum == pytest.approx(0.8 * 21)  # the mean survives the rounding
    assert got.class_counts == (("circle", 12), ("square", 8))


def test_nodes_outside_the_live_fleet_and_unlabelled_series_are_ignored() -> None:
    vectors = {
        Family.IMAGES: [
            series(5.0, node_id="n1"),
            series(6.0, node_id="n2", sha256=B),
            series(7.0, node_id="n3"),  # draining
            series(8.0, node_id="stranger"),
            series(9.0, node_id=""),
            series(4.0, node_id="n2", sha256=""),
        ]
    }

    got = node_samples(vectors, FLEET, node_label="node_id")

    assert got == {"n1": {A: Samples(images=5)}, "n2": {B: Samples(images=6)}}


def test_missing_families_read_as_zeros_and_nothing_counted_is_left_out() -> None:
    vectors = {
        Family.REQUESTS: [
            series(3.0, outcome="ok"),
            series(0.0, sha256=B, outcome="ok"),
            series(0.2, node_id="n2", outcome="ok"),
        ],
        Family.LATENCY: [],
    }

    got = node_samples(vectors, FLEET, node_label="node_id")

    assert got == {"n1": {A: Samples(requests=3)}}
    assert got["n1"][A].latency == LatencyHistogram()


def test_the_node_label_is_configurable() -> None:
    pod = Series(labels=(("pod", "n2"), ("sha256", A)), value=4.0)

    got = node_samples({Family.IMAGES: [pod]}, FLEET, node_label="pod")

    assert got == {"n2": {A: Samples(images=4)}}


def test_implausible_samples_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    bad = Samples(requests=1, images=1, detections=1, confidence_sum=3.0)
    good = Samples(requests=2, images=2)

    with caplog.at_level(logging.WARNING, logger="control_plane.sources.prometheus"):
        kept = plausible_only({"n1": {A: bad, B: good}, "n2": {A: bad}}, group="zone-a")

    assert kept == {"n1": {B: good}}
    assert "node=n1 model=aaaaaaaaaaaa Prometheus samples dropped, implausible: " in caplog.text
    assert "confidence sum 3 exceeds 1 detections" in caplog.text


def test_an_instant_vector_answer_becomes_series() -> None:
    body = answer(
        [
            {"metric": {"node_id": "n1", "sha256": A}, "value": [1700000000.0, "12.5"]},
            {"metric": {"node_id": "n2", "sha256": A}, "value": [1700000000.0, "NaN"]},
        ]
    )

    assert parse_vector(body, source="http://prom") == (
        Series(labels=(("node_id", "n1"), ("sha256", A)), value=12.5),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>proxy error</html>", "answered something not JSON"),
        (
            json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}),
            "refused the query: bad_data: parse error",
        ),
        (json.dumps([1, 2]), "refused the query: no error message in its answer"),
        (
            answer([], result_type="matrix"),
            r"answered a query with malformed data \(ValueError: a matrix instead of an instant",
        ),
        (
            json.dumps({"status": "success"}),
            r"answered a query with malformed data \(KeyError: 'data'\)",
        ),
        (answer([{"metric": {}, "value": "12"}]), "answered a query with malformed data"),
        (answer([{"metric": {}, "value": [0, "twelve"]}]), "answered a query with malformed data"),
    ],
)
def test_anything_but_an_instant_vector_is_unreachable(body: bytes | str, message: str) -> None:
    raw = body.encode() if isinstance(body, str) else body

    with pytest.raises(MetricsUnavailable, match=f"^Prometheus at http://prom {message}"):
        parse_vector(raw, source="http://prom")


def test_a_bucket_bound_that_is_no_number_is_unreachable() -> None:
    with pytest.raises(MetricsUnavailable, match="le='fast' that is not a number"):
        node_samples({Family.LATENCY: [series(1.0, le="fast")]}, FLEET, node_label="node_id")


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("node_id", ""),
        ("pod", ""),
        ("kubernetes_pod_name", ""),
        ("node-id", "'node-id' is not a Prometheus label name"),
        ("", "'' is not a Prometheus label name"),
        ("sha256", "'sha256' is a label of the node's own series"),
        ("le", "'le' is a label of the node's own series"),
    ],
)
def test_node_label_must_be_a_free_label_name(label: str, problem: str) -> None:
    assert node_label_problem(label).startswith(problem)
    if problem:
        with pytest.raises(ValueError, match=problem):
            PrometheusMetricSource("http://prom", node_label=label)
