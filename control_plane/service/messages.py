"""Protobuf messages of the ControlPlane API from our types, and ``Thresholds`` both ways.

The servicer's only translation layer: nothing else in ``control_plane`` builds these messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields

from control_plane.core.document import RolloutDoc
from control_plane.core.spec import Thresholds
from control_plane.core.state import HistoryEntry, IntentOutcome, IntentRequest
from yolofleet.records import InvalidRecord, ModelPin, ModelRecord, NodeState
from yolofleet.v1 import control_pb2


def thresholds_from_pb(message: control_pb2.Thresholds) -> Thresholds:
    """The request's thresholds: every field it sets, the default for every other one.

    ``build_spec`` checks the values; this only carries them over.
    """
    given = {
        field.name: getattr(message, field.name)
        for field in fields(Thresholds)
        if message.HasField(field.name)
    }
    return Thresholds(**given)


def thresholds_pb(thresholds: Thresholds) -> control_pb2.Thresholds:
    return control_pb2.Thresholds(
        **{field.name: getattr(thresholds, field.name) for field in fields(Thresholds)}
    )


def history_pb(history: Iterable[HistoryEntry]) -> control_pb2.HistoryResponse:
    return control_pb2.HistoryResponse(
        entries=[
            control_pb2.HistoryEntry(
                model=entry.target,
                previous=entry.stable_before or "",
                outcome=entry.outcome.value,
                reason=entry.reason,
                started_unix=entry.started_at,
                ended_unix=entry.ended_at,
            )
            for entry in history
        ]
    )


def model_pb(record: ModelRecord) -> control_pb2.ModelRecord:
    return control_pb2.ModelRecord(
        name=record.name,
        uri=record.uri,
        sha256=record.sha256,
        size=record.size,
        format=record.format,
        class_names=list(record.class_names),
        input_size=record.input_size,
        task=record.task,
        created_unix=record.created,
        parent=record.parent or "",
        notes=record.notes,
        metadata_json=json.dumps(dict(record.metadata), sort_keys=True),
    )


def rollout_pb(doc: RolloutDoc, *, intent_id: str = "", lost: str = "") -> control_pb2.Rollout:
    """The rollout as the API shows it; ``intent_id`` is the intent the replying call recorded,
    ``lost`` why Consul's state no longer explains the group's nodes (empty: it does)."""
    state = doc.state
    checks = [
        control_pb2.CheckResult(
            name=check.name.value,
            outcome=check.outcome.value,
            canary_value=check.value or 0.0,
            baseline_value=check.baseline_value or 0.0,
            threshold=check.threshold,
            canary_samples=check.canary_n,
            baseline_samples=check.baseline_n,
            reason=check.reason,
        )
        for check in state.verdicts
    ]
    return control_pb2.Rollout(
        group=state.group,
        phase=state.phase.value,
        stable=state.stable or "",
        canary=state.canary or "",
        canary_nodes=list(state.canary_nodes),
        step_index=state.step_index,
        steps=[step.canary_percent for step in doc.spec.steps] if doc.spec else [],
        reason=state.reason,
        checks=checks,
        revision=state.revision,
        phase_since_unix=state.phase_since,
        thresholds=thresholds_pb(doc.spec.thresholds) if doc.spec else None,
        hold_s=doc.spec.steps[0].hold_s if doc.spec else 0.0,
        failing_assessments=state.failing_assessments,
        intent_id=intent_id,
        pending=pending_pb(doc.pending) if doc.pending is not None else None,
        intents=[outcome_pb(outcome) for outcome in doc.outcomes],
        stable_sha256=_digest(state.pin(state.stable)),
        canary_sha256=_digest(state.pin(state.canary)),
        lost=lost,
    )


def pending_pb(request: IntentRequest) -> control_pb2.PendingIntent:
    model = request.spec.target if request.spec is not None else request.undo_to
    if model is None and request.pin is not None:
        model = request.pin.name  # adopt
    return control_pb2.PendingIntent(
        id=request.id,
        intent=request.intent.value,
        model=model or "",
        requested_unix=request.requested_at,
    )


def outcome_pb(outcome: IntentOutcome) -> control_pb2.IntentOutcome:
    return control_pb2.IntentOutcome(
        id=outcome.id,
        intent=outcome.intent.value,
        result=outcome.result.value,
        detail=outcome.detail,
        at_unix=outcome.at,
        superseded_by=outcome.by or "",
    )


def _digest(pin: ModelPin | None) -> str:
    return pin.sha256 if pin is not None else ""


def node_pb(node: NodeState) -> control_pb2.NodeInfo:
    return control_pb2.NodeInfo(
        group=node.group,
        node_id=node.node_id,
        phase=node.phase.value,
        model=node.model or "",
        sha256=node.sha256 or "",
        last_error=node.last_error,
        endpoint=node.endpoint,
        device=node.device,
        updated_unix=node.updated,
        desired=node.desired or "",
    )


def invalid_pb(record: InvalidRecord) -> control_pb2.InvalidRecord:
    return control_pb2.InvalidRecord(key=record.key, reason=record.reason)
