"""What an operator asked for: a ``RolloutSpec`` of ``Step``s and the analysis ``Thresholds``.

``build_spec`` is the one place a spec is checked; everything after it trusts the spec.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import pairwise

from control_plane.core.errors import SpecInvalid

DEFAULT_CANARY_PERCENT = 10
DEFAULT_HOLD_S = 60.0
FULL = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One stage of a rollout: this share of live nodes serves the canary for ``hold_s``."""

    canary_percent: int
    hold_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """The tolerances a canary must stay within against the baseline, and the analysis' error rate.

    Each tolerance is the smallest change that matters. A check FAILs only when its evidence that
    the canary is beyond the tolerance reaches ``1/alpha_check`` (``alpha`` split over the
    checks that are on), so identical models roll back with probability at most ``alpha`` however
    long and often they are judged; it PASSes once each side has the check's minimum samples and
    the estimate is within the tolerance; it is INCONCLUSIVE otherwise.

    The output checks default to guardrails that catch a broken model (no detections, collapsed
    confidence, classes vanishing) and let a comparable retrained model through (one moves the
    class mix by ~26% and detections per image by ~17%). Stricter drift bounds are opt-in:
    ``class_mix_distance`` below 1, or lower drift bounds.
    """

    alpha: float = 0.01
    """Largest chance that analysis fails a canary that is within every tolerance."""
    error_rate_increase: float = 0.01
    """Largest allowed canary error rate minus baseline error rate (0.01 = one point)."""
    p99_latency_ratio: float = 1.5
    """Largest allowed canary p99 over baseline p99."""
    latency_floor_s: float = 0.005
    """Baseline p99s below this count as this, so sub-floor noise never fails the ratio."""
    detections_drift: float = 0.5
    """Largest allowed |canary - baseline| / baseline of detections per image."""
    confidence_drift: float = 0.25
    """Largest allowed |canary - baseline| of mean detection confidence."""
    class_share_drop: float = 0.8
    """Largest allowed relative drop of any class's share of detections (0.8: a class the
    canary finds at under a fifth of the baseline's share has vanished); 1 turns the check off."""
    class_mix_distance: float = 1.0
    """Largest allowed total variation distance between the class mixes (0 to 1); 1 (the
    default) turns the check off."""
    min_samples: int = 100
    """Fewer than this on either side makes a check inconclusive, never a pass."""
    min_latency_samples: int = 500
    """Latencies each side needs before p99 can pass: with fewer than ~5 observations above it,
    a p99 is just the slowest few requests."""
    analysis_deadline_s: float = 300.0
    """How long analysis waits for conclusive data after the hold before pausing."""
    report_deadline_s: float = 120.0
    """How long nodes have to report serving the new model before the rollout rolls back."""
    consecutive_failures: int = 2
    """Failing (or erroring) assessments in a row that roll the rollout back; 1 acts on the
    first. The tests already bound false failures under continuous monitoring, so this only
    guards against a transient ERROR (a metric source that did not answer) and costs one tick.
    A canary that fails to load the model is never given a second chance."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutSpec:
    """A rollout of ``target`` to ``group`` through ``steps``; the last step is at 100%."""

    group: str
    target: str
    steps: tuple[Step, ...]
    thresholds: Thresholds = Thresholds()
    created: float


def parse_steps(text: str) -> tuple[int, ...]:
    """``"10,50"`` -> ``(10, 50, 100)``: canary percents, strictly increasing, ending at 100."""
    parts = [part.strip().removesuffix("%").strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise SpecInvalid(
            f"steps {text!r} must be comma-separated canary percents, e.g. '10,50,100'"
        )
    percents: list[int] = []
    for part in parts:
        if not part.isdecimal():
            raise SpecInvalid(f"step {part!r} in {text!r} is not a whole-number percent (1-100)")
        percents.append(int(part))
    return check_percents(percents)


def check_percents(percents: Sequence[int]) -> tuple[int, ...]:
    """Checks canary percents and appends 100 when the last step stops short of it."""
    if not percents:
        raise SpecInvalid("a rollout needs at least one step, e.g. '10,50,100'")
    for percent in percents:
        if not 1 <= percent <= FULL:
            raise SpecInvalid(f"step {percent}% is out of range: canary percents are 1 to 100")
    for before, after in pairwise(percents):
        if after <= before:
            raise SpecInvalid(
                f"steps must strictly increase, but {after}% follows {before}% "
                f"in {','.join(map(str, percents))}"
            )
    return tuple(percents) if percents[-1] == FULL else (*percents, FULL)


def build_spec(
    group: str,
    target: str,
    *,
    created: float,
    canary: int | None = None,
    steps: str | Sequence[int] | None = None,
    hold_s: float = DEFAULT_HOLD_S,
    thresholds: Thresholds | None = None,
) -> RolloutSpec:
    """The checked spec for ``ctl rollout TARGET --group GROUP [--canary N] [--steps ...]``.

    Without ``steps`` the steps are ``canary``, 50, 100 (those above ``canary``).
    """
    if not group.strip():
        raise SpecInvalid("a rollout needs a group name")
    if not target.strip():
        raise SpecInvalid("a rollout needs a target model name")
    percents = _percents(canary, steps)
    if not math.isfinite(hold_s) or hold_s < 0:
        raise SpecInvalid(f"hold {hold_s}s must be a finite number of seconds, 0 or more")
    chosen = thresholds if thresholds is not None else Thresholds()
    _check_thresholds(chosen)
    return RolloutSpec(
        group=group,
        target=target,
        steps=tuple(Step(canary_percent=p, hold_s=hold_s) for p in percents),
        thresholds=chosen,
        created=created,
    )


def _percents(canary: int | None, steps: str | Sequence[int] | None) -> tuple[int, ...]:
    if canary is not None and not 1 <= canary <= FULL:
        raise SpecInvalid(f"--canary {canary} is out of range: give a percent from 1 to 100")
    if steps is None:
        first = DEFAULT_CANARY_PERCENT if canary is None else canary
        return check_percents([first, *(p for p in (50, FULL) if p > first)])
    percents = parse_steps(steps) if isinstance(steps, str) else check_percents(list(steps))
    if canary is not None and percents[0] != canary:
        raise SpecInvalid(
            f"--canary {canary} disagrees with the first step {percents[0]}%; give one or the other"
        )
    return percents


def _check_thresholds(thresholds: Thresholds) -> None:
    for field in fields(thresholds):
        value = getattr(thresholds, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecInvalid(f"threshold {field.name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise SpecInvalid(f"threshold {field.name}={value} must be a finite number, 0 or more")
    if not 0 < thresholds.alpha < 1:
        raise SpecInvalid(f"threshold alpha={thresholds.alpha} must be between 0 and 1")
    for name in ("class_share_drop", "class_mix_distance"):
        if getattr(thresholds, name) > 1:
            raise SpecInvalid(f"threshold {name}={getattr(thresholds, name)} must be 0 to 1")
    if thresholds.p99_latency_ratio < 1:
        raise SpecInvalid(
            f"threshold p99_latency_ratio={thresholds.p99_latency_ratio} below 1 would fail "
            "a canary exactly as fast as the baseline"
        )
    for name in ("min_samples", "min_latency_samples", "consecutive_failures"):
        count = getattr(thresholds, name)
        if not isinstance(count, int) or count < 1:
            raise SpecInvalid(f"threshold {name}={count} must be a whole number, 1 or more")
