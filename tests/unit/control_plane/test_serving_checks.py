"""The latency arithmetic of the p99 check on histograms whose answers can be worked out by hand."""

from __future__ import annotations

import math

import pytest

from control_plane.core.samples import LatencyHistogram
from control_plane.core.sequential import bounded_log_evidence
from control_plane.core.serving_checks import above, confident_p99, confident_quantile, tail_prior

TWO = (0.1, 0.2)


@pytest.mark.parametrize(
    ("counts", "x", "open_bucket", "expected"),
    [
        pytest.param((10, 10, 0), 0.05, True, 10 + 10 * 0.5, id="first-bucket-linear"),
        pytest.param((10, 10, 0), 0.15, True, 10 * 0.5, id="nothing-above-linear"),
        pytest.param((10, 10, 10), 0.15, True, 20 * 0.5**0.5, id="geometric"),
        pytest.param((10, 10, 10), 0.1, True, 20, id="at-a-bound"),
        pytest.param((10, 10, 10), 0.2, False, 10, id="at-the-last-bound"),
        pytest.param((10, 10, 10), 0.3, True, 10, id="open-bucket-in-full"),
        pytest.param((10, 10, 10), 0.3, False, 0, id="open-bucket-not-at-all"),
        pytest.param((10, 10, 10), 0.0, True, 30, id="everything"),
    ],
)
def test_requests_above_a_latency(
    counts: tuple[int, ...], x: float, open_bucket: bool, expected: float
) -> None:
    histogram = LatencyHistogram(bounds=TWO, counts=counts)

    result = above(histogram, x, open_bucket=open_bucket)

    assert result == pytest.approx(expected)


def test_confident_p99_is_where_the_share_above_is_shown_below_one_percent() -> None:
    histogram = LatencyHistogram(bounds=(0.01, 0.02), counts=(0, 5000, 0))

    bound = confident_p99(histogram, 0.001)

    assert bound is not None
    assert 0.019 < bound <= 0.02
    slower = above(histogram, bound, open_bucket=True)
    assert slower < 50
    evidence = bounded_log_evidence(slower, 5000, 0.01, prior=tail_prior(0.01))
    assert evidence == pytest.approx(math.log(1000), abs=0.01)


@pytest.mark.parametrize(
    "histogram",
    [
        pytest.param(LatencyHistogram(), id="empty"),
        pytest.param(LatencyHistogram(bounds=(0.01, 0.02), counts=(0, 50, 0)), id="too-few"),
        pytest.param(LatencyHistogram(bounds=(0.01, 0.02), counts=(0, 0, 5000)), id="above-all"),
    ],
)
def test_confident_p99_is_unknown_until_the_data_show_it(histogram: LatencyHistogram) -> None:
    assert confident_p99(histogram, 0.001) is None


def test_confident_quantile_is_where_the_share_above_is_shown_below_the_tail_share() -> None:
    # 5000 latencies in (10, 20] ms: the count above x falls linearly to 0 at 20 ms
    histogram = LatencyHistogram(bounds=(0.01, 0.02), counts=(0, 5000, 0))

    bound = confident_quantile(histogram, 0.05, 0.001)

    assert bound is not None
    assert 0.0195 < bound < confident_p99(histogram, 0.001)  # type: ignore[operator]
    slower = above(histogram, bound, open_bucket=True)
    assert slower < 250
    evidence = bounded_log_evidence(slower, 5000, 0.05, prior=tail_prior(0.05))
    assert evidence == pytest.approx(math.log(1000), abs=0.01)


@pytest.mark.parametrize(
    ("share", "b"),
    [
        pytest.param(0.01, 49.0, id="p99"),
        pytest.param(0.05, 9.0, id="p95"),
        pytest.param(0.5, 1.0, id="median-uniform"),
    ],
)
def test_tail_prior_has_its_mean_near_twice_the_share(share: float, b: float) -> None:
    prior = tail_prior(share)

    assert (prior.a, prior.b) == (1.0, b)
