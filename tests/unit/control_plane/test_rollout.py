from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from itertools import product

import pytest

from control_plane.core.analysis import Check, CheckResult, Outcome, Verdict
from control_plane.core.errors import GroupUnknown, NothingToDo, RolloutConflict, SpecInvalid
from control_plane.core.fleet import FleetView
from control_plane.core.intents import check_intent
from control_plane.core.rollout import begin, step
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import HISTORY_LIMIT, GroupState, HistoryEntry, Intent, Phase
from tests.unit.control_plane.builders import (
    GROUP,
    NEW,
    OLD,
    SPEC,
    TEN,
    deploying,
    fleet,
    running,
    settled,
    spec,
    verdict,
)

T = 1000.0  # when the phase under test began
PASS = verdict(Outcome.PASS, "all 5 checks passed")
WAIT = verdict(Outcome.INCONCLUSIVE, "error_rate: canary has 12 requests (needs 100 per side)")
FAIL = verdict(
    Outcome.FAIL,
    "error_rate: canary 0.0500 vs baseline 0.0010, increase +0.0490, over threshold 0.01",
)
BROKEN = verdict(Outcome.ERROR, "metric source unreachable")
FIVE = ("n0", "n1", "n2", "n3", "n4")
NINE = TEN[:9]


@dataclass(frozen=True, kw_only=True)
class Case:
    state: GroupState
    fleet: FleetView = field(default_factory=fleet)
    verdict: Verdict | None = None
    intent: Intent | None = None
    now: float = T + 1
    spec: RolloutSpec | None = SPEC
    phase: Phase | None = None
    """Expected phase; None means the state must come back unchanged."""
    reason: tuple[str, ...] = ()
    """Fragments the new reason must contain."""
    fields: dict[str, object] = field(default_factory=dict)


