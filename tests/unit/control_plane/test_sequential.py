"""The anytime-valid statistics on inputs whose values can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from control_plane.core.sequential import (
    Interval,
    Prior,
    bounded_interval,
    bounded_log_evidence,
    poisson_interval,
    poisson_log_evidence,
    shift_log_evidence,
)


@pytest.mark.parametrize(
    ("total", "n", "p", "evidence"),
    [
        # B(1/2 + s, 1/2 + n - s) / B(1/2, 1/2) / (p^s (1 - p)^(n - s)), B(1/2, 1/2) = pi
        pytest.param(0, 0, 0.3, 1.0, id="no-data-is-no-evidence"),
        pytest.param(1, 1, 0.5, 0.5 / 0.5, id="one-success-against-a-half"),
        pytest.param(2, 2, 0.5, 0.375 / 0.25, id="two-successes-against-a-half"),
        pytest.param(0, 3, 0.5, 0.3125 / 0.125, id="three-failures-against-a-half"),
        pytest.param(0.5, 1, 0.5, (math.gamma(1) ** 2 / math.gamma(2) / math.pi) / 0.5, id="half"),
        pytest.param(1, 1, 0.0, math.inf, id="a-success-rules-out-zero"),
        pytest.param(0, 1, 1.0, math.inf, id="a-failure-rules-out-one"),
    ],
)
def test_bounded_evidence(total: float, n: float, p: float, evidence: float) -> None:
    result = bounded_log_evidence(total, n, p)

    assert result == pytest.approx(math.log(evidence))


@pytest.mark.parametrize(
    ("count", "exposure", "rate", "evidence"),
    [
        # (1/2)^(1/2) G(1/2 + c) / (G(1/2) (1/2 + e)^(1/2 + c)) / (rate^c exp(-rate e))
        pytest.param(0, 0, 2.0, 1.0, id="no-data-is-no-evidence"),
        pytest.param(0, 1, 1.0, math.sqrt(1 / 3) / math.exp(-1), id="no-event-in-one-unit"),
        pytest.param(1, 1, 1.0, 0.5 * math.sqrt(0.5) / 1.5**1.5 / math.exp(-1), id="one-event"),
        pytest.param(1, 1, 0.0, math.inf, id="an-event-rules-out-rate-zero"),
    ],
)
def test_poisson_evidence(count: float, exposure: float, rate: float, evidence: float) -> None:
    result = poisson_log_evidence(count, exposure, rate)

    assert result == pytest.approx(math.log(evidence))


@pytest.mark.parametrize(
    ("total", "n", "alpha", "lo", "hi"),
    [
        pytest.param(0, 0, 0.01, 0.0, 1.0, id="nothing-known"),
        # no successes: the evidence against p is pi^-1 B(1/2, n + 1/2) / (1 - p)^n, and
        # B(1/2, 1/2) / pi = 1, so with n = 1 the upper edge solves 0.5 / (1 - p) = 1 / alpha
        pytest.param(0, 1, 0.1, 0.0, 1 - 0.5 * 0.1, id="one-failure"),
        pytest.param(1, 1, 0.1, 0.5 * 0.1, 1.0, id="one-success"),
    ],
)
def test_bounded_interval_edges(total: float, n: float, alpha: float, lo: float, hi: float) -> None:
    result = bounded_interval(total, n, alpha)

    assert result.lo == pytest.approx(lo, abs=1e-9)
    assert result.hi == pytest.approx(hi, abs=1e-9)


@pytest.mark.parametrize(
    ("total", "n"),
    [
        pytest.param(3, 1000, id="rare"),
        pytest.param(500, 1000, id="even"),
        pytest.param(812.5, 1000, id="confidences"),
    ],
)
def test_bounded_interval_holds_the_mean_and_its_edges_are_at_one_over_alpha(
    total: float, n: float
) -> None:
    alpha = 0.01

    result = bounded_interval(total, n, alpha)

    assert total / n in result
    for edge in (result.lo, result.hi):
        assert bounded_log_evidence(total, n, edge) == pytest.approx(math.log(1 / alpha), abs=1e-6)


def test_poisson_interval_holds_the_rate_and_its_edges_are_at_one_over_alpha() -> None:
    result = poisson_interval(300, 100, 0.01)

    assert 3.0 in result
    for edge in (result.lo, result.hi):
        assert poisson_log_evidence(300, 100, edge) == pytest.approx(math.log(100), abs=1e-6)


def test_poisson_interval_without_exposure_is_everything() -> None:
    assert poisson_interval(0, 0, 0.01) == Interval(lo=0.0, hi=math.inf)


def test_more_data_narrows_the_interval() -> None:
    small, large = bounded_interval(10, 100, 0.01), bounded_interval(100, 1000, 0.01)

    assert large.hi - large.lo < small.hi - small.lo


def test_bounded_interval_covers_the_truth_at_every_look() -> None:
    """Ville: 400 seeded Bernoulli(0.1) runs of 400 draws, looked at after every 10 draws;
    the fraction ever excluding 0.1 stays below alpha."""
    rng = np.random.default_rng(7)
    draws = rng.random((400, 400)) < 0.1
    totals = draws.cumsum(axis=1)

    excluded = 0
    for run in totals:
        if any(0.1 not in bounded_interval(float(run[t - 1]), t, 0.1) for t in range(10, 401, 10)):
            excluded += 1

    assert excluded / 400 <= 0.1


@pytest.mark.parametrize(
    ("canary", "baseline", "delta", "evidence"),
    [
        # both mixtures over the null's peak, which for delta = 0 is the pooled mean
        pytest.param((2, 2), (0, 2), 0.0, 0.375**2 / 0.5**4, id="two-against-none"),
        pytest.param((3, 3), (0, 3), 0.0, 0.3125**2 / 0.5**6, id="three-against-none"),
        pytest.param((1, 10), (1, 10), 0.0, 1.0, id="equal-estimates-are-no-evidence"),
        pytest.param((5, 10), (1, 10), 0.5, 1.0, id="within-the-tolerance-is-no-evidence"),
        pytest.param((2, 2), (0, 0), 0.0, 1.0, id="no-baseline-is-no-evidence"),
    ],
)
def test_shift_evidence(
    canary: tuple[float, float], baseline: tuple[float, float], delta: float, evidence: float
) -> None:
    result = shift_log_evidence(canary, baseline, delta)

    assert result == pytest.approx(math.log(evidence))


def test_shift_evidence_mixes_the_baseline_over_its_own_prior() -> None:
    # canary 2 of 2 over Jeffreys: B(5/2, 1/2) / B(1/2, 1/2) = 0.375; baseline 0 of 2 over the
    # uniform Beta(1, 1): B(1, 3) / B(1, 1) = 1/3; the null's peak is the pooled 1/2: 0.5^4
    result = shift_log_evidence((2, 2), (0, 2), 0.0, baseline_prior=Prior(a=1.0, b=1.0))

    assert result == pytest.approx(math.log(0.375 / 3 / 0.5**4))


def test_shift_evidence_grows_with_the_shift() -> None:
    small = shift_log_evidence((60, 1000), (10, 1000), 0.01)
    large = shift_log_evidence((100, 1000), (10, 1000), 0.01)

    assert 0 < small < large


def test_shift_evidence_rarely_reaches_one_over_alpha_for_equal_rates() -> None:
    """Ville: 300 seeded runs of equal 2% rates, 1:3 traffic, looked at every 30 requests;
    the fraction whose evidence ever reaches 1/0.1 stays below 0.1."""
    rng = np.random.default_rng(11)
    canary = (rng.random((300, 600)) < 0.02).cumsum(axis=1)
    baseline = (rng.random((300, 1800)) < 0.02).cumsum(axis=1)

    crossed = 0
    for c, b in zip(canary, baseline, strict=True):
        looks = range(30, 601, 30)
        if any(
            shift_log_evidence((float(c[n - 1]), n), (float(b[3 * n - 1]), 3 * n), 0.0)
            >= math.log(10)
            for n in looks
        ):
            crossed += 1

    assert crossed / 300 <= 0.1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: bounded_interval(5, 3, 0.1), "cannot exceed", id="sum-over-n"),
        pytest.param(lambda: bounded_interval(-1, 3, 0.1), "0 or more", id="negative"),
        pytest.param(lambda: bounded_interval(1, 3, 0.0), "alpha", id="alpha-zero"),
        pytest.param(lambda: poisson_interval(math.nan, 3, 0.1), "finite", id="nan"),
    ],
)
def test_bad_counts_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
