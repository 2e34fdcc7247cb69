"""Records read from Consul: every field's type is checked; a bad one names the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest

from yolofleet.records import (
    GroupTarget,
    ModelPin,
    ModelRecord,
    NodePhase,
    NodeState,
    RecordInvalid,
    model_from_json,
    node_state_from_json,
    target_from_json,
    to_json,
)

NODE: dict[str, Any] = {"node_id": "n1", "group": "g", "phase": "serving", "model": "m"}
PIN1 = ModelPin(name="m1", sha256="ab" * 32, uri="file:///m1.pt", size=10)
PIN2 = ModelPin(name="m2", sha256="cd" * 32, uri="file:///m2.pt", size=20)
TARGET: dict[str, Any] = {
    "stable": asdict(PIN1),
    "canary": asdict(PIN2),
    "canary_nodes": ["n1"],
    "generation": 3,
}
MODEL: dict[str, Any] = {
    "name": "m1",
    "uri": "file:///m1.pt",
    "sha256": "ab" * 32,
    "size": 10,
    "class_names": ["circle", "square"],
    "input_size": 160,
    "created": 1.5,
    "metadata": {"epochs": 3, "tags": ["a"]},
}

Decoder = Callable[[bytes], object]


def with_field(base: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps(base | changes).encode()


@pytest.mark.parametrize(
    ("decode", "data", "reason"),
    [
        pytest.param(
            node_state_from_json,
            with_field(NODE, node_id=7),
            "field 'node_id' must be a string, got 7",
            id="node-id-int",
        ),
        pytest.param(
            node_state_from_json,
            with_field(NODE, node_id=["x"]),
            "field 'node_id' must be a string",
            id="node-id-list",
        ),
        pytest.param(node_state_from_json, b'["x"]', "must be a JSON object", id="node-array"),
        pytest.param(node_state_from_json, b'"x"', "must be a JSON object", id="node-string"),
        pytest.param(node_state_from_json, b"null", "must be a JSON object", id="node-null"),
        pytest.param(node_state_from_json, b"{nope", "not valid JSON", id="node-not-json"),
        pytest.param(node_state_from_json, b"\xff", "not valid JSON", id="node-not-utf8"),
        pytest.param(
            node_state_from_json,
            with_field(NODE, phase="dancing"),
            "field 'phase' must be one of 'waiting'",
            id="node-unknown-phase",
        ),
        pytest.param(
            node_state_from_json,
            with_field(NODE, generation=True),
            "field 'generation' must be an integer, got true",
            id="node-generation-bool",
        ),
        pytest.param(
            node_state_from_json,
            with_field(NODE, model=5),
            "field 'model' must be a string or null, got 5",
            id="node-model-int",
        ),
        pytest.param(
            node_state_from_json,
            b'{"node_id": "n1", "group": "g", "phase": "serving", "updated": NaN}',
            "NaN is not a number JSON allows",
            id="node-updated-nan",
        ),
        pytest.param(
            node_state_from_json,
            b'{"node_id": "n1", "group": "g", "phase": "serving", "started": Infinity}',
            "Infinity is not a number JSON allows",
            id="node-started-infinity",
        ),
        pytest.param(
            node_state_from_json,
            with_field(NODE, started="yesterday"),
            "field 'started' must be a number",
            id="node-started-string",
        ),
        pytest.param(
            node_state_from_json,
            json.dumps({"node_id": "n1", "phase": "serving"}).encode(),
            "missing field 'group'",
            id="node-missing-group",
        ),
        pytest.param(
            target_from_json,
            with_field(TARGET, generation="3"),
            "field 'generation' must be an integer, got \"3\"",
            id="target-generation-string",
        ),
        pytest.param(
            target_from_json,
            with_field(TARGET, generation=3.0),
            "field 'generation' must be an integer, got 3.0",
            id="target-generation-float",
        ),
        pytest.param(
            target_from_json,
            with_field(TARGET, canary_nodes=["n1", 2]),
            "field 'canary_nodes[1]' must be a string, got 2",
            id="target-canary-node-int",
        ),
        pytest.param(
            target_from_json,
            with_field(TARGET, canary_nodes="n1"),
            "field 'canary_nodes' must be a list",
            id="target-canary-nodes-string",
        ),
        pytest.param(
            target_from_json,
            with_field(TARGET, stable={"name": "m1"}),
            "missing field 'stable.sha256'",
            id="target-stable-pin-incomplete",
        ),
        pytest.param(
            target_from_json,
            with_field(TARGET, stable="m1"),
            "names model 'm1' without a pin",
            id="target-stable-name-from-before-pins",
        ),
        pytest.param(target_from_json, b"[]", "must be a JSON object", id="target-array"),
        pytest.param(
            model_from_json,
            with_field(MODEL, class_names=[1, 2]),
            "field 'class_names[0]' must be a string, got 1",
            id="model-class-names-ints",
        ),
        pytest.param(
            model_from_json,
            with_field(MODEL, class_names=None),
            "field 'class_names' must be a list, got null",
            id="model-class-names-null",
        ),
        pytest.param(
            model_from_json,
            with_field(MODEL, size="10"),
            "field 'size' must be an integer",
            id="model-size-string",
        ),
        pytest.param(
            model_from_json,
            with_field(MODEL, input_size=False),
            "field 'input_size' must be an integer, got false",
            id="model-input-size-bool",
        ),
        pytest.param(
            model_from_json,
            with_field(MODEL, created=True),
            "field 'created' must be a number, got true",
            id="model-created-bool",
        ),
        pytest.param(
            model_from_json,
            with_field(MODEL, metadata=["a"]),
            "field 'metadata' must be an object",
            id="model-metadata-list",
        ),
        pytest.param(
            model_from_json,
            with_field(MODEL, parent=1),
            "field 'parent' must be a string or null",
            id="model-parent-int",
        ),
        pytest.param(
            model_from_json,
            b'{"name": "m1", "uri": "u", "sha256": "s", "size": 1, "class_names": [],'
            b' "input_size": 1, "metadata": {"loss": NaN}}',
            "NaN is not a number JSON allows",
            id="model-nested-nan",
        ),
        pytest.param(
            model_from_json,
            json.dumps({k: v for k, v in MODEL.items() if k != "sha256"}).encode(),
            "missing field 'sha256'",
            id="model-missing-sha256",
        ),
    ],
)
def test_a_malformed_record_is_refused_naming_the_field(
    decode: Decoder, data: bytes, reason: str
) -> None:
    with pytest.raises(RecordInvalid) as caught:
        decode(data)

    assert reason in str(caught.value)


def test_every_record_reads_back_from_its_own_json() -> None:
    model = model_from_json(with_field(MODEL))
    target = GroupTarget(stable=PIN1, canary=PIN2, canary_nodes=("n1", "n2"), generation=4)
    node = NodeState(node_id="n1", group="g", phase=NodePhase.LOADING, started=2.5)

    assert model_from_json(to_json(model)) == model
    assert target_from_json(to_json(target)) == target
    assert node_state_from_json(to_json(node)) == node


def test_fields_get_their_types_and_defaults() -> None:
    model = model_from_json(with_field(MODEL, created=7))
    node = node_state_from_json(with_field(NODE))

    assert isinstance(model, ModelRecord)
    assert model.class_names == ("circle", "square")
    assert model.created == 7.0
    assert isinstance(model.created, float)
    assert model.format == "pt"
    assert node.phase is NodePhase.SERVING
    assert node.generation == 0


def test_fields_a_newer_writer_added_are_ignored() -> None:
    target = target_from_json(with_field(TARGET, signed_by={"key": "x"}))

    assert target == GroupTarget(stable=PIN1, canary=PIN2, canary_nodes=("n1",), generation=3)
