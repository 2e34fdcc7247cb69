"""Canary analysis: compare the canary's ``Samples`` with the baseline's and give a ``Verdict``.

Pure: no I/O and no clock. Each check compares one figure of the canary with the baseline's
against the operator's tolerance (``Thresholds``) with the anytime-valid statistics of
``sequential``: it FAILs only when the evidence that the canary is beyond the tolerance reaches
``1/alpha_check`` (``alpha`` split over the checks that are on by ``WEIGHTS``); it PASSes once
both sides have the check's minimum samples and the estimate is within the tolerance; else it is
INCONCLUSIVE (too little data is never a pass). The evidence is a function of the running totals,
so judging the growing window every tick keeps the false-failure bound. Any FAIL makes the
verdict FAIL; samples that cannot be right (more errors than requests, negative or non-finite
counts) make it ERROR.

The checks live in ``serving_checks`` and ``output_checks``; this module runs and folds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from control_plane.core import output_checks, serving_checks
from control_plane.core.checks import Check, CheckResult, Outcome
from control_plane.core.samples import Samples, implausible
from control_plane.core.spec import Thresholds

__all__ = ["Check", "CheckResult", "Outcome", "Verdict", "assess", "enabled", "error_verdict"]

CHECKS: dict[Check, Callable[[Samples, Samples, Thresholds, float], CheckResult]] = {
    Check.ERROR_RATE: serving_checks.error_rate,
    Check.P99_LATENCY: serving_checks.p99_latency,
    Check.DETECTIONS_PER_IMAGE: output_checks.detections_per_image,
    Check.MEAN_CONFIDENCE: output_checks.mean_confidence,
    Check.CLASS_SHARE: output_checks.class_share,
    Check.CLASS_MIX: output_checks.class_mix,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    outcome: Outcome
    checks: tuple[CheckResult, ...]
    reason: str


def error_verdict(reason: str) -> Verdict:
    """The verdict when samples could not be had at all (e.g. the metric source failed)."""
    return Verdict(outcome=Outcome.ERROR, checks=(), reason=reason)


def assess(canary: Samples, baseline: Samples, thresholds: Thresholds) -> Verdict:
    """Runs every check that is on and folds their outcomes into one verdict."""
    for side, samples in (("canary", canary), ("baseline", baseline)):
        problem = implausible(samples)
        if problem:
            return error_verdict(f"{side} samples are implausible: {problem}")
    on = enabled(thresholds)
    share = thresholds.alpha / sum(WEIGHTS[check] for check in on)
    checks = tuple(
        CHECKS[check](canary, baseline, thresholds, share * WEIGHTS[check]) for check in on
    )
    return _fold(checks)


WEIGHTS: dict[Check, int] = {
    Check.ERROR_RATE: 3,
    Check.P99_LATENCY: 3,
    Check.DETECTIONS_PER_IMAGE: 1,
    Check.MEAN_CONFIDENCE: 1,
    Check.CLASS_SHARE: 1,
    Check.CLASS_MIX: 1,
}
"""Shares of ``alpha`` per check: the serving checks judge small changes against tight
tolerances and need the level most (3/9 each with the defaults); the output guardrails judge
large ones, whose evidence grows so fast that a smaller share costs them about one tick."""


def enabled(thresholds: Thresholds) -> tuple[Check, ...]:
    """The checks that are on: class share unless its drop bound is 1, class mix only when its
    distance bound is below 1 (a bound of 1 can never be exceeded)."""
    off = {Check.CLASS_SHARE} if thresholds.class_share_drop >= 1 else set()
    if thresholds.class_mix_distance >= 1:
        off.add(Check.CLASS_MIX)
    return tuple(check for check in Check if check not in off)


def _fold(checks: tuple[CheckResult, ...]) -> Verdict:
    for outcome in (Outcome.FAIL, Outcome.ERROR, Outcome.INCONCLUSIVE):
        matching = [check.reason for check in checks if check.outcome is outcome]
        if matching:
            return Verdict(outcome=outcome, checks=checks, reason="; ".join(matching))
    return Verdict(
        outcome=Outcome.PASS,
        checks=checks,
        reason=f"all {len(checks)} checks passed: " + "; ".join(c.reason for c in checks),
    )
