"""The rollout document's JSON: ``RolloutDoc`` to bytes and back. Imported only by ``store.py``.

It sits beside ``store.py`` only to keep that module to one job; nothing else should import it,
so Consul JSON still appears at one edge. ``decode_doc`` checks every field's type and raises
``RecordCorrupt`` with a sentence naming the first bad field, so a malformed document is reported,
never half-used. Enums travel as their values, tuples as lists; ``GroupState.revision`` is not
stored (it is the key's ModifyIndex).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from control_plane.analysis import Check, CheckResult, Outcome
from control_plane.errors import RecordCorrupt
from control_plane.spec import RolloutSpec, Step, Thresholds
from control_plane.state import GroupState, HistoryEntry, Intent, Phase

FORMAT = 1

E = TypeVar("E", Phase, Intent, Check, Outcome)


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutDoc:
    """What ``rollouts/<group>`` holds: the spec (None before the first rollout), the state
    (its ``revision`` is the key's ModifyIndex, 0 when absent) and the operator's pending intent.
    """

    spec: RolloutSpec | None
    state: GroupState
    intent: Intent | None = None
    undo_to: str | None = None
    """With ``Intent.UNDO``: the earlier stable model to go back to (None: the previous one)."""


def encode_doc(doc: RolloutDoc) -> bytes:
    state = asdict(doc.state)
    del state["revision"]
    body = {
        "format": FORMAT,
        "spec": asdict(doc.spec) if doc.spec is not None else None,
        "state": state,
        "intent": doc.intent.value if doc.intent is not None else None,
        "undo_to": doc.undo_to,
    }
    return json.dumps(body, sort_keys=True).encode()


def decode_doc(data: bytes, *, revision: int) -> RolloutDoc:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordCorrupt(f"rollout document is not valid JSON: {exc}") from exc
    body = _Fields(raw, "rollout document")
    spec = body.obj("spec", optional=True)
    intent = body.opt_text("intent")
    return RolloutDoc(
        spec=_spec(spec) if spec is not None else None,
        state=_state(body.require_obj("state"), revision=revision),
        intent=body.enum(Intent, intent, "intent") if intent is not None else None,
        undo_to=body.opt_text("undo_to"),
    )


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

    def objs(self, name: str) -> tuple[_Fields, ...]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self._bad(name, "a list")
        return tuple(_Fields(item, f"{self._where} {name}[{i}]") for i, item in enumerate(value))

    def enum(self, kind: type[E], value: str, name: str) -> E:
        try:
            return kind(value)
        except ValueError as exc:
            raise RecordCorrupt(
                f"{self._where} field {name!r} has unknown value {value!r}"
            ) from exc
