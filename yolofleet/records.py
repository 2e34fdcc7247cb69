"""Typed records stored in Consul, and their JSON. Consul JSON is read and written only here.

Every ``from_json`` checks every field's type (:mod:`yolofleet.strictjson`: ``true`` is not an
integer, every list item is checked, ``NaN`` is refused, nested records too) and raises
``RecordInvalid`` with a sentence naming the field, so a malformed value is reported, never
half-used. Readers of many records skip the invalid ones and keep them as :class:`InvalidRecord`
(key and reason) to show, so one bad record never fails a tick or a listing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from yolofleet import strictjson

R = TypeVar("R")


class RecordInvalid(ValueError):
    """A stored value is not valid JSON for the record it should hold."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidRecord:
    """A stored value that was skipped because it is not a valid record, and why."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    """A registered model: where its artifact is, its digest and what it says about itself."""

    name: str
    uri: str
    sha256: str
    size: int
    format: str = "pt"
    class_names: tuple[str, ...]
    input_size: int
    task: str = "detect"
    created: float = 0.0
    parent: str | None = None
    notes: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    signature: str = ""

    @property
    def version(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupTarget:
    """What a node group should serve; nodes listed in ``canary_nodes`` serve ``canary``."""

    stable: str | None = None
    canary: str | None = None
    canary_nodes: tuple[str, ...] = ()
    generation: int = 0

    def model_for(self, node_id: str) -> str | None:
        """The model name this node should serve."""
        if self.canary is not None and node_id in self.canary_nodes:
            return self.canary
        return self.stable


class NodePhase(StrEnum):
    WAITING = "waiting"
    LOADING = "loading"
    SERVING = "serving"
    FAILED = "failed"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeState:
    """What a node reports about itself under ``nodes/<group>/<node-id>``."""

    node_id: str
    group: str
    phase: NodePhase
    model: str | None = None
    sha256: str | None = None
    generation: int = 0
    desired: str | None = None
    last_error: str = ""
    endpoint: str = ""
    device: str = ""
    started: float = 0.0
    updated: float = 0.0


def to_json(record: ModelRecord | GroupTarget | NodeState) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode()


def model_from_json(data: bytes) -> ModelRecord:
    return _decode(ModelRecord, data, what="model record")


def target_from_json(data: bytes) -> GroupTarget:
    return _decode(GroupTarget, data, what="group target")


def node_state_from_json(data: bytes) -> NodeState:
    return _decode(NodeState, data, what="node state")


def _decode(kind: type[R], data: bytes, *, what: str) -> R:
    """``data`` as a ``kind``, every field type-checked; ``RecordInvalid`` names what is wrong."""
    try:
        return strictjson.build(kind, strictjson.load_object(data, what=what), what=what)
    except strictjson.ShapeError as exc:
        raise RecordInvalid(str(exc)) from exc
