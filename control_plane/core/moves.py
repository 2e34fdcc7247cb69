"""The moves ``rollout.step`` and the operator's intents make: enter a step, advance, finish.

Each sets ``reason``; ``finish`` clears the canary and appends one ``HistoryEntry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from control_plane.core.fleet import FleetView, pick_canaries
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import HISTORY_LIMIT, GroupState, HistoryEntry, Phase


def enter_step(
    state: GroupState, spec: RolloutSpec, fleet: FleetView, *, index: int, now: float, why: str
) -> GroupState:
    """Starts step ``index``: picks its canaries (keeping those already chosen) and waits."""
    step_ = spec.steps[index]
    live = fleet.live_ids
    nodes = pick_canaries(live, step_.canary_percent, current=state.canary_nodes)
    lead = f"{why}; " if why else ""
    share = f"{step_.canary_percent}%"
    if len(nodes) * 100 < step_.canary_percent * len(live):
        share += ", one node kept as baseline"
    return replace(
        state,
        phase=Phase.PROGRESSING,
        canary=spec.target,
        canary_nodes=nodes,
        step_index=index,
        step_started_at=now,
        phase_since=now,
        failing_assessments=0,
        reason=(
            f"{lead}step {index + 1}/{len(spec.steps)}: {spec.target} on {len(nodes)} of "
            f"{len(live)} live nodes ({share}): {', '.join(nodes) or 'none'}; "
            "waiting for them to serve it"
        ),
    )


def advance(
    state: GroupState, spec: RolloutSpec, fleet: FleetView, now: float, *, why: str
) -> GroupState:
    """Goes to the next step, or completes after the last one."""
    if state.step_index + 1 >= len(spec.steps):
        return complete(state, spec, now, why=why)
    return enter_step(state, spec, fleet, index=state.step_index + 1, now=now, why=why)


def complete(state: GroupState, spec: RolloutSpec, now: float, *, why: str) -> GroupState:
    """The target becomes stable; the old stable is remembered for ``undo``."""
    before = stable_before(state)
    return finish(
        state,
        target=spec.target,
        started_at=spec.created,
        phase=Phase.COMPLETED,
        stable=spec.target,
        previous_stable=before if before is not None else state.previous_stable,
        reason=f"{why}; {spec.target} is now stable",
        now=now,
    )


def rollback(state: GroupState, spec: RolloutSpec, now: float, why: str) -> GroupState:
    """Every node goes back to the stable model from before the rollout."""
    back = stable_before(state)
    return finish(
        state,
        target=spec.target,
        started_at=spec.created,
        phase=Phase.ROLLED_BACK,
        stable=back,
        reason=f"{why}; rolled back to {back or 'no model'}",
        now=now,
    )


def finish(
    state: GroupState,
    *,
    target: str,
    started_at: float,
    phase: Phase,
    stable: str | None,
    reason: str,
    now: float,
    previous_stable: str | None = None,
) -> GroupState:
    """Ends the rollout (or an undo): canary cleared, one history entry appended."""
    entry = HistoryEntry(
        target=target,
        stable_before=stable_before(state),
        stable_after=stable,
        outcome=phase,
        reason=reason,
        started_at=started_at,
        ended_at=now,
    )
    ended = replace(
        state,
        phase=phase,
        stable=stable,
        previous_stable=previous_stable if previous_stable is not None else state.previous_stable,
        canary=None,
        canary_nodes=(),
        phase_since=now,
        failing_assessments=0,
        reason=reason,
        history=(*state.history, entry)[-HISTORY_LIMIT:],
    )
    named = set(ended.named())
    return replace(ended, pins=tuple(pin for pin in ended.pins if pin.name in named))


def stable_before(state: GroupState) -> str | None:
    """The stable model from before the running rollout (a first deployment had none)."""
    return None if state.phase is Phase.DEPLOYING else state.stable


def step_label(state: GroupState, spec: RolloutSpec) -> str:
    if state.phase is Phase.DEPLOYING:
        return "the first deployment"
    percent = spec.steps[state.step_index].canary_percent
    return f"step {state.step_index + 1}/{len(spec.steps)} ({percent}%)"


def describe(fleet: FleetView, node_ids: Sequence[str]) -> str:
    """``node n2 (loading)`` or ``nodes n2 (loading), n3 (gone)``."""
    parts = []
    for node_id in node_ids:
        node = fleet.node(node_id)
        seen = "gone" if node is None else f"{node.phase}, serving {node.model or 'nothing'}"
        parts.append(f"{node_id} ({seen})")
    return f"node{'s' if len(parts) != 1 else ''} {', '.join(parts)}"
