"""Consul HTTP API conformance, written from Consul's documentation and run through py-consul.

Runs against the in-process dev Consul, or against a real agent when ``CONSUL_HTTP_ADDR`` is set
(each test under its own key prefix, cleaned up afterwards). Session expiry needs TTLs under
Consul's 10 s minimum, so those tests run against the dev Consul only.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

import consul
import pytest
import requests

WAKE_DEADLINE = 5.0


def http(raw: consul.Consul, method: str, path: str) -> requests.Response:
    """A plain HTTP request on py-consul's own session, for what py-consul does not expose."""
    response: requests.Response = raw.http.session.request(
        method,
        f"{raw.http.base_uri}{path}",
        headers=raw.prepare_headers(),
        verify=raw.http.verify,
        cert=raw.http.cert,
    )
    return response


def blocking_get(raw: consul.Consul, key: str, **kwargs: Any) -> concurrent.futures.Future[Any]:
    """Start ``raw.kv.get(key, **kwargs)`` on a thread; the caller collects its result."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(raw.kv.get, key, **kwargs)
    pool.shutdown(wait=False)
    return future


# ---- KV basics ---------------------------------------------------------------------------


def test_put_then_get_returns_value_and_indexes(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}a"

    stored = raw.kv.put(key, b"hello", flags=42)
    index, entry = raw.kv.get(key)

    assert stored is True
    assert entry["Key"] == key
    assert entry["Value"] == b"hello"
    assert entry["Flags"] == 42
    assert entry["LockIndex"] == 0
    assert "Session" not in entry
    assert entry["CreateIndex"] == entry["ModifyIndex"] == int(index)


def test_update_keeps_create_index_and_raises_modify_index(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}a"
    raw.kv.put(key, b"one")
    _, first = raw.kv.get(key)

    raw.kv.put(key, b"two")
    _, second = raw.kv.get(key)

    assert second["Value"] == b"two"
    assert second["CreateIndex"] == first["CreateIndex"]
    assert second["ModifyIndex"] > first["ModifyIndex"]


def test_put_of_unchanged_value_keeps_modify_index(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}a"
    raw.kv.put(key, b"same")
    _, before = raw.kv.get(key)

    raw.kv.put(key, b"same")
    _, after = raw.kv.get(key)

    assert after["ModifyIndex"] == before["ModifyIndex"]


def test_missing_key_is_404_with_index_header(raw: consul.Consul, prefix: str) -> None:
    response = http(raw, "GET", f"/v1/kv/{prefix}missing")

    assert response.status_code == 404
    assert int(response.headers["X-Consul-Index"]) >= 1
    assert response.headers["X-Consul-KnownLeader"] == "true"
    assert raw.kv.get(f"{prefix}missing")[1] is None


def test_recurse_lists_entries_under_prefix_sorted(raw: consul.Consul, prefix: str) -> None:
    for name in ("b", "a/2", "a/1"):
        raw.kv.put(f"{prefix}{name}", name.encode())
    raw.kv.put(f"{prefix[:-1]}-sibling", b"x")

    _, entries = raw.kv.get(prefix, recurse=True)

    assert [e["Key"] for e in entries] == [f"{prefix}a/1", f"{prefix}a/2", f"{prefix}b"]
    raw.kv.delete(f"{prefix[:-1]}-sibling")


def test_keys_with_separator_folds_subtrees(raw: consul.Consul, prefix: str) -> None:
    for name in ("a/1", "a/2/x", "b", "c/"):
        raw.kv.put(f"{prefix}{name}", b"")

    _, folded = raw.kv.get(prefix, keys=True, separator="/")
    _, flat = raw.kv.get(prefix, keys=True)

    assert folded == [f"{prefix}a/", f"{prefix}b", f"{prefix}c/"]
    assert flat == [f"{prefix}{n}" for n in ("a/1", "a/2/x", "b", "c/")]


def test_raw_returns_the_bare_value(raw: consul.Consul, prefix: str) -> None:
    raw.kv.put(f"{prefix}blob", b"\x00\xffbinary")

    response = http(raw, "GET", f"/v1/kv/{prefix}blob?raw")

    assert response.status_code == 200
    assert response.content == b"\x00\xffbinary"


def test_empty_value_reads_back_empty(raw: consul.Consul, prefix: str) -> None:
    raw.kv.put(f"{prefix}empty", b"")

    _, entry = raw.kv.get(f"{prefix}empty")

    assert entry["Value"] in (None, b"")  # the dev server, like Consul's UI folders, says null


def test_delete_removes_one_key(raw: consul.Consul, prefix: str) -> None:
    raw.kv.put(f"{prefix}a", b"1")
    raw.kv.put(f"{prefix}ab", b"2")

    deleted = raw.kv.delete(f"{prefix}a")

    assert deleted is True
    assert raw.kv.get(f"{prefix}a")[1] is None
    assert raw.kv.get(f"{prefix}ab")[1] is not None


def test_delete_recurse_removes_only_the_prefix(raw: consul.Consul, prefix: str) -> None:
    raw.kv.put(f"{prefix}dir/a", b"1")
    raw.kv.put(f"{prefix}dir/b/c", b"2")
    raw.kv.put(f"{prefix}dirt", b"3")

    raw.kv.delete(f"{prefix}dir/", recurse=True)

    _, left = raw.kv.get(prefix, keys=True)
    assert left == [f"{prefix}dirt"]


# ---- check-and-set -----------------------------------------------------------------------


def test_cas_zero_creates_only_if_absent(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}once"

    first = raw.kv.put(key, b"first", cas=0)
    second = raw.kv.put(key, b"second", cas=0)

    assert (first, second) == (True, False)
    assert raw.kv.get(key)[1]["Value"] == b"first"


def test_cas_needs_the_current_modify_index(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}cas"
    raw.kv.put(key, b"v1")
    _, entry = raw.kv.get(key)
    stale = entry["ModifyIndex"]
    raw.kv.put(key, b"v2")

    refused = raw.kv.put(key, b"v3", cas=stale)
    _, current = raw.kv.get(key)
    accepted = raw.kv.put(key, b"v3", cas=current["ModifyIndex"])

    assert refused is False
    assert accepted is True
    assert raw.kv.get(key)[1]["Value"] == b"v3"


def test_cas_on_a_missing_key_with_nonzero_index_is_refused(
    raw: consul.Consul, prefix: str
) -> None:
    assert raw.kv.put(f"{prefix}nothing", b"x", cas=5) is False


def test_delete_with_cas_needs_the_current_modify_index(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}cas"
    raw.kv.put(key, b"v1")
    _, entry = raw.kv.get(key)

    refused = raw.kv.delete(key, cas=entry["ModifyIndex"] + 1000)
    accepted = raw.kv.delete(key, cas=entry["ModifyIndex"])

    assert (refused, accepted) == (False, True)
    assert raw.kv.get(key)[1] is None


# ---- blocking queries --------------------------------------------------------------------


def test_blocking_get_wakes_on_change(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}watched"
    raw.kv.put(key, b"v1")
    index, _ = raw.kv.get(key)

    pending = blocking_get(raw, key, index=index, wait="30s")
    raw.kv.put(key, b"v2")
    new_index, entry = pending.result(timeout=WAKE_DEADLINE)

    assert int(new_index) > int(index)
    assert entry["Value"] == b"v2"


def test_blocking_get_times_out_with_the_same_index(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}quiet"
    raw.kv.put(key, b"v1")
    index, _ = raw.kv.get(key)

    started = time.monotonic()
    same_index, entry = raw.kv.get(key, index=index, wait="500ms")
    held = time.monotonic() - started

    assert same_index == index
    assert entry["Value"] == b"v1"
    assert held >= 0.45, "the query answered without blocking"


def test_blocking_get_wakes_on_delete(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}doomed"
    raw.kv.put(key, b"v1")
    index, _ = raw.kv.get(key)

    pending = blocking_get(raw, key, index=index, wait="30s")
    raw.kv.delete(key)
    new_index, entry = pending.result(timeout=WAKE_DEADLINE)

    assert entry is None
    assert int(new_index) > int(index)


def test_blocking_get_of_missing_key_wakes_on_create(raw: consul.Consul, prefix: str) -> None:
    key = f"{prefix}later"
    index, _ = raw.kv.get(key)

    pending = blocking_get(raw, key, index=index, wait="30s")
    raw.kv.put(key, b"born")
    new_index, entry = pending.result(timeout=WAKE_DEADLINE)

    assert entry["Value"] == b"born"
    assert int(new_index) > int(index)


def test_blocking_recurse_wakes_on_change_under_prefix(raw: consul.Consul, prefix: str) -> None:
    raw.kv.put(f"{prefix}dir/a", b"1")
    index, _ = raw.kv.get(f"{prefix}dir/", recurse=True)

    pending = blocking_get(raw, f"{prefix}dir/", recurse=True, index=index, wait="30s")
    raw.kv.put(f"{prefix}dir/b", b"2")
    new_index, entries = pending.result(timeout=WAKE_DEADLINE)

    assert int(new_index) > int(index)
    assert [e["Key"] for e in entries] == [f"{prefix}dir/a", f"{prefix}dir/b"]


def test_bad_index_is_a_400(raw: consul.Consul, prefix: str) -> None:
    response = http(raw, "GET", f"/v1/kv/{prefix}x?index=abc")

    assert response.status_code == 400


def test_conflicting_put_flags_are_a_400(raw: consul.Consul, prefix: str) -> None:
    response = http(raw, "PUT", f"/v1/kv/{prefix}x?cas=0&release=abc")

    assert response.status_code == 400
    assert "Conflicting flags" in response.text


# ---- sessions ----------------------------------------------------------------------------


def test_session_create_info_renew_destroy(raw: consul.Consul) -> None:
    session_id = raw.session.create(name="conformance", ttl=10, behavior="delete")

    _, info = raw.session.info(session_id)
    renewed = raw.session.renew(session_id)
    _, listed = raw.session.list()
    destroyed = raw.session.destroy(session_id)
    _, gone = raw.session.info(session_id)

    assert info["ID"] == session_id
    assert info["Name"] == "conformance"
    assert info["Behavior"] == "delete"
    assert info["TTL"] == "10s"
    assert renewed["ID"] == session_id
    assert session_id in {s["ID"] for s in listed}
    assert destroyed is True
    assert gone is None
    with pytest.raises(consul.NotFound):
        raw.session.renew(session_id)


def test_acquire_by_one_session_is_refused_to_another(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str]
) -> None:
    key = f"{prefix}lock"
    first, second = new_session(), new_session()

    acquired = raw.kv.put(key, b"mine", acquire=first)
    refused = raw.kv.put(key, b"theirs", acquire=second)
    again = raw.kv.put(key, b"still mine", acquire=first)
    _, entry = raw.kv.get(key)

    assert (acquired, refused, again) == (True, False, True)
    assert entry["Session"] == first
    assert entry["LockIndex"] == 1
    assert entry["Value"] == b"still mine"


def test_release_frees_the_lock_for_another_session(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str]
) -> None:
    key = f"{prefix}lock"
    first, second = new_session(), new_session()
    raw.kv.put(key, b"mine", acquire=first)

    wrong_holder = raw.kv.put(key, b"x", release=second)
    released = raw.kv.put(key, b"free", release=first)
    _, free = raw.kv.get(key)
    taken = raw.kv.put(key, b"theirs", acquire=second)
    _, entry = raw.kv.get(key)

    assert (wrong_holder, released, taken) == (False, True, True)
    assert "Session" not in free
    assert free["Value"] == b"free"
    assert entry["Session"] == second
    assert entry["LockIndex"] == 2


def test_acquire_with_an_unknown_session_fails(raw: consul.Consul, prefix: str) -> None:
    with pytest.raises(consul.ConsulException, match="invalid session"):
        raw.kv.put(f"{prefix}lock", b"x", acquire="00000000-0000-0000-0000-000000000000")


def test_lock_delay_blocks_reacquire_after_invalidation(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str], wait_until: Any
) -> None:
    key = f"{prefix}lock"
    holder = new_session(LockDelay="1s")
    raw.kv.put(key, b"held", acquire=holder)
    raw.session.destroy(holder)
    contender = new_session()

    refused = raw.kv.put(key, b"mine", acquire=contender)
    wait_until(lambda: raw.kv.put(key, b"mine", acquire=contender), message="lock-delay to end")

    assert refused is False
    assert raw.kv.get(key)[1]["Session"] == contender


def test_explicit_release_arms_no_lock_delay(
    raw: consul.Consul, prefix: str, new_session: Callable[..., str]
) -> None:
    key = f"{prefix}lock"
    holder, contender = new_session(LockDelay="15s"), new_session()
    raw.kv.put(key, b"held", acquire=holder)
    raw.kv.put(key, b"held", release=holder)

    assert raw.kv.put(key, b"mine", acquire=contender) is True


def test_session_expiry_with_delete_behavior_deletes_held_key(
    raw: consul.Consul,
    prefix: str,
    new_session: Callable[..., str],
    dev_only: object,
    wait_until: Any,
) -> None:
    key = f"{prefix}ephemeral"
    session_id = new_session(TTL="500ms", Behavior="delete", LockDelay="0s")
    raw.kv.put(key, b"alive", acquire=session_id)

    wait_until(lambda: raw.kv.get(key)[1] is None, message="the session to expire")

    assert raw.session.info(session_id)[1] is None


def test_session_expiry_with_release_behavior_releases_held_key(
    raw: consul.Consul,
    prefix: str,
    new_session: Callable[..., str],
    dev_only: object,
    wait_until: Any,
) -> None:
    key = f"{prefix}locked"
    session_id = new_session(TTL="500ms", Behavior="release", LockDelay="0s")
    raw.kv.put(key, b"kept", acquire=session_id)
    _, held = raw.kv.get(key)

    released = wait_until(
        lambda: (entry := raw.kv.get(key)[1]) and "Session" not in entry and entry,
        message="the session to expire",
    )

    assert released["Value"] == b"kept"
    assert released["ModifyIndex"] > held["ModifyIndex"]
    assert released["LockIndex"] == held["LockIndex"]


def test_renew_of_an_expired_session_is_a_404(
    raw: consul.Consul, new_session: Callable[..., str], dev_only: object, wait_until: Any
) -> None:
    session_id = new_session(TTL="200ms")

    wait_until(lambda: raw.session.info(session_id)[1] is None, message="the session to expire")

    with pytest.raises(consul.NotFound):
        raw.session.renew(session_id)


# ---- status ------------------------------------------------------------------------------


def test_status_leader_is_an_address(raw: consul.Consul) -> None:
    leader = raw.status.leader()

    assert isinstance(leader, str)
    assert ":" in leader
