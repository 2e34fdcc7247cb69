"""What the operator's intents do to a rollout, which apply in which phase, and how a new one
meets one still pending.

Every intent (start, pause, resume, promote, abort, undo) is recorded in the rollout document
with an id; only the leader's tick applies it, and the tick records its outcome there
(``IntentOutcome``: applied, superseded by another move, or refused with the reason), which is
what ``ctl`` waits for and prints.

One intent is pending at a time, and ``admit`` decides how a new one meets it:

- nothing pending: the new one is recorded;
- ABORT over a pending PAUSE, RESUME, PROMOTE or PROMOTE_FULL: the abort takes its place (abort
  wins over everything else), and the pending one's outcome is "superseded by" the abort;
- ADOPT over anything pending (only a lost group is adopted): the pending one is superseded;
- ABORT over a pending START: the start is cancelled before it began (superseded), and the
  abort's own outcome is "applied" at once: nothing had moved;
- anything else: refused with a reason naming the pending intent; the operator waits for it
  (``ctl status``) or aborts.

Refusing rather than queueing keeps the meaning of each request tied to the state it was asked
against: a promote asked for at step 1 never lands at step 3 behind a queue.
"""

from __future__ import annotations

from dataclasses import replace
from typing import assert_never

from control_plane.core import moves
from control_plane.core.errors import NothingToDo, RolloutConflict
from control_plane.core.fleet import FleetView
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import (
    GroupState,
    Intent,
    IntentOutcome,
    IntentRequest,
    Phase,
    Result,
)

SUPERSEDED_BY_ABORT = frozenset({Intent.PAUSE, Intent.RESUME, Intent.PROMOTE, Intent.PROMOTE_FULL})


def admit(
    state: GroupState, pending: IntentRequest | None, request: IntentRequest, now: float
) -> tuple[IntentRequest | None, tuple[IntentOutcome, ...]]:
    """(the intent now pending, outcomes to record) after ``request`` meets ``pending``.

    Raises ``RolloutConflict`` when it must wait for ``pending``, and what ``check_intent``
    raises when the phase would ignore it. ``START`` is checked by the caller (``begin``).
    """
    if pending is not None and request.intent is Intent.ADOPT:
        why = f"by adopt {request.id}: Consul state was lost"
        return request, (_outcome(pending, Result.SUPERSEDED, why, now, by=request.id),)
    if pending is not None and request.intent is Intent.ABORT:
        if pending.intent is Intent.START:
            target = pending.spec.target if pending.spec else "?"
            return None, (
                _outcome(
                    pending,
                    Result.SUPERSEDED,
                    f"cancelled by abort {request.id} before it began",
                    now,
                    by=request.id,
                ),
                _outcome(
                    request,
                    Result.APPLIED,
                    f"the requested rollout of {target} was cancelled before it began",
                    now,
                ),
            )
        if pending.intent in SUPERSEDED_BY_ABORT:
            check_intent(state, request.intent)
            superseded = _outcome(
                pending, Result.SUPERSEDED, f"by abort {request.id}", now, by=request.id
            )
            return request, (superseded,)
    if pending is not None:
        raise RolloutConflict(
            f"{describe(pending)} for group {state.group} is still pending; wait for the "
            "leader to apply it (ctl status) or abort"
        )
    if request.intent is not Intent.START:
        check_intent(state, request.intent, undo_to=request.undo_to)
    return request, ()


def describe(request: IntentRequest) -> str:
    """``promote_full (id 3f2a…)`` or ``start of shapes-v2 (id …)``."""
    what = str(request.intent)
    if request.spec is not None:
        what = f"start of {request.spec.target}"
    elif request.undo_to is not None:
        what = f"undo to {request.undo_to}"
    elif request.intent is Intent.ADOPT and request.pin is not None:
        what = f"adopt of {request.pin.name}"
    return f"{what} (id {request.id})"


def applied(request: IntentRequest, detail: str, now: float) -> IntentOutcome:
    return _outcome(request, Result.APPLIED, detail, now)


def superseded(request: IntentRequest, detail: str, now: float) -> IntentOutcome:
    return _outcome(request, Result.SUPERSEDED, detail, now)


def refused(request: IntentRequest, detail: str, now: float) -> IntentOutcome:
    return _outcome(request, Result.REFUSED, detail, now)


def _outcome(
    request: IntentRequest, result: Result, detail: str, now: float, *, by: str | None = None
) -> IntentOutcome:
    return IntentOutcome(
        id=request.id, intent=request.intent, result=result, detail=detail, at=now, by=by
    )


