"""Parsing ``/v1/txn`` bodies as Consul's HTTP layer does: what is refused before running."""

from __future__ import annotations

import base64
import json

import pytest

from yolofleet.consul.devtxn import MAX_TXN_OPS, TxnBodyError, parse_txn
from yolofleet.consul.kvtxn import KVOp


def test_field_names_are_matched_without_case_and_values_decoded() -> None:
    body = json.dumps(
        [
            {
                "kv": {
                    "verb": "set",
                    "key": "k",
                    "value": base64.b64encode(b"v").decode(),
                    "FLAGS": 3,
                }
            },
            {"KV": {"Verb": "check-index", "Key": "k", "Index": 7, "Value": None}},
        ]
    ).encode()

    ops = parse_txn(body)

    assert ops == [
        KVOp(verb="set", key="k", value=b"v", flags=3),
        KVOp(verb="check-index", key="k", index=7),
    ]


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        pytest.param(b"[", 400, "Failed to parse body", id="truncated"),
        pytest.param(b"{}", 400, "expected a JSON array", id="object"),
        pytest.param(b"[7]", 400, "operation 0 must be a JSON object", id="number-op"),
        pytest.param(b'[{"KV": []}]', 400, "operation 0 KV must be a JSON object", id="kv-list"),
        pytest.param(
            b'[{"Node": {"Verb": "get"}}]', 400, "Node operations are not supported", id="node-op"
        ),
        pytest.param(b"[{}]", 400, "an empty operations are not supported", id="empty-op"),
        pytest.param(
            b'[{"KV": {"Verb": "set", "Key": "k", "Flags": true}}]',
            400,
            "Flags must be an unsigned integer",
            id="bool-flags",
        ),
        pytest.param(
            b'[{"KV": {"Verb": "set", "Key": "k", "Index": 1.5}}]',
            400,
            "Index must be an unsigned integer",
            id="float-index",
        ),
        pytest.param(
            b'[{"KV": {"Verb": "set", "Key": "k", "Session": 1}}]',
            400,
            "Session must be a string",
            id="number-session",
        ),
        pytest.param(
            json.dumps([{"KV": {"Verb": "get", "Key": "k"}}] * (MAX_TXN_OPS + 1)).encode(),
            413,
            f"too many operations ({MAX_TXN_OPS + 1} > {MAX_TXN_OPS})",
            id="too-many-ops",
        ),
        pytest.param(b" " * (512 * 1024 + 1), 413, "Request body too large", id="body-too-large"),
    ],
)
def test_a_body_consul_refuses_before_running(body: bytes, status: int, text: str) -> None:
    with pytest.raises(TxnBodyError) as caught:
        parse_txn(body)

    assert caught.value.status == status
    assert text in str(caught.value)
