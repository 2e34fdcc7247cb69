"""The CURRENT rule (before the sequential tests): a faithful copy of ``control_plane/analysis.py``
as of commit f2b3c72, kept only as the benchmark's baseline. Do not use it in the product.

Each check scores one fixed difference on the cumulative window and compares it with its bound
(``CurrentThresholds``: the defaults of that commit); FAIL when the score is over the bound,
PASS when both sides have ``min_samples``, INCONCLUSIVE otherwise. The rollout rolled back on
``consecutive_failures`` (2) FAIL verdicts in a row, judged every tick during the hold too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from control_plane.core.samples import LatencyHistogram, Samples, implausible


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """The analysis defaults of commit f2b3c72 (the deadlines left out: not judged here)."""

    error_rate_increase: float = 0.01
    p99_latency_ratio: float = 1.5
    latency_floor_s: float = 0.005
    detections_drift: float = 0.25
    confidence_drift: float = 0.10
    class_mix_distance: float = 0.20
    min_samples: int = 100
    min_latency_samples: int = 500
    consecutive_failures: int = 2


CurrentThresholds = Thresholds


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
    CLASS_MIX = "class_mix"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One check: the canary's ``value`` against the ``baseline_value``, the ``score`` that was
    compared with ``threshold``, and the sample counts behind them.
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
class Verdict:
    outcome: Outcome
    checks: tuple[CheckResult, ...]
    reason: str


def error_verdict(reason: str) -> Verdict:
    """The verdict when samples could not be had at all (e.g. the metric source failed)."""
    return Verdict(outcome=Outcome.ERROR, checks=(), reason=reason)


def assess(canary: Samples, baseline: Samples, thresholds: Thresholds) -> Verdict:
    """Runs every built-in check and folds their outcomes into one verdict."""
    for side, samples in (("canary", canary), ("baseline", baseline)):
        problem = implausible(samples)
        if problem:
            return error_verdict(f"{side} samples are implausible: {problem}")
    checks = tuple(_CHECKS[check](canary, baseline, thresholds) for check in Check)
    return _fold(checks)


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


def _judge(
    name: Check,
    *,
    value: float | None,
    baseline_value: float | None,
    score: float,
    threshold: float,
    ns: tuple[int, int],
    what: str,
) -> CheckResult:
    failed = score > threshold
    relation = "over" if failed else "within"
    return CheckResult(
        name=name,
        outcome=Outcome.FAIL if failed else Outcome.PASS,
        value=value,
        baseline_value=baseline_value,
        score=score,
        threshold=threshold,
        canary_n=ns[0],
        baseline_n=ns[1],
        reason=f"{name}: {what}, {relation} threshold {threshold:g} (n={ns[0]}/{ns[1]})",
    )


def _too_few(
    name: Check, ns: tuple[int, int], threshold: float, *, minimum: int, unit: str
) -> CheckResult | None:
    short = [
        f"{side} has {n} {unit}"
        for side, n in (("canary", ns[0]), ("baseline", ns[1]))
        if n < minimum
    ]
    if not short:
        return None
    return CheckResult(
        name=name,
        outcome=Outcome.INCONCLUSIVE,
        value=None,
        baseline_value=None,
        score=None,
        threshold=threshold,
        canary_n=ns[0],
        baseline_n=ns[1],
        reason=f"{name}: {' and '.join(short)} (needs {minimum} per side)",
    )


def _error_rate(canary: Samples, baseline: Samples, t: Thresholds) -> CheckResult:
    ns = (canary.requests, baseline.requests)
    bound = t.error_rate_increase
    short = _too_few(Check.ERROR_RATE, ns, bound, minimum=t.min_samples, unit="requests")
    if short:
        return short
    rate, base = canary.errors / canary.requests, baseline.errors / baseline.requests
    return _judge(
        Check.ERROR_RATE,
        value=rate,
        baseline_value=base,
        score=rate - base,
        threshold=bound,
        ns=ns,
        what=f"canary {rate:.4f} vs baseline {base:.4f}, increase {rate - base:+.4f}",
    )


def _p99_latency(canary: Samples, baseline: Samples, t: Thresholds) -> CheckResult:
    ns = (canary.latency.total, baseline.latency.total)
    bound = t.p99_latency_ratio
    minimum = max(t.min_samples, t.min_latency_samples)
    short = _too_few(Check.P99_LATENCY, ns, bound, minimum=minimum, unit="latencies")
    if short:
        return short
    p99, base = _p99(canary.latency), _p99(baseline.latency)
    floor = max(base, t.latency_floor_s)
    ratio = p99 / floor if floor > 0 else (1.0 if p99 == 0 else math.inf)
    return _judge(
        Check.P99_LATENCY,
        value=p99,
        baseline_value=base,
        score=ratio,
        threshold=bound,
        ns=ns,
        what=f"canary {p99 * 1000:.1f}ms vs baseline {base * 1000:.1f}ms, ratio {ratio:.2f}",
    )


def _p99(latency: LatencyHistogram) -> float:
    p99 = latency.quantile(0.99)
    return 0.0 if p99 is None else p99  # None only when empty, which _too_few has ruled out


def _detections_per_image(canary: Samples, baseline: Samples, t: Thresholds) -> CheckResult:
    ns = (canary.images, baseline.images)
    bound = t.detections_drift
    name = Check.DETECTIONS_PER_IMAGE
    short = _too_few(name, ns, bound, minimum=t.min_samples, unit="images")
    if short:
        return short
    mean, base = canary.detections / canary.images, baseline.detections / baseline.images
    drift = abs(mean - base) / base if base else (0.0 if mean == 0 else math.inf)
    return _judge(
        name,
        value=mean,
        baseline_value=base,
        score=drift,
        threshold=bound,
        ns=ns,
        what=f"canary {mean:.3f} vs baseline {base:.3f} per image, drift {drift:.1%}",
    )


def _mean_confidence(canary: Samples, baseline: Samples, t: Thresholds) -> CheckResult:
    ns = (canary.detections, baseline.detections)
    bound = t.confidence_drift
    name = Check.MEAN_CONFIDENCE
    short = _too_few(name, ns, bound, minimum=t.min_samples, unit="detections")
    if short:
        return short
    mean = canary.confidence_sum / canary.detections
    base = baseline.confidence_sum / baseline.detections
    return _judge(
        name,
        value=mean,
        baseline_value=base,
        score=abs(mean - base),
        threshold=bound,
        ns=ns,
        what=f"canary {mean:.3f} vs baseline {base:.3f}, drift {abs(mean - base):.3f}",
    )


def _class_mix(canary: Samples, baseline: Samples, t: Thresholds) -> CheckResult:
    ns = (sum(n for _, n in canary.class_counts), sum(n for _, n in baseline.class_counts))
    bound = t.class_mix_distance
    unit = "classified detections"
    short = _too_few(Check.CLASS_MIX, ns, bound, minimum=t.min_samples, unit=unit)
    if short:
        return short
    shares = _shares(canary.class_counts, ns[0]), _shares(baseline.class_counts, ns[1])
    moved = {c: shares[0].get(c, 0.0) - shares[1].get(c, 0.0) for c in shares[0] | shares[1]}
    distance = 0.5 * sum(abs(delta) for delta in moved.values())
    top = max(sorted(moved), key=lambda c: abs(moved[c]))
    share, base_share = shares[0].get(top, 0.0), shares[1].get(top, 0.0)
    return _judge(
        Check.CLASS_MIX,
        value=share,
        baseline_value=base_share,
        score=distance,
        threshold=bound,
        ns=ns,
        what=(
            f"total variation distance {distance:.3f} "
            f"(most moved: {top!r} {share:.1%} vs {base_share:.1%})"
        ),
    )


def _shares(counts: tuple[tuple[str, int], ...], total: int) -> dict[str, float]:
    return {name: n / total for name, n in counts}


_CHECKS: dict[Check, Callable[[Samples, Samples, Thresholds], CheckResult]] = {
    Check.ERROR_RATE: _error_rate,
    Check.P99_LATENCY: _p99_latency,
    Check.DETECTIONS_PER_IMAGE: _detections_per_image,
    Check.MEAN_CONFIDENCE: _mean_confidence,
    Check.CLASS_MIX: _class_mix,
}
