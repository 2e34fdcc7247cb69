"""The control plane's own metrics: what each observed event leaves in the registry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from control_plane.core.analysis import Check, CheckResult, Outcome, Verdict
from control_plane.core.errors import StoreUnavailable
from control_plane.core.state import GroupState, Phase
from control_plane.telemetry import ControlPlaneMetrics, RollbackReason, rollback_reason
from tests.unit.control_plane.builders import GROUP, NEW, OLD, SPEC
from yolofleet.consul import ConsulUnavailable

HOLDING = GroupState(
    group=GROUP,
    stable=OLD,
    canary=NEW,
    canary_nodes=("n1",),
    phase=Phase.HOLDING,
    step_index=1,
    phase_since=1234.0,
)
BACK = replace(HOLDING, phase=Phase.ROLLED_BACK, canary=None, canary_nodes=(), reason="x")


def check(name: Check, outcome: Outcome) -> CheckResult:
    return CheckResult(
        name=name,
        outcome=outcome,
        value=0.1,
        baseline_value=0.0,
        score=0.1,
        threshold=0.01,
        canary_n=100,
        baseline_n=300,
        reason="",
    )


FAILED = Verdict(
    outcome=Outcome.FAIL,
    checks=(check(Check.ERROR_RATE, Outcome.FAIL), check(Check.CLASS_MIX, Outcome.PASS)),
    reason="error rate",
)


def value(m: ControlPlaneMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_a_tick_sets_one_phase_the_step_and_the_canary_weight() -> None:
    m = ControlPlaneMetrics()

    m.tick_done(HOLDING, HOLDING, None, spec=SPEC, duration_s=0.02)

    phases = {p.value: value(m, "yolofleet_rollout_phase", group=GROUP, phase=p) for p in Phase}
    assert phases == {p.value: (1.0 if p is Phase.HOLDING else 0.0) for p in Phase}
    assert value(m, "yolofleet_rollout_step", group=GROUP) == 2
    assert value(m, "yolofleet_rollout_canary_weight_percent", group=GROUP) == 50
    assert value(m, "yolofleet_rollout_canary_nodes", group=GROUP) == 1
    assert value(m, "yolofleet_rollout_phase_entered_timestamp_seconds", group=GROUP) == 1234.0
    assert value(m, "yolofleet_control_plane_tick_seconds_count") == 1


def test_verdicts_are_counted_by_outcome_and_each_check_by_its_own() -> None:
    m = ControlPlaneMetrics()

    m.tick_done(HOLDING, HOLDING, FAILED, spec=SPEC, duration_s=0.01)
    m.tick_done(HOLDING, HOLDING, FAILED, spec=SPEC, duration_s=0.01)

    assert value(m, "yolofleet_rollout_verdicts_total", group=GROUP, outcome="fail") == 2
    checks = "yolofleet_rollout_checks_total"
    assert value(m, checks, group=GROUP, check="error_rate", outcome="fail") == 2
    assert value(m, checks, group=GROUP, check="class_mix", outcome="pass") == 2


@pytest.mark.parametrize(
    ("old", "reason", "verdict", "expected"),
    [
        pytest.param(HOLDING, "analysis failed", FAILED, RollbackReason.ANALYSIS, id="analysis"),
        pytest.param(
            HOLDING,
            "canary node n1 failed to load shapes-v2: digest mismatch",
            None,
            RollbackReason.LOAD_FAILED,
            id="load-failed",
        ),
        pytest.param(
            HOLDING,
            "node n1 (loading) did not report shapes-v2 within 120s",
            None,
            RollbackReason.DEADLINE,
            id="deadline",
        ),
        pytest.param(
            replace(HOLDING, phase=Phase.COMPLETED), "undo", None, RollbackReason.UNDO, id="undo"
        ),
        pytest.param(HOLDING, "something new", None, RollbackReason.OTHER, id="other"),
    ],
)
def test_rollback_reasons(
    old: GroupState, reason: str, verdict: Verdict | None, expected: RollbackReason
) -> None:
    new = replace(BACK, reason=reason)

    assert rollback_reason(old, new, verdict) is expected


def test_a_rollback_is_counted_once_on_its_transition() -> None:
    m = ControlPlaneMetrics()

    m.tick_done(HOLDING, BACK, FAILED, spec=SPEC, duration_s=0.01)
    m.tick_done(BACK, BACK, None, spec=SPEC, duration_s=0.01)

    rollbacks = "yolofleet_rollout_rollbacks_total"
    assert value(m, rollbacks, group=GROUP, reason="analysis") == 1
    assert value(m, "yolofleet_rollout_canary_weight_percent", group=GROUP) == 0
    assert value(m, "yolofleet_rollout_step", group=GROUP) == 0


def test_a_group_has_rollback_series_at_zero_before_its_first_rollback() -> None:
    m = ControlPlaneMetrics()

    m.tick_done(HOLDING, HOLDING, None, spec=SPEC, duration_s=0.01)

    rollbacks = "yolofleet_rollout_rollbacks_total"
    seen = {r.value: value(m, rollbacks, group=GROUP, reason=r.value) for r in RollbackReason}
    assert seen == dict.fromkeys(seen, 0.0)  # else increase() in the alert misses the first


def test_losing_leadership_drops_the_group_series() -> None:
    m = ControlPlaneMetrics()
    m.leadership(leader=True)
    m.tick_done(HOLDING, HOLDING, None, spec=SPEC, duration_s=0.01)

    m.leadership(leader=False)

    assert value(m, "yolofleet_control_plane_is_leader") == 0
    assert value(m, "yolofleet_rollout_phase", group=GROUP, phase="holding") is None
    assert value(m, "yolofleet_rollout_step", group=GROUP) is None


def test_consul_failures_are_counted_by_source_and_mark_consul_down() -> None:
    m = ControlPlaneMetrics()
    down = ConsulUnavailable("Consul at http://127.0.0.1:1 is unreachable")
    wrapped = StoreUnavailable("could not read in Consul")
    wrapped.__cause__ = down

    m.consul_checked(down)
    m.tick_failed(GROUP, wrapped)
    m.tick_failed(GROUP, ValueError("a bug, not Consul"))
    m.watch_failed(down)
    up_while_down = value(m, "yolofleet_control_plane_consul_up")
    m.consul_checked(None)

    errors = "yolofleet_control_plane_consul_errors_total"
    assert up_while_down == 0
    assert value(m, "yolofleet_control_plane_consul_up") == 1
    assert value(m, errors, source="leader") == 1
    assert value(m, errors, source="controller") == 1
    assert value(m, errors, source="watch") == 1
    assert value(m, "yolofleet_control_plane_tick_failures_total", group=GROUP) == 2


def test_intents_are_counted_by_kind() -> None:
    m = ControlPlaneMetrics()

    m.intent_recorded(GROUP, "start")
    m.intent_recorded(GROUP, "abort")
    m.intent_recorded(GROUP, "abort")

    assert value(m, "yolofleet_rollout_intents_total", group=GROUP, intent="abort") == 2
    assert value(m, "yolofleet_rollout_intents_total", group=GROUP, intent="start") == 1
