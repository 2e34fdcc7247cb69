"""The serving checks: error rate and tail latency, canary against baseline.

- **Error rate** (errors of requests, the model's own failures only): FAIL when the evidence
  against "the canary's rate exceeds the baseline's by at most ``error_rate_increase``"
  (``sequential.shift_log_evidence``, mixed over ``ERRORS``) reaches ``1/alpha``.
- **Tail latency** (``p99_latency``), at each quantile of ``LEVELS`` (p95, p99): the baseline's
  quantile is bounded from above with confidence (the smallest latency at which the upper bound
  of the baseline's share of slower requests is the quantile's tail share), at least
  ``latency_floor_s``; FAIL when the canary's share of requests slower than
  ``p99_latency_ratio`` times that bound is above the tail share with confidence, i.e. the
  canary's quantile is beyond the ratio. The level is split over the quantiles and their two
  sides. Shares between bucket bounds are interpolated (see ``above``; the nodes' bounds are at
  most 1.34x apart). Choosing the compared latency from the data needs no further split: the
  shares above every latency are nested, so only the test at the true quantile can err.

  Why p95 as well as p99: at 10 requests per second a canary serves ~5 requests over its p99
  in 50 s, so a p99-only test is slow whatever its statistics; 5x as many fall over its p95,
  and a model slower by more than the ratio is slower there too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from control_plane.core.checks import Check, CheckResult, Finding, judge
from control_plane.core.samples import LatencyHistogram, Samples
from control_plane.core.sequential import (
    Prior,
    bounded_interval,
    bounded_log_evidence,
    shift_log_evidence,
)
from control_plane.core.spec import Thresholds

TAIL = 0.01
"""The share of requests above the p99."""
LEVELS = (0.95, 0.99)
"""The tail quantiles compared (see the module doc)."""
ERRORS = Prior(a=1.0, b=20.0)
"""The canary error rates mixed over: mean ~5%, where rates beyond a tolerance of a point or so
lie. Any prior fixed before the data keeps the guarantee; one with its mass where the data will
be reaches 1/alpha sooner (this pair: a median 34 s instead of 42 s to catch +5 points at
10 requests per second, against one Beta(1, 50) for both sides)."""
BASELINE_ERRORS = Prior(a=1.0, b=100.0)
"""The baseline error rates mixed over: mean ~1%, a stable model's rate."""
_BISECTIONS = 30


