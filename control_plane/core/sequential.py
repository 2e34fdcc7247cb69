"""Anytime-valid evidence and confidence sequences for counts: the statistics canary analysis uses.

Pure and numeric only (``math``): no I/O, no clock, no numpy. Every function takes running
totals, so evaluating it on a growing window every tick is evaluating one test's path.

Two mixture martingales (Robbins' method of mixtures; Lindon, Sanden and Shirikian, "Rapid
Regression Detection in Software Deployments through Sequential Testing", KDD 2022):

- **Bounded means** (``bounded_log_evidence``): ``n`` observations in ``[0, 1]`` summing to ``s``
  (errors of requests, confidences of detections, one class among detections). Against the mean
  ``p``, the Bernoulli likelihood ratio mixed over a Beta(a, b) prior (``Prior``) is
  ``B(a + s, b + n - s) / B(a, b) / (p**s (1 - p)**(n - s))``. The ratio is convex in
  each observation, so it is a nonnegative supermartingale for *any* ``[0, 1]`` variable with
  mean ``p``, not only a Bernoulli one.
- **Counts per unit** (``poisson_log_evidence``): ``count`` events over ``exposure`` units
  (detections over images). Against the rate ``rate``, the Poisson likelihood ratio mixed over a
  Gamma(1/2, 1/2) prior. A supermartingale for counts that are sums of independent yes/no events
  (a binomial's generating function is below the Poisson's of the same mean); heavy-tailed
  counts (crowds) break that, which is why the defaults judge detections loosely.

Ville's inequality: under the null, the evidence ever reaching ``1/alpha`` has probability at most
``alpha`` however often it is looked at. The confidence sequences (``bounded_interval``,
``poisson_interval``) are the parameters whose evidence stays below ``1/alpha``: they cover the
truth at every time at once with probability at least ``1 - alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

PRIOR = 0.5
"""Gamma(shape 1/2, rate 1/2) for rates."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Prior:
    """The Beta(a, b) a bounded mean's likelihood ratio is mixed over. Any prior fixed before the
    data keeps the guarantee; one with its mass where the alternatives of interest lie (small
    error rates, tail shares of a few percent) reaches 1/alpha sooner on them."""

    a: float
    b: float


JEFFREYS = Prior(a=0.5, b=0.5)
_ITERATIONS = 42
"""Bisection steps: 2**-42 of the bracket, far below any tolerance."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    """A confidence sequence's current interval ``[lo, hi]``."""

    lo: float
    hi: float

    def __contains__(self, value: float) -> bool:
        return self.lo <= value <= self.hi


def _xlogy(x: float, y: float) -> float:
    """``x * log(y)`` with ``0 * log(0) = 0``."""
    if x == 0:
        return 0.0
    return -math.inf if y <= 0 else x * math.log(y)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def bounded_log_evidence(total: float, n: float, p: float, *, prior: Prior = JEFFREYS) -> float:
    """log of the mixture e-value against "the mean is ``p``" after ``n`` observations in
    [0, 1] summing to ``total``. +inf when the data rule ``p`` out (a success against p = 0).
    """
    _check_counts(total, n, bounded=True)
    total = min(total, n)
    return _minus(_bounded_mixture(total, n, prior), _xlogy(total, p) + _xlogy(n - total, 1.0 - p))


def bounded_interval(total: float, n: float, alpha: float, *, prior: Prior = JEFFREYS) -> Interval:
    """The confidence sequence for the mean of [0, 1] observations at level ``1 - alpha``."""
    _check_alpha(alpha)
    _check_counts(total, n, bounded=True)
    if n == 0:
        return Interval(lo=0.0, hi=1.0)
    total = min(total, n)
    threshold = _bounded_mixture(total, n, prior) - math.log(1.0 / alpha)

    def inside(p: float) -> bool:  # the evidence against p is below 1/alpha
        return _xlogy(total, p) + _xlogy(n - total, 1.0 - p) > threshold

    mean = total / n
    lo = 0.0 if inside(0.0) else _edge(inside, outside=0.0, within=mean)
    hi = 1.0 if inside(1.0) else _edge(inside, outside=1.0, within=mean)
    return Interval(lo=lo, hi=hi)


def _bounded_mixture(total: float, n: float, prior: Prior) -> float:
    a, b = prior.a, prior.b
    return _log_beta(a + total, b + n - total) - _log_beta(a, b)


