"""Typed Consul KV transactions: the operations, the outcome, and their ``/v1/txn`` JSON.

Build operations with the constructors and hand them to
:meth:`~yolofleet.consul.client.ConsulClient.txn`::

    result = client.txn([
        TxnOp.check_session("yolofleet/leader", session=session_id),
        TxnOp.cas("yolofleet/rollouts/g", doc, index=doc_index),
        TxnOp.set("yolofleet/groups/g/target", target),
    ])
    if not result.ok:
        ...  # nothing was written; result.errors says which operations failed and why

Consul applies all of them or none. A rolled-back transaction is an answer, not an error:
``ok`` is ``False`` and ``errors`` holds ``TxnError(op_index, what)`` with Consul's own text.
``results`` holds one :class:`KVPair` per operation that returns one, in order: reads
(``get``) carry the value; writes and checks carry the entry's indexes without the value;
deletes and ``check-not-exists`` return nothing. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from yolofleet.consul.model import KVPair

_UINT64 = 2**64


class TxnVerb(StrEnum):
    """The KV verbs of Consul's transaction API that :class:`TxnOp` can build."""

    GET = "get"
    SET = "set"
    CAS = "cas"
    LOCK = "lock"
    UNLOCK = "unlock"
    CHECK_INDEX = "check-index"
    CHECK_SESSION = "check-session"
    CHECK_NOT_EXISTS = "check-not-exists"
    DELETE = "delete"
    DELETE_CAS = "delete-cas"


_WITH_VALUE = frozenset({TxnVerb.SET, TxnVerb.CAS, TxnVerb.LOCK, TxnVerb.UNLOCK})
_WITH_INDEX = frozenset({TxnVerb.CAS, TxnVerb.CHECK_INDEX, TxnVerb.DELETE_CAS})
_WITH_SESSION = frozenset({TxnVerb.LOCK, TxnVerb.UNLOCK, TxnVerb.CHECK_SESSION})


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOp:
    """One KV operation of a transaction; build it with the constructors below."""

    verb: TxnVerb
    key: str
    value: bytes = b""
    flags: int = 0
    index: int = 0
    session: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError(f"a {self.verb} operation needs a key")
        for name, number in (("flags", self.flags), ("index", self.index)):
            if not 0 <= number < _UINT64:
                raise ValueError(f"{name} must be an unsigned 64-bit integer, got {number}")
        if self.verb in _WITH_SESSION and not self.session:
            raise ValueError(f"a {self.verb} operation on {self.key} needs a session")

    @classmethod
    def get(cls, key: str) -> TxnOp:
        """Read ``key`` (with its value); fails the transaction if the key does not exist."""
        return cls(verb=TxnVerb.GET, key=key)

    @classmethod
    def set(cls, key: str, value: bytes, *, flags: int = 0) -> TxnOp:
        """Write ``key`` unconditionally (keeping any lock on it)."""
        return cls(verb=TxnVerb.SET, key=key, value=value, flags=flags)

    @classmethod
    def cas(cls, key: str, value: bytes, *, index: int, flags: int = 0) -> TxnOp:
        """Write ``key`` only if its ModifyIndex is ``index`` (0: only if it does not exist)."""
        return cls(verb=TxnVerb.CAS, key=key, value=value, index=index, flags=flags)

    @classmethod
    def lock(cls, key: str, value: bytes, *, session: str, flags: int = 0) -> TxnOp:
        """Acquire ``key`` for ``session`` and write it; fails if another session holds it."""
        return cls(verb=TxnVerb.LOCK, key=key, value=value, session=session, flags=flags)

    @classmethod
    def unlock(cls, key: str, value: bytes, *, session: str, flags: int = 0) -> TxnOp:
        """Release ``key`` held by ``session`` and write it; fails unless ``session`` holds it."""
        return cls(verb=TxnVerb.UNLOCK, key=key, value=value, session=session, flags=flags)

    @classmethod
    def check_index(cls, key: str, *, index: int) -> TxnOp:
        """Fail the transaction unless ``key`` exists with ModifyIndex ``index``."""
        return cls(verb=TxnVerb.CHECK_INDEX, key=key, index=index)

    @classmethod
    def check_session(cls, key: str, *, session: str) -> TxnOp:
        """Fail the transaction unless ``key`` exists and is locked by ``session``."""
        return cls(verb=TxnVerb.CHECK_SESSION, key=key, session=session)

    @classmethod
    def check_not_exists(cls, key: str) -> TxnOp:
        """Fail the transaction if ``key`` exists."""
        return cls(verb=TxnVerb.CHECK_NOT_EXISTS, key=key)

    @classmethod
    def delete(cls, key: str) -> TxnOp:
        """Delete ``key`` (deleting a missing key succeeds)."""
        return cls(verb=TxnVerb.DELETE, key=key)

    @classmethod
    def delete_cas(cls, key: str, *, index: int) -> TxnOp:
        """Delete ``key`` only if its ModifyIndex is ``index`` (a missing key counts as deleted)."""
        return cls(verb=TxnVerb.DELETE_CAS, key=key, index=index)


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnError:
    """One failed operation of a rolled-back transaction: its position and Consul's reason."""

    op_index: int
    what: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnResult:
    """A transaction's outcome: applied (``ok``, ``results``) or rolled back (``errors``)."""

    ok: bool
    results: tuple[KVPair, ...] = ()
    errors: tuple[TxnError, ...] = ()

    def pair(self, key: str) -> KVPair | None:
        """The last result for ``key`` (e.g. a written key's new ModifyIndex), or ``None``."""
        return next((pair for pair in reversed(self.results) if pair.key == key), None)

    def describe(self) -> str:
        """The errors as one sentence, e.g. for a log line or an exception message."""
        return "; ".join(f"operation {e.op_index}: {e.what}" for e in self.errors) or "applied"


