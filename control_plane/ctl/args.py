"""`ctl`'s argument types: everything checked locally, before any RPC is made."""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Callable
from typing import NoReturn

from yolofleet.consul.durations import parse_duration


class UsageError(Exception):
    """The command line is malformed or asks for something impossible; no RPC was made."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def percent(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a whole percentage from 1 to 100, not {text!r}")
    return value


def steps(text: str) -> list[int]:
    hint = f"must be increasing percentages ending at 100, like 10,50,100, not {text!r}"
    try:
        percents = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(hint) from None
    increasing = all(a < b for a, b in itertools.pairwise(percents))
    if not increasing or percents[0] < 1 or percents[-1] != 100:
        raise argparse.ArgumentTypeError(hint)
    return percents


def bound(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, not {text!r}")
    return value


def count(text: str) -> int:
    value = int(text) if text.isdecimal() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more, not {text!r}")
    return value


def duration(text: str) -> float:
    """Seconds from ``90``, ``1.5``, ``30s``, ``5m``, ``1h`` or ``1h30m`` (Go's duration units)."""
    hint = f"must be a duration like 30s, 5m or 1h, or a number of seconds, not {text!r}"
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(hint) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(hint)
    return value


def share(text: str) -> float:
    value = bound(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}")
    return value


def probability(text: str) -> float:
    value = bound(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}")
    return value


# `ctl rollout` flag -> (Thresholds field, argument type, help).
THRESHOLD_FLAGS: dict[str, tuple[str, Callable[[str], float], str]] = {
    "--alpha": (
        "alpha",
        probability,
        "largest chance analysis fails a canary within every tolerance (0.01)",
    ),
    "--max-error-rate-increase": (
        "error_rate_increase",
        bound,
        "tolerance: canary minus baseline error rate (0.01)",
    ),
    "--max-p99-ratio": ("p99_latency_ratio", bound, "tolerance: canary/baseline p99 latency (1.5)"),
    "--latency-floor": ("latency_floor_s", bound, "baseline p99 below this many s counts as it"),
    "--max-detections-drift": (
        "detections_drift",
        bound,
        "tolerance: relative change of detections per image (0.5, a guardrail; stricter opt-in)",
    ),
    "--max-confidence-drift": (
        "confidence_drift",
        bound,
        "tolerance: change of mean detection confidence (0.25, a guardrail; stricter opt-in)",
    ),
    "--max-class-share-drop": (
        "class_share_drop",
        share,
        "tolerance: relative drop of any class's share of detections (0.8; 1 turns it off)",
    ),
    "--max-class-mix-distance": (
        "class_mix_distance",
        share,
        "tolerance: total variation distance of class mix (off unless set below 1)",
    ),
    "--min-samples": ("min_samples", count, "samples per side before a check can pass (100)"),
    "--min-latency-samples": (
        "min_latency_samples",
        count,
        "latencies per side before p99 can pass (500)",
    ),
    "--analysis-deadline": (
        "analysis_deadline_s",
        duration,
        "s to wait for a conclusive analysis, then pause (300)",
    ),
    "--report-deadline": (
        "report_deadline_s",
        duration,
        "s for canaries to serve the model, then roll back (120)",
    ),
    "--failures": (
        "consecutive_failures",
        count,
        "failing or erroring assessments in a row that roll back (2)",
    ),
}


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}")
    return value
