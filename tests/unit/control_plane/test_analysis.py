from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pytest

from control_plane.core.analysis import Check, Outcome, assess, error_verdict
from control_plane.core.samples import LatencyHistogram, Samples, combine
from control_plane.core.spec import Thresholds
from tests.unit.control_plane.builders import BOUNDS, THRESHOLDS, latency, samples

BASE = samples()


@dataclass(frozen=True, kw_only=True)
class Row:
    canary: Samples
    baseline: Samples = BASE
    thresholds: Thresholds = THRESHOLDS
    outcome: Outcome
    reason: tuple[str, ...] = ()


def spread(fast: int, slow: int) -> LatencyHistogram:
    """``fast`` latencies in (10, 20] ms and ``slow`` ones in (50, 100] ms."""
    counts = [0] * (len(BOUNDS) + 1)
    counts[BOUNDS.index(0.02)], counts[BOUNDS.index(0.1)] = fast, slow
    return LatencyHistogram(bounds=BOUNDS, counts=tuple(counts))


RETRAINED = {"circle": 0.3, "square": 0.45, "triangle": 0.25}
"""A comparable retrained model's class mix: total variation 0.2 from the baseline's."""

CHECKS: dict[Check, dict[str, Row]] = {
    Check.ERROR_RATE: {
        "same-rate-passes": Row(
            canary=samples(errors=1), baseline=samples(errors=1), outcome=Outcome.PASS
        ),
        "increase-at-the-tolerance-passes": Row(
            canary=samples(errors=11), baseline=samples(errors=1), outcome=Outcome.PASS
        ),
        "increase-over-the-tolerance-on-little-evidence-is-inconclusive": Row(
            canary=samples(errors=30),
            baseline=samples(errors=1),
            outcome=Outcome.INCONCLUSIVE,
            reason=(
                "error_rate: canary 0.0300 vs baseline 0.0010, increase +0.0290 "
                "(evidence 119, fails at 300)",
                "over tolerance 0.01 but not yet conclusively (n=1000/1000)",
            ),
        ),
        "increase-with-conclusive-evidence-fails": Row(
            canary=samples(errors=60),
            baseline=samples(errors=1),
            outcome=Outcome.FAIL,
            reason=(
                "error_rate: canary 0.0600 vs baseline 0.0010, increase +0.0590 "
                "(evidence 4.67e+10, fails at 300)",
                "beyond tolerance 0.01 (n=1000/1000)",
            ),
        ),
        "conclusive-evidence-fails-before-the-minimum-samples": Row(
            canary=samples(50, errors=25),
            baseline=samples(errors=1),
            outcome=Outcome.FAIL,
            reason=("n=50/1000",),
        ),
        "fewer-errors-pass": Row(
            canary=samples(errors=0), baseline=samples(errors=50), outcome=Outcome.PASS
        ),
        "few-canary-requests-is-inconclusive": Row(
            canary=samples(50, errors=1),
            outcome=Outcome.INCONCLUSIVE,
            reason=("error_rate: canary has 50 requests (needs 100 per side)",),
        ),
        "few-baseline-requests-is-inconclusive": Row(
            canary=samples(),
            baseline=samples(99),
            outcome=Outcome.INCONCLUSIVE,
            reason=("baseline has 99 requests",),
        ),
    },
    Check.P99_LATENCY: {
        "same-latency-passes": Row(canary=samples(), outcome=Outcome.PASS),
        "faster-passes": Row(canary=samples(p99=0.01), outcome=Outcome.PASS),
        "slower-by-the-ratio-fails": Row(
            canary=samples(5000, p99=0.05),
            baseline=samples(5000),
            outcome=Outcome.FAIL,
            reason=(
                # the first failing quantile, p95: 5000 * (50 - 29.4) / 30 requests are over
                # 1.5x the baseline's p95 bound (linear in the last occupied bucket)
                "p99_latency: canary p99 49.7ms vs baseline 19.9ms, worst ratio 2.50 (p99); "
                "68.50% of canary requests over 29.4ms (1.5x the baseline's p95 bound 19.6ms; "
                "5% allowed)",
                "beyond tolerance 1.5 (n=5000/5000)",
            ),
        ),
        "a-slower-p95-fails-though-the-p99-is-within": Row(
            # canary: 10% of requests in (50, 100] ms, baseline: 4%; p99 95.0 vs 87.5 ms (1.09x),
            # p95 75.0 vs 19.9 ms (3.77x): 10% of canary requests are over 1.5x the baseline's
            # p95 bound, where 5% are allowed
            canary=replace(samples(20000), latency=spread(18000, 2000)),
            baseline=replace(samples(20000), latency=spread(19200, 800)),
            outcome=Outcome.FAIL,
            reason=(
                "canary p99 95.0ms vs baseline 87.5ms, worst ratio 3.77 (p95); 10.00% of canary",
                "beyond tolerance 1.5 (n=20000/20000)",
            ),
        ),
        "slower-before-the-baseline-p95-is-known-is-inconclusive": Row(
            # 150 latencies cannot show the baseline's p95 (nor its p99) from above
            canary=samples(p99=0.05),
            baseline=samples(150),
            thresholds=replace(THRESHOLDS, min_latency_samples=100),
            outcome=Outcome.INCONCLUSIVE,
            reason=("the baseline's p99 bound not yet known", "not yet conclusively"),
        ),
        "slower-but-under-the-floor-passes": Row(
            canary=samples(p99=0.02),
            baseline=samples(p99=0.01),
            thresholds=replace(THRESHOLDS, latency_floor_s=0.02),
            outcome=Outcome.PASS,
        ),
        "few-latencies-is-inconclusive": Row(
            canary=replace(samples(), latency=latency(0.02, 20)),
            outcome=Outcome.INCONCLUSIVE,
            reason=("p99_latency: canary has 20 latencies",),
        ),
        "same-latency-on-too-few-latencies-is-inconclusive": Row(
            canary=replace(samples(), latency=latency(0.02, 499)),
            outcome=Outcome.INCONCLUSIVE,
            reason=("p99_latency: canary has 499 latencies (needs 500 per side)",),
        ),
    },
    Check.DETECTIONS_PER_IMAGE: {
        "same-count-passes": Row(canary=samples(), outcome=Outcome.PASS),
        "retrained-drift-passes": Row(canary=samples(per_image=2.34), outcome=Outcome.PASS),
        "no-detections-fails": Row(
            canary=samples(per_image=0),
            outcome=Outcome.FAIL,
            reason=(
                "detections_per_image: canary 0.000 vs baseline 2.000 per image, drift 100.0%",
                "beyond tolerance 0.5",
            ),
        ),
        "a-quarter-of-the-detections-fails": Row(
            canary=samples(per_image=0.5), outcome=Outcome.FAIL
        ),
        "stricter-opt-in-drift-fails": Row(
            canary=samples(per_image=1.4),
            thresholds=replace(THRESHOLDS, detections_drift=0.1),
            outcome=Outcome.FAIL,
        ),
        "nothing-on-both-sides-passes": Row(
            canary=samples(per_image=0), baseline=samples(per_image=0), outcome=Outcome.PASS
        ),
        "detections-where-baseline-had-none-fail": Row(
            canary=samples(per_image=0.5),
            baseline=samples(per_image=0),
            outcome=Outcome.FAIL,
            reason=("drift inf%",),
        ),
        "few-images-is-inconclusive": Row(
            canary=samples(10),
            outcome=Outcome.INCONCLUSIVE,
            reason=("canary has 10 images",),
        ),
    },
    Check.MEAN_CONFIDENCE: {
        "close-confidence-passes": Row(canary=samples(confidence=0.75), outcome=Outcome.PASS),
        "collapsed-confidence-fails": Row(
            canary=samples(confidence=0.4),
            outcome=Outcome.FAIL,
            reason=(
                "mean_confidence: canary 0.400 vs baseline 0.800, drift 0.400",
                "beyond tolerance 0.25 (n=2000/2000)",
            ),
        ),
        "much-higher-confidence-fails-too": Row(
            canary=samples(confidence=0.95),
            baseline=samples(confidence=0.5),
            outcome=Outcome.FAIL,
        ),
        "stricter-opt-in-drift-fails": Row(
            canary=samples(confidence=0.6),
            thresholds=replace(THRESHOLDS, confidence_drift=0.1),
            outcome=Outcome.FAIL,
        ),
        "few-detections-is-inconclusive": Row(
            canary=samples(per_image=0.05),
            outcome=Outcome.INCONCLUSIVE,
            reason=("mean_confidence: canary has 50 detections (needs 100 per side)",),
        ),
    },
    Check.CLASS_SHARE: {
        "same-mix-passes": Row(canary=samples(), outcome=Outcome.PASS),
        "retrained-mix-passes": Row(canary=samples(mix=RETRAINED), outcome=Outcome.PASS),
        "vanished-class-fails": Row(
            canary=samples(mix={"circle": 0.6, "square": 0.4}),
            outcome=Outcome.FAIL,
            reason=(
                "class_share: most dropped class 'triangle': 0.0% vs 20.0%, drop 100.0%",
                "beyond tolerance 0.8",
            ),
        ),
        "no-classified-detections-is-inconclusive": Row(
            canary=replace(samples(), class_counts=()),
            outcome=Outcome.INCONCLUSIVE,
            reason=("class_share: canary has 0 classified detections",),
        ),
    },
    Check.CLASS_MIX: {
        "opt-in-bound-passes-the-same-mix": Row(
            canary=samples(),
            thresholds=replace(THRESHOLDS, class_mix_distance=0.2),
            outcome=Outcome.PASS,
        ),
        "opt-in-bound-fails-a-large-shift": Row(
            canary=samples(mix={"circle": 0.9, "square": 0.05, "triangle": 0.05}),
            thresholds=replace(THRESHOLDS, class_mix_distance=0.2),
            outcome=Outcome.FAIL,
            reason=("class_mix: total variation distance 0.400", "beyond tolerance 0.2"),
        ),
        "unseen-class-fails": Row(
            canary=samples(mix={"star": 1.0}),
            thresholds=replace(THRESHOLDS, class_mix_distance=0.5),
            outcome=Outcome.FAIL,
            reason=("distance 1.000",),
        ),
        "few-classified-detections-is-inconclusive": Row(
            canary=replace(samples(), class_counts=(("circle", 40),)),
            thresholds=replace(THRESHOLDS, class_mix_distance=0.2),
            outcome=Outcome.INCONCLUSIVE,
            reason=("class_mix: canary has 40 classified detections",),
        ),
    },
}
ROWS = [(check, name, row) for check, rows in CHECKS.items() for name, row in rows.items()]


