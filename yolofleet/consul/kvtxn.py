"""Consul's KV transactions (``/v1/txn``) over the dev server's KV table, all or nothing.

:func:`run_txn` is called by :class:`~yolofleet.consul.kvstore.KVStore` under its lock. It follows
Consul's two passes: pre-checks first (every key named, no ``lock`` of a lock-delayed key), and
only if they all pass, every operation in order, each one seeing the writes of those before it.
Every failing operation is reported with its position; if any failed, the table is rolled back
and nothing is applied. Every write of one transaction takes the one ``index`` passed in.

Results follow Consul: ``get``, ``get-or-empty`` and ``get-tree`` return entries with their
values; writes and checks return the entry without its value; deletes and ``check-not-exists``
return nothing. Error texts are Consul's, so clients can match on them either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from yolofleet.consul.kvtable import KVTable
from yolofleet.consul.model import KVPair


@dataclass(frozen=True, slots=True, kw_only=True)
class KVOp:
    """One KV operation as the server received it; ``verb`` is unchecked (Consul checks late)."""

    verb: str
    key: str
    value: bytes = b""
    flags: int = 0
    index: int = 0
    session: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOutcome:
    """What a transaction did: results when it was applied, else ``(op_index, what)`` errors."""

    results: tuple[KVPair, ...] = ()
    errors: tuple[tuple[int, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnContext:
    """What operations need beyond the table: the index to write at, sessions and lock delays."""

    table: KVTable
    index: int
    session_exists: Callable[[str], bool]
    lock_delayed: Callable[[str], bool]


class _OpFailed(Exception):
    """One operation failed; its text is the ``What`` Consul reports."""


def _q(text: str) -> str:
    """A string quoted as Go's ``%q`` does for printable text."""
    return json.dumps(text, ensure_ascii=False)


def run_txn(ops: Sequence[KVOp], context: TxnContext) -> TxnOutcome:
    """Apply ``ops`` to ``context.table`` at ``context.index``, or nothing when any op fails."""
    errors = _pre_check(ops, context)
    if errors:
        return TxnOutcome(errors=errors)
    checkpoint = context.table.checkpoint()
    results: list[KVPair] = []
    failed: list[tuple[int, str]] = []
    for position, op in enumerate(ops):
        handler = _HANDLERS.get(op.verb)
        try:
            if handler is None:
                raise _OpFailed(f"unknown KV verb {_q(op.verb)}")
            results.extend(handler(op, context))
        except _OpFailed as exc:
            failed.append((position, str(exc)))
    if failed:
        context.table.rollback(checkpoint)
        return TxnOutcome(errors=tuple(failed))
    return TxnOutcome(results=tuple(results))


def _pre_check(ops: Sequence[KVOp], context: TxnContext) -> tuple[tuple[int, str], ...]:
    errors: list[tuple[int, str]] = []
    for position, op in enumerate(ops):
        if not op.key and op.verb != "delete-tree":
            errors.append((position, "Must provide key"))
        elif op.verb == "lock" and context.lock_delayed(op.key):
            errors.append((position, f"failed to lock key {_q(op.key)} due to lock delay"))
    return tuple(errors)


def _blank(entry: KVPair | None) -> list[KVPair]:
    return [] if entry is None else [replace(entry, value=b"")]


def _set(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    ctx.table.set(op.key, op.value, flags=op.flags, at=ctx.index)
    return _blank(ctx.table.get(op.key))


def _cas(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    existing = ctx.table.get(op.key)
    if (existing.modify_index if existing else 0) != op.index:
        raise _OpFailed(f"failed to set key {_q(op.key)}, index is stale")
    return _set(op, ctx)


def _lock(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    if not op.session:
        raise _OpFailed("missing session")
    if not ctx.session_exists(op.session):
        raise _OpFailed(f"invalid session {_q(op.session)}")
    existing = ctx.table.get(op.key)
    if existing is None:
        lock_index = 1
    elif existing.session == op.session:
        lock_index = existing.lock_index
    elif existing.session:
        raise _OpFailed(f"failed to lock key {_q(op.key)}, lock is already held")
    else:
        lock_index = existing.lock_index + 1
    table = ctx.table
    table.set(
        op.key, op.value, flags=op.flags, session=op.session, lock_index=lock_index, at=ctx.index
    )
    return _blank(table.get(op.key))


def _unlock(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    if not op.session:
        raise _OpFailed("missing session")
    existing = ctx.table.get(op.key)
    if existing is None or existing.session != op.session:
        raise _OpFailed(
            f"failed to unlock key {_q(op.key)}, lock isn't held, or is held by another session"
        )
    ctx.table.set(op.key, op.value, flags=op.flags, session=None, at=ctx.index)
    return _blank(ctx.table.get(op.key))


def _get(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    entry = ctx.table.get(op.key)
    if entry is None:
        raise _OpFailed(f"key {_q(op.key)} doesn't exist")
    return [entry]


def _get_or_empty(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    entry = ctx.table.get(op.key)
    if entry is None:
        entry = KVPair(
            key=op.key, flags=op.flags, modify_index=op.index, session=op.session or None
        )
    return [entry]


def _get_tree(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    return list(ctx.table.under(op.key))


def _check_index(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    entry = ctx.table.get(op.key)
    if entry is None:
        raise _OpFailed(f"failed to check index, key {_q(op.key)} doesn't exist")
    if entry.modify_index != op.index:
        raise _OpFailed(
            f"failed index check for key {_q(op.key)}, "
            f"current modify index {entry.modify_index} != {op.index}"
        )
    return _blank(entry)


def _check_session(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    entry = ctx.table.get(op.key)
    if entry is None:
        raise _OpFailed(f"failed to check session, key {_q(op.key)} doesn't exist")
    if (entry.session or "") != op.session:
        raise _OpFailed(
            f"failed session check for key {_q(op.key)}, "
            f"current session {_q(entry.session or '')} != {_q(op.session)}"
        )
    return _blank(entry)


def _check_not_exists(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    if ctx.table.get(op.key) is not None:
        raise _OpFailed(f"key {_q(op.key)} exists")
    return []


def _delete(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    ctx.table.remove((op.key,), ctx.index)
    return []


def _delete_tree(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    ctx.table.remove(tuple(entry.key for entry in ctx.table.under(op.key)), ctx.index)
    return []


def _delete_cas(op: KVOp, ctx: TxnContext) -> list[KVPair]:
    entry = ctx.table.get(op.key)
    if entry is not None and entry.modify_index != op.index:
        raise _OpFailed(f"failed to delete key {_q(op.key)}, index is stale")
    return _delete(op, ctx)


_HANDLERS: dict[str, Callable[[KVOp, TxnContext], list[KVPair]]] = {
    "set": _set,
    "cas": _cas,
    "lock": _lock,
    "unlock": _unlock,
    "get": _get,
    "get-or-empty": _get_or_empty,
    "get-tree": _get_tree,
    "check-index": _check_index,
    "check-session": _check_session,
    "check-not-exists": _check_not_exists,
    "delete": _delete,
    "delete-tree": _delete_tree,
    "delete-cas": _delete_cas,
}
