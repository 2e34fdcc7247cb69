"""Intents that mean what they say: ``admit`` (a request meets the pending one) and ``decide``
(what a tick did with the pending intent), as tables."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from control_plane.core.analysis import Outcome
from control_plane.core.decide import decide
from control_plane.core.errors import NothingToDo, RolloutConflict
from control_plane.core.fleet import FleetView
from control_plane.core.intents import admit
from control_plane.core.state import GroupState, Intent, IntentRequest, Phase, Result
from tests.unit.control_plane.builders import (
    NEW,
    OLD,
    SPEC,
    fleet,
    pin,
    running,
    settled,
    verdict,
)

T = 1010.0
"""Shortly after the builders' running states began (1000): no hold or deadline is over."""


def req(intent: Intent, id_: str = "new", **fields: object) -> IntentRequest:
    return IntentRequest(id=id_, intent=intent, requested_at=T, **fields)  # type: ignore[arg-type]


START = req(Intent.START, "s", spec=SPEC, pin=pin(NEW))

# --- admit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pending", "request_", "now_pending", "outcomes"),
    [
        pytest.param(None, req(Intent.PAUSE), "new", [], id="nothing-pending-records"),
        pytest.param(
            req(Intent.PROMOTE_FULL, "p"),
            req(Intent.ABORT),
            "new",
            [("p", Result.SUPERSEDED, "new")],
            id="abort-supersedes-promote-full",
        ),
        pytest.param(
            req(Intent.PAUSE, "p"),
            req(Intent.ABORT),
            "new",
            [("p", Result.SUPERSEDED, "new")],
            id="abort-supersedes-pause",
        ),
        pytest.param(
            START,
            req(Intent.ABORT),
            None,
            [("s", Result.SUPERSEDED, "new"), ("new", Result.APPLIED, None)],
            id="abort-cancels-a-start-not-begun",
        ),
    ],
)
def test_admit_records_or_supersedes(
    pending: IntentRequest | None,
    request_: IntentRequest,
    now_pending: str | None,
    outcomes: list[tuple[str, Result, str | None]],
) -> None:
    state = settled() if pending is START else running(Phase.HOLDING)

    got, recorded = admit(state, pending, request_, T)

    assert (got.id if got else None) == now_pending
    assert [(o.id, o.result, o.by) for o in recorded] == outcomes
    assert all(o.detail for o in recorded)


