"""Rendering for `ctl`: control plane replies as text tables, one-line summaries or JSON.

Pure functions from `yolofleet.v1` messages to strings. Nothing here does I/O; `ctl.py` prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from yolofleet.v1 import control_pb2 as pb

CHECK_HEADER = ("CHECK", "OUTCOME", "CANARY", "BASELINE", "THRESHOLD", "SAMPLES C/B", "REASON")


def to_json(value: Message | Sequence[Message]) -> str:
    """One message, or a list of them, as indented JSON with every field present."""
    if isinstance(value, Message):
        return json.dumps(_as_dict(value), indent=2, sort_keys=True)
    return json.dumps([_as_dict(m) for m in value], indent=2, sort_keys=True)


def to_json_line(message: Message) -> str:
    """One message as compact single-line JSON (for streams such as `status --watch`)."""
    return json.dumps(_as_dict(message), sort_keys=True, separators=(",", ":"))


def _as_dict(message: Message) -> dict[str, Any]:
    fields: dict[str, Any] = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return fields


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; trailing blanks trimmed."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (header, *rows)
    ]
    return "\n".join(lines)


def when(unix: float) -> str:
    """A UTC timestamp, or '-' when unset."""
    if unix <= 0:
        return "-"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def size(n: int) -> str:
    """Bytes in the largest unit that keeps the number readable."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def step(rollout: pb.Rollout) -> str:
    """'2/3 (50%)' for the current step, or '-' when the rollout has no steps."""
    if not rollout.steps or not 0 <= rollout.step_index < len(rollout.steps):
        return "-"
    percent = rollout.steps[rollout.step_index]
    return f"{rollout.step_index + 1}/{len(rollout.steps)} ({percent}%)"