@pytest.mark.parametrize(
    ("check", "row"),
    [(check, row) for check, _, row in ROWS],
    ids=[f"{check}-{name}" for check, name, _ in ROWS],
)
def test_check(check: Check, row: Row) -> None:
    verdict = assess(row.canary, row.baseline, row.thresholds)

    result = next(c for c in verdict.checks if c.name is check)
    assert result.outcome is row.outcome, result.reason
    for fragment in row.reason:
        assert fragment in result.reason
    assert (result.canary_n, result.baseline_n) != (0, 0)
    assert result.score is not None
    if row.outcome is Outcome.PASS:
        assert result.score <= result.threshold
    if row.outcome is Outcome.FAIL:
        assert result.score > result.threshold


def test_every_check_passing_is_a_pass() -> None:
    verdict = assess(samples(), samples(), THRESHOLDS)

    assert verdict.outcome is Outcome.PASS
    assert [c.name for c in verdict.checks] == [c for c in Check if c is not Check.CLASS_MIX]
    assert verdict.reason.startswith("all 5 checks passed: error_rate: canary 0.0000")


@pytest.mark.parametrize(
    ("thresholds", "checks"),
    [
        pytest.param(THRESHOLDS, 5, id="defaults-leave-class-mix-off"),
        pytest.param(replace(THRESHOLDS, class_mix_distance=0.3), 6, id="class-mix-opted-in"),
        pytest.param(replace(THRESHOLDS, class_share_drop=1.0), 4, id="class-share-off"),
    ],
)
def test_checks_that_are_off_are_not_run(thresholds: Thresholds, checks: int) -> None:
    verdict = assess(samples(), samples(), thresholds)

    assert len(verdict.checks) == checks


