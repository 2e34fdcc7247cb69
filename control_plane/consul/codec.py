"""The rollout document's JSON: ``RolloutDoc`` (``core/document.py``) to bytes and back.

Imported only by the Consul store, so Consul JSON appears at one edge. ``decode_doc`` checks
every field's type and raises ``RecordCorrupt`` with a sentence naming the first bad field, so a
malformed document is reported, never half-used. Enums travel as their values, tuples as lists;
``GroupState.revision`` is not stored (it is the key's ModifyIndex).

Documents written before intents had ids and before pins still decode: a lone ``intent`` (and
``undo_to``) becomes a pending ``IntentRequest`` with id ``legacy-<revision>``, and a state
without ``pins`` has none; the controller resolves the missing pins once from the registry on
its next tick and writes them back (``Controller`` ``_migrate``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, TypeVar

from control_plane.core.analysis import Check, CheckResult, Outcome
from control_plane.core.document import RolloutDoc
from control_plane.core.errors import RecordCorrupt
from control_plane.core.spec import RolloutSpec, Step, Thresholds
from control_plane.core.state import (
    GroupState,
    HistoryEntry,
    Intent,
    IntentOutcome,
    IntentRequest,
    Phase,
    Result,
)
from yolofleet.records import ModelPin, RecordInvalid, pin_from_json

FORMAT = 2

E = TypeVar("E", Phase, Intent, Check, Outcome, Result)


def encode_doc(doc: RolloutDoc) -> bytes:
    state = asdict(doc.state)
    del state["revision"]
    body = {
        "format": FORMAT,
        "spec": asdict(doc.spec) if doc.spec is not None else None,
        "state": state,
        "pending": asdict(doc.pending) if doc.pending is not None else None,
        "outcomes": [asdict(outcome) for outcome in doc.outcomes],
        "epoch": doc.epoch,
    }
    return json.dumps(body, sort_keys=True).encode()


def decode_doc(data: bytes, *, revision: int) -> RolloutDoc:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordCorrupt(f"rollout document is not valid JSON: {exc}") from exc
    body = _Fields(raw, "rollout document")
    spec = body.obj("spec", optional=True)
    pending = body.obj("pending", optional=True)
    return RolloutDoc(
        spec=_spec(spec) if spec is not None else None,
        state=_state(body.require_obj("state"), revision=revision),
        pending=_request(pending) if pending is not None else _legacy_intent(body, revision),
        outcomes=tuple(_outcome(o) for o in body.objs("outcomes", missing=True)),
        epoch=body.opt_text("epoch"),
    )


def _legacy_intent(body: _Fields, revision: int) -> IntentRequest | None:
    """A format-1 document's lone ``intent`` (and ``undo_to``), as a pending request."""
    intent = body.opt_text("intent")
    if intent is None:
        return None
    return IntentRequest(
        id=f"legacy-{revision}",
        intent=body.enum(Intent, intent, "intent"),
        requested_at=0.0,
        undo_to=body.opt_text("undo_to"),
    )


def _request(raw: _Fields) -> IntentRequest:
    spec = raw.obj("spec", optional=True)
    pin = raw.raw("pin")
    return IntentRequest(
        id=raw.text("id"),
        intent=raw.enum(Intent, raw.text("intent"), "intent"),
        requested_at=raw.real("requested_at"),
        undo_to=raw.opt_text("undo_to"),
        spec=_spec(spec) if spec is not None else None,
        pin=_pin(pin, f"{raw.where} pin") if pin is not None else None,
    )


def _outcome(raw: _Fields) -> IntentOutcome:
    return IntentOutcome(
        id=raw.text("id"),
        intent=raw.enum(Intent, raw.text("intent"), "intent"),
        result=raw.enum(Result, raw.text("result"), "result"),
        detail=raw.text("detail"),
        at=raw.real("at"),
        by=raw.opt_text("by"),
    )


def _pin(raw: object, where: str) -> ModelPin:
    try:
        return pin_from_json(raw, where)
    except RecordInvalid as exc:
        raise RecordCorrupt(str(exc)) from exc


def _spec(raw: _Fields) -> RolloutSpec:
    thresholds = raw.require_obj("thresholds")
    return RolloutSpec(
        group=raw.text("group"),
        target=raw.text("target"),
        steps=tuple(
            Step(canary_percent=s.whole("canary_percent"), hold_s=s.real("hold_s"))
            for s in raw.objs("steps")
        ),
        # A threshold added after the document was written takes its default.
        thresholds=Thresholds(
            **{
                name: thresholds.number(name)
                for name in Thresholds.__dataclass_fields__
                if thresholds.has(name)
            }
        ),
        created=raw.real("created"),
    )