def nodes_list(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "no nodes yet"


def summary(rollout: pb.Rollout) -> str:
    """A one-line state of a group's rollout, as printed after mutations and by `--watch`."""
    parts = [f"{rollout.group}: {rollout.phase or 'unknown'}"]
    if rollout.steps:
        parts.append(f"step {step(rollout)}")
    parts.append(f"stable {rollout.stable or '-'}")
    if rollout.canary:
        parts.append(f"canary {rollout.canary} on {nodes_list(rollout.canary_nodes)}")
    text = ", ".join(parts)
    if rollout.reason:
        text += f" ({rollout.reason})"
    if rollout.lost:
        text += f"; LOST: {rollout.lost}"
    return text


def rollout_detail(rollout: pb.Rollout) -> str:
    """The `status GROUP` view: the state as key/value lines, then the latest verdict per check."""
    canary = rollout.canary or "-"
    if rollout.canary:
        canary += f" on {nodes_list(rollout.canary_nodes)}"
    fields = [
        ("group", rollout.group),
        *([("LOST", rollout.lost)] if rollout.lost else []),
        ("phase", f"{rollout.phase or 'unknown'} since {when(rollout.phase_since_unix)}"),
        ("step", step(rollout)),
        ("stable", rollout.stable or "-"),
        ("canary", canary),
        ("reason", rollout.reason or "-"),
        *_analysis_fields(rollout),
        *_intent_fields(rollout),
        ("revision", str(rollout.revision)),
    ]
    width = max(len(key) for key, _ in fields)
    lines = [f"{key.ljust(width)}  {value}" for key, value in fields]
    if rollout.checks:
        lines += ["", checks_table(rollout.checks)]
    else:
        lines += ["", "no analysis yet"]
    return "\n".join(lines)


def _intent_fields(rollout: pb.Rollout) -> list[tuple[str, str]]:
    """The pinned digests, the pending intent and the latest intent's outcome, when there are."""
    fields = []
    pinned = [
        f"{name} {digest[:12]}"
        for name, digest in (
            (rollout.stable, rollout.stable_sha256),
            (rollout.canary, rollout.canary_sha256),
        )
        if name and digest
    ]
    if pinned:
        fields.append(("pinned", ", ".join(pinned)))
    if rollout.HasField("pending"):
        p = rollout.pending
        model = f" {p.model}" if p.model else ""
        fields.append(("pending", f"{p.intent}{model} (id {p.id}), waiting for the leader's tick"))
    if rollout.intents:
        last = rollout.intents[-1]
        fields.append(("last intent", f"{last.intent} (id {last.id}) {last.result}: {last.detail}"))
    return fields


def _analysis_fields(rollout: pb.Rollout) -> list[tuple[str, str]]:
    """How the rollout judges: hold, deadlines and how many failures in a row roll it back."""
    if not rollout.HasField("thresholds"):
        return []
    t = rollout.thresholds
    timing = (
        f"hold {rollout.hold_s:g}s per step; canaries must serve within "
        f"{t.report_deadline_s:g}s; analysis pauses after {t.analysis_deadline_s:g}s inconclusive"
    )
    failing = (
        f"{rollout.failing_assessments} failing assessment(s) in a row; "
        f"rolls back at {t.consecutive_failures}"
    )
    return [("timing", timing), ("failures", failing)]


def checks_table(checks: Sequence[pb.CheckResult]) -> str:
    rows = [
        (
            c.name,
            c.outcome,
            f"{c.canary_value:g}",
            f"{c.baseline_value:g}",
            f"{c.threshold:g}",
            f"{c.canary_samples}/{c.baseline_samples}",
            c.reason or "-",
        )
        for c in checks
    ]
    return table(CHECK_HEADER, rows)


def rollouts_table(rollouts: Sequence[pb.Rollout]) -> str:
    """The `status` view without a group: one row per group."""
    header = ("GROUP", "PHASE", "STEP", "STABLE", "CANARY", "REVISION", "REASON")
    rows = [
        (
            r.group,
            f"{r.phase or 'unknown'}{' LOST' if r.lost else ''}",
            step(r),
            r.stable or "-",
            r.canary or "-",
            str(r.revision),
            r.lost or r.reason or "-",
        )
        for r in rollouts
    ]
    return table(header, rows)


def history_table(entries: Sequence[pb.HistoryEntry]) -> str:
    header = ("MODEL", "PREVIOUS", "OUTCOME", "STARTED", "ENDED", "REASON")
    rows = [
        (
            e.model,
            e.previous or "-",
            e.outcome,
            when(e.started_unix),
            when(e.ended_unix),
            e.reason or "-",
        )
        for e in entries
    ]
    return table(header, rows)


def nodes_table(nodes: Sequence[pb.NodeInfo]) -> str:
    header = ("GROUP", "NODE", "PHASE", "MODEL", "SHA256", "ENDPOINT", "DEVICE", "UPDATED", "ERROR")
    rows = [
        (
            n.group,
            n.node_id,
            f"{n.phase} {n.desired}" if n.desired and n.desired != n.model else n.phase,
            n.model or "-",
            n.sha256[:12] or "-",
            n.endpoint or "-",
            n.device or "-",
            when(n.updated_unix),
            n.last_error or "-",
        )
        for n in nodes
    ]
    return table(header, rows)


def models_table(models: Sequence[pb.ModelRecord]) -> str:
    header = ("NAME", "TASK", "FORMAT", "INPUT", "CLASSES", "SIZE", "PARENT", "CREATED")
    rows = [
        (
            m.name,
            m.task or "-",
            m.format or "-",
            str(m.input_size) if m.input_size else "-",
            str(len(m.class_names)),
            size(m.size),
            m.parent or "-",
            when(m.created_unix),
        )
        for m in models
    ]
    return table(header, rows)


def invalid_lines(records: Sequence[pb.InvalidRecord]) -> list[str]:
    """A record the control plane skipped as invalid: one line with its key and the reason."""
    return [f"invalid record {r.key}: {r.reason}" for r in records]


def model_detail(model: pb.ModelRecord) -> str:
    """The `models show NAME` view as key/value lines."""
    fields = [
        ("name", model.name),
        ("uri", model.uri or "-"),
        ("sha256", model.sha256 or "-"),
        ("size", size(model.size)),
        ("format", model.format or "-"),
        ("task", model.task or "-"),
        ("input size", str(model.input_size) if model.input_size else "-"),
        ("classes", f"{len(model.class_names)}: {', '.join(model.class_names) or '-'}"),
        ("parent", model.parent or "-"),
        ("created", when(model.created_unix)),
        ("notes", model.notes or "-"),
        ("metadata", model.metadata_json or "-"),
    ]
    width = max(len(key) for key, _ in fields)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in fields)