def test_alpha_is_split_over_the_checks_that_are_on_by_weight() -> None:
    five = assess(samples(errors=30), samples(errors=1), THRESHOLDS)
    six = assess(samples(errors=30), samples(errors=1), replace(THRESHOLDS, class_mix_distance=0.3))

    assert "fails at 300)" in five.reason  # 1 / (0.01 * 3 / 9): weights 3, 3, 1, 1, 1
    assert "fails at 333)" in six.reason  # 1 / (0.01 * 3 / 10): and class mix's 1


def test_a_retrained_model_passes_the_default_guardrails() -> None:
    canary = samples(per_image=2.34, confidence=0.76, mix=RETRAINED)

    verdict = assess(canary, samples(), THRESHOLDS)

    assert verdict.outcome is Outcome.PASS, verdict.reason


def test_one_failing_check_fails_the_verdict_and_names_it() -> None:
    verdict = assess(samples(errors=60), samples(errors=1), THRESHOLDS)

    assert verdict.outcome is Outcome.FAIL
    assert verdict.reason.startswith("error_rate: canary 0.0600 vs baseline 0.0010")
    assert "beyond tolerance 0.01" in verdict.reason
    assert "p99_latency" not in verdict.reason


def test_fail_wins_over_inconclusive() -> None:
    canary = replace(samples(errors=60), class_counts=())

    verdict = assess(canary, samples(errors=1), THRESHOLDS)

    assert verdict.outcome is Outcome.FAIL
    assert {c.outcome for c in verdict.checks} == {Outcome.FAIL, Outcome.PASS, Outcome.INCONCLUSIVE}