def _state(raw: _Fields, *, revision: int) -> GroupState:
    return GroupState(
        group=raw.text("group"),
        stable=raw.opt_text("stable"),
        previous_stable=raw.opt_text("previous_stable"),
        canary=raw.opt_text("canary"),
        canary_nodes=raw.texts("canary_nodes"),
        phase=raw.enum(Phase, raw.text("phase"), "phase"),
        step_index=raw.whole("step_index"),
        step_started_at=raw.real("step_started_at"),
        phase_since=raw.real("phase_since"),
        window_started_at=raw.real("window_started_at"),
        reason=raw.text("reason"),
        revision=revision,
        verdicts=tuple(_check(c) for c in raw.objs("verdicts")),
        failing_assessments=raw.whole("failing_assessments", missing=0),
        history=tuple(_history(h) for h in raw.objs("history")),
        pins=tuple(
            _pin(p, f"{raw.where} pins[{i}]") for i, p in enumerate(raw.array("pins", missing=True))
        ),
        stranded=raw.texts("stranded") if raw.has("stranded") else (),
    )


def _check(raw: _Fields) -> CheckResult:
    return CheckResult(
        name=raw.enum(Check, raw.text("name"), "name"),
        outcome=raw.enum(Outcome, raw.text("outcome"), "outcome"),
        value=raw.opt_real("value"),
        baseline_value=raw.opt_real("baseline_value"),
        score=raw.opt_real("score"),
        threshold=raw.real("threshold"),
        canary_n=raw.whole("canary_n"),
        baseline_n=raw.whole("baseline_n"),
        reason=raw.text("reason"),
    )


def _history(raw: _Fields) -> HistoryEntry:
    return HistoryEntry(
        target=raw.text("target"),
        stable_before=raw.opt_text("stable_before"),
        stable_after=raw.opt_text("stable_after"),
        outcome=raw.enum(Phase, raw.text("outcome"), "outcome"),
        reason=raw.text("reason"),
        started_at=raw.real("started_at"),
        ended_at=raw.real("ended_at"),
    )


class _Fields:
    """Typed access to one JSON object's fields; every mistake names ``where`` and the field."""

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise RecordCorrupt(f"{where} must be a JSON object, got {type(raw).__name__}")
        self._raw: dict[str, Any] = raw
        self._where = where

    def has(self, name: str) -> bool:
        return name in self._raw

    @property
    def where(self) -> str:
        return self._where

    def raw(self, name: str) -> object:
        """The field's JSON value as it is (None when absent), for a decoder of its own."""
        return self._raw.get(name)

    def array(self, name: str, *, missing: bool = False) -> list[object]:
        """The field as a JSON list; an absent field is an empty list when ``missing``."""
        if missing and name not in self._raw:
            return []
        value = self._get(name)
        if not isinstance(value, list):
            raise self._bad(name, "a list")
        return value

    def _get(self, name: str) -> Any:
        if name not in self._raw:
            raise RecordCorrupt(f"{self._where} has no field {name!r}")
        return self._raw[name]

    def _bad(self, name: str, wanted: str) -> RecordCorrupt:
        return RecordCorrupt(
            f"{self._where} field {name!r} must be {wanted}, got {self._raw[name]!r}"
        )

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def opt_text(self, name: str) -> str | None:
        return None if self._raw.get(name) is None else self.text(name)

    def whole(self, name: str, *, missing: int | None = None) -> int:
        """The field as an int; ``missing`` (when given) stands in for an absent field, which a
        document written before the field existed lacks."""
        if missing is not None and name not in self._raw:
            return missing
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, "a whole number")
        return value

    def number(self, name: str) -> Any:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(name, "a number")
        return value

    def real(self, name: str) -> float:
        return float(self.number(name))

    def opt_real(self, name: str) -> float | None:
        return None if self._raw.get(name) is None else self.real(name)

    def texts(self, name: str) -> tuple[str, ...]:
        value = self._get(name)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._bad(name, "a list of strings")
        return tuple(value)

    def obj(self, name: str, *, optional: bool = False) -> _Fields | None:
        value = self._raw.get(name) if optional else self._get(name)
        return None if value is None else _Fields(value, f"{self._where} {name}")

    def require_obj(self, name: str) -> _Fields:
        return _Fields(self._get(name), f"{self._where} {name}")

    def objs(self, name: str, *, missing: bool = False) -> tuple[_Fields, ...]:
        value = self.array(name, missing=missing)
        return tuple(_Fields(item, f"{self._where} {name}[{i}]") for i, item in enumerate(value))

    def enum(self, kind: type[E], value: str, name: str) -> E:
        try:
            return kind(value)
        except ValueError as exc:
            raise RecordCorrupt(
                f"{self._where} field {name!r} has unknown value {value!r}"
            ) from exc
