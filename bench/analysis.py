"""Analysis benchmark: false rollbacks and time to detect, new sequential rule vs the current one.

Run with ``.venv/bin/python -m bench.analysis [--rollouts 1000] [--rates 10,50]``. For each
scenario and request rate, ``--rollouts`` simulated canary steps (1 canary node against 3
baseline nodes, ``rate`` requests per second per node, see ``analysis_traffic``) are judged by
both rules on the same traffic, every 2 s over the growing window from the start of the hold,
as the controller does:

- the NEW rule: ``control_plane.core.analysis.assess`` with the default ``Thresholds``;
- the CURRENT rule: ``bench.current_rule`` (a copy of the analysis before this change).

Either way a rollout rolls back on ``consecutive_failures`` (2) failing verdicts in a row, at
any time, and passes on the first PASS once the 60 s hold is over; with no PASS 300 s after the
hold it pauses. Scenarios: identical models at 0.5 % and 1 % model errors (every rollback is a
false one), and regressions from the first request on: (a) no detections, (b) +5 points of
errors, (c) 2x latency (p99 40 ms -> 80 ms).

Figures (per scenario, rate and rule: rollbacks, passes, pauses, median times) go to
``bench/results/analysis-<timestamp>.json`` with a plot next to it. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import current_rule
from bench.analysis_replay import Recorded, replay
from bench.analysis_traffic import Model, Totals, coarsened, samples_at, simulate
from control_plane.core.analysis import Outcome, assess
from control_plane.core.samples import Samples
from control_plane.core.spec import Thresholds

TICK_S = 2.0
HOLD_S = 60.0
ANALYSIS_DEADLINE_S = 300.0
CANARY_NODES, BASELINE_NODES = 1, 3
FAILURES_IN_A_ROW = 2
RESULTS = Path(__file__).resolve().parent / "results"

Rule = Callable[[Samples, Samples], str]

BASE = Model()
SCENARIOS: dict[str, tuple[Model, Model, bool]] = {
    # name: (canary, baseline, regressed)
    "identical, 0.5% errors": (BASE, BASE, False),
    "identical, 1% errors": (Model(error_rate=0.01), Model(error_rate=0.01), False),
    "(a) no detections": (Model(found=0.0), BASE, True),
    "(b) +5 points of errors": (Model(error_rate=BASE.error_rate + 0.05), BASE, True),
    "(c) 2x p99 latency": (BASE.slower(2.0), BASE, True),
}


def new_rule(canary: Samples, baseline: Samples) -> str:
    return assess(canary, baseline, Thresholds()).outcome.value


def current(canary: Samples, baseline: Samples) -> str:
    old = current_rule.Thresholds()
    return current_rule.assess(coarsened(canary), coarsened(baseline), old).outcome.value


RULES: dict[str, Rule] = {"new": new_rule, "current": current}


def strict_rules(confidence_drift: float) -> dict[str, Rule]:
    """Both rules with the operator's stricter confidence bound (as the e2e test's drift run)."""
    new_t = Thresholds(confidence_drift=confidence_drift)
    old_t = current_rule.Thresholds(confidence_drift=confidence_drift)
    return {
        "new": lambda c, b: assess(c, b, new_t).outcome.value,
        "current": lambda c, b: (
            current_rule.assess(coarsened(c), coarsened(b), old_t).outcome.value
        ),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Ending:
    """How one simulated rollout step ended, and when (seconds since the hold began)."""

    outcome: str  # "rolled_back", "passed" or "paused"
    at_s: float


def judge(rule: Rule, canary: Totals, baseline: Totals, rollout: int) -> Ending:
    """Ticks one rollout step the way ``rollout.step`` does for the verdicts it is given."""
    streak = 0
    ticks = canary.requests.shape[1]
    for tick in range(ticks):
        now = (tick + 1) * TICK_S
        outcome = rule(samples_at(canary, rollout, tick), samples_at(baseline, rollout, tick))
        streak = streak + 1 if outcome in (Outcome.FAIL, Outcome.ERROR) else 0
        if streak >= FAILURES_IN_A_ROW:
            return Ending(outcome="rolled_back", at_s=now)
        if now >= HOLD_S and outcome == Outcome.PASS:
            return Ending(outcome="passed", at_s=now)
    return Ending(outcome="paused", at_s=ticks * TICK_S)


REPLAYED: dict[str, tuple[str, str, bool]] = {
    # name: (canary model, baseline model, regressed), figures from bench.analysis_replay
    "replayed v1 vs v1": ("shapes-v1", "shapes-v1", False),
    "replayed v2 (retrained) vs v1": ("shapes-v2", "shapes-v1", False),
    "replayed drift vs v2, --max-confidence-drift 0.08": ("shapes-drift", "shapes-v2", True),
}
REPLAY_AFTER_S = 60.0
"""Replayed rollouts are judged for this long after the hold (memory), then count as paused."""
STRICT = {"replayed drift vs v2, --max-confidence-drift 0.08": 0.08}


def run_scenario(
    name: str, *, rate: float, rollouts: int, seed: int, replayed: dict[str, Recorded]
) -> dict[str, dict[str, object]]:
    rng = np.random.default_rng(seed)
    ticks = int((HOLD_S + (ANALYSIS_DEADLINE_S if name in SCENARIOS else REPLAY_AFTER_S)) / TICK_S)
    common = {"rate": rate, "tick_s": TICK_S, "ticks": ticks, "rollouts": rollouts, "rng": rng}
    if name in SCENARIOS:
        canary_model, baseline_model, regressed = SCENARIOS[name]
        canary = simulate(canary_model, nodes=CANARY_NODES, **common)  # type: ignore[arg-type]
        baseline = simulate(baseline_model, nodes=BASELINE_NODES, **common)  # type: ignore[arg-type]
    else:
        ours, theirs, regressed = REPLAYED[name]
        extra = {"latency": BASE.bucket_probabilities(), "error_rate": BASE.error_rate}
        canary = replay(replayed[ours], nodes=CANARY_NODES, **common, **extra)  # type: ignore[arg-type]
        baseline = replay(replayed[theirs], nodes=BASELINE_NODES, **common, **extra)  # type: ignore[arg-type]
    rules = dict(RULES)
    if name in STRICT:
        rules = strict_rules(STRICT[name])
    figures: dict[str, dict[str, object]] = {}
    for rule_name, rule in rules.items():
        started = time.perf_counter()
        endings = [judge(rule, canary, baseline, r) for r in range(rollouts)]
        figures[rule_name] = summarise(endings, regressed=regressed)
        figures[rule_name]["judged_in_s"] = round(time.perf_counter() - started, 1)
    return figures


def summarise(endings: list[Ending], *, regressed: bool) -> dict[str, object]:
    def share(outcome: str) -> float:
        return sum(e.outcome == outcome for e in endings) / len(endings)

    def median(outcome: str) -> float | None:
        times = [e.at_s for e in endings if e.outcome == outcome]
        return statistics.median(times) if times else None

    rolled_back = share("rolled_back")
    return {
        "rollouts": len(endings),
        ("detected" if regressed else "false_rollbacks"): rolled_back,
        "rolled_back_within_hold": sum(
            e.outcome == "rolled_back" and e.at_s <= HOLD_S for e in endings
        )
        / len(endings),
        "passed": share("passed"),
        "paused": share("paused"),
        "median_time_to_rollback_s": median("rolled_back"),
        "median_time_to_pass_s": median("passed"),
    }


def plot(
    results: dict[str, dict[str, dict[str, dict[str, object]]]], scenarios: list[str], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.2
    for index, (rate, rule) in enumerate((r, u) for r in rates for u in RULES):
        rates_of = [results[rate][s][rule] for s in scenarios]
        shares = [float(f.get("detected", f.get("false_rollbacks", 0.0))) for f in rates_of]  # type: ignore[arg-type]
        times = [f["median_time_to_rollback_s"] or 0.0 for f in rates_of]
        xs = np.arange(len(scenarios)) + (index - 1.5) * width
        label = f"{rule} rule, {rate} req/s"
        axes[0].bar(xs, shares, width, label=label)
        axes[1].bar(xs, times, width, label=label)
    titles = ("share of rollouts rolled back", "median s to rollback")
    for axis, title in zip(axes, titles, strict=True):
        axis.set_xticks(np.arange(len(scenarios)), scenarios, rotation=20, ha="right", fontsize=8)
        axis.set_title(title)
    axes[0].axhline(0.01, color="grey", linestyle=":", linewidth=1)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rollouts", type=int, default=1000, help="simulated rollouts each")
    parser.add_argument("--rates", default="10,50", help="requests per second per node")
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    parser.add_argument(
        "--replay", type=Path, help="figures of bench.analysis_replay: run the replayed scenarios"
    )
    args = parser.parse_args(argv)
    replayed: dict[str, Recorded] = {}
    names = list(SCENARIOS)
    if args.replay:
        raw = json.loads(args.replay.read_text())["models"]
        replayed = {name: Recorded.of(figures) for name, figures in raw.items()}
        names = list(REPLAYED)
    results: dict[str, dict[str, dict[str, dict[str, object]]]] = {}
    for rate in (float(r) for r in args.rates.split(",")):
        key = f"{rate:g}"
        results[key] = {}
        for offset, name in enumerate(names):
            figures = run_scenario(
                name, rate=rate, rollouts=args.rollouts, seed=args.seed + offset, replayed=replayed
            )
            results[key][name] = figures
            print(f"{key} req/s, {name}: {json.dumps(figures)}", file=sys.stderr)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    kind = "replayed" if args.replay else "simulated"
    path = args.out / f"analysis-{kind}-{stamp}.json"
    setup = {
        "canary_nodes": CANARY_NODES,
        "baseline_nodes": BASELINE_NODES,
        "tick_s": TICK_S,
        "hold_s": HOLD_S,
        "analysis_deadline_s": ANALYSIS_DEADLINE_S,
        "failures_in_a_row": FAILURES_IN_A_ROW,
        "rollouts": args.rollouts,
        "seed": args.seed,
        "scenarios": {name: [repr(c), repr(b)] for name, (c, b, _) in SCENARIOS.items()},
        "replayed_from": str(args.replay) if args.replay else None,
    }
    path.write_text(json.dumps({"setup": setup, "results": results}, indent=2) + "\n")
    plot(results, names, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
