"""The rollout state machine: ``begin`` starts a rollout, ``step`` moves it on by one tick.

Pure: no I/O and no clock; ``now`` is passed in. ``step`` handles every ``Phase`` and sets
``reason`` on every transition; when nothing should change it returns the state it was given,
so the controller can skip the write (``new == old``). The phase diagram is in ``state.py``.

Order of precedence on a tick of a running rollout: a canary that failed to load the target
rolls back at once, and so does the ``consecutive_failures``-th FAIL/ERROR verdict in a row;
then the operator's intent; then the phase's own wait (reports, hold, analysis deadline).
"""

from __future__ import annotations

from dataclasses import replace
from typing import assert_never

from control_plane.core import intents, moves
from control_plane.core.analysis import Outcome, Verdict
from control_plane.core.errors import GroupUnknown, NothingToDo, RolloutConflict, SpecInvalid
from control_plane.core.fleet import FleetView, pick_canaries
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import GroupState, Intent, Phase
from yolofleet.records import ModelPin


def begin(
    state: GroupState,
    spec: RolloutSpec,
    fleet: FleetView,
    now: float,
    *,
    pin: ModelPin | None = None,
) -> GroupState:
    """Starts ``spec``'s rollout. A group with no stable model gets it on every node at once.
    ``pin`` (the target, resolved when the rollout was requested) joins the state's pins.
    """
    if spec.group != state.group:
        raise SpecInvalid(f"the rollout is for group {spec.group!r}, not {state.group!r}")
    if state.phase.running:
        raise RolloutConflict(
            f"group {state.group} is already rolling out {state.canary or state.stable} "
            f"(phase {state.phase}); promote or abort it first"
        )
    if spec.target == state.stable:
        raise NothingToDo(f"{spec.target} is already the stable model of group {state.group}")
    if pin is not None and pin.name != spec.target:
        raise SpecInvalid(f"the pin is for {pin.name}, not the rollout's target {spec.target}")
    pins = (*(p for p in state.pins if p.name != spec.target), *((pin,) if pin else ()))
    fresh = replace(
        state, verdicts=(), step_index=0, step_started_at=now, phase_since=now, pins=pins
    )
    if state.stable is None:
        return replace(
            fresh,
            phase=Phase.DEPLOYING,
            stable=spec.target,
            canary=None,
            canary_nodes=(),
            reason=(
                f"first model of group {state.group}: {spec.target} goes to every node at once "
                f"({len(fleet.live_ids)} live), without analysis"
            ),
        )
    if not fleet.live_ids:
        raise GroupUnknown(f"group {state.group} has no live nodes to pick canaries from")
    return moves.enter_step(replace(fresh, canary_nodes=()), spec, fleet, index=0, now=now, why="")


def step(
    state: GroupState,
    spec: RolloutSpec | None,
    fleet: FleetView,
    verdict: Verdict | None,
    intent: Intent | None,
    now: float,
    *,
    undo_to: str | None = None,
) -> GroupState:
    """One tick: the state after seeing the fleet, the latest verdict and the operator's intent
    (``undo_to`` goes with ``Intent.UNDO``: the earlier stable model to return to).
    """
    if not state.phase.running:
        return intents.undo(state, now, to=undo_to) if intent is Intent.UNDO else state
    if spec is None or _mismatch(state, spec):
        return _abandon(state, spec, now)
    state = _tally(state, verdict)
    stopped = _stop(state, spec, fleet, verdict, now)
    if stopped is not None:
        return stopped
    if intent is not None:
        moved = intents.obey(state, spec, fleet, intent, now)
        if moved is not None:
            return moved
    match state.phase:
        case Phase.DEPLOYING:
            return _deploying(state, spec, fleet, now)
        case Phase.PROGRESSING:
            return _regroup(state, spec, fleet, now) or _progressing(state, spec, fleet, now)
        case Phase.HOLDING:
            return _regroup(state, spec, fleet, now) or _holding(state, spec, fleet, verdict, now)
        case Phase.ANALYZING:
            return _regroup(state, spec, fleet, now) or _analyzing(state, spec, fleet, verdict, now)
        case Phase.PAUSED:
            return state  # only an intent, a failed canary or a failing verdict moves it
        case Phase.IDLE | Phase.COMPLETED | Phase.ROLLED_BACK | Phase.ABORTED | Phase.ADOPTED:
            return state
        case _:
            assert_never(state.phase)