def ops_json(ops: Sequence[TxnOp]) -> list[dict[str, Any]]:
    """The request body of ``PUT /v1/txn`` for ``ops``."""
    body: list[dict[str, Any]] = []
    for op in ops:
        kv: dict[str, Any] = {"Verb": op.verb.value, "Key": op.key}
        if op.verb in _WITH_VALUE:
            kv["Value"] = base64.b64encode(op.value).decode("ascii")
            kv["Flags"] = op.flags
        if op.verb in _WITH_INDEX:
            kv["Index"] = op.index
        if op.verb in _WITH_SESSION:
            kv["Session"] = op.session
        body.append({"KV": kv})
    return body


def result_from_json(doc: object, *, applied: bool) -> TxnResult:
    """Parse a 200 (``applied``) or 409 reply body; ``ValueError`` if it is not Consul's shape."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    results, errors = doc.get("Results") or [], doc.get("Errors") or []
    if not isinstance(results, list) or not isinstance(errors, list):
        raise ValueError("Results and Errors must be lists or null")
    if applied == bool(errors):
        raise ValueError(f"an {'applied' if applied else 'rolled-back'} reply with errors={errors}")
    return TxnResult(
        ok=applied,
        results=tuple(
            _pair(item["KV"]) for item in results if isinstance(item, Mapping) and "KV" in item
        ),
        errors=tuple(_error(item) for item in errors),
    )


def _pair(data: Any) -> KVPair:
    try:
        value = data.get("Value")
        return KVPair(
            key=str(data["Key"]),
            value=base64.b64decode(value, validate=True) if value else b"",
            flags=int(data.get("Flags") or 0),
            create_index=int(data.get("CreateIndex") or 0),
            modify_index=int(data.get("ModifyIndex") or 0),
            lock_index=int(data.get("LockIndex") or 0),
            session=str(data.get("Session") or "") or None,
        )
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"unreadable KV result {data!r}: {exc}") from exc


def _error(item: Any) -> TxnError:
    if not isinstance(item, Mapping) or not isinstance(item.get("OpIndex"), int):
        raise ValueError(f"unreadable transaction error {item!r}")
    return TxnError(op_index=item["OpIndex"], what=str(item.get("What") or ""))
