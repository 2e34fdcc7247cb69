"""The wire side of the dev server's ``PUT /v1/txn``: Consul's request body into :class:`KVOp`.

Follows Consul's HTTP layer: a body over the request limit is a 413; a body that is not a JSON
array of operations, or whose fields have the wrong JSON types (Go's decoder is strict about
them, and lenient about the case of field names), is a 400 "Failed to parse body"; more than
:data:`MAX_TXN_OPS` operations, or one value over 512 kB, is a 413. Verbs are not checked here:
Consul reports an unknown verb as a failed operation (409), and so does
:mod:`yolofleet.consul.kvtxn`. Only ``KV`` operations are supported; ``Node``, ``Service`` and
``Check`` operations are refused with a 400 saying so.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from yolofleet.consul.kvtxn import KVOp

MAX_TXN_OPS = 128
"""Consul's limit on operations per transaction (64 before Consul 1.8; 128 since)."""
MAX_TXN_BYTES = 512 * 1024
MAX_VALUE_SIZE = 512 * 1024
_UINT64 = 2**64


class TxnBodyError(Exception):
    """A transaction Consul's HTTP layer refuses before running it: ``status`` and a text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_txn(body: bytes) -> list[KVOp]:
    """The operations in a ``/v1/txn`` request body; :class:`TxnBodyError` if refused."""
    if len(body) > MAX_TXN_BYTES:
        raise TxnBodyError(413, f"Request body too large, max size: {MAX_TXN_BYTES} bytes")
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"invalid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise _bad(f"expected a JSON array of operations, got {_json_type(raw)}")
    if len(raw) > MAX_TXN_OPS:
        raise TxnBodyError(
            413, f"Transaction contains too many operations ({len(raw)} > {MAX_TXN_OPS})"
        )
    ops = [_op(position, item) for position, item in enumerate(raw)]
    for op in ops:
        if len(op.value) > MAX_VALUE_SIZE:
            raise TxnBodyError(
                413,
                f"Value for key {json.dumps(op.key)} is too large "
                f"({len(op.value)} > {MAX_VALUE_SIZE} bytes)",
            )
    return ops


def _bad(reason: str) -> TxnBodyError:
    return TxnBodyError(400, f"Failed to parse body: {reason}")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _fields(value: object, *, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be a JSON object, got {_json_type(value)}")
    return {str(name).lower(): field for name, field in value.items()}


def _op(position: int, item: object) -> KVOp:
    fields = _fields(item, where=f"operation {position}")
    unsupported = sorted({"node", "service", "check", "session"} & fields.keys())
    if unsupported or "kv" not in fields:
        kind = unsupported[0].capitalize() if unsupported else "an empty"
        raise _bad(f"operation {position}: {kind} operations are not supported by the dev Consul")
    kv = _fields(fields["kv"], where=f"operation {position} KV")
    where = f"operation {position} KV"
    return KVOp(
        verb=_string(kv, "verb", where=where),
        key=_string(kv, "key", where=where),
        value=_value(kv.get("value"), where=where),
        flags=_uint(kv, "flags", where=where),
        index=_uint(kv, "index", where=where),
        session=_string(kv, "session", where=where),
    )


def _string(kv: dict[str, Any], name: str, *, where: str) -> str:
    value = kv.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{where} {name.capitalize()} must be a string, got {_json_type(value)}")
    return value


def _uint(kv: dict[str, Any], name: str, *, where: str) -> int:
    value = kv.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _UINT64:
        raise _bad(f"{where} {name.capitalize()} must be an unsigned integer, got {value!r}")
    return value


def _value(value: object, *, where: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise _bad(f"{where} Value must be a base64 string, got {_json_type(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"failed to decode value: {exc}") from None