CASES = {
    # settled phases: only UNDO does anything
    "idle-stays-idle": Case(state=settled()),
    "idle-undo-without-previous-is-ignored": Case(state=settled(), intent=Intent.UNDO),
    "completed-stays-completed": Case(state=settled(Phase.COMPLETED, stable=NEW)),
    "completed-pause-is-ignored": Case(
        state=settled(Phase.COMPLETED, stable=NEW, previous_stable=OLD), intent=Intent.PAUSE
    ),
    "completed-undo-returns-to-previous-stable": Case(
        state=settled(Phase.COMPLETED, stable=NEW, previous_stable=OLD),
        intent=Intent.UNDO,
        phase=Phase.ROLLED_BACK,
        reason=(f"undone by the operator: stable {NEW} -> {OLD}",),
        fields={"stable": OLD, "previous_stable": NEW, "canary": None},
    ),
    "rolled-back-stays": Case(state=settled(Phase.ROLLED_BACK), verdict=FAIL),
    "adopted-stays": Case(state=settled(Phase.ADOPTED), verdict=FAIL, intent=Intent.PAUSE),
    "aborted-undo-returns-to-previous-stable": Case(
        state=settled(Phase.ABORTED, previous_stable="shapes-v0"),
        intent=Intent.UNDO,
        phase=Phase.ROLLED_BACK,
        fields={"stable": "shapes-v0", "previous_stable": OLD},
    ),
    # DEPLOYING: the group's first model, everywhere at once, no analysis
    "deploying-waits-for-nodes": Case(
        state=deploying(), fleet=fleet(new=TEN[:6], loading=TEN[6:]), now=T + 119
    ),
    "deploying-completes-when-every-node-serves": Case(
        state=deploying(),
        fleet=fleet(new=TEN),
        phase=Phase.COMPLETED,
        reason=(f"first model: all 10 live nodes serve {NEW}", f"{NEW} is now stable"),
        fields={"stable": NEW, "previous_stable": None, "canary_nodes": ()},
    ),
    "deploying-ignores-draining-nodes": Case(
        state=deploying(), fleet=fleet(new=NINE, draining=("n9",)), phase=Phase.COMPLETED
    ),
    "deploying-with-no-nodes-completes": Case(
        state=deploying(), fleet=FleetView(), phase=Phase.COMPLETED, reason=("no live nodes yet",)
    ),
    "deploying-node-failing-to-load-rolls-back": Case(
        state=deploying(),
        fleet=fleet(new=NINE, failed=("n9",)),
        phase=Phase.ROLLED_BACK,
        reason=(f"node n9 failed to load {NEW}: digest mismatch", "rolled back to no model"),
        fields={"stable": None},
    ),
    "deploying-report-deadline-rolls-back": Case(
        state=deploying(),
        fleet=fleet(new=NINE, loading=("n9",)),
        now=T + 120,
        phase=Phase.ROLLED_BACK,
        reason=(f"node n9 (loading, serving {OLD}) did not report {NEW} within 120s",),
        fields={"stable": None},
    ),
    "deploying-ignores-verdicts": Case(state=deploying(), fleet=fleet(loading=TEN), verdict=FAIL),
    "deploying-pause-is-ignored": Case(
        state=deploying(), fleet=fleet(loading=TEN), intent=Intent.PAUSE
    ),
    "deploying-promote-completes": Case(
        state=deploying(),
        fleet=fleet(loading=TEN),
        intent=Intent.PROMOTE,
        phase=Phase.COMPLETED,
        reason=("fully promoted by the operator at the first deployment",),
        fields={"stable": NEW},
    ),
    "deploying-abort-clears-the-model": Case(
        state=deploying(),
        fleet=fleet(loading=TEN),
        intent=Intent.ABORT,
        phase=Phase.ABORTED,
        reason=("aborted by the operator", "every node goes back to no model"),
        fields={"stable": None},
    ),
    # PROGRESSING: waiting for the step's canaries to report the target
    "progressing-waits-for-canaries": Case(
        state=running(Phase.PROGRESSING), fleet=fleet(loading=("n0",)), now=T + 119
    ),
    "progressing-holds-once-canaries-serve": Case(
        state=running(Phase.PROGRESSING),
        fleet=fleet(new=("n0",)),
        now=T + 30,
        phase=Phase.HOLDING,
        reason=(f"step 1/3 (10%): the canary node serves {NEW}; holding 60s",),
        fields={"phase_since": T + 30, "window_started_at": T + 30, "step_started_at": T},
    ),
    "progressing-report-deadline-rolls-back": Case(
        state=running(Phase.PROGRESSING),
        fleet=fleet(loading=("n0",)),
        now=T + 120,
        phase=Phase.ROLLED_BACK,
        reason=(
            f"node n0 (loading, serving {OLD}) did not report {NEW} within 120s at step 1/3",
            f"rolled back to {OLD}",
        ),
        fields={"stable": OLD, "canary": None, "canary_nodes": ()},
    ),
    "progressing-canary-failing-to-load-rolls-back": Case(
        state=running(Phase.PROGRESSING),
        fleet=fleet(failed=("n0",)),
        phase=Phase.ROLLED_BACK,
        reason=(f"canary node n0 failed to load {NEW}: digest mismatch",),
        fields={"canary": None, "canary_nodes": ()},
    ),
    "progressing-ignores-failures-outside-the-canaries": Case(
        state=running(Phase.PROGRESSING), fleet=fleet(loading=("n0",), failed=("n5",))
    ),
    "progressing-replaces-a-canary-that-left": Case(
        state=running(Phase.PROGRESSING, step=1, canaries=FIVE),
        fleet=fleet(TEN[1:], new=FIVE[1:]),
        phase=Phase.PROGRESSING,
        reason=("canary n0 left the group", "waiting for n1, n2, n3, n4, n5"),
        fields={"canary_nodes": ("n1", "n2", "n3", "n4", "n5"), "phase_since": T},
    ),
    "progressing-with-no-live-canary-rolls-back-at-deadline": Case(
        state=running(Phase.PROGRESSING, canaries=()),
        fleet=FleetView(),
        now=T + 120,
        phase=Phase.ROLLED_BACK,
        reason=(f"no live node could serve {NEW} as a canary within 120s",),
    ),
    "progressing-failing-verdict-rolls-back": Case(
        state=running(Phase.PROGRESSING, step=1, canaries=FIVE),
        fleet=fleet(new=("n0",), loading=FIVE[1:]),
        verdict=FAIL,
        phase=Phase.ROLLED_BACK,
        reason=("analysis failed at step 2/3 (50%): error_rate", "over threshold 0.01"),
    ),
    "progressing-promote-full-completes": Case(
        state=running(Phase.PROGRESSING),
        fleet=fleet(loading=("n0",)),
        intent=Intent.PROMOTE_FULL,
        phase=Phase.COMPLETED,
        reason=("fully promoted by the operator at step 1/3 (10%)", f"{NEW} is now stable"),
        fields={"stable": NEW, "previous_stable": OLD, "canary": None, "canary_nodes": ()},
    ),
    # HOLDING: traffic builds up for hold_s
    "holding-waits-for-the-hold": Case(
        state=running(Phase.HOLDING), fleet=fleet(new=("n0",)), now=T + 59
    ),
    "holding-pass-after-the-hold-goes-to-the-next-step": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(new=("n0",)),
        verdict=PASS,
        now=T + 60,
        phase=Phase.PROGRESSING,
        reason=("step 1/3 (10%) passed analysis", f"step 2/3: {NEW} on 5 of 10 live nodes (50%)"),
        fields={"step_index": 1, "canary_nodes": FIVE, "step_started_at": T + 60},
    ),
    "holding-pass-before-the-hold-ends-waits": Case(
        state=running(Phase.HOLDING), fleet=fleet(new=("n0",)), verdict=PASS, now=T + 59
    ),
    "holding-inconclusive-after-the-hold-analyzes": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(new=("n0",)),
        verdict=WAIT,
        now=T + 60,
        phase=Phase.ANALYZING,
        reason=("held 60s; waiting for a conclusive analysis (error_rate: canary has 12",),
        fields={"phase_since": T + 60, "window_started_at": T},
    ),
    "holding-fail-rolls-back-before-the-hold-ends": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(new=("n0",)),
        verdict=FAIL,
        now=T + 5,
        phase=Phase.ROLLED_BACK,
        reason=("analysis failed at step 1/3 (10%)", "canary 0.0500 vs baseline 0.0010"),
    ),
    "holding-error-verdict-rolls-back": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(new=("n0",)),
        verdict=BROKEN,
        phase=Phase.ROLLED_BACK,
        reason=("analysis errored at step 1/3 (10%): metric source unreachable",),
    ),
    "holding-canary-that-stopped-serving-waits-again": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(loading=("n0",)),
        now=T + 30,
        phase=Phase.PROGRESSING,
        reason=(f"node n0 (loading, serving {OLD}) stopped serving {NEW}",),
        fields={"phase_since": T + 30, "canary_nodes": ("n0",)},
    ),
    "holding-canary-that-left-is-replaced": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(TEN[1:]),
        now=T + 30,
        phase=Phase.PROGRESSING,
        reason=("canary n0 left the group", "waiting for n1"),
        fields={"canary_nodes": ("n1",), "phase_since": T + 30},
    ),
    "holding-draining-canary-is-replaced": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(new=("n0",), draining=("n0",)),
        phase=Phase.PROGRESSING,
        fields={"canary_nodes": ("n1",)},
    ),
    "holding-without-baseline-pauses": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(("n0",), new=("n0",)),
        verdict=WAIT,
        now=T + 60,
        phase=Phase.PAUSED,
        reason=(f"no live baseline node to compare {NEW} with at step 1/3", "promote or abort"),
    ),
    "holding-pause-pauses": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(new=("n0",)),
        intent=Intent.PAUSE,
        phase=Phase.PAUSED,
        reason=("paused by the operator while holding at step 1/3 (10%)",),
        fields={"canary": NEW, "canary_nodes": ("n0",)},
    ),
    "holding-resume-is-ignored": Case(
        state=running(Phase.HOLDING), fleet=fleet(new=("n0",)), intent=Intent.RESUME
    ),
    "holding-undo-is-ignored": Case(
        state=running(Phase.HOLDING), fleet=fleet(new=("n0",)), intent=Intent.UNDO
    ),
    "holding-promote-goes-to-the-next-step": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(new=("n0",)),
        intent=Intent.PROMOTE,
        phase=Phase.PROGRESSING,
        reason=("promoted by the operator at step 1/3 (10%)", "step 2/3"),
        fields={"step_index": 1, "canary_nodes": FIVE},
    ),
    "holding-abort-returns-to-stable": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(new=("n0",)),
        intent=Intent.ABORT,
        phase=Phase.ABORTED,
        reason=(f"aborted by the operator at step 1/3 (10%); every node goes back to {OLD}",),
        fields={"stable": OLD, "canary": None, "canary_nodes": ()},
    ),
    # ANALYZING: the hold is over; waiting for a conclusive verdict
    "analyzing-waits-while-inconclusive": Case(
        state=running(Phase.ANALYZING), fleet=fleet(new=("n0",)), now=T + 299
    ),
    "analyzing-pass-goes-to-the-next-step": Case(
        state=running(Phase.ANALYZING, step=1, canaries=FIVE),
        fleet=fleet(new=FIVE),
        verdict=PASS,
        phase=Phase.PROGRESSING,
        reason=(
            "step 2/3 (50%) passed analysis",
            "step 3/3: shapes-v2 on 9 of 10 live nodes (100%, one node kept as baseline)",
        ),
        fields={"step_index": 2, "canary_nodes": NINE},
    ),
    "analyzing-pass-on-the-last-step-completes": Case(
        state=running(Phase.ANALYZING, step=2, canaries=NINE),
        fleet=fleet(new=NINE),
        verdict=PASS,
        phase=Phase.COMPLETED,
        reason=("step 3/3 (100%) passed analysis", f"{NEW} is now stable"),
        fields={"stable": NEW, "previous_stable": OLD, "canary": None, "canary_nodes": ()},
    ),
    "analyzing-inconclusive-at-the-deadline-pauses": Case(
        state=running(Phase.ANALYZING),
        fleet=fleet(new=("n0",)),
        verdict=WAIT,
        now=T + 300,
        phase=Phase.PAUSED,
        reason=(
            "analysis inconclusive for 300s at step 1/3 (10%): error_rate: canary has 12",
            "resume, promote or abort",
        ),
        fields={"canary": NEW, "canary_nodes": ("n0",)},
    ),
    "analyzing-without-verdict-at-the-deadline-pauses": Case(
        state=running(Phase.ANALYZING),
        fleet=fleet(new=("n0",)),
        now=T + 300,
        phase=Phase.PAUSED,
        reason=("no verdict",),
    ),
    "analyzing-fail-rolls-back": Case(
        state=running(Phase.ANALYZING),
        fleet=fleet(new=("n0",)),
        verdict=FAIL,
        phase=Phase.ROLLED_BACK,
        reason=("analysis failed", "increase +0.0490, over threshold 0.01", f"back to {OLD}"),
    ),
    "analyzing-promote-on-the-last-step-completes": Case(
        state=running(Phase.ANALYZING, step=2, canaries=NINE),
        fleet=fleet(new=NINE),
        intent=Intent.PROMOTE,
        phase=Phase.COMPLETED,
        fields={"stable": NEW},
    ),
    # PAUSED: only intents, failed canaries and failing verdicts move it
    "paused-stays-paused": Case(
        state=running(Phase.PAUSED), fleet=fleet(new=("n0",)), now=T + 10_000
    ),
    "paused-pause-is-ignored": Case(
        state=running(Phase.PAUSED), fleet=fleet(new=("n0",)), intent=Intent.PAUSE
    ),
    "paused-resume-restarts-the-step": Case(
        state=running(Phase.PAUSED, step=1, canaries=FIVE),
        fleet=fleet(new=FIVE),
        intent=Intent.RESUME,
        now=T + 500,
        phase=Phase.PROGRESSING,
        reason=("resumed; step 2/3",),
        fields={"step_index": 1, "canary_nodes": FIVE, "phase_since": T + 500},
    ),
    "paused-resume-replaces-canaries-that-left": Case(
        state=running(Phase.PAUSED),
        fleet=fleet(TEN[1:]),
        intent=Intent.RESUME,
        phase=Phase.PROGRESSING,
        fields={"canary_nodes": ("n1",)},
    ),
    "paused-promote-goes-to-the-next-step": Case(
        state=running(Phase.PAUSED),
        fleet=fleet(new=("n0",)),
        intent=Intent.PROMOTE,
        phase=Phase.PROGRESSING,
        fields={"step_index": 1},
    ),
    "paused-canary-failing-to-load-rolls-back": Case(
        state=running(Phase.PAUSED),
        fleet=fleet(failed=("n0",)),
        phase=Phase.ROLLED_BACK,
        reason=("canary node n0 failed to load",),
    ),
    "paused-fail-verdict-rolls-back": Case(
        state=running(Phase.PAUSED),
        fleet=fleet(new=("n0",)),
        verdict=FAIL,
        phase=Phase.ROLLED_BACK,
    ),
    "paused-abort-returns-to-stable": Case(
        state=running(Phase.PAUSED),
        fleet=fleet(new=("n0",)),
        intent=Intent.ABORT,
        phase=Phase.ABORTED,
        fields={"stable": OLD, "canary": None},
    ),
    # safety before intents; a store that lost the spec
    "failure-wins-over-promote": Case(
        state=running(Phase.HOLDING),
        fleet=fleet(failed=("n0",)),
        intent=Intent.PROMOTE_FULL,
        phase=Phase.ROLLED_BACK,
        fields={"stable": OLD},
    ),
    "running-without-spec-aborts": Case(
        state=running(Phase.HOLDING),
        spec=None,
        phase=Phase.ABORTED,
        reason=(f"the store holds no rollout spec for the running rollout of {NEW}; aborted",),
        fields={"stable": OLD, "canary": None},
    ),
    "running-with-another-target-aborts": Case(
        state=running(Phase.HOLDING),
        spec=spec(target="shapes-v3"),
        phase=Phase.ABORTED,
        reason=(f"a spec for {GROUP}/shapes-v3",),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_step(case: Case) -> None:
    result = step(case.state, case.spec, case.fleet, case.verdict, case.intent, case.now)

    if case.phase is None:
        assert result == case.state
        return
    assert result.phase is case.phase
    for fragment in case.reason:
        assert fragment in result.reason
    for name, value in case.fields.items():
        assert getattr(result, name) == value, name
    if result.phase is not case.state.phase:
        assert result.reason
        assert result.reason != case.state.reason
    assert result.revision == case.state.revision


def test_step_records_the_latest_checks() -> None:
    check = CheckResult(
        name=Check.ERROR_RATE,
        outcome=Outcome.INCONCLUSIVE,
        value=None,
        baseline_value=None,
        score=None,
        threshold=0.01,
        canary_n=5,
        baseline_n=500,
        reason="few",
    )
    seen = Verdict(outcome=Outcome.INCONCLUSIVE, checks=(check,), reason="few")

    result = step(running(Phase.HOLDING), SPEC, fleet(new=("n0",)), seen, None, T + 1)

    assert result.verdicts == (check,)
    assert result.phase is Phase.HOLDING


def test_rollback_keeps_the_failing_checks_and_writes_history() -> None:
    check = CheckResult(
        name=Check.ERROR_RATE,
        outcome=Outcome.FAIL,
        value=0.05,
        baseline_value=0.001,
        score=0.049,
        threshold=0.01,
        canary_n=500,
        baseline_n=4500,
        reason="error_rate: over",
    )
    failing = Verdict(outcome=Outcome.FAIL, checks=(check,), reason="error_rate: over")

    result = step(running(Phase.HOLDING), SPEC, fleet(new=("n0",)), failing, None, T + 5)

    assert result.verdicts == (check,)
    assert result.history == (
        HistoryEntry(
            target=NEW,
            stable_before=OLD,
            stable_after=OLD,
            outcome=Phase.ROLLED_BACK,
            reason=result.reason,
            started_at=SPEC.created,
            ended_at=T + 5,
        ),
    )


def test_history_keeps_the_latest_entries() -> None:
    old = HistoryEntry(
        target="x",
        stable_before=None,
        stable_after="x",
        outcome=Phase.COMPLETED,
        reason="",
        started_at=0,
        ended_at=0,
    )
    state = running(Phase.HOLDING, history=(old,) * HISTORY_LIMIT)

    result = step(state, SPEC, fleet(new=("n0",)), None, Intent.ABORT, T + 1)

    assert len(result.history) == HISTORY_LIMIT
    assert result.history[-1].outcome is Phase.ABORTED


# --- begin ----------------------------------------------------------------------------------


def test_begin_first_model_deploys_everywhere() -> None:
    result = begin(settled(stable=None), SPEC, fleet(), T)

    assert result.phase is Phase.DEPLOYING
    assert result.stable == NEW
    assert result.canary is None
    assert result.canary_nodes == ()
    assert "goes to every node at once (10 live), without analysis" in result.reason
    assert all(result.model_for(node_id) == NEW for node_id in TEN)


@pytest.mark.parametrize(
    ("percent", "ids", "canaries"),
    [
        pytest.param("10", TEN, ("n0",), id="10pct-of-10-is-1"),
        pytest.param("50", TEN, FIVE, id="50pct-of-10-is-5"),
        pytest.param("34", TEN[:7], ("n0", "n1", "n2"), id="34pct-of-7-rounds-up-to-3"),
        pytest.param("1", ("a", "b", "c"), ("a",), id="1pct-is-at-least-1"),
        pytest.param("100", TEN, NINE, id="100pct-leaves-a-baseline"),
        pytest.param("10", ("solo",), ("solo",), id="single-node-is-the-canary"),
    ],
)
def test_begin_picks_canaries(
    percent: str, ids: tuple[str, ...], canaries: tuple[str, ...]
) -> None:
    result = begin(settled(), spec(steps=percent), fleet(ids), T)

    assert result.phase is Phase.PROGRESSING
    assert result.canary == NEW
    assert result.canary_nodes == canaries
    assert result.step_index == 0
    assert result.step_started_at == result.phase_since == T
    assert "step 1/" in result.reason
    assert ", ".join(canaries) in result.reason


def test_begin_after_a_finished_rollout_keeps_history() -> None:
    entry = HistoryEntry(
        target=OLD,
        stable_before=None,
        stable_after=OLD,
        outcome=Phase.COMPLETED,
        reason="done",
        started_at=0,
        ended_at=1,
    )
    state = settled(Phase.COMPLETED, history=(entry,), previous_stable="shapes-v0")

    result = begin(state, SPEC, fleet(), T)

    assert result.history == (entry,)
    assert result.previous_stable == "shapes-v0"
    assert result.verdicts == ()


@pytest.mark.parametrize(
    "phase",
    [p for p in Phase if p.running],
    ids=[p.value for p in Phase if p.running],
)
def test_begin_while_running_is_a_conflict(phase: Phase) -> None:
    state = deploying() if phase is Phase.DEPLOYING else running(phase)

    with pytest.raises(RolloutConflict, match="already rolling out shapes-v2"):
        begin(state, spec(target="shapes-v3"), fleet(), T)


@pytest.mark.parametrize(
    ("state", "the_spec", "the_fleet", "error", "message"),
    [
        pytest.param(
            settled(), SPEC, FleetView(), GroupUnknown, "no live nodes", id="no-live-nodes"
        ),
        pytest.param(
            settled(stable=NEW), SPEC, fleet(), NothingToDo, "already the stable", id="same-model"
        ),
        pytest.param(
            GroupState(group="zone-b", stable=OLD),
            SPEC,
            fleet(),
            SpecInvalid,
            "for group 'zone-a', not 'zone-b'",
            id="other-group",
        ),
    ],
)
def test_begin_refuses(
    state: GroupState,
    the_spec: RolloutSpec,
    the_fleet: FleetView,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        begin(state, the_spec, the_fleet, T)


# --- intents: check_intent refuses exactly what step would ignore ---------------------------


QUIET = {
    "idle": (settled(), fleet()),
    "idle-no-model": (settled(stable=None), FleetView()),
    "deploying": (deploying(), fleet(loading=TEN)),
    "progressing": (running(Phase.PROGRESSING), fleet(loading=("n0",))),
    "holding": (running(Phase.HOLDING), fleet(new=("n0",))),
    "analyzing": (running(Phase.ANALYZING), fleet(new=("n0",))),
    "paused": (running(Phase.PAUSED), fleet(new=("n0",))),
    "completed": (settled(Phase.COMPLETED, stable=NEW, previous_stable=OLD), fleet(new=TEN)),
    "completed-first": (settled(Phase.COMPLETED, stable=NEW), fleet(new=TEN)),
    "rolled-back": (settled(Phase.ROLLED_BACK), fleet()),
    "aborted": (settled(Phase.ABORTED, previous_stable="shapes-v0"), fleet()),
    "adopted": (settled(Phase.ADOPTED), fleet()),
}
"""A state of each phase where nothing happens on a tick without an intent."""


STEPPED = [intent for intent in Intent if intent not in (Intent.START, Intent.ADOPT)]
"""Intents ``step`` applies; START goes through ``begin`` (``decide``, test_rollout_intents),
ADOPT through ``lost_state.adopted`` (the controller, test_lost_state)."""


@pytest.mark.parametrize(
    ("name", "intent"),
    list(product(QUIET, STEPPED)),
    ids=[f"{name}-{intent}" for name, intent in product(QUIET, STEPPED)],
)
def test_check_intent_refuses_what_step_ignores(name: str, intent: Intent) -> None:
    state, nodes = QUIET[name]
    assert step(state, SPEC, nodes, None, None, T + 1) == state

    moved = step(state, SPEC, nodes, None, intent, T + 1) != state

    if moved:
        check_intent(state, intent)  # accepted: must not raise
    else:
        with pytest.raises((NothingToDo, RolloutConflict), match=GROUP):
            check_intent(state, intent)


def test_undo_while_running_is_a_conflict() -> None:
    with pytest.raises(RolloutConflict, match="abort it instead of undo"):
        check_intent(running(Phase.HOLDING), Intent.UNDO)


def test_the_step_table_covers_every_phase_and_intent() -> None:
    phases = {case.state.phase for case in CASES.values()}
    intents = {case.intent for case in CASES.values()}

    assert phases == set(Phase)
    assert intents == {*STEPPED, None}


# --- consecutive failures: a FAIL must repeat before the rollout is rolled back -------------

PATIENT = replace(SPEC, thresholds=replace(SPEC.thresholds, consecutive_failures=3))


def _ticks(verdicts: list[Verdict], *, intent: Intent | None = None) -> list[GroupState]:
    """Feeds ``verdicts`` to a holding step-1 rollout one tick apart; returns every state."""
    state, states = running(Phase.HOLDING), []
    for tick, seen in enumerate(verdicts):
        state = step(state, PATIENT, fleet(new=("n0",)), seen, intent, T + 1 + tick)
        states.append(state)
    return states


def test_fails_below_the_limit_are_counted_but_keep_the_rollout() -> None:
    states = _ticks([FAIL, BROKEN])

    assert [s.phase for s in states] == [Phase.HOLDING, Phase.HOLDING]
    assert [s.failing_assessments for s in states] == [1, 2]
    assert "rolled back" not in states[-1].reason


def test_the_limit_th_fail_in_a_row_rolls_back_and_says_how_many() -> None:
    last = _ticks([FAIL, FAIL, FAIL])[-1]

    assert last.phase is Phase.ROLLED_BACK
    assert "analysis failed 3 times in a row at step 1/3 (10%): error_rate" in last.reason
    assert last.failing_assessments == 0
    assert last.stable == OLD


@pytest.mark.parametrize("between", [PASS, WAIT], ids=["pass", "inconclusive"])
def test_any_other_verdict_resets_the_count(between: Verdict) -> None:
    states = _ticks([FAIL, FAIL, between, FAIL, FAIL])

    assert [s.failing_assessments for s in states] == [1, 2, 0, 1, 2]
    assert all(s.phase is Phase.HOLDING for s in states)


def test_a_new_step_starts_with_no_failures_counted() -> None:
    failing = replace(running(Phase.ANALYZING), failing_assessments=2)

    result = step(failing, PATIENT, fleet(new=("n0",)), None, Intent.PROMOTE, T + 1)

    assert result.phase is Phase.PROGRESSING
    assert result.step_index == 1
    assert result.failing_assessments == 0


def test_an_intent_is_obeyed_on_a_failing_tick_below_the_limit() -> None:
    result = _ticks([FAIL], intent=Intent.PAUSE)[-1]

    assert result.phase is Phase.PAUSED
    assert result.failing_assessments == 1


def test_a_canary_that_failed_to_load_rolls_back_whatever_the_limit() -> None:
    state = running(Phase.PROGRESSING, step=1, canaries=FIVE)

    result = step(state, PATIENT, fleet(failed=("n1",), new=("n0",)), None, None, T + 1)

    assert result.phase is Phase.ROLLED_BACK
    assert "canary node n1 failed to load" in result.reason


# --- undo --to: back to any model that was stable in this group before -------------------


def _served(*models: str) -> GroupState:
    """A group whose rollouts made ``models`` stable one after the other (last is stable)."""
    history = tuple(
        HistoryEntry(
            target=model,
            stable_before=before,
            stable_after=model,
            outcome=Phase.COMPLETED,
            reason="completed",
            started_at=float(i),
            ended_at=float(i),
        )
        for i, (before, model) in enumerate(zip((None, *models), models, strict=False))
    )
    return settled(Phase.COMPLETED, stable=models[-1], previous_stable=models[-2], history=history)


def test_undo_to_an_older_stable_skips_the_previous_one() -> None:
    state = replace(_served("v1", "v2", "v3"), verdicts=(_a_check(),))
    check_intent(state, Intent.UNDO, undo_to="v1")

    result = step(state, SPEC, fleet(), None, Intent.UNDO, T + 1, undo_to="v1")

    assert (result.phase, result.stable, result.previous_stable) == (
        Phase.ROLLED_BACK,
        "v1",
        "v3",
    )
    assert "undone by the operator: stable v3 -> v1" in result.reason
    assert result.verdicts == ()  # the last rollout's checks say nothing about v1
    assert result.history[-1].stable_after == "v1"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("v3", "v3 is already the stable model"),
        ("v9", "v9 was never a stable model of group zone-a (earlier stables: v2, v1)"),
    ],
)
def test_undo_to_refuses_what_it_cannot_go_back_to(model: str, message: str) -> None:
    state = _served("v1", "v2", "v3")

    with pytest.raises(NothingToDo, match=re.escape(message)):
        check_intent(state, Intent.UNDO, undo_to=model)
    assert step(state, SPEC, fleet(), None, Intent.UNDO, T + 1, undo_to=model) == state


def _a_check() -> CheckResult:
    return CheckResult(
        name=Check.ERROR_RATE,
        outcome=Outcome.PASS,
        value=0.0,
        baseline_value=0.0,
        score=0.0,
        threshold=0.01,
        canary_n=500,
        baseline_n=500,
        reason="ok",
    )
