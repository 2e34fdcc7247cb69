"""Whole rollouts: ``rollout.step`` ticked over a fake clock against a simulated group."""

from __future__ import annotations

from control_plane.core.state import GroupState, Intent, Phase
from tests.unit.control_plane.builders import GROUP, NEW, OLD, SPEC, TEN, spec
from tests.unit.control_plane.sim import Behaviour, GroupSim, SimNode

P, H, A = Phase.PROGRESSING, Phase.HOLDING, Phase.ANALYZING


def settled(state: GroupState) -> bool:
    return not state.phase.running


def group(node_ids: tuple[str, ...] = TEN, **options: object) -> GroupSim:
    return GroupSim.of(GroupState(group=GROUP, stable=OLD), node_ids, **options)


def test_healthy_canary_is_promoted_step_by_step() -> None:
    sim = group()

    sim.begin(SPEC)
    sim.run(settled)

    assert sim.phases() == [P, H, P, H, P, H, Phase.COMPLETED]
    assert sim.state.stable == NEW
    assert sim.state.previous_stable == OLD
    assert sim.state.canary is None
    assert set(sim.served().values()) == {OLD, NEW}  # the last baseline node swaps next tick
    sim.tick()
    assert set(sim.served().values()) == {NEW}
    steps = [reason for phase, reason in sim.log if phase is P]
    assert "on 1 of 10 live nodes (10%)" in steps[0]
    assert "on 5 of 10 live nodes (50%)" in steps[1]
    assert "on 9 of 10 live nodes (100%, one node kept as baseline)" in steps[2]
    assert [entry.outcome for entry in sim.state.history] == [Phase.COMPLETED]


def test_error_regression_rolls_back_during_the_first_hold() -> None:
    sim = group(models={NEW: Behaviour(error_rate=0.05)})

    sim.begin(SPEC)
    sim.run(settled)

    assert sim.phases() == [P, H, Phase.ROLLED_BACK]
    reason = sim.log[-1][1]
    assert "analysis failed at step 1/3 (10%): error_rate: canary 0.05" in reason
    assert "beyond tolerance 0.01 (n=300/2700)" in reason
    assert reason.endswith(f"rolled back to {OLD}")
    assert sim.now < 60  # before the hold was over
    sim.tick()  # the canary node reloads the stable model
    assert set(sim.served().values()) == {OLD}


def test_latency_regression_rolls_back_with_the_ratio_and_threshold() -> None:
    sim = group(models={NEW: Behaviour(p99=0.1)})

    sim.begin(SPEC)
    sim.run(settled)

    assert sim.phases()[-1] is Phase.ROLLED_BACK
    assert "p99_latency: canary" in sim.log[-1][1]
    assert "beyond tolerance 1.5" in sim.log[-1][1]


def test_output_drift_rolls_back() -> None:
    sim = group(models={NEW: Behaviour(per_image=0.5)})

    sim.begin(SPEC)
    sim.run(settled)

    reason = sim.log[-1][1]
    assert sim.phases()[-1] is Phase.ROLLED_BACK
    assert "detections_per_image: canary 0.500 vs baseline 2.000 per image, drift 75.0%" in reason
    assert "beyond tolerance 0.5" in reason


def test_canary_that_fails_to_load_rolls_back_at_once() -> None:
    sim = group(broken=frozenset({NEW}))

    sim.begin(SPEC)
    sim.run(settled)

    assert sim.phases() == [P, Phase.ROLLED_BACK]
    assert sim.log[-1][1].startswith(
        f"canary node n0 failed to load {NEW}: {NEW} failed validation"
    )
    assert sim.now == 5


def test_canary_that_never_reports_rolls_back_at_the_deadline() -> None:
    sim = group(slow=frozenset({"n0"}))

    sim.begin(SPEC)
    sim.run(settled)

    assert sim.phases() == [P, Phase.ROLLED_BACK]
    assert sim.now == 120
    assert f"node n0 (loading, serving {OLD}) did not report {NEW} within 120s" in sim.log[-1][1]


def test_no_traffic_pauses_after_the_analysis_deadline_then_resumes() -> None:
    sim = group(rps=0)

    sim.begin(SPEC)
    sim.run(lambda state: state.phase is Phase.PAUSED)
    paused_at = sim.now
    sim.rps = 10
    sim.tick(Intent.RESUME)
    sim.run(settled)

    assert sim.phases() == [P, H, A, Phase.PAUSED, P, H, P, H, P, H, Phase.COMPLETED]
    assert paused_at == 10 + 60 + 300
    pause = sim.log[3][1]
    assert "analysis inconclusive for 300s at step 1/3 (10%)" in pause
    assert "error_rate: canary has 0 requests and baseline has 0 requests" in pause
    assert sim.log[4][1].startswith("resumed; step 1/3")


