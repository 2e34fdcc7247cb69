"""What one tick does with the rollout and its pending intent: ``decide``. Pure: ``now`` is
passed in, no I/O.

The intent is applied through ``rollout.begin`` (START) or ``rollout.step``; its outcome is
found by comparing the tick with and without it, so it always means what happened:

- the state moved only because of the intent: applied (the detail is the new reason);
- the tick settled the rollout on its own (a canary failed, analysis failed): superseded by that
  rollback, whose reason is the detail; an abort is never reported applied in that case;
- otherwise it changed nothing: refused, with ``check_intent``'s sentence for why.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.core import intents, rollout
from control_plane.core.analysis import Verdict
from control_plane.core.errors import RequestRefused
from control_plane.core.fleet import FleetView
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import GroupState, Intent, IntentOutcome, IntentRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The state and spec after the tick, and the pending intent's outcome (None: none)."""

    state: GroupState
    spec: RolloutSpec | None
    outcome: IntentOutcome | None = None


def decide(
    state: GroupState,
    spec: RolloutSpec | None,
    fleet: FleetView,
    verdict: Verdict | None,
    pending: IntentRequest | None,
    now: float,
) -> Decision:
    """One tick of ``state`` with ``pending`` (if any) applied, and what became of it."""
    if pending is None:
        return Decision(state=rollout.step(state, spec, fleet, verdict, None, now), spec=spec)
    if pending.intent is Intent.START:
        return _start(state, spec, fleet, verdict, pending, now)
    without = rollout.step(state, spec, fleet, verdict, None, now)
    moved = rollout.step(state, spec, fleet, verdict, pending.intent, now, undo_to=pending.undo_to)
    if moved != without:
        return Decision(state=moved, spec=spec, outcome=intents.applied(pending, moved.reason, now))
    if state.phase.running and not without.phase.running:
        why = f"the rollout was {without.phase} first: {without.reason}"
        return Decision(state=without, spec=spec, outcome=intents.superseded(pending, why, now))
    return Decision(
        state=without, spec=spec, outcome=intents.refused(pending, _why(state, pending), now)
    )


def _start(
    state: GroupState,
    spec: RolloutSpec | None,
    fleet: FleetView,
    verdict: Verdict | None,
    pending: IntentRequest,
    now: float,
) -> Decision:
    wanted = pending.spec
    try:
        if wanted is None or pending.pin is None:
            raise RequestRefused("the start request carries no spec or no model pin")
        begun = rollout.begin(state, wanted, fleet, now, pin=pending.pin)
    except RequestRefused as exc:
        kept = rollout.step(state, spec, fleet, verdict, None, now)
        return Decision(state=kept, spec=spec, outcome=intents.refused(pending, str(exc), now))
    return Decision(state=begun, spec=wanted, outcome=intents.applied(pending, begun.reason, now))


def _why(state: GroupState, pending: IntentRequest) -> str:
    try:
        intents.check_intent(state, pending.intent, undo_to=pending.undo_to)
    except RequestRefused as exc:
        return str(exc)
    if pending.intent is Intent.UNDO and pending.undo_to is not None:
        return f"no pin is recorded for {pending.undo_to}, so there is nothing to go back to"
    return f"it would change nothing in phase {state.phase}"
