"""``PUT /v1/txn`` conformance, written from Consul's transaction API documentation.

Raw HTTP on py-consul's own session (py-consul's ``Txn`` turns a 409 into an exception), so the
bodies and status codes are what is checked. Runs against the dev Consul, or a real agent when
``CONSUL_HTTP_ADDR`` is set, each test under its own key prefix.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import consul
import pytest
import requests

from yolofleet.consul.devserver import DevConsul
from yolofleet.consul.settings import ConsulSettings, make_consul

WAKE_DEADLINE = 5.0


def txn(raw: consul.Consul, ops: Any) -> requests.Response:
    """``PUT /v1/txn`` with ``ops`` as the JSON body (bytes are sent as they are)."""
    response: requests.Response = raw.http.session.request(
        "PUT",
        f"{raw.http.base_uri}/v1/txn",
        data=ops if isinstance(ops, bytes) else json.dumps(ops),
        headers=raw.prepare_headers(),
        verify=raw.http.verify,
        cert=raw.http.cert,
    )
    return response


def kv(verb: str, key: str, **fields: Any) -> dict[str, Any]:
    """One KV operation; ``value=b"..."`` is base64-encoded as the API wants."""
    op: dict[str, Any] = {"Verb": verb, "Key": key}
    if "value" in fields:
        op["Value"] = base64.b64encode(fields.pop("value")).decode("ascii")
    op.update({name.capitalize(): value for name, value in fields.items()})
    return {"KV": op}


def value_of(raw: consul.Consul, key: str) -> bytes | None:
    entry = raw.kv.get(key)[1]
    return None if entry is None else entry["Value"] or b""


# ---- applied transactions ----------------------------------------------------------------


def test_writes_apply_together_at_one_index_and_return_entries_without_values(
    raw: consul.Consul, prefix: str
) -> None:
    ops = [kv("set", f"{prefix}a", value=b"1"), kv("set", f"{prefix}b", value=b"2", flags=7)]

    response = txn(raw, ops)

    assert response.status_code == 200
    body = response.json()
    assert body["Errors"] is None
    results = [result["KV"] for result in body["Results"]]
    assert [r["Key"] for r in results] == [f"{prefix}a", f"{prefix}b"]
    assert all(r["Value"] is None for r in results)
    assert results[1]["Flags"] == 7
    assert results[0]["ModifyIndex"] == results[1]["ModifyIndex"] == results[0]["CreateIndex"]
    assert (value_of(raw, f"{prefix}a"), value_of(raw, f"{prefix}b")) == (b"1", b"2")
    assert raw.kv.get(f"{prefix}a")[1]["ModifyIndex"] == results[0]["ModifyIndex"]


def test_get_returns_the_value_and_later_ops_see_earlier_writes(
    raw: consul.Consul, prefix: str
) -> None:
    key = f"{prefix}a"
    raw.kv.put(key, b"old")

    response = txn(raw, [kv("get", key), kv("set", key, value=b"new"), kv("get", key)])

    assert response.status_code == 200
    before, written, after = (result["KV"] for result in response.json()["Results"])
    assert base64.b64decode(before["Value"]) == b"old"
    assert written["Value"] is None
    assert base64.b64decode(after["Value"]) == b"new"
    assert after["ModifyIndex"] == written["ModifyIndex"] > before["ModifyIndex"]


def test_cas_creates_with_index_zero_and_updates_with_the_current_index(
    raw: consul.Consul, prefix: str
) -> None:
    key = f"{prefix}doc"

    created = txn(raw, [kv("cas", key, value=b"v1", index=0)])
    index = created.json()["Results"][0]["KV"]["ModifyIndex"]
    updated = txn(raw, [kv("cas", key, value=b"v2", index=index)])

    assert (created.status_code, updated.status_code) == (200, 200)
    assert value_of(raw, key) == b"v2"


def test_deletes_return_no_results(raw: consul.Consul, prefix: str) -> None:
    raw.kv.put(f"{prefix}a", b"1")
    raw.kv.put(f"{prefix}b", b"2")
    index = raw.kv.get(f"{prefix}b")[1]["ModifyIndex"]

    response = txn(raw, [kv("delete", f"{prefix}a"), kv("delete-cas", f"{prefix}b", index=index)])

    assert response.status_code == 200
    assert response.json() == {"Results": [], "Errors": None}
    assert raw.kv.get(prefix, recurse=True)[1] is None


def test_check_not_exists_passes_for_a_missing_key(raw: consul.Consul, prefix: str) -> None:
    response = txn(
        raw, [kv("check-not-exists", f"{prefix}new"), kv("set", f"{prefix}new", value=b"x")]
    )

    assert response.status_code == 200
    assert value_of(raw, f"{prefix}new") == b"x"


# ---- rolled-back transactions ------------------------------------------------------------


def test_a_failing_check_index_leaves_earlier_sets_unapplied(
    raw: consul.Consul, prefix: str
) -> None:
    raw.kv.put(f"{prefix}fence", b"f")
    fence = raw.kv.get(f"{prefix}fence")[1]
    ops = [
        kv("set", f"{prefix}a", value=b"1"),
        kv("set", f"{prefix}fence", value=b"moved"),
        kv("check-index", f"{prefix}fence", index=fence["ModifyIndex"]),
    ]

    response = txn(raw, ops)

    assert response.status_code == 409
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["Results"] is None
    assert [e["OpIndex"] for e in body["Errors"]] == [2]
    assert "index check" in body["Errors"][0]["What"]
    assert value_of(raw, f"{prefix}a") is None
    assert raw.kv.get(f"{prefix}fence")[1] == fence


def test_every_failing_operation_is_reported_with_its_position(
    raw: consul.Consul, prefix: str
) -> None:
    raw.kv.put(f"{prefix}exists", b"x")

    response = txn(
        raw,
        [
            kv("check-not-exists", f"{prefix}exists"),
            kv("set", f"{prefix}fine", value=b"1"),
            kv("get", f"{prefix}missing"),
            kv("cas", f"{prefix}exists", value=b"y", index=0),
        ],
    )

    assert response.status_code == 409
    errors = response.json()["Errors"]
    assert [e["OpIndex"] for e in errors] == [0, 2, 3]
    assert "exists" in errors[0]["What"]
    assert "doesn't exist" in errors[1]["What"]
    assert "index is stale" in errors[2]["What"]
    assert value_of(raw, f"{prefix}fine") is None


def test_delete_cas_with_a_stale_index_deletes_nothing(raw: consul.Consul, prefix: str) -> None:
    raw.kv.put(f"{prefix}a", b"1")
    raw.kv.put(f"{prefix}b", b"2")
    stale = raw.kv.get(f"{prefix}b")[1]["ModifyIndex"]
    raw.kv.put(f"{prefix}b", b"3")

    response = txn(raw, [kv("delete", f"{prefix}a"), kv("delete-cas", f"{prefix}b", index=stale)])

    assert response.status_code == 409
    assert "index is stale" in response.json()["Errors"][0]["What"]
    assert (value_of(raw, f"{prefix}a"), value_of(raw, f"{prefix}b")) == (b"1", b"3")


def test_an_unknown_verb_fails_its_operation(raw: consul.Consul, prefix: str) -> None:
    # Consul's HTTP layer passes verbs through; the state store rejects an unknown one as a
    # failed operation (409), not as a malformed request.
    response = txn(raw, [kv("set", f"{prefix}a", value=b"1"), kv("frobnicate", f"{prefix}a")])

    assert response.status_code == 409
    assert response.json()["Errors"] == [{"OpIndex": 1, "What": 'unknown KV verb "frobnicate"'}]
    assert value_of(raw, f"{prefix}a") is None


# ---- sessions in transactions ------------------------------------------------------------


def test_check_session_passes_only_for_the_holder(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str]
) -> None:
    lock, doc = f"{prefix}leader", f"{prefix}doc"
    holder, other = new_session(), new_session()
    raw.kv.put(lock, b"me", acquire=holder)

    as_holder = txn(raw, [kv("check-session", lock, session=holder), kv("set", doc, value=b"1")])
    as_other = txn(raw, [kv("check-session", lock, session=other), kv("set", doc, value=b"2")])

    assert as_holder.status_code == 200
    assert as_holder.json()["Results"][0]["KV"]["Session"] == holder
    assert as_other.status_code == 409
    assert as_other.json()["Errors"][0]["OpIndex"] == 0
    assert "session check" in as_other.json()["Errors"][0]["What"]
    assert value_of(raw, doc) == b"1"


def test_check_session_fails_once_the_lock_is_released(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str]
) -> None:
    lock = f"{prefix}leader"
    holder = new_session()
    raw.kv.put(lock, b"me", acquire=holder)
    raw.kv.put(lock, b"me", release=holder)

    response = txn(raw, [kv("check-session", lock, session=holder)])

    assert response.status_code == 409
    assert "session check" in response.json()["Errors"][0]["What"]


def test_check_session_on_a_missing_key_fails(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str]
) -> None:
    response = txn(raw, [kv("check-session", f"{prefix}nobody", session=new_session())])

    assert response.status_code == 409
    assert "doesn't exist" in response.json()["Errors"][0]["What"]


def test_lock_and_unlock_in_transactions(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str]
) -> None:
    key = f"{prefix}lock"
    first, second = new_session(), new_session()

    locked = txn(raw, [kv("lock", key, value=b"a", session=first)])
    refused = txn(raw, [kv("lock", key, value=b"b", session=second)])
    unlocked = txn(raw, [kv("unlock", key, value=b"c", session=first)])

    assert (locked.status_code, refused.status_code, unlocked.status_code) == (200, 409, 200)
    assert locked.json()["Results"][0]["KV"]["LockIndex"] == 1
    assert "already held" in refused.json()["Errors"][0]["What"]
    entry = raw.kv.get(key)[1]
    assert "Session" not in entry
    assert entry["Value"] == b"c"


def test_lock_of_a_lock_delayed_key_is_refused_before_anything_runs(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str], wait_until: Any
) -> None:
    key = f"{prefix}lock"
    holder = new_session(LockDelay="1s")
    raw.kv.put(key, b"held", acquire=holder)
    raw.session.destroy(holder)
    contender = new_session()
    ops = [
        kv("set", f"{prefix}other", value=b"1"),
        kv("lock", key, value=b"mine", session=contender),
    ]

    refused = txn(raw, ops)
    wait_until(lambda: txn(raw, ops).status_code == 200, message="the lock delay to end")

    assert refused.status_code == 409
    assert refused.json()["Errors"] == [
        {"OpIndex": 1, "What": f'failed to lock key "{key}" due to lock delay'}
    ]
    assert raw.kv.get(key)[1]["Session"] == contender


def test_get_tree_and_delete_tree(raw: consul.Consul, prefix: str) -> None:
    for name in ("dir/a", "dir/b", "dirt"):
        raw.kv.put(f"{prefix}{name}", name.encode())

    listed = txn(raw, [kv("get-tree", f"{prefix}dir/")])
    deleted = txn(raw, [kv("delete-tree", f"{prefix}dir/")])

    assert [r["KV"]["Key"] for r in listed.json()["Results"]] == [
        f"{prefix}dir/a",
        f"{prefix}dir/b",
    ]
    assert base64.b64decode(listed.json()["Results"][0]["KV"]["Value"]) == b"dir/a"
    assert deleted.status_code == 200
    assert raw.kv.get(prefix, keys=True)[1] == [f"{prefix}dirt"]


def test_an_empty_key_is_refused_before_anything_runs(raw: consul.Consul, prefix: str) -> None:
    response = txn(raw, [kv("set", f"{prefix}a", value=b"1"), kv("get", "")])

    assert response.status_code == 409
    assert response.json()["Errors"] == [{"OpIndex": 1, "What": "Must provide key"}]
    assert value_of(raw, f"{prefix}a") is None


# ---- indexes and blocking queries --------------------------------------------------------


def test_a_transaction_wakes_a_blocking_query(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}watched"
    raw.kv.put(key, b"v1")
    index, _ = raw.kv.get(key)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(raw.kv.get, key, index=index, wait="30s")
    pool.shutdown(wait=False)

    txn(raw, [kv("set", f"{prefix}other", value=b"x"), kv("set", key, value=b"v2")])
    new_index, entry = pending.result(timeout=WAKE_DEADLINE)

    assert int(new_index) > int(index)
    assert entry["Value"] == b"v2"


def test_a_rolled_back_transaction_takes_no_index(raw: consul.Consul, prefix: str) -> None:
    raw.kv.put(f"{prefix}a", b"1")
    before = raw.kv.get(prefix, recurse=True)[0]

    txn(raw, [kv("set", f"{prefix}a", value=b"2"), kv("get", f"{prefix}missing")])

    assert raw.kv.get(prefix, recurse=True)[0] == before


# ---- requests refused before they run ----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"KV": {"Verb": "get", "Key": "k"}}', id="object-not-array"),
        pytest.param(b'[{"KV": {"Verb": "set", "Key": "k", "Value": "%%%"}}]', id="bad-base64"),
        pytest.param(b'[{"KV": {"Verb": "set", "Key": "k", "Flags": "1"}}]', id="string-flags"),
        pytest.param(b'[{"KV": {"Verb": "cas", "Key": "k", "Index": -1}}]', id="negative-index"),
        pytest.param(b'[{"KV": {"Verb": 7, "Key": "k"}}]', id="numeric-verb"),
    ],
)
def test_a_malformed_body_is_a_400(raw: consul.Consul, body: bytes) -> None:
    response = txn(raw, body)

    assert response.status_code == 400
    assert "Failed to parse body" in response.text


def test_more_operations_than_consul_allows_is_a_413(raw: consul.Consul, prefix: str) -> None:
    ops = [kv("get", f"{prefix}k{i}") for i in range(129)]

    response = txn(raw, ops)

    assert response.status_code == 413
    assert "too many operations" in response.text


# ---- dev server only ---------------------------------------------------------------------


def test_every_write_of_a_transaction_takes_one_new_index(
    raw: consul.Consul, prefix: str, dev_only: DevConsul
) -> None:
    raw.kv.put(f"{prefix}seed", b"0")
    before = int(raw.kv.get(f"{prefix}seed")[1]["ModifyIndex"])

    txn(
        raw,
        [kv("set", f"{prefix}{name}", value=b"1") for name in "abc"]
        + [kv("delete", f"{prefix}seed")],
    )
    raw.kv.put(f"{prefix}after", b"1")

    indexes = {entry["ModifyIndex"] for entry in raw.kv.get(prefix, recurse=True)[1]}
    assert indexes == {before + 1, before + 2}, "the three sets share one index, the put the next"


def test_transaction_writes_survive_a_restart(tmp_path: Path) -> None:
    dev = DevConsul(data_dir=tmp_path / "consul").start()
    try:
        raw = make_consul(ConsulSettings.from_address(dev.address))
        written = txn(raw, [kv("set", "t/a", value=b"1"), kv("set", "t/b", value=b"2")])
        index = written.json()["Results"][0]["KV"]["ModifyIndex"]

        dev.restart()
        entries = raw.kv.get("t/", recurse=True)[1]

        assert [(e["Key"], e["Value"], e["ModifyIndex"]) for e in entries] == [
            ("t/a", b"1", index),
            ("t/b", b"2", index),
        ]
        raw.http.session.close()
    finally:
        dev.stop()