# --- stopping early -------------------------------------------------------------------------


def _tally(state: GroupState, verdict: Verdict | None) -> GroupState:
    """Keeps the latest verdict's checks and counts FAIL/ERROR verdicts in a row."""
    if verdict is None or state.phase is Phase.DEPLOYING:
        return state
    if verdict.outcome in (Outcome.FAIL, Outcome.ERROR):
        return replace(
            state,
            verdicts=verdict.checks or state.verdicts,
            failing_assessments=state.failing_assessments + 1,
        )
    return replace(state, verdicts=verdict.checks, failing_assessments=0)


def _stop(
    state: GroupState, spec: RolloutSpec, fleet: FleetView, verdict: Verdict | None, now: float
) -> GroupState | None:
    """Rolls back at once when a canary failed to load the target, and when the verdict was
    FAIL/ERROR ``consecutive_failures`` assessments in a row (``_tally`` counted this one).
    """
    deploying = state.phase is Phase.DEPLOYING
    among = fleet.live_ids if deploying else state.canary_nodes
    failed = fleet.failed_to_load(spec.target, among)
    if failed:
        node = failed[0]
        who = "node" if deploying else "canary node"
        error = node.last_error or "no error given"
        return moves.rollback(
            state, spec, now, f"{who} {node.node_id} failed to load {spec.target}: {error}"
        )
    if deploying or verdict is None:
        return None
    streak = state.failing_assessments
    if verdict.outcome not in (Outcome.FAIL, Outcome.ERROR):
        return None
    if streak < spec.thresholds.consecutive_failures:
        return None
    what = "failed" if verdict.outcome is Outcome.FAIL else "errored"
    times = f" {streak} times in a row" if streak > 1 else ""
    at = moves.step_label(state, spec)
    return moves.rollback(state, spec, now, f"analysis {what}{times} at {at}: {verdict.reason}")


def _mismatch(state: GroupState, spec: RolloutSpec) -> bool:
    running = state.stable if state.phase is Phase.DEPLOYING else state.canary
    return (
        spec.group != state.group
        or spec.target != running
        or not 0 <= state.step_index < len(spec.steps)
    )


def _abandon(state: GroupState, spec: RolloutSpec | None, now: float) -> GroupState:
    running = state.stable if state.phase is Phase.DEPLOYING else state.canary
    found = "no rollout spec" if spec is None else f"a spec for {spec.group}/{spec.target}"
    return moves.finish(
        state,
        target=running or "?",
        started_at=spec.created if spec else state.step_started_at,
        phase=Phase.ABORTED,
        stable=moves.stable_before(state),
        reason=f"the store holds {found} for the running rollout of {running}; aborted",
        now=now,
    )


# --- each phase's own wait ------------------------------------------------------------------


def _deploying(state: GroupState, spec: RolloutSpec, fleet: FleetView, now: float) -> GroupState:
    live, serving = fleet.live_ids, set(_serving(state, fleet, spec.target))
    waiting = tuple(node_id for node_id in live if node_id not in serving)
    if not waiting:
        served = f"all {len(live)} live nodes serve" if live else "no live nodes yet; joiners get"
        return moves.complete(state, spec, now, why=f"first model: {served} {spec.target}")
    if now - state.phase_since >= spec.thresholds.report_deadline_s:
        late = moves.describe(fleet, waiting)
        why = f"{late} did not report {spec.target} within {spec.thresholds.report_deadline_s:g}s"
        return moves.rollback(state, spec, now, why)
    return state


