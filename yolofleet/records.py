"""Typed records stored in Consul, and their JSON. Consul JSON is read and written only here.

Every ``from_json`` raises ``RecordInvalid`` with a sentence naming the key's problem, so a
malformed value is reported, never half-used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

R = TypeVar("R")


class RecordInvalid(ValueError):
    """A stored value is not valid JSON for the record it should hold."""


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
    """What a node group should serve; nodes listed in ``canary_nodes`` serve ``canary``."""

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
    raw = _object(data, "model record")
    return _build(ModelRecord, raw, tuples=("class_names",), what="model record")


def target_from_json(data: bytes) -> GroupTarget:
    """A target whose ``stable``/``canary`` are pins. A target written before pins (model names)
    is refused with a reason: nodes keep their model until the control plane rewrites it.
    """
    raw = _object(data, "group target")
    for name in ("stable", "canary"):
        raw[name] = _pin(raw.get(name), f"group target field {name!r}")
    return _build(GroupTarget, raw, tuples=("canary_nodes",), what="group target")


def target_generation(data: bytes) -> int:
    """The ``generation`` of any stored target, even one ``target_from_json`` refuses (0 when
    there is none), so a rewrite of an unreadable target never moves the generation back.
    """
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return 0
    value = raw.get("generation") if isinstance(raw, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def pin_from_json(raw: object, where: str) -> ModelPin:
    """A pin from its JSON object; raises ``RecordInvalid`` naming ``where``."""
    pin = _pin(raw, where)
    if pin is None:
        raise RecordInvalid(f"{where} must be a model pin, got null")
    return pin


def _pin(raw: object, where: str) -> ModelPin | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raise RecordInvalid(
            f"{where} names model {raw!r} without a pin (written before targets carried pins); "
            "waiting for the control plane to rewrite it"
        )
    if not isinstance(raw, dict):
        raise RecordInvalid(f"{where} must be a model pin object, got {type(raw).__name__}")
    expected = {"name": str, "sha256": str, "uri": str, "format": str, "size": int}
    for name, kind in expected.items():
        value = raw.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            raise RecordInvalid(f"{where} field {name!r} must be a non-empty {kind.__name__}")
    return ModelPin(**{name: raw[name] for name in expected})


def node_state_from_json(data: bytes) -> NodeState:
    raw = _object(data, "node state")
    try:
        raw["phase"] = NodePhase(str(raw.get("phase")))
    except ValueError as exc:
        raise RecordInvalid(f"node state has an unknown phase {raw.get('phase')!r}") from exc
    return _build(NodeState, raw, tuples=(), what="node state")


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordInvalid(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RecordInvalid(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _build(kind: type[R], raw: dict[str, Any], *, tuples: tuple[str, ...], what: str) -> R:
    known = set(kind.__dataclass_fields__)  # type: ignore[attr-defined]
    values = {key: value for key, value in raw.items() if key in known}  # newer fields: ignored
    for name in tuples:
        if name in values:
            if not isinstance(values[name], list):
                raise RecordInvalid(f"{what} field {name!r} must be a list")
            values[name] = tuple(values[name])
    try:
        record = kind(**values)
    except TypeError as exc:
        raise RecordInvalid(f"{what} is missing or has wrong fields: {exc}") from exc
    _check_types(record, what)
    return record


def _check_types(record: object, what: str) -> None:
    if isinstance(record, ModelRecord):
        expected = {"name": str, "uri": str, "sha256": str, "size": int, "input_size": int}
        for name, kind in expected.items():
            value = getattr(record, name)
            if not isinstance(value, kind):
                raise RecordInvalid(f"{what} field {name!r} must be {kind.__name__}, got {value!r}")
    if isinstance(record, GroupTarget):
        for name in ("stable", "canary"):
            value = getattr(record, name)
            if value is not None and not isinstance(value, ModelPin):
                raise RecordInvalid(f"{what} field {name!r} must be a model pin or null")
        if not isinstance(record.generation, int):
            raise RecordInvalid(f"{what} field 'generation' must be an integer")