@pytest.mark.parametrize(
    ("state", "pending", "request_", "error", "match"),
    [
        pytest.param(
            running(Phase.HOLDING),
            req(Intent.ABORT, "a"),
            req(Intent.PROMOTE_FULL),
            RolloutConflict,
            r"abort \(id a\) for group zone-a is still pending",
            id="promote-after-abort-refused",
        ),
        pytest.param(
            running(Phase.HOLDING),
            req(Intent.PAUSE, "p"),
            req(Intent.PROMOTE),
            RolloutConflict,
            r"pause \(id p\) .* still pending",
            id="second-intent-waits",
        ),
        pytest.param(
            running(Phase.HOLDING),
            req(Intent.ABORT, "a"),
            req(Intent.ABORT),
            RolloutConflict,
            "still pending",
            id="second-abort-refused",
        ),
        pytest.param(
            settled(),
            START,
            req(Intent.START, spec=SPEC, pin=pin(NEW)),
            RolloutConflict,
            r"start of shapes-v2 \(id s\)",
            id="second-start-refused",
        ),
        pytest.param(
            settled(), None, req(Intent.ABORT), NothingToDo, "no rollout running", id="idle-abort"
        ),
    ],
)
def test_admit_refuses_with_a_reason(
    state: GroupState,
    pending: IntentRequest | None,
    request_: IntentRequest,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        admit(state, pending, request_, T)


# --- decide ------------------------------------------------------------------------------


ON_NEW = fleet(new=("n0",))


@dataclass(frozen=True)
class Case:
    state: GroupState
    pending: IntentRequest | None
    result: Result | None
    phase: Phase
    fleet: FleetView = ON_NEW
    outcome: Outcome | None = None


DECIDE = {
    "abort-applies": Case(running(Phase.HOLDING), req(Intent.ABORT), Result.APPLIED, Phase.ABORTED),
    "promote-full-applies": Case(
        running(Phase.HOLDING), req(Intent.PROMOTE_FULL), Result.APPLIED, Phase.COMPLETED
    ),
    "abort-superseded-by-failed-canary": Case(
        running(Phase.PROGRESSING),
        req(Intent.ABORT),
        Result.SUPERSEDED,
        Phase.ROLLED_BACK,
        fleet=fleet(failed=("n0",)),
    ),
    "promote-superseded-by-failing-analysis": Case(
        running(Phase.ANALYZING),
        req(Intent.PROMOTE),
        Result.SUPERSEDED,
        Phase.ROLLED_BACK,
        outcome=Outcome.FAIL,
    ),
    "resume-refused-when-not-paused": Case(
        running(Phase.HOLDING), req(Intent.RESUME), Result.REFUSED, Phase.HOLDING
    ),
    "undo-applies": Case(
        settled(Phase.COMPLETED, stable=NEW, previous_stable=OLD, pins=(pin(OLD), pin(NEW))),
        req(Intent.UNDO),
        Result.APPLIED,
        Phase.ROLLED_BACK,
        fleet=fleet(new=("n0", "n1")),
    ),
    "start-applies": Case(settled(), START, Result.APPLIED, Phase.PROGRESSING, fleet=fleet()),
    "start-refused-while-running": Case(
        running(Phase.HOLDING), START, Result.REFUSED, Phase.HOLDING
    ),
    "start-refused-without-live-nodes": Case(
        settled(), START, Result.REFUSED, Phase.IDLE, fleet=FleetView()
    ),
    "no-intent": Case(running(Phase.HOLDING), None, None, Phase.HOLDING),
}


@pytest.mark.parametrize("case", list(DECIDE.values()), ids=list(DECIDE))
def test_decide_records_what_became_of_the_intent(case: Case) -> None:
    found = verdict(case.outcome) if case.outcome is not None else None

    got = decide(case.state, SPEC, case.fleet, found, case.pending, T)

    assert got.state.phase is case.phase, got.state.reason
    assert (got.outcome.result if got.outcome else None) is case.result
    if got.outcome is not None and case.pending is not None:
        assert got.outcome.id == case.pending.id
        assert got.outcome.detail


def test_abort_then_promote_before_a_tick_ends_aborted() -> None:
    state = running(Phase.HOLDING)
    pending, _ = admit(state, None, req(Intent.ABORT, "a"), T)
    with pytest.raises(RolloutConflict):
        admit(state, pending, req(Intent.PROMOTE_FULL, "p"), T)

    got = decide(state, SPEC, fleet(new=("n0",)), None, pending, T + 1)

    assert got.state.phase is Phase.ABORTED
    assert got.state.stable == OLD
    assert got.outcome is not None
    assert (got.outcome.id, got.outcome.result) == ("a", Result.APPLIED)


def test_start_pins_the_target_and_a_finished_rollout_keeps_only_named_pins() -> None:
    started = decide(settled(), SPEC, fleet(), None, START, T).state

    done = decide(started, SPEC, fleet(), None, req(Intent.ABORT), T + 1).state

    assert started.pin(NEW) == pin(NEW)
    assert started.pin(OLD) == pin(OLD)
    assert done.phase is Phase.ABORTED
    assert {p.name for p in done.pins} == {OLD}


def test_a_node_on_the_right_name_but_another_digest_is_not_serving_the_pin() -> None:
    state = running(Phase.PROGRESSING)
    lying = FleetView.of(
        node
        if node.node_id != "n0"
        else type(node)(node_id="n0", phase=node.phase, model=NEW, sha256="f" * 64, desired=NEW)
        for node in fleet().nodes
    )

    got = decide(state, SPEC, lying, None, None, T)

    assert got.state.phase is Phase.PROGRESSING
