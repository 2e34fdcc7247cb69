"""Protobuf messages of the ControlPlane API from our types, and ``Thresholds`` both ways.

The servicer's only translation layer: nothing else in ``control_plane`` builds these messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields

from control_plane.codec import RolloutDoc
from control_plane.spec import Thresholds
from control_plane.state import HistoryEntry
from yolofleet.records import ModelRecord, NodeState
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


def rollout_pb(doc: RolloutDoc) -> control_pb2.Rollout:
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
    )


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