def test_group_of_one_pauses_for_want_of_a_baseline() -> None:
    sim = group(("solo",))

    sim.begin(SPEC)
    sim.run(lambda state: state.phase is Phase.PAUSED)
    sim.tick(Intent.PROMOTE_FULL)

    assert sim.phases() == [P, H, Phase.PAUSED, Phase.COMPLETED]
    assert "no live baseline node" in sim.log[2][1]
    assert sim.state.stable == NEW


def test_group_of_two_keeps_one_baseline_at_every_step() -> None:
    sim = group(("a", "b"))

    sim.begin(SPEC)
    sim.run(settled)

    assert sim.phases() == [P, H, P, H, P, H, Phase.COMPLETED]
    assert all("on 1 of 2 live nodes" in reason for phase, reason in sim.log if phase is P)


def test_first_model_goes_everywhere_without_analysis() -> None:
    sim = GroupSim.of(GroupState(group=GROUP), TEN)

    sim.begin(SPEC)
    sim.run(settled)

    assert sim.phases() == [Phase.DEPLOYING, Phase.COMPLETED]
    assert sim.now == 10
    assert set(sim.served().values()) == {NEW}
    assert sim.state.previous_stable is None


def test_first_model_that_fails_to_load_rolls_back_to_nothing() -> None:
    sim = GroupSim.of(GroupState(group=GROUP), TEN, broken=frozenset({NEW}))

    sim.begin(SPEC)
    sim.run(settled)

    assert sim.phases() == [Phase.DEPLOYING, Phase.ROLLED_BACK]
    assert sim.state.stable is None
    assert "rolled back to no model" in sim.log[-1][1]


def test_undo_after_completion_returns_to_the_previous_stable() -> None:
    sim = group()
    sim.begin(spec(steps="100", hold_s=0))
    sim.run(settled)

    sim.tick(Intent.UNDO)
    sim.tick()

    assert sim.phases()[-1] is Phase.ROLLED_BACK
    assert sim.state.stable == OLD
    assert sim.log[-1][1] == f"undone by the operator: stable {NEW} -> {OLD}"
    assert set(sim.served().values()) == {OLD}
    assert [entry.outcome for entry in sim.state.history] == [Phase.COMPLETED, Phase.ROLLED_BACK]


def test_node_joining_mid_rollout_gets_the_stable_model() -> None:
    sim = group()
    sim.begin(SPEC)
    sim.run(lambda state: state.phase is Phase.HOLDING)
    canaries = sim.state.canary_nodes

    sim.nodes["n10"] = SimNode("n10", serving=None)
    sim.tick()
    sim.tick()

    assert sim.state.phase is Phase.HOLDING
    assert sim.state.canary_nodes == canaries
    assert sim.served()["n10"] == OLD


def test_canary_that_dies_mid_hold_is_replaced() -> None:
    sim = group()
    sim.begin(SPEC)
    sim.run(lambda state: state.phase is Phase.HOLDING)

    sim.nodes["n0"].gone = True
    sim.run(settled)

    assert sim.phases()[:4] == [P, H, P, H]
    assert "canary n0 left the group; waiting for n1 to serve" in sim.log[2][1]
    assert sim.state.phase is Phase.COMPLETED


def test_operator_pauses_resumes_and_fully_promotes() -> None:
    sim = group()
    sim.begin(SPEC)
    sim.run(lambda state: state.phase is Phase.HOLDING)

    sim.tick(Intent.PAUSE)
    for _ in range(100):
        sim.tick()
    sim.tick(Intent.RESUME)
    sim.tick(Intent.PROMOTE_FULL)

    assert sim.phases() == [P, H, Phase.PAUSED, P, Phase.COMPLETED]
    assert sim.log[2][1] == "paused by the operator while holding at step 1/3 (10%)"
    assert sim.state.stable == NEW


def test_operator_abort_returns_every_node_to_stable() -> None:
    sim = group()
    sim.begin(SPEC)
    sim.run(lambda state: state.step_index == 1 and state.phase is Phase.HOLDING)

    sim.tick(Intent.ABORT)
    sim.tick()

    assert sim.phases()[-1] is Phase.ABORTED
    assert sim.state.stable == OLD
    assert set(sim.served().values()) == {OLD}
    assert sim.log[-1][1] == (
        f"aborted by the operator at step 2/3 (50%); every node goes back to {OLD}"
    )
