"""Transactions over the dev server's KV table, without HTTP: rollback, one index, results."""

from __future__ import annotations

import itertools

import pytest

from yolofleet.consul.kvtable import KVTable
from yolofleet.consul.kvtxn import KVOp, TxnContext, TxnOutcome, run_txn

TXN_INDEX = 100


def table_with(*keys: str) -> KVTable:
    counter = itertools.count(10)
    table = KVTable(lambda: next(counter))
    for key in keys:
        table.set(key, key.encode(), flags=0)
    return table


def run(table: KVTable, *ops: KVOp, sessions: tuple[str, ...] = ()) -> TxnOutcome:
    context = TxnContext(
        table=table,
        index=TXN_INDEX,
        session_exists=lambda session: session in sessions,
        lock_delayed=lambda key: key == "delayed",
    )
    return run_txn(ops, context)


def test_a_failure_rolls_back_writes_deletes_and_the_table_index() -> None:
    table = table_with("a", "b")
    before = table.checkpoint()

    outcome = run(
        table,
        KVOp(verb="set", key="new", value=b"1"),
        KVOp(verb="delete", key="a"),
        KVOp(verb="check-index", key="b", index=999),
    )

    assert not outcome.ok
    assert outcome.errors == (
        (2, 'failed index check for key "b", current modify index 11 != 999'),
    )
    assert table.checkpoint() == before
    assert table.key_version("a") == before[0]["a"].modify_index


def test_all_writes_take_the_transactions_index_and_later_ops_see_them() -> None:
    table = table_with("a")

    outcome = run(
        table,
        KVOp(verb="set", key="x", value=b"1"),
        KVOp(verb="cas", key="x", value=b"2", index=TXN_INDEX),
        KVOp(verb="delete", key="a"),
        KVOp(verb="get", key="x"),
    )

    assert outcome.ok
    assert [(p.key, p.value, p.modify_index) for p in outcome.results] == [
        ("x", b"", TXN_INDEX),
        ("x", b"", TXN_INDEX),
        ("x", b"2", TXN_INDEX),
    ]
    assert table.index == TXN_INDEX
    assert table.key_version("a") == TXN_INDEX  # the tombstone


@pytest.mark.parametrize(
    ("op", "what"),
    [
        pytest.param(KVOp(verb="get", key=""), "Must provide key", id="empty-key"),
        pytest.param(
            KVOp(verb="lock", key="delayed", session="s"),
            'failed to lock key "delayed" due to lock delay',
            id="lock-delay",
        ),
        pytest.param(KVOp(verb="lock", key="k"), "missing session", id="lock-no-session"),
        pytest.param(
            KVOp(verb="lock", key="k", session="ghost"), 'invalid session "ghost"', id="lock-ghost"
        ),
        pytest.param(
            KVOp(verb="unlock", key="a", session="s"),
            'failed to unlock key "a", lock isn\'t held, or is held by another session',
            id="unlock-not-held",
        ),
        pytest.param(
            KVOp(verb="cas", key="a", index=0),
            'failed to set key "a", index is stale',
            id="cas-exists",
        ),
        pytest.param(KVOp(verb="check-not-exists", key="a"), 'key "a" exists', id="exists"),
        pytest.param(KVOp(verb="get", key="zz"), 'key "zz" doesn\'t exist', id="get-missing"),
        pytest.param(
            KVOp(verb="check-session", key="a", session="s"),
            'failed session check for key "a", current session "" != "s"',
            id="check-session-unlocked",
        ),
        pytest.param(KVOp(verb="GET", key="a"), 'unknown KV verb "GET"', id="verbs-are-lowercase"),
    ],
)
def test_a_failing_operation_reports_consuls_reason(op: KVOp, what: str) -> None:
    table = table_with("a")

    outcome = run(table, op, sessions=("s",))

    assert outcome.errors == ((0, what),)
    assert outcome.results == ()


def test_lock_then_check_session_in_one_transaction() -> None:
    table = table_with()

    outcome = run(
        table,
        KVOp(verb="lock", key="leader", value=b"me", session="s"),
        KVOp(verb="check-session", key="leader", session="s"),
        sessions=("s",),
    )

    assert outcome.ok
    assert [(p.session, p.lock_index) for p in outcome.results] == [("s", 1), ("s", 1)]


def test_a_read_only_transaction_takes_no_index() -> None:
    table = table_with("a")

    outcome = run(table, KVOp(verb="get", key="a"), KVOp(verb="get-or-empty", key="missing"))

    assert outcome.ok
    assert outcome.results[1].key == "missing"
    assert outcome.results[1].value == b""
    assert table.index == 10