def _regroup(
    state: GroupState, spec: RolloutSpec, fleet: FleetView, now: float
) -> GroupState | None:
    """Replaces canaries that left; sends the rollout back to waiting if a canary lags."""
    live = set(fleet.live_ids)
    gone = [node_id for node_id in state.canary_nodes if node_id not in live]
    serving = set(_serving(state, fleet, spec.target))
    lagging = [n for n in state.canary_nodes if n in live and n not in serving]
    if not gone and (state.phase is Phase.PROGRESSING or not lagging):
        return None
    problems = [f"canary {', '.join(gone)} left the group"] if gone else []
    if lagging and state.phase is not Phase.PROGRESSING:
        problems.append(f"{moves.describe(fleet, lagging)} stopped serving {spec.target}")
    percent = spec.steps[state.step_index].canary_percent
    nodes = pick_canaries(live, percent, current=state.canary_nodes) if gone else state.canary_nodes
    restart = state.phase is not Phase.PROGRESSING
    return replace(
        state,
        phase=Phase.PROGRESSING,
        canary_nodes=nodes,
        phase_since=now if restart else state.phase_since,
        reason=(
            f"{moves.step_label(state, spec)}: {'; '.join(problems)}; waiting for "
            f"{', '.join(nodes) or 'a live node'} to serve {spec.target}"
        ),
    )


def _progressing(state: GroupState, spec: RolloutSpec, fleet: FleetView, now: float) -> GroupState:
    serving = set(_serving(state, fleet, spec.target))
    waiting = tuple(node_id for node_id in state.canary_nodes if node_id not in serving)
    hold_s = spec.steps[state.step_index].hold_s
    if state.canary_nodes and not waiting:
        return replace(
            state,
            phase=Phase.HOLDING,
            phase_since=now,
            window_started_at=now,
            reason=(
                f"{moves.step_label(state, spec)}: {_every_canary(state)} "
                f"{spec.target}; holding {hold_s:g}s before analysis"
            ),
        )
    deadline = spec.thresholds.report_deadline_s
    if now - state.phase_since >= deadline:
        at = moves.step_label(state, spec)
        if waiting:
            late = moves.describe(fleet, waiting)
            why = f"{late} did not report {spec.target} within {deadline:g}s"
        else:
            why = f"no live node could serve {spec.target} as a canary within {deadline:g}s"
        why = f"{why} at {at}"
        return moves.rollback(state, spec, now, why)
    return state


def _holding(
    state: GroupState, spec: RolloutSpec, fleet: FleetView, verdict: Verdict | None, now: float
) -> GroupState:
    hold_s = spec.steps[state.step_index].hold_s
    if now - state.phase_since < hold_s:
        return state
    at = moves.step_label(state, spec)
    if not [n for n in fleet.live_ids if n not in state.canary_nodes]:
        why = f"no live baseline node to compare {spec.target} with at {at}; promote or abort"
        return replace(state, phase=Phase.PAUSED, phase_since=now, reason=why)
    if verdict is not None and verdict.outcome is Outcome.PASS:
        return moves.advance(state, spec, fleet, now, why=f"{at} passed analysis")
    found = verdict.reason if verdict else "no verdict yet"
    return replace(
        state,
        phase=Phase.ANALYZING,
        phase_since=now,
        reason=f"{at}: held {hold_s:g}s; waiting for a conclusive analysis ({found})",
    )


def _analyzing(
    state: GroupState, spec: RolloutSpec, fleet: FleetView, verdict: Verdict | None, now: float
) -> GroupState:
    at = moves.step_label(state, spec)
    if verdict is not None and verdict.outcome is Outcome.PASS:
        return moves.advance(state, spec, fleet, now, why=f"{at} passed analysis")
    deadline = spec.thresholds.analysis_deadline_s
    if now - state.phase_since < deadline:
        return state
    found = verdict.reason if verdict else "no verdict"
    why = f"analysis inconclusive for {deadline:g}s at {at}: {found}; resume, promote or abort"
    return replace(state, phase=Phase.PAUSED, phase_since=now, reason=why)


def _serving(state: GroupState, fleet: FleetView, model: str) -> tuple[str, ...]:
    """Live nodes serving ``model``: with its pin's digest when the state holds its pin."""
    pin = state.pin(model)
    return fleet.serving(model, sha256=pin.sha256 if pin is not None else None)


def _every_canary(state: GroupState) -> str:
    count = len(state.canary_nodes)
    return "the canary node serves" if count == 1 else f"all {count} canary nodes serve"
