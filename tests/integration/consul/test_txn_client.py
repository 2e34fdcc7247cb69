"""``ConsulClient.txn`` over real HTTP: typed ops in, ``TxnResult`` out, errors as our own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integration.consul.conftest import ConsulTarget
from yolofleet.consul import (
    ConsulClient,
    ConsulRejected,
    ConsulSettings,
    ConsulUnavailable,
    SessionBehavior,
    TxnError,
    TxnOp,
)
from yolofleet.consul.devserver import DevConsul


@pytest.fixture
def client(consul_target: ConsulTarget) -> Iterator[ConsulClient]:
    c = ConsulClient(consul_target.settings)
    yield c
    c.close()


def test_an_applied_transaction_returns_the_written_entries(
    client: ConsulClient, prefix: str
) -> None:
    doc, target = f"{prefix}rollout", f"{prefix}target"
    client.put(doc, b"v1")
    seen = client.get(doc)
    assert seen is not None

    result = client.txn(
        [
            TxnOp.cas(doc, b"v2", index=seen.modify_index),
            TxnOp.set(target, b"t", flags=3),
            TxnOp.get(doc),
        ]
    )

    assert result.ok
    assert result.errors == ()
    written = result.pair(target)
    assert written is not None
    assert written.flags == 3
    assert written.value == b""
    assert result.results[2].value == b"v2"
    assert result.results[0].modify_index == written.modify_index > seen.modify_index
    stored = client.get(target)
    assert stored is not None
    assert stored.value == b"t"


def test_a_rolled_back_transaction_is_an_answer_not_an_error(
    client: ConsulClient, prefix: str
) -> None:
    client.put(f"{prefix}doc", b"v1")

    result = client.txn([TxnOp.set(f"{prefix}a", b"1"), TxnOp.check_index(f"{prefix}doc", index=1)])

    assert not result.ok
    assert result.results == ()
    assert [e.op_index for e in result.errors] == [1]
    assert isinstance(result.errors[0], TxnError)
    assert "operation 1: failed index check" in result.describe()
    assert client.get(f"{prefix}a") is None


def test_a_fenced_write_lands_only_while_the_session_holds_the_lock(
    client: ConsulClient, prefix: str
) -> None:
    lock, doc = f"{prefix}leader", f"{prefix}doc"
    session = client.create_session(name="txn-fence", ttl=30, behavior=SessionBehavior.RELEASE)
    try:
        assert client.put(lock, b"me", acquire=session)
        fenced = [TxnOp.check_session(lock, session=session), TxnOp.set(doc, b"1")]

        while_held = client.txn(fenced)
        client.put(lock, b"me", release=session)
        after_release = client.txn([fenced[0], TxnOp.set(doc, b"2")])
    finally:
        client.destroy_session(session)

    assert while_held.ok
    assert not after_release.ok
    pair = client.get(doc)
    assert pair is not None
    assert pair.value == b"1"


def test_delete_cas_and_check_not_exists(client: ConsulClient, prefix: str) -> None:
    key = f"{prefix}k"
    created = client.txn([TxnOp.check_not_exists(key), TxnOp.set(key, b"x")])
    index = created.results[0].modify_index

    stale = client.txn([TxnOp.delete_cas(key, index=index + 1000)])
    deleted = client.txn([TxnOp.delete_cas(key, index=index)])

    assert created.ok
    assert not stale.ok
    assert deleted.ok
    assert deleted.results == ()
    assert client.get(key) is None


def test_too_many_operations_raise_consul_rejected(client: ConsulClient, prefix: str) -> None:
    ops = [TxnOp.get(f"{prefix}k{i}") for i in range(129)]

    with pytest.raises(ConsulRejected, match="too many operations"):
        client.txn(ops)


def test_an_unreachable_agent_raises_consul_unavailable(own_dev_consul: DevConsul) -> None:
    client = ConsulClient(ConsulSettings.from_address(own_dev_consul.address, timeout=2.0))
    own_dev_consul.stop()

    with pytest.raises(ConsulUnavailable, match="could not apply a transaction"):
        client.txn([TxnOp.set("k", b"v")])
    client.close()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: TxnOp.set("", b"v"), "needs a key", id="empty-key"),
        pytest.param(lambda: TxnOp.cas("k", b"v", index=-1), "unsigned", id="negative-index"),
        pytest.param(lambda: TxnOp.check_session("k", session=""), "session", id="no-session"),
    ],
)
def test_ops_refuse_values_consul_would_reject(build: Callable[[], TxnOp], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
