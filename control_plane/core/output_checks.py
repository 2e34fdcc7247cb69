"""The model-output checks: what the canary detects, against what the baseline detects.

Without ground truth, a change of output cannot tell an improvement from a regression, so the
defaults are guardrails against a broken model and stricter drift bounds are opt-in:

- **Detections per image**: a confidence sequence for each side's rate (detections over images);
  FAIL when the canary/baseline ratio lies outside ``1 -+ detections_drift``.
- **Mean confidence**: each side's mean of [0, 1] confidences; FAIL when the evidence against
  "the canary's mean is within ``confidence_drift`` of the baseline's" reaches ``1/alpha`` (one
  e-value per direction, each at half the level).
- **Class share**: each class the baseline detects, as a share of each side's detections; FAIL
  when some class's canary share is below ``1 - class_share_drop`` of the baseline's.
- **Class mix** (off unless ``class_mix_distance`` < 1): the total variation distance between the
  class mixes; FAIL when its lower bound exceeds ``class_mix_distance``.

Detections are treated as independent observations; detections of one image are not, which
makes these bounds optimistic for images with many objects. The wide defaults leave room for it.
"""

from __future__ import annotations

import math

from control_plane.core.checks import Check, CheckResult, Finding, gap, judge, ratio
from control_plane.core.samples import Samples
from control_plane.core.sequential import (
    Interval,
    bounded_interval,
    poisson_interval,
    shift_log_evidence,
)
from control_plane.core.spec import Thresholds


def detections_per_image(
    canary: Samples, baseline: Samples, t: Thresholds, alpha: float
) -> CheckResult:
    mean = canary.detections / canary.images if canary.images else 0.0
    base = baseline.detections / baseline.images if baseline.images else 0.0
    drift = abs(mean - base) / base if base else (0.0 if mean == 0 else math.inf)
    bounds = ratio(
        poisson_interval(canary.detections, canary.images, alpha / 2),
        poisson_interval(baseline.detections, baseline.images, alpha / 2),
    )
    d = t.detections_drift
    finding = Finding(
        value=mean,
        baseline_value=base,
        score=drift,
        bounds=bounds,
        failed=bounds.hi < 1 - d or bounds.lo > 1 + d,
        within=drift <= d,
        what=f"canary {mean:.3f} vs baseline {base:.3f} per image, drift {drift:.1%}",
    )
    ns = (canary.images, baseline.images)
    return judge(
        Check.DETECTIONS_PER_IMAGE,
        finding,
        threshold=d,
        ns=ns,
        minimum=t.min_samples,
        unit="images",
        alpha=alpha,
    )


def mean_confidence(canary: Samples, baseline: Samples, t: Thresholds, alpha: float) -> CheckResult:
    mean = canary.confidence_sum / canary.detections if canary.detections else 0.0
    base = baseline.confidence_sum / baseline.detections if baseline.detections else 0.0
    ours = (canary.confidence_sum, float(canary.detections))
    theirs = (baseline.confidence_sum, float(baseline.detections))
    tolerance = t.confidence_drift
    evidence = max(  # against "no higher by more than the tolerance", and "no lower"
        shift_log_evidence(ours, theirs, tolerance),
        shift_log_evidence(theirs, ours, tolerance),
    )
    finding = Finding(
        value=mean,
        baseline_value=base,
        score=abs(mean - base),
        evidence=evidence,
        failed=evidence >= math.log(2 / alpha),
        within=abs(mean - base) <= tolerance,
        what=f"canary {mean:.3f} vs baseline {base:.3f}, drift {abs(mean - base):.3f}",
    )
    ns = (canary.detections, baseline.detections)
    return judge(
        Check.MEAN_CONFIDENCE,
        finding,
        threshold=tolerance,
        ns=ns,
        minimum=t.min_samples,
        unit="detections",
        alpha=alpha / 2,
    )


def class_share(canary: Samples, baseline: Samples, t: Thresholds, alpha: float) -> CheckResult:
    ours, theirs = dict(canary.class_counts), dict(baseline.class_counts)
    ns = (sum(ours.values()), sum(theirs.values()))
    names = sorted(name for name, n in theirs.items() if n > 0)
    each = alpha / 2 / max(1, len(names))
    drops: list[tuple[bool, float, str, Interval]] = []
    for name in names:
        mine = bounded_interval(ours.get(name, 0), ns[0], each)
        base = bounded_interval(theirs[name], ns[1], each)
        share = ours.get(name, 0) / ns[0] if ns[0] else 0.0
        drop = 1 - share / (theirs[name] / ns[1])
        lowest = 1 - mine.hi / base.lo if base.lo else -math.inf
        worst = Interval(lo=lowest, hi=1 - mine.lo / base.hi)
        drops.append((worst.lo > t.class_share_drop, drop, name, worst))
    nothing = (False, 0.0, "", Interval(lo=0.0, hi=0.0))
    failed, drop, name, bounds = max(drops, key=lambda d: (d[0], d[1]), default=nothing)
    share = ours.get(name, 0) / ns[0] if ns[0] else 0.0
    base_share = theirs.get(name, 0) / ns[1] if ns[1] else 0.0
    finding = Finding(
        value=share,
        baseline_value=base_share,
        score=drop,
        bounds=bounds,
        failed=failed,
        within=drop <= t.class_share_drop,
        what=f"most dropped class {name!r}: {share:.1%} vs {base_share:.1%}, drop {drop:.1%}",
    )
    return judge(
        Check.CLASS_SHARE,
        finding,
        threshold=t.class_share_drop,
        ns=ns,
        minimum=t.min_samples,
        unit="classified detections",
        alpha=alpha,
    )


def class_mix(canary: Samples, baseline: Samples, t: Thresholds, alpha: float) -> CheckResult:
    ours, theirs = dict(canary.class_counts), dict(baseline.class_counts)
    ns = (sum(ours.values()), sum(theirs.values()))
    names = sorted(set(ours) | set(theirs))
    each = alpha / 2 / max(1, len(names))
    low = high = distance = 0.0
    for name in names:
        mine = bounded_interval(ours.get(name, 0), ns[0], each)
        base = bounded_interval(theirs.get(name, 0), ns[1], each)
        low += 0.5 * gap(mine, base)
        high += 0.5 * max(mine.hi - base.lo, base.hi - mine.lo)
        share = ours.get(name, 0) / ns[0] if ns[0] else 0.0
        distance += 0.5 * abs(share - (theirs.get(name, 0) / ns[1] if ns[1] else 0.0))
    finding = Finding(
        value=distance,
        baseline_value=0.0,
        score=distance,
        bounds=Interval(lo=low, hi=min(1.0, high)),
        failed=low > t.class_mix_distance,
        within=distance <= t.class_mix_distance,
        what=f"total variation distance {distance:.3f}",
    )
    return judge(
        Check.CLASS_MIX,
        finding,
        threshold=t.class_mix_distance,
        ns=ns,
        minimum=t.min_samples,
        unit="classified detections",
        alpha=alpha,
    )
