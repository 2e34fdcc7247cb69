"""The rollout document's JSON: round trips, documents from older versions, corrupt fields."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from control_plane.consul.codec import decode_doc, encode_doc
from control_plane.core.analysis import Check, CheckResult, Outcome
from control_plane.core.document import RolloutDoc
from control_plane.core.errors import RecordCorrupt
from control_plane.core.spec import Thresholds
from control_plane.core.state import (
    HistoryEntry,
    Intent,
    IntentOutcome,
    IntentRequest,
    Phase,
    Result,
)
from tests.unit.control_plane.builders import NEW, OLD, PINS, SPEC, pin, running

CHECK = CheckResult(
    name=Check.P99_LATENCY,
    outcome=Outcome.FAIL,
    value=0.2,
    baseline_value=0.05,
    score=4.0,
    threshold=1.5,
    canary_n=600,
    baseline_n=5400,
    reason="p99 4.0x baseline",
)
ENTRY = HistoryEntry(
    target=NEW,
    stable_before=None,
    stable_after=OLD,
    outcome=Phase.COMPLETED,
    reason="first model",
    started_at=1.0,
    ended_at=2.5,
)
DOC = RolloutDoc(
    spec=SPEC,
    state=running(Phase.HOLDING, verdicts=(CHECK,), failing_assessments=1, history=(ENTRY,)),
    pending=IntentRequest(id="i-2", intent=Intent.START, requested_at=3.0, spec=SPEC, pin=pin(NEW)),
    outcomes=(
        IntentOutcome(
            id="i-1",
            intent=Intent.PAUSE,
            result=Result.SUPERSEDED,
            detail="by abort i-0",
            at=2.0,
            by="i-0",
        ),
    ),
)


def test_a_document_round_trips_with_the_store_revision() -> None:
    decoded = decode_doc(encode_doc(DOC), revision=42)

    assert decoded == replace(DOC, state=replace(DOC.state, revision=42))


def test_a_format_1_document_keeps_its_intent_and_has_no_pins() -> None:
    body = json.loads(encode_doc(DOC))
    del body["pending"], body["outcomes"], body["state"]["pins"]
    body.update(format=1, intent="undo", undo_to=OLD)

    decoded = decode_doc(json.dumps(body).encode(), revision=9)

    assert decoded.pending == IntentRequest(
        id="legacy-9", intent=Intent.UNDO, requested_at=0.0, undo_to=OLD
    )
    assert decoded.outcomes == ()
    assert decoded.state.pins == ()
    assert DOC.state.pins == PINS


def test_a_document_from_before_a_threshold_existed_takes_its_default() -> None:
    body = json.loads(encode_doc(DOC))
    del body["spec"]["thresholds"]["consecutive_failures"]
    del body["state"]["failing_assessments"]

    decoded = decode_doc(json.dumps(body).encode(), revision=7)

    assert decoded.spec is not None
    assert decoded.spec.thresholds.consecutive_failures == Thresholds().consecutive_failures
    assert decoded.spec.thresholds.min_samples == SPEC.thresholds.min_samples
    assert decoded.state.failing_assessments == 0


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("spec", "thresholds", "p99_latency_ratio"), "fast", "'p99_latency_ratio' must be a num"),
        (("state", "failing_assessments"), 1.5, "'failing_assessments' must be a whole number"),
        (("state", "phase"), "sideways", "'phase' has unknown value 'sideways'"),
        (("pending", "intent"), "launch", "'intent' has unknown value 'launch'"),
        (("outcomes", 0, "result"), "maybe", "'result' has unknown value 'maybe'"),
        (("state", "pins", 0, "sha256"), 7, "'sha256' must be a string, got 7"),
        (("pending", "pin"), "shapes-v2", "without a pin"),
    ],
)
def test_a_corrupt_field_is_named(path: tuple[str | int, ...], value: object, message: str) -> None:
    body = json.loads(encode_doc(DOC))
    holder = body
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value

    with pytest.raises(RecordCorrupt, match=message):
        decode_doc(json.dumps(body).encode(), revision=1)


def test_a_document_that_is_not_json_is_refused() -> None:
    with pytest.raises(RecordCorrupt, match="not valid JSON"):
        decode_doc(b"{half", revision=1)
