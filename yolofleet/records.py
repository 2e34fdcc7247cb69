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
class ModelPin:
    """One model resolved once from the registry, when a rollout is requested: what a node
    fetches (``uri``), the digest it must have, and its format and size. Targets carry pins, so
    nodes act on them without reading the registry, and a later registry change moves nothing.
    """

    name: str
    sha256: str
    uri: str
    format: str = "pt"
    size: int = 0

    def __post_init__(self) -> None:
        for name in ("name", "sha256", "uri"):
            if not getattr(self, name):
                raise ValueError(f"a model pin needs a non-empty {name}")

    @classmethod
    def of(cls, record: ModelRecord) -> ModelPin:
        return cls(
            name=record.name,
            sha256=record.sha256,
            uri=record.uri,
            format=record.format,
            size=record.size,
        )

    @property
    def version(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupTarget:
    """What a node group should serve: pins; nodes listed in ``canary_nodes`` serve ``canary``."""

    stable: ModelPin | None = None
    canary: ModelPin | None = None
    canary_nodes: tuple[str, ...] = ()
    generation: int = 0

    def model_for(self, node_id: str) -> ModelPin | None:
        """The model this node should serve."""
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
    """A target whose ``stable``/``canary`` are pins. A target written before pins (model names)
    is refused with a reason: nodes keep their model until the control plane rewrites it.
    """
    try:
        raw = strictjson.load_object(data, what="group target")
        for name in ("stable", "canary"):
            _refuse_name(raw.get(name), f"group target field {name!r}")
        return strictjson.build(GroupTarget, raw, what="group target")
    except strictjson.ShapeError as exc:
        raise RecordInvalid(str(exc)) from exc


def target_generation(data: bytes) -> int:
    """The ``generation`` of any stored target, even one ``target_from_json`` refuses (0 when
    there is none), so a rewrite of an unreadable target never moves the generation back.
    """
    try:
        raw = json.loads(data)
    except ValueError:
        return 0
    value = raw.get("generation") if isinstance(raw, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def pin_from_json(raw: object, where: str) -> ModelPin:
    """A pin from its JSON object (e.g. inside a rollout document); ``RecordInvalid`` names
    ``where`` and the field."""
    _refuse_name(raw, where)
    if not isinstance(raw, dict):
        raise RecordInvalid(f"{where} must be a model pin object, got {raw!r}")
    try:
        return strictjson.build(ModelPin, raw, what=where)
    except strictjson.ShapeError as exc:
        raise RecordInvalid(str(exc)) from exc


def _refuse_name(raw: object, where: str) -> None:
    if isinstance(raw, str):
        raise RecordInvalid(
            f"{where} names model {raw!r} without a pin (written before targets carried pins); "
            "waiting for the control plane to rewrite it"
        )


def node_state_from_json(data: bytes) -> NodeState:
    return _decode(NodeState, data, what="node state")


def _decode(kind: type[R], data: bytes, *, what: str) -> R:
    """``data`` as a ``kind``, every field type-checked; ``RecordInvalid`` names what is wrong."""
    try:
        return strictjson.build(kind, strictjson.load_object(data, what=what), what=what)
    except strictjson.ShapeError as exc:
        raise RecordInvalid(str(exc)) from exc