@pytest.mark.parametrize(
    ("canary", "baseline"),
    [
        pytest.param(Samples(), Samples(), id="no-data-at-all"),
        pytest.param(samples(99), samples(), id="one-short-canary"),
        pytest.param(samples(), Samples(), id="no-baseline"),
    ],
)
def test_too_little_data_is_inconclusive_never_pass(canary: Samples, baseline: Samples) -> None:
    verdict = assess(canary, baseline, THRESHOLDS)

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert Outcome.FAIL not in {c.outcome for c in verdict.checks}
    assert "needs 100 per side" in verdict.reason


@pytest.mark.parametrize(
    ("canary", "problem"),
    [
        pytest.param(
            replace(samples(), errors=2000), "2000 errors out of 1000", id="errors-over-requests"
        ),
        pytest.param(replace(samples(), requests=-1), "requests count is negative", id="negative"),
        pytest.param(
            replace(samples(), latency=LatencyHistogram(bounds=BOUNDS, counts=(1,))),
            "one count per bound",
            id="histogram-shape",
        ),
        pytest.param(
            replace(samples(), latency=LatencyHistogram(bounds=(0.1, 0.05), counts=(1, 1, 0))),
            "not positive and increasing",
            id="histogram-bounds",
        ),
        pytest.param(
            replace(samples(), latency=LatencyHistogram(bounds=(), counts=(5,))),
            "no bucket bounds",
            id="histogram-without-bounds",
        ),
        pytest.param(
            replace(samples(), confidence_sum=math.nan), "confidence sum is nan", id="nan"
        ),
        pytest.param(
            replace(samples(), confidence_sum=5000.0), "exceeds 2000 detections", id="confidence"
        ),
        pytest.param(
            replace(samples(), class_counts=(("a", 1), ("a", 2))), "name a class twice", id="dupe"
        ),
    ],
)
def test_implausible_samples_are_an_error(canary: Samples, problem: str) -> None:
    verdict = assess(canary, samples(), THRESHOLDS)

    assert verdict.outcome is Outcome.ERROR
    assert verdict.reason.startswith("canary samples are implausible: ")
    assert problem in verdict.reason


def test_error_verdict_carries_the_reason() -> None:
    verdict = error_verdict("metric source unreachable: connection refused")

    assert verdict.outcome is Outcome.ERROR
    assert verdict.checks == ()
    assert verdict.reason == "metric source unreachable: connection refused"


# --- samples --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("histogram", "q", "expected"),
    [
        pytest.param(LatencyHistogram(), 0.99, None, id="empty"),
        pytest.param(LatencyHistogram(bounds=(0.1, 0.2), counts=(0, 100, 0)), 0.5, 0.15, id="mid"),
        pytest.param(LatencyHistogram(bounds=(0.1, 0.2), counts=(50, 50, 0)), 0.5, 0.1, id="edge"),
        pytest.param(LatencyHistogram(bounds=(0.1,), counts=(100, 0)), 0.99, 0.099, id="first"),
        pytest.param(LatencyHistogram(bounds=(0.1,), counts=(90, 10)), 0.99, 0.1, id="overflow"),
    ],
)
def test_latency_quantile(histogram: LatencyHistogram, q: float, expected: float | None) -> None:
    result = histogram.quantile(q)

    assert result == (None if expected is None else pytest.approx(expected))


def test_combine_adds_every_count() -> None:
    a = Samples(
        requests=10,
        errors=1,
        latency=LatencyHistogram(bounds=(0.1,), counts=(9, 1)),
        images=9,
        detections=18,
        confidence_sum=14.4,
        class_counts=(("circle", 10), ("square", 8)),
    )
    b = replace(a, class_counts=(("square", 2), ("star", 16)))

    total = combine([a, b, Samples()])

    assert total.requests == 20
    assert total.errors == 2
    assert total.latency == LatencyHistogram(bounds=(0.1,), counts=(18, 2))
    assert total.images == 18
    assert total.detections == 36
    assert total.confidence_sum == pytest.approx(28.8)
    assert total.class_counts == (("circle", 10), ("square", 10), ("star", 16))


def test_histograms_with_different_bounds_do_not_merge() -> None:
    a = LatencyHistogram(bounds=(0.1,), counts=(1, 0))
    b = LatencyHistogram(bounds=(0.2,), counts=(1, 0))

    with pytest.raises(ValueError, match="different bucket bounds"):
        a.merge(b)
