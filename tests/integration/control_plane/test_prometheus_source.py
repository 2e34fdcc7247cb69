"""``PrometheusMetricSource`` over real HTTP, fed by a real node's exporter, against GetStats.

No Prometheus binary exists on this machine and none can be installed, so ``StandIn``, a small
HTTP server on 127.0.0.1, stands in for one. It scrapes a real inference node's ``/metrics`` for
real at two moments, attaches the target labels Prometheus' relabelling would (``node_id``,
``group``, ``job``), and answers ``/api/v1/query`` for the one query shape the source sends,
``sum by (LABELS) (increase(NAME{MATCHERS}[Ns]))``, with the difference between its two scrapes
(a series absent from the first scrape counts from 0, as Prometheus does with created-timestamp
zero ingestion). So every number the source turns into ``Samples`` came out of the node's
exporter; PromQL parsing and ``increase()``'s extrapolation are not exercised.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from control_plane.app import AppConfig, ControlPlane
from control_plane.core.errors import MetricsUnavailable
from control_plane.core.fleet import FleetView, NodeView
from control_plane.sources.nodes import GrpcMetricSource
from control_plane.sources.prometheus import PrometheusMetricSource
from inference_node.model import ModelRef
from inference_node.serving.requests import BatchLimits
from tests.integration.harness import RunningNode, encode, free_port
from yolofleet.records import NodePhase
from yolofleet.synthetic import render_image

QUERY = re.compile(
    r"sum by \((?P<by>[^)]*)\) \(increase\((?P<name>\w+)(?:\{(?P<matchers>[^}]*)\})?"
    r"\[(?P<window>\d+)s\]\)\)"
)
MATCHER = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Labels = tuple[tuple[str, str], ...]
Scrape = dict[tuple[str, Labels], float]


class StandIn:
    """Answers Prometheus' instant queries from two real scrapes per target (see module doc)."""

    def __init__(self) -> None:
        self.targets: dict[Labels, tuple[Scrape, Scrape]] = {}
        self.asked: list[dict[str, str]] = []
        self.fail_with: tuple[int, bytes] | None = None
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def add_target(self, labels: dict[str, str], before: Scrape, after: Scrape) -> None:
        self.targets[tuple(sorted(labels.items()))] = (before, after)

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        params = {key: values[0] for key, values in parse_qs(url.query).items()}
        self.asked.append(params)
        status, body = self.fail_with or (200, self._evaluate(params["query"], params["time"]))
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _evaluate(self, query: str, at: str) -> bytes:
        shape = QUERY.fullmatch(query)
        if shape is None:
            error = {"status": "error", "errorType": "bad_data", "error": f"unknown {query}"}
            return json.dumps(error).encode()
        by = [label.strip() for label in shape["by"].split(",")]
        wanted = MATCHER.findall(shape["matchers"] or "")
        sums: dict[tuple[str, ...], float] = {}
        for target, (before, after) in self.targets.items():
            for (name, own), value in after.items():
                labels = dict(own) | dict(target)
                if name != shape["name"] or any(labels.get(k) != v for k, v in wanted):
                    continue
                key = tuple(labels.get(label, "") for label in by)
                sums[key] = sums.get(key, 0.0) + value - before.get((name, own), 0.0)
        result = [
            {
                "metric": {k: v for k, v in zip(by, key, strict=True) if v},
                "value": [float(at), repr(total)],
            }
            for key, total in sums.items()
        ]
        return json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        ).encode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def scrape(port: int | None) -> Scrape:
    """One real scrape of a node's exporter: (sample name, its labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()


def serving(*node_ids: str, endpoint: str = "") -> FleetView:
    return FleetView.of(
        NodeView(node_id=node_id, phase=NodePhase.SERVING, endpoint=endpoint)
        for node_id in node_ids
    )


async def test_source_reads_from_the_exporter_what_getstats_reports(
    start_node: Callable[..., RunningNode], refs: dict[str, ModelRef], stand_in: StandIn
) -> None:
    node = start_node(metrics_port=0, batch=BatchLimits(max_size=1, max_wait_s=0.0, max_queue=1))
    node.swap_to(refs["v1"])
    images = [encode(render_image(seed).image) for seed in range(9500, 9520)]

    since = math.floor(time.time())
    before = scrape(node.node.metrics_port)
    with ThreadPoolExecutor(len(images)) as pool:
        codes = list(pool.map(node.detect_code, images))
    refused = node.detect_code(b"not an image")  # the caller's error: counted by neither
    after = scrape(node.node.metrics_port)
    until = time.time()
    for labels in (
        {"node_id": "node-a", "group": "zone-a", "job": "yolofleet"},
        {"node_id": "node-b", "group": "zone-b", "job": "yolofleet"},  # another group
        {"node_id": "stranger", "group": "zone-a", "job": "yolofleet"},  # not in the fleet
    ):
        stand_in.add_target(labels, before, after)
    source = PrometheusMetricSource(
        stand_in.url, selector='job="yolofleet",group="{group}"', min_window_s=1.0
    )
    getstats = GrpcMetricSource()

    got = await source.sample("zone-a", serving("node-a", "node-b"), since=since, until=until)
    try:
        expected = await getstats.sample(
            "zone-a", serving("node-a", endpoint=node.address), since=since, until=until
        )
    finally:
        await getstats.close()

    sha256 = refs["v1"].sha256
    mine, theirs = got["node-a"][sha256], expected["node-a"][sha256]
    assert refused == grpc.StatusCode.INVALID_ARGUMENT
    assert list(got) == ["node-a"]
    assert replace(mine, confidence_sum=0.0) == replace(theirs, confidence_sum=0.0)
    assert mine.confidence_sum == pytest.approx(theirs.confidence_sum, rel=1e-9)
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes  # refusals: not the model's errors
    assert mine.errors == 0
    assert (mine.requests, mine.images) == (codes.count(grpc.StatusCode.OK),) * 2
    assert mine.detections > 0
    assert len(stand_in.asked) == 6
    assert {ask["time"] for ask in stand_in.asked} == {f"{until:.3f}"}
    assert all(f"[{math.ceil(until - since)}s]" in ask["query"] for ask in stand_in.asked)


async def test_unreachable_prometheus_is_node_unreachable() -> None:
    source = PrometheusMetricSource(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)

    with pytest.raises(MetricsUnavailable, match=r"^Prometheus at .* could not be reached: "):
        await source.sample("zone-a", serving("n1"), since=0.0, until=60.0)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse error at char 4"}',
            "refused the query with HTTP 400: bad_data: parse error at char 4",
        ),
        (503, b"<html>upstream down</html>", "refused the query with HTTP 503: not a JSON answer"),
        (200, b"<html>a login page</html>", "answered something not JSON"),
    ],
)
async def test_a_refusal_or_a_foreign_answer_is_node_unreachable(
    stand_in: StandIn, status: int, body: bytes, message: str
) -> None:
    stand_in.fail_with = (status, body)
    source = PrometheusMetricSource(stand_in.url, timeout_s=5.0)

    with pytest.raises(MetricsUnavailable, match=f"^Prometheus at {stand_in.url} {message}"):
        await source.sample("zone-a", serving("n1"), since=0.0, until=60.0)


@pytest.mark.parametrize(
    ("url", "source"), [(None, GrpcMetricSource), ("http://prom:9090", PrometheusMetricSource)]
)
def test_the_control_plane_reads_prometheus_only_when_given_its_url(
    url: str | None, source: type
) -> None:
    plane = ControlPlane(AppConfig(consul="127.0.0.1:1", port=0, prometheus_url=url))
    plane.client.close()

    assert type(plane.metrics) is source
