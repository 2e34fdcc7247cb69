"""The serving checks: error rate and tail latency, canary against baseline.

- **Error rate** (errors of requests, the model's own failures only): FAIL when the evidence
  against "the canary's rate exceeds the baseline's by at most ``error_rate_increase``"
  (``sequential.shift_log_evidence``) reaches ``1/alpha``.
- **p99 latency**: the baseline's p99 is bounded from above with confidence (the smallest latency
  at which the upper bound of the baseline's share of slower requests is 1%), at least
  ``latency_floor_s``; FAIL when the canary's share of requests slower than
  ``p99_latency_ratio`` times that bound is above 1% with confidence, i.e. the canary's p99 is
  beyond the ratio. Shares between bucket bounds are interpolated (see ``above``). Choosing the
  compared latency from the data needs no split of the level: the shares above every latency
  are nested, so only the test at the true p99 can err.
"""

from __future__ import annotations

import math

from control_plane.core.checks import Check, CheckResult, Finding, judge
from control_plane.core.samples import LatencyHistogram, Samples
from control_plane.core.sequential import (
    RARE,
    bounded_interval,
    bounded_log_evidence,
    shift_log_evidence,
)
from control_plane.core.spec import Thresholds

TAIL = 0.01
"""The share of requests above the p99."""
_BISECTIONS = 30


def error_rate(canary: Samples, baseline: Samples, t: Thresholds, alpha: float) -> CheckResult:
    ns = (canary.requests, baseline.requests)
    rate = canary.errors / canary.requests if canary.requests else 0.0
    base = baseline.errors / baseline.requests if baseline.requests else 0.0
    evidence = shift_log_evidence(
        (canary.errors, canary.requests),
        (baseline.errors, baseline.requests),
        t.error_rate_increase,
        prior=RARE,
    )
    finding = Finding(
        value=rate,
        baseline_value=base,
        score=rate - base,
        evidence=evidence,
        failed=evidence >= math.log(1 / alpha),
        within=rate - base <= t.error_rate_increase,
        what=f"canary {rate:.4f} vs baseline {base:.4f}, increase {rate - base:+.4f}",
    )
    return judge(
        Check.ERROR_RATE,
        finding,
        threshold=t.error_rate_increase,
        ns=ns,
        minimum=t.min_samples,
        unit="requests",
        alpha=alpha,
    )


def p99_latency(canary: Samples, baseline: Samples, t: Thresholds, alpha: float) -> CheckResult:
    ours, theirs = canary.latency, baseline.latency
    ns = (ours.total, theirs.total)
    side_alpha = alpha / 2
    p99, base = ours.quantile(0.99) or 0.0, theirs.quantile(0.99) or 0.0
    floor = max(base, t.latency_floor_s)
    ratio = p99 / floor if floor > 0 else (1.0 if p99 == 0 else math.inf)
    bound = confident_p99(theirs, side_alpha)
    limit = t.p99_latency_ratio * max(bound if bound is not None else 0.0, t.latency_floor_s)
    slower = above(ours, limit, open_bucket=False)
    shares = bounded_interval(slower, ns[0], side_alpha, prior=RARE)
    failed = bound is not None and _beyond(slower, ns[0], side_alpha)
    known = f"{bound * 1000:.1f}ms" if bound is not None else "not yet known"
    finding = Finding(
        value=p99,
        baseline_value=base,
        score=ratio,
        bounds=shares,
        failed=failed,
        within=ratio <= t.p99_latency_ratio,
        what=(
            f"canary {p99 * 1000:.1f}ms vs baseline {base * 1000:.1f}ms, ratio {ratio:.2f}; "
            f"{slower / ns[0] if ns[0] else 0.0:.2%} of canary requests over {limit * 1000:.1f}ms "
            f"({t.p99_latency_ratio:g}x the baseline's p99 bound {known})"
        ),
    )
    return judge(
        Check.P99_LATENCY,
        finding,
        threshold=t.p99_latency_ratio,
        ns=ns,
        minimum=max(t.min_samples, t.min_latency_samples),
        unit="latencies",
        alpha=side_alpha,
    )


def confident_p99(latency: LatencyHistogram, alpha: float) -> float | None:
    """The smallest latency over which at most 1% of requests fall, with confidence
    ``1 - alpha``; None while the data cannot show one (too few requests, or the p99 is above
    every bound).
    """
    n = latency.total
    edges = (0.0, *latency.bounds)
    for index in range(1, len(edges)):
        if _below(above(latency, edges[index], open_bucket=True), n, alpha):
            return _first_below(latency, edges[index - 1], edges[index], alpha)
    return None


def above(latency: LatencyHistogram, x: float, *, open_bucket: bool) -> float:
    """Requests slower than ``x``. Inside a bucket the count above falls geometrically from the
    bucket's lower bound to its upper one (a tail's survival is close to exponential there;
    linear interpolation would put the bucket's mass at its top), linearly in the first bucket or
    when nothing lies above the bucket. Above the last bound the open bucket counts in full when
    ``open_bucket`` (an upper estimate), else not at all.
    """
    bounds, counts = latency.bounds, latency.counts
    if not bounds:
        return 0.0
    if x >= bounds[-1]:
        return float(counts[-1]) if open_bucket or x == bounds[-1] else 0.0
    lower, beyond = 0.0, float(sum(counts))
    for index, upper in enumerate(bounds):
        rest = beyond - counts[index]
        if x < upper:
            share = (upper - max(x, lower)) / (upper - lower)
            if index == 0 or rest <= 0:
                return rest + counts[index] * share
            return float(beyond * (rest / beyond) ** (1 - share))
        lower, beyond = upper, rest
    return 0.0  # unreachable: x < bounds[-1]


def _first_below(latency: LatencyHistogram, lo: float, hi: float, alpha: float) -> float:
    n = latency.total
    for _ in range(_BISECTIONS):
        middle = 0.5 * (lo + hi)
        if _below(above(latency, middle, open_bucket=True), n, alpha):
            hi = middle
        else:
            lo = middle
    return hi


def _below(slower: float, n: int, alpha: float) -> bool:
    """The share ``slower / n`` is below 1% with confidence."""
    return (
        n > 0
        and slower < TAIL * n
        and bounded_log_evidence(slower, n, TAIL, prior=RARE) >= _level(alpha)
    )


def _beyond(slower: float, n: int, alpha: float) -> bool:
    """The share ``slower / n`` is above 1% with confidence."""
    return (
        n > 0
        and slower > TAIL * n
        and bounded_log_evidence(slower, n, TAIL, prior=RARE) >= _level(alpha)
    )


def _level(alpha: float) -> float:
    return math.log(1.0 / alpha)
