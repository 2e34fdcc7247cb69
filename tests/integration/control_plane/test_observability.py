"""The dashboard and the alerts against live processes: a node serving a real model and a
control plane leading over the dev Consul, both scraped over HTTP.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from dataclasses import replace

import grpc
from prometheus_client.parser import text_string_to_metric_families

from control_plane.app import AppConfig, ControlPlane
from control_plane.core.document import RolloutDoc
from inference_node.model import ModelRef
from tests.integration.harness import RunningNode, encode
from tests.promql import exported_names, metric_names
from tests.unit.test_k8s_manifests import alert_expressions, dashboard_expressions
from tests.waits import eventually
from yolofleet.consul.devserver import DevConsul
from yolofleet.keys import KeyLayout
from yolofleet.synthetic import render_image

GROUP = "zone-a"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        page: str = reply.read().decode()
    return page


def sample(page: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(page):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


async def leading_plane_page(dev_consul: DevConsul, layout: KeyLayout) -> str:
    """The /metrics page of a control plane that leads and has ticked ``GROUP`` once."""
    config = AppConfig(
        consul=dev_consul.address,
        port=0,
        metrics_port=0,
        key_prefix=layout.prefix,
        interval_s=0.2,
    )
    plane = ControlPlane(config)
    await plane.start()
    try:
        doc = await plane.store.read_rollout(GROUP)
        await plane.store.write_rollout(
            RolloutDoc(spec=None, state=replace(doc.state, reason="seeded by the test"))
        )
        assert plane.metrics_port is not None
        port = plane.metrics_port

        async def ticked() -> bool:
            page = await asyncio.to_thread(scrape, port)
            leads = sample(page, "yolofleet_control_plane_is_leader") == 1
            checked = sample(page, "yolofleet_control_plane_consul_up") == 1
            ticked = sample(page, "yolofleet_rollout_phase", group=GROUP) is not None
            return leads and checked and ticked

        await eventually(ticked, what="the control plane to lead, check Consul and tick")
        return await asyncio.to_thread(scrape, port)
    finally:
        await plane.stop()


async def test_every_dashboard_and_alert_metric_is_exported_by_a_live_node_and_control_plane(
    start_node: Callable[..., RunningNode],
    refs: dict[str, ModelRef],
    dev_consul: DevConsul,
    layout: KeyLayout,
) -> None:
    node = start_node(metrics_port=0)
    await asyncio.to_thread(node.swap_to, refs["v1"])
    code = await asyncio.to_thread(node.detect_code, encode(render_image(9500).image))
    assert node.node.metrics_port is not None
    node_page = await asyncio.to_thread(scrape, node.node.metrics_port)
    plane_page = await leading_plane_page(dev_consul, layout)
    exported = exported_names([node_page, plane_page])

    used = {
        (where, name)
        for where, expr in (*dashboard_expressions(), *alert_expressions())
        for name in metric_names(expr)
    }
    unknown = sorted(f"{where}: {name}" for where, name in used if name not in exported)

    assert code is grpc.StatusCode.OK
    assert len({name for _, name in used}) > 20
    assert unknown == []
    assert sample(plane_page, "yolofleet_rollout_phase", group=GROUP, phase="idle") == 1
    assert sample(plane_page, "yolofleet_control_plane_consul_up") == 1
    assert (sample(plane_page, "yolofleet_control_plane_tick_seconds_count") or 0) >= 1
    assert sample(node_page, "yolofleet_requests_total", code="OK") == 1
