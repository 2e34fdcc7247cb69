"""Validation gates a candidate model must pass before it may go live.

Each gate is a plain function with no I/O that either returns a ``GateResult`` or raises
``ValidationFailed`` naming the gate and the figures that failed; the figures (detections,
timings) are measured by ``inference_node.swapping.trial``, which runs them in order (digest is
checked by the loader before anything is unpickled): classes, compat, calibration, latency.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inference_node.errors import ValidationFailed
from inference_node.model import Image, ModelRef, ModelSpec
from inference_node.serving.imaging import ImageLimits, decode_image

SUPPORTED_TASKS = frozenset({"detect"})
STRIDE = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationCase:
    """One golden image and the fewest detections a good model must find in it."""

    name: str
    image: Image
    min_detections: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationPolicy:
    """Which gates run and their thresholds."""

    pinned_classes: tuple[str, ...] | None = None
    allow_class_change: bool = False
    require_same_input_size: bool = False
    calibration: tuple[CalibrationCase, ...] = ()
    calibration_conf: float = 0.25
    latency_factor: float | None = 1.5
    latency_rounds: int = 7


@dataclass(frozen=True, slots=True, kw_only=True)
class GateResult:
    """A gate that passed (or was skipped), and what it saw."""

    gate: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """Every gate a candidate went through, in order."""

    ref: ModelRef
    gates: tuple[GateResult, ...]


def check_classes(
    ref: ModelRef, candidate: ModelSpec, *, incumbent: ModelSpec | None, policy: ValidationPolicy
) -> GateResult:
    """Class names must equal the pinned list, and by default the incumbent's list."""
    names = list(candidate.class_names)
    if policy.pinned_classes is not None and names != list(policy.pinned_classes):
        raise ValidationFailed(
            f"model {ref} failed validation: class names {names} differ from the pinned "
            f"list {list(policy.pinned_classes)}",
            gate="classes",
        )
    changed = incumbent is not None and names != list(incumbent.class_names)
    if incumbent is not None and changed and not policy.allow_class_change:
        raise ValidationFailed(
            f"model {ref} failed validation: class names {names} differ from the serving "
            f"model's {list(incumbent.class_names)} (clients depend on class ids; allow "
            "a change explicitly to proceed)",
            gate="classes",
        )
    return GateResult(gate="classes", passed=True, detail=f"{len(names)} classes")


def check_compat(
    ref: ModelRef, candidate: ModelSpec, *, incumbent: ModelSpec | None, policy: ValidationPolicy
) -> GateResult:
    """The task must be one the node serves; the input size a stride multiple (and pinned)."""
    if candidate.task not in SUPPORTED_TASKS:
        raise ValidationFailed(
            f"model {ref} failed validation: task {candidate.task!r} is not served here "
            f"(supported: {', '.join(sorted(SUPPORTED_TASKS))})",
            gate="compat",
        )
    if candidate.input_size <= 0 or candidate.input_size % STRIDE:
        raise ValidationFailed(
            f"model {ref} failed validation: input size {candidate.input_size} is not a "
            f"positive multiple of {STRIDE}",
            gate="compat",
        )
    resized = incumbent is not None and candidate.input_size != incumbent.input_size
    if incumbent is not None and resized and policy.require_same_input_size:
        raise ValidationFailed(
            f"model {ref} failed validation: input size {candidate.input_size} differs "
            f"from the serving model's {incumbent.input_size}",
            gate="compat",
        )
    return GateResult(
        gate="compat", passed=True, detail=f"task={candidate.task} input={candidate.input_size}"
    )


def check_calibration(ref: ModelRef, found: Sequence[int], policy: ValidationPolicy) -> GateResult:
    """Every golden image must yield at least its expected number of detections.

    ``found[i]`` is how many detections the candidate made on ``policy.calibration[i]`` at
    ``policy.calibration_conf`` (the caller runs the model, one image at a time, between
    served batches).
    """
    if not policy.calibration:
        return GateResult(gate="calibration", passed=True, detail="skipped: no calibration set")
    for case, count in zip(policy.calibration, found, strict=True):
        if count < case.min_detections:
            raise ValidationFailed(
                f"model {ref} failed validation: {count} detections on "
                f"calibration/{case.name} (expected >= {case.min_detections})",
                gate="calibration",
            )
    return GateResult(
        gate="calibration",
        passed=True,
        detail=f"{sum(found)} detections over {len(found)} calibration images",
    )


def check_latency(
    ref: ModelRef,
    *,
    candidate_ms: Sequence[float],
    incumbent_ms: Sequence[float],
    policy: ValidationPolicy,
) -> GateResult:
    """The candidate's fastest round must be within ``latency_factor`` of the incumbent's.

    Best of N, not the median: on a busy machine, contention only ever adds time to a round,
    so each model's fastest round is the closest to its own cost. With medians, four nodes
    sharing two cores refused an identical-architecture model at 1.86x (19.6 vs 10.5 ms).
    """
    if policy.latency_factor is None or not incumbent_ms:
        return GateResult(gate="latency", passed=True, detail="skipped: nothing to compare with")
    candidate = min(candidate_ms)
    incumbent = min(incumbent_ms)
    ratio = candidate / incumbent if incumbent > 0 else float("inf")
    detail = (
        f"best of {len(candidate_ms)} {candidate:.1f} ms vs serving model's {incumbent:.1f} ms "
        f"= {ratio:.2f}x (limit {policy.latency_factor:.2f}x)"
    )
    if ratio > policy.latency_factor:
        raise ValidationFailed(f"model {ref} failed validation: too slow, {detail}", gate="latency")
    return GateResult(gate="latency", passed=True, detail=detail)


def load_calibration_set(directory: Path, limits: ImageLimits) -> tuple[CalibrationCase, ...]:
    """Read ``manifest.json`` in ``directory``: ``[{"file": ..., "min_detections": N}, ...]``."""
    manifest = json.loads((directory / "manifest.json").read_text())
    entries = manifest["images"] if isinstance(manifest, dict) else manifest
    return tuple(
        CalibrationCase(
            name=entry["file"],
            image=decode_image((directory / entry["file"]).read_bytes(), limits),
            min_detections=int(entry["min_detections"]),
        )
        for entry in entries
    )
