"""What one analysis check reports (``CheckResult``), and the pieces every check is built from.

A check FAILs when its confidence sequence (``sequential``) lies beyond the tolerance, PASSes
when both sides have their minimum samples and the estimate is within the tolerance, and is
INCONCLUSIVE otherwise. ``judge`` turns those three facts into a ``CheckResult`` with a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from control_plane.core.sequential import Interval


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


class Check(StrEnum):
    ERROR_RATE = "error_rate"
    P99_LATENCY = "p99_latency"
    DETECTIONS_PER_IMAGE = "detections_per_image"
    MEAN_CONFIDENCE = "mean_confidence"
    CLASS_SHARE = "class_share"
    CLASS_MIX = "class_mix"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One check: the canary's ``value`` against the ``baseline_value``, the ``score`` (the
    estimate of the compared figure) against the ``threshold`` (the tolerance), and the sample
    counts behind them.
    """

    name: Check
    outcome: Outcome
    value: float | None
    baseline_value: float | None
    score: float | None
    threshold: float
    canary_n: int
    baseline_n: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """What a check found, before it is judged: the estimate ``score`` of the compared figure,
    its confidence ``bounds`` or the log ``evidence`` against "within the tolerance", whether
    that evidence suffices (``failed``) and whether the estimate is within the tolerance
    (``within``). ``what`` describes the figures for the reason.
    """

    value: float | None
    baseline_value: float | None
    score: float
    bounds: Interval | None = None
    evidence: float | None = None
    failed: bool
    within: bool
    what: str


def judge(
    name: Check,
    finding: Finding,
    *,
    threshold: float,
    ns: tuple[int, int],
    minimum: int,
    unit: str,
    alpha: float,
) -> CheckResult:
    """FAIL on evidence, PASS on enough samples with the estimate within, else INCONCLUSIVE."""
    sides = (("canary", ns[0]), ("baseline", ns[1]))
    short = [f"{side} has {n} {unit}" for side, n in sides if n < minimum]
    counts = f"(n={ns[0]}/{ns[1]})"
    bounds = _support(finding, alpha)
    if finding.failed:
        outcome = Outcome.FAIL
        reason = f"{name}: {finding.what} ({bounds}), beyond tolerance {threshold:g} {counts}"
    elif short:
        outcome = Outcome.INCONCLUSIVE
        reason = f"{name}: {' and '.join(short)} (needs {minimum} per side)"
    elif finding.within:
        outcome = Outcome.PASS
        reason = f"{name}: {finding.what}, within tolerance {threshold:g} {counts}"
    else:
        outcome = Outcome.INCONCLUSIVE
        reason = (
            f"{name}: {finding.what} ({bounds}), over tolerance {threshold:g} "
            f"but not yet conclusively {counts}"
        )
    return CheckResult(
        name=name,
        outcome=outcome,
        value=finding.value,
        baseline_value=finding.baseline_value,
        score=finding.score,
        threshold=threshold,
        canary_n=ns[0],
        baseline_n=ns[1],
        reason=reason,
    )


def _support(finding: Finding, alpha: float) -> str:
    if finding.bounds is not None:
        return f"{1 - alpha:.2%} bounds {finding.bounds.lo:.4g}..{finding.bounds.hi:.4g}"
    evidence = math.exp(min(finding.evidence or 0.0, 700.0))
    return f"evidence {evidence:.3g}, fails at {1 / alpha:.3g}"


def difference(canary: Interval, baseline: Interval) -> Interval:
    """Bounds of ``canary - baseline`` when each lies in its interval."""
    return Interval(lo=canary.lo - baseline.hi, hi=canary.hi - baseline.lo)


def ratio(canary: Interval, baseline: Interval) -> Interval:
    """Bounds of ``canary / baseline`` for nonnegative figures (inf where baseline may be 0)."""
    lo = canary.lo / baseline.hi if baseline.hi > 0 else 0.0
    hi = canary.hi / baseline.lo if baseline.lo > 0 else float("inf")
    return Interval(lo=lo, hi=hi)


def gap(a: Interval, b: Interval) -> float:
    """The smallest distance between a point of ``a`` and a point of ``b``."""
    return max(0.0, a.lo - b.hi, b.lo - a.hi)