def error_rate(canary: Samples, baseline: Samples, t: Thresholds, alpha: float) -> CheckResult:
    ns = (canary.requests, baseline.requests)
    rate = canary.errors / canary.requests if canary.requests else 0.0
    base = baseline.errors / baseline.requests if baseline.requests else 0.0
    evidence = shift_log_evidence(
        (canary.errors, canary.requests),
        (baseline.errors, baseline.requests),
        t.error_rate_increase,
        prior=ERRORS,
        baseline_prior=BASELINE_ERRORS,
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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Tail:
    """One quantile's comparison: the baseline's confident bound (None: not yet known), the
    canary ``limit`` (the ratio times that bound), the canary requests slower than it, whether
    that share is shown beyond the tail share, and the ratio of the estimated quantiles."""

    level: float
    bound: float | None
    limit: float
    slower: float
    failed: bool
    ratio: float


def p99_latency(canary: Samples, baseline: Samples, t: Thresholds, alpha: float) -> CheckResult:
    ours, theirs = canary.latency, baseline.latency
    ns = (ours.total, theirs.total)
    each = alpha / (2 * len(LEVELS))  # a baseline side and a canary side per quantile
    tails = [_tail(ours, theirs, level, t, each) for level in LEVELS]
    worst = max(tails, key=lambda tail: tail.ratio)
    shown = next((tail for tail in tails if tail.failed), tails[-1])
    p99, base = ours.quantile(0.99) or 0.0, theirs.quantile(0.99) or 0.0
    share = 1.0 - shown.level
    known = f"{shown.bound * 1000:.1f}ms" if shown.bound is not None else "not yet known"
    finding = Finding(
        value=p99,
        baseline_value=base,
        score=worst.ratio,
        bounds=bounded_interval(shown.slower, ns[0], each, prior=tail_prior(share)),
        failed=shown.failed,
        within=worst.ratio <= t.p99_latency_ratio,
        what=(
            f"canary p99 {p99 * 1000:.1f}ms vs baseline {base * 1000:.1f}ms, worst ratio "
            f"{worst.ratio:.2f} (p{worst.level * 100:g}); "
            f"{shown.slower / ns[0] if ns[0] else 0.0:.2%} of canary requests over "
            f"{shown.limit * 1000:.1f}ms ({t.p99_latency_ratio:g}x the baseline's "
            f"p{shown.level * 100:g} bound {known}; {share:.0%} allowed)"
        ),
    )
    return judge(
        Check.P99_LATENCY,
        finding,
        threshold=t.p99_latency_ratio,
        ns=ns,
        minimum=max(t.min_samples, t.min_latency_samples),
        unit="latencies",
        alpha=each,
    )


def _tail(
    ours: LatencyHistogram, theirs: LatencyHistogram, level: float, t: Thresholds, alpha: float
) -> _Tail:
    share = 1.0 - level
    bound = confident_quantile(theirs, share, alpha)
    limit = t.p99_latency_ratio * max(bound if bound is not None else 0.0, t.latency_floor_s)
    slower = above(ours, limit, open_bucket=False)
    estimate, base = ours.quantile(level) or 0.0, theirs.quantile(level) or 0.0
    floor = max(base, t.latency_floor_s)
    ratio = estimate / floor if floor > 0 else (1.0 if estimate == 0 else math.inf)
    failed = bound is not None and _beyond(slower, ours.total, share, alpha)
    return _Tail(level=level, bound=bound, limit=limit, slower=slower, failed=failed, ratio=ratio)


def tail_prior(share: float) -> Prior:
    """The Beta(1, b) mixed over for the share of requests above a quantile whose tail share is
    ``share``: mean about twice ``share``, where both sides' alternatives lie (a baseline share
    a little under it, a slower canary's a few times it). Beta(1, 49) for the p99."""
    return Prior(a=1.0, b=max(1.0, 0.5 / share - 1.0))


def confident_p99(latency: LatencyHistogram, alpha: float) -> float | None:
    """``confident_quantile`` of the p99."""
    return confident_quantile(latency, TAIL, alpha)


def confident_quantile(latency: LatencyHistogram, share: float, alpha: float) -> float | None:
    """The smallest latency over which at most ``share`` of requests fall, with confidence
    ``1 - alpha``; None while the data cannot show one (too few requests, or the quantile is
    above every bound).
    """
    n = latency.total
    edges = (0.0, *latency.bounds)
    for index in range(1, len(edges)):
        if _below(above(latency, edges[index], open_bucket=True), n, share, alpha):
            return _first_below(latency, edges[index - 1], edges[index], share, alpha)
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


def _first_below(
    latency: LatencyHistogram, lo: float, hi: float, share: float, alpha: float
) -> float:
    n = latency.total
    for _ in range(_BISECTIONS):
        middle = 0.5 * (lo + hi)
        if _below(above(latency, middle, open_bucket=True), n, share, alpha):
            hi = middle
        else:
            lo = middle
    return hi


def _below(slower: float, n: int, share: float, alpha: float) -> bool:
    """The share of requests ``slower / n`` is below ``share`` with confidence."""
    return (
        n > 0
        and slower < share * n
        and bounded_log_evidence(slower, n, share, prior=tail_prior(share)) >= _level(alpha)
    )


def _beyond(slower: float, n: int, share: float, alpha: float) -> bool:
    """The share of requests ``slower / n`` is above ``share`` with confidence."""
    return (
        n > 0
        and slower > share * n
        and bounded_log_evidence(slower, n, share, prior=tail_prior(share)) >= _level(alpha)
    )


def _level(alpha: float) -> float:
    return math.log(1.0 / alpha)