def check_intent(state: GroupState, intent: Intent, *, undo_to: str | None = None) -> None:
    """Raises ``NothingToDo`` (or ``RolloutConflict``) when ``step`` would ignore ``intent``,
    so the service can refuse it with a sentence instead of recording it.
    """
    phase, group = state.phase, state.group
    match intent:
        case Intent.UNDO:
            if phase.running:
                raise RolloutConflict(f"group {group} is rolling out; abort it instead of undo")
            if undo_to is not None:
                _check_undo_to(state, undo_to)
            elif state.previous_stable is None or state.previous_stable == state.stable:
                raise NothingToDo(f"group {group} has no previous stable model to go back to")
        case Intent.PAUSE | Intent.PROMOTE | Intent.PROMOTE_FULL | Intent.ABORT:
            if not phase.running:
                raise NothingToDo(f"group {group} has no rollout running (phase {phase})")
            if intent is Intent.PAUSE and phase in (Phase.PAUSED, Phase.DEPLOYING):
                raise NothingToDo(f"group {group} cannot be paused while {phase}")
        case Intent.RESUME:
            if phase is not Phase.PAUSED:
                raise NothingToDo(f"group {group} is not paused (phase {phase})")
        case Intent.START:
            if phase.running:
                raise RolloutConflict(f"group {group} is already rolling out (phase {phase})")
        case Intent.ADOPT:
            pass  # in any phase: the controller checks the group is lost (lost_state)
        case _:
            assert_never(intent)


def obey(
    state: GroupState, spec: RolloutSpec, fleet: FleetView, intent: Intent, now: float
) -> GroupState | None:
    """The state after ``intent``, or None when it does not apply in this phase."""
    at = moves.step_label(state, spec)
    deploying = state.phase is Phase.DEPLOYING
    match intent:
        case Intent.PAUSE:
            if deploying or state.phase is Phase.PAUSED:
                return None
            why = f"paused by the operator while {state.phase} at {at}"
            return replace(state, phase=Phase.PAUSED, phase_since=now, reason=why)
        case Intent.RESUME:
            if state.phase is not Phase.PAUSED:
                return None
            return moves.enter_step(
                state, spec, fleet, index=state.step_index, now=now, why="resumed"
            )
        case Intent.PROMOTE if not deploying:
            return moves.advance(state, spec, fleet, now, why=f"promoted by the operator at {at}")
        case Intent.PROMOTE | Intent.PROMOTE_FULL:
            return moves.complete(state, spec, now, why=f"fully promoted by the operator at {at}")
        case Intent.ABORT:
            back = moves.stable_before(state) or "no model"
            why = f"aborted by the operator at {at}; every node goes back to {back}"
            return moves.finish(
                state,
                target=spec.target,
                started_at=spec.created,
                phase=Phase.ABORTED,
                stable=moves.stable_before(state),
                reason=why,
                now=now,
            )
        case Intent.UNDO | Intent.START | Intent.ADOPT:
            return None
        case _:
            assert_never(intent)


def earlier_stables(state: GroupState) -> tuple[str, ...]:
    """Models that were the group's stable model before the current one, newest first."""
    seen: list[str] = []
    candidates = [state.previous_stable]
    for entry in reversed(state.history):
        candidates += [entry.stable_after, entry.stable_before]
    for model in candidates:
        if model is not None and model != state.stable and model not in seen:
            seen.append(model)
    return tuple(seen)


def _check_undo_to(state: GroupState, model: str) -> None:
    if model == state.stable:
        raise NothingToDo(f"{model} is already the stable model of group {state.group}")
    earlier = earlier_stables(state)
    if model not in earlier:
        known = ", ".join(earlier) or "none"
        raise NothingToDo(
            f"{model} was never a stable model of group {state.group} (earlier stables: "
            f"{known}); to serve it, start a rollout of it"
        )


def undo(state: GroupState, now: float, *, to: str | None = None) -> GroupState:
    """Makes ``to`` (default: the previous stable model) stable again, on every node at once,
    without analysis; the undone model becomes the previous stable, so a second undo swaps back.
    A ``to`` that was never stable in this group is ignored (``check_intent`` refuses it).
    """
    back, undone = (to or state.previous_stable), state.stable
    if back is None or back == undone or (to is not None and to not in earlier_stables(state)):
        return state
    return moves.finish(
        replace(state, canary=None, canary_nodes=(), verdicts=()),
        target=back,
        started_at=now,
        phase=Phase.ROLLED_BACK,
        stable=back,
        previous_stable=undone,
        reason=f"undone by the operator: stable {undone} -> {back}",
        now=now,
    )
