"""Session API conformance: node registration, session checks and ``/v1/session/node/:node``.

Written from Consul's session API documentation; runs against the dev Consul, or a real agent
when ``CONSUL_HTTP_ADDR`` is set. Sessions are created over raw HTTP so refusals (500 with
Consul's message) can be checked as they are sent.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import consul
import pytest
import requests

from yolofleet.consul.devapi import NODE_NAME
from yolofleet.consul.devserver import DevConsul
from yolofleet.consul.settings import ConsulSettings, make_consul

WAKE_DEADLINE = 5.0
Create = Callable[..., requests.Response]


def request(raw: consul.Consul, method: str, path: str, body: Any = None) -> requests.Response:
    response: requests.Response = raw.http.session.request(
        method,
        f"{raw.http.base_uri}{path}",
        data=None if body is None else json.dumps(body),
        headers=raw.prepare_headers(),
        verify=raw.http.verify,
        cert=raw.http.cert,
    )
    return response


@pytest.fixture
def create(raw: consul.Consul) -> Iterator[Create]:
    """``create(**fields)``: PUT /v1/session/create; sessions it made are destroyed afterwards."""
    made: list[str] = []

    def run(**fields: Any) -> requests.Response:
        response = request(raw, "PUT", "/v1/session/create", {"Name": "conformance", **fields})
        if response.status_code == 200:
            made.append(response.json()["ID"])
        return response

    yield run
    for session_id in made:
        raw.session.destroy(session_id)


def info(raw: consul.Consul, response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    _, data = raw.session.info(response.json()["ID"])
    assert data is not None
    return dict(data)


# ---- node registration -------------------------------------------------------------------


def test_a_session_defaults_to_the_agents_node_and_serf_health(
    raw: consul.Consul, create: Create
) -> None:
    created = info(raw, create())

    assert created["Node"]
    assert created["NodeChecks"] == ["serfHealth"]
    again = info(raw, create(Node=created["Node"]))
    assert again["Node"] == created["Node"]


def test_the_dev_server_registers_the_node_it_reports(
    raw: consul.Consul, create: Create, dev_only: DevConsul
) -> None:
    assert info(raw, create())["Node"] == NODE_NAME == "yolofleet-dev"


def test_a_session_for_an_unregistered_node_is_refused(create: Create) -> None:
    response = create(Node="no-such-node-yolofleet-test")

    assert response.status_code == 500
    assert "Missing node registration" in response.text


# ---- session checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"NodeChecks": ["no-such-check"]}, id="node-checks"),
        pytest.param({"Checks": ["no-such-check"]}, id="legacy-checks"),
        pytest.param({"Checks": ["serfHealth", "no-such-check"]}, id="legacy-with-serf"),
        pytest.param({"ServiceChecks": [{"ID": "no-such-check"}]}, id="service-checks"),
    ],
)
def test_a_session_naming_a_missing_check_is_refused(
    create: Create, fields: dict[str, Any]
) -> None:
    response = create(**fields)

    assert response.status_code == 500
    assert "Missing check 'no-such-check' registration" in response.text


@pytest.mark.parametrize(
    ("fields", "node_checks"),
    [
        pytest.param({"NodeChecks": ["serfHealth"]}, ["serfHealth"], id="explicit-serf"),
        pytest.param({"Checks": ["serfHealth"]}, ["serfHealth"], id="legacy-serf"),
        pytest.param({"Checks": []}, [], id="legacy-empty-means-none"),
        pytest.param({"NodeChecks": []}, [], id="node-checks-empty"),
    ],
)
def test_accepted_checks_appear_in_the_session_info(
    raw: consul.Consul, create: Create, fields: dict[str, Any], node_checks: list[str]
) -> None:
    created = info(raw, create(**fields))

    assert (created["NodeChecks"] or []) == node_checks
    assert not created.get("Checks")
    assert not created.get("ServiceChecks")


# ---- sessions of a node ------------------------------------------------------------------


def test_node_sessions_lists_only_that_nodes_sessions(raw: consul.Consul, create: Create) -> None:
    mine = info(raw, create())

    listed = request(raw, "GET", f"/v1/session/node/{mine['Node']}")
    other = request(raw, "GET", "/v1/session/node/no-such-node-yolofleet-test")

    assert listed.status_code == 200
    assert int(listed.headers["X-Consul-Index"]) >= 1
    assert mine["ID"] in {s["ID"] for s in listed.json()}
    assert {s["Node"] for s in listed.json()} == {mine["Node"]}
    assert other.status_code == 200
    assert other.json() == []


def test_node_sessions_without_a_node_name_is_a_400(raw: consul.Consul) -> None:
    response = request(raw, "GET", "/v1/session/node/")

    assert response.status_code == 400
    assert "Missing node name" in response.text


def test_node_sessions_is_a_blocking_query(raw: consul.Consul, create: Create) -> None:
    node = info(raw, create())["Node"]
    index, _ = raw.session.node(node)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(raw.session.node, node, index=index, wait="30s")
    pool.shutdown(wait=False)

    newer = create()
    new_index, sessions = pending.result(timeout=WAKE_DEADLINE)

    assert int(new_index) > int(index)
    assert newer.json()["ID"] in {s["ID"] for s in sessions}


# ---- dev server only ---------------------------------------------------------------------


def test_session_checks_survive_a_restart(tmp_path: Path) -> None:
    dev = DevConsul(data_dir=tmp_path / "consul").start()
    try:
        raw = make_consul(ConsulSettings.from_address(dev.address))
        none = request(raw, "PUT", "/v1/session/create", {"Checks": []}).json()["ID"]
        serf = request(raw, "PUT", "/v1/session/create", {}).json()["ID"]

        dev.restart()

        assert raw.session.info(none)[1]["NodeChecks"] == []
        assert raw.session.info(serf)[1]["NodeChecks"] == ["serfHealth"]
        raw.http.session.close()
    finally:
        dev.stop()