def shift_log_evidence(
    canary: tuple[float, float],
    baseline: tuple[float, float],
    delta: float,
    *,
    prior: Prior = JEFFREYS,
    baseline_prior: Prior | None = None,
) -> float:
    """log of an e-value against "the canary's mean exceeds the baseline's by at most
    ``delta``", from each side's ``(total, n)`` of [0, 1] observations.

    Universal inference: each side's mixture likelihood (the canary's over ``prior``, the
    baseline's over ``baseline_prior``, by default the same) over the largest likelihood the
    null allows. For the true means (inside the null) that ratio is at most the mixture
    martingales' product, so the evidence reaching 1/alpha has probability at most alpha under
    continuous monitoring. 0 when the estimates are within the null (nothing against it).
    """
    (xc, nc), (xb, nb) = canary, baseline
    for total, n in (canary, baseline):
        _check_counts(total, n, bounded=True)
    xc, xb = min(xc, nc), min(xb, nb)
    if nc == 0 or nb == 0 or not 0 <= delta < 1 or xc / nc - xb / nb <= delta:
        return 0.0
    theirs = prior if baseline_prior is None else baseline_prior
    mixture = _bounded_mixture(xc, nc, prior) + _bounded_mixture(xb, nb, theirs)
    return max(0.0, mixture - _null_peak(xc, nc, xb, nb, delta))


def _null_peak(xc: float, nc: float, xb: float, nb: float, delta: float) -> float:
    """The largest log likelihood with the canary's mean = the baseline's + ``delta`` (where the
    null's peak lies when the estimates are outside it); the log likelihood is concave in the
    baseline's mean, so its slope is bisected to zero."""

    def log_likelihood(p: float) -> float:
        q = p + delta
        return _xlogy(xc, q) + _xlogy(nc - xc, 1 - q) + _xlogy(xb, p) + _xlogy(nb - xb, 1 - p)

    def slope(p: float) -> float:
        q = p + delta
        return xc / q - (nc - xc) / (1 - q) + (xb / p if xb else 0.0) - (nb - xb) / (1 - p)

    lo, hi = 1e-300, 1.0 - delta - 1e-12
    if slope(lo) <= 0:
        return log_likelihood(0.0)
    if slope(hi) >= 0:
        return log_likelihood(hi)
    for _ in range(_ITERATIONS):
        middle = 0.5 * (lo + hi)
        if slope(middle) > 0:
            lo = middle
        else:
            hi = middle
    return log_likelihood(0.5 * (lo + hi))


def poisson_log_evidence(count: float, exposure: float, rate: float) -> float:
    """log of the mixture e-value against "events arrive at ``rate`` per unit" after ``count``
    events over ``exposure`` units.
    """
    _check_counts(count, exposure, bounded=False)
    return _minus(_poisson_mixture(count, exposure), _xlogy(count, rate) - rate * exposure)


def poisson_interval(count: float, exposure: float, alpha: float) -> Interval:
    """The confidence sequence for a rate per unit at level ``1 - alpha``; hi may be +inf."""
    _check_alpha(alpha)
    _check_counts(count, exposure, bounded=False)
    if exposure == 0:
        return Interval(lo=0.0, hi=math.inf)
    threshold = _poisson_mixture(count, exposure) - math.log(1.0 / alpha)

    def inside(rate: float) -> bool:  # the evidence against rate is below 1/alpha
        return _xlogy(count, rate) - rate * exposure > threshold

    mean = count / exposure
    lo = 0.0 if inside(0.0) else _edge(inside, outside=0.0, within=mean)
    far = max(1.0, 2.0 * mean)
    while inside(far):
        far *= 2.0
    return Interval(lo=lo, hi=_edge(inside, outside=far, within=mean))


def _poisson_mixture(count: float, exposure: float) -> float:
    return (
        PRIOR * math.log(PRIOR)
        - math.lgamma(PRIOR)
        + math.lgamma(PRIOR + count)
        - (PRIOR + count) * math.log(PRIOR + exposure)
    )


def _minus(mixture: float, null: float) -> float:
    """log(mixture likelihood / null likelihood); +inf when the null likelihood is 0."""
    return math.inf if null == -math.inf else mixture - null


def _edge(inside: Callable[[float], bool], *, outside: float, within: float) -> float:
    """The boundary between a point ``within`` the set and one ``outside`` it (the set is an
    interval: the log evidence is convex in the parameter). Returns the inner side."""
    for _ in range(_ITERATIONS):
        middle = 0.5 * (outside + within)
        if inside(middle):
            within = middle
        else:
            outside = middle
    return within


def _check_counts(total: float, n: float, *, bounded: bool) -> None:
    if not (math.isfinite(total) and math.isfinite(n)) or total < 0 or n < 0:
        raise ValueError(f"counts must be finite and 0 or more, got {total} of {n}")
    if bounded and total > n * (1 + 1e-9):
        raise ValueError(f"a sum of [0, 1] observations cannot exceed their number: {total} > {n}")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
