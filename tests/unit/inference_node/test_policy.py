from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from inference_node.errors import (
    ArtifactError,
    DigestMismatch,
    LoadError,
    SwapError,
    ValidationFailed,
)
from inference_node.serving.status import node_phase
from inference_node.swapping.policy import (
    Action,
    Backoff,
    Move,
    RefusalKind,
    SlotPhase,
    SwapState,
    next_action,
    on_refusal,
    phase_of,
)
from tests.fakes import make_ref
from yolofleet.records import NodePhase

A, B, C = make_ref("a", "1"), make_ref("b", "2"), make_ref("c", "3")
A_RELABELLED = replace(A, version="v7")  # same name and digest: the same model
T = 1000.0
INTERVAL = 30.0


@dataclass(frozen=True, kw_only=True)
class Case:
    state: SwapState
    move: Move
    ref: object = None
    at: float | None = None
    now: float = T


SERVING_A = SwapState(desired=A, active=A, last_swap_at=T - 100, previous=C)
CASES = {
    "nothing-desired": Case(state=SwapState(), move=Move.NOTHING),
    "first-model-loads": Case(state=SwapState(desired=A), move=Move.LOAD, ref=A),
    "desired-is-live": Case(state=SERVING_A, move=Move.NOTHING),
    "relabelled-live-model-is-live": Case(
        state=replace(SERVING_A, desired=A_RELABELLED), move=Move.NOTHING
    ),
    "new-model-loads": Case(state=replace(SERVING_A, desired=B), move=Move.LOAD, ref=B),
    "load-of-desired-runs-on": Case(
        state=replace(SERVING_A, desired=B, loading=B), move=Move.NOTHING
    ),
    "newer-model-cancels-the-load": Case(
        state=replace(SERVING_A, desired=C, loading=B), move=Move.CANCEL, ref=B
    ),
    "return-to-live-cancels-the-load": Case(
        state=replace(SERVING_A, desired=A, loading=B), move=Move.CANCEL, ref=B
    ),
    "permanent-refusal-stays-refused": Case(
        state=replace(SERVING_A, desired=B, failed=B, attempts=1), move=Move.NOTHING
    ),
    "transient-refusal-backs-off": Case(
        state=replace(SERVING_A, desired=B, failed=B, retry_at=T + 5, attempts=1),
        move=Move.RETRY,
        ref=B,
        at=T + 5,
    ),
    "transient-refusal-retried-when-due": Case(
        state=replace(SERVING_A, desired=B, failed=B, retry_at=T + 5, attempts=1),
        now=T + 5,
        move=Move.LOAD,
        ref=B,
    ),
    "refusal-of-another-model-does-not-block": Case(
        state=replace(SERVING_A, desired=C, failed=B), move=Move.LOAD, ref=C
    ),
    "inside-interval-holds": Case(
        state=replace(SERVING_A, desired=B, last_swap_at=T - 10),
        move=Move.HOLD,
        ref=B,
        at=T - 10 + INTERVAL,
    ),
    "interval-over-loads": Case(
        state=replace(SERVING_A, desired=B, last_swap_at=T - INTERVAL), move=Move.LOAD, ref=B
    ),
    "return-to-previous-is-not-held": Case(
        state=replace(SERVING_A, desired=C, last_swap_at=T - 1), move=Move.LOAD, ref=C
    ),
    "due-retry-still-waits-out-the-interval": Case(
        state=replace(SERVING_A, desired=B, failed=B, retry_at=T, last_swap_at=T - 1),
        move=Move.HOLD,
        ref=B,
        at=T - 1 + INTERVAL,
    ),
}


@pytest.mark.parametrize("case", [pytest.param(c, id=name) for name, c in CASES.items()])
def test_next_action(case: Case) -> None:
    action = next_action(case.state, now=case.now, min_interval_s=INTERVAL)

    assert isinstance(action, Action)
    assert (action.move, action.ref, action.at) == (case.move, case.ref, case.at)
    assert action.reason


class Transient(SwapError):
    transient = True


class Permanent(ArtifactError):
    transient = False


def _marked(exc: SwapError, *, transient: bool) -> SwapError:
    exc.transient = transient
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(ArtifactError("HTTP 503"), RefusalKind.TRANSIENT, id="fetch-failed"),
        pytest.param(DigestMismatch("sha256 differs"), RefusalKind.PERMANENT, id="digest"),
        pytest.param(LoadError("bad pickle"), RefusalKind.PERMANENT, id="broken-file"),
        pytest.param(
            ValidationFailed("too slow", gate="latency"), RefusalKind.TRANSIENT, id="latency"
        ),
        pytest.param(
            ValidationFailed("class names", gate="classes"), RefusalKind.PERMANENT, id="classes"
        ),
        pytest.param(
            ValidationFailed("0 detections", gate="calibration"),
            RefusalKind.PERMANENT,
            id="calibration",
        ),
        pytest.param(Transient("timeout"), RefusalKind.TRANSIENT, id="class-says-transient"),
        pytest.param(Permanent("bad scheme"), RefusalKind.PERMANENT, id="class-says-permanent"),
        pytest.param(
            _marked(ArtifactError("HTTP 404"), transient=False),
            RefusalKind.PERMANENT,
            id="error-says-permanent",
        ),
    ],
)
def test_refusal_kind(exc: SwapError, kind: RefusalKind) -> None:
    refusal = on_refusal(exc, attempts=1, now=T)

    assert refusal.kind is kind
    assert (refusal.retry_at is None) is (kind is RefusalKind.PERMANENT)


@pytest.mark.parametrize(
    ("attempts", "delay_s"),
    [
        pytest.param(1, 5.0, id="first"),
        pytest.param(2, 10.0, id="doubles"),
        pytest.param(6, 160.0, id="sixth"),
        pytest.param(7, 300.0, id="capped"),
        pytest.param(50, 300.0, id="stays-capped"),
    ],
)
def test_transient_refusal_backs_off_from_5_to_300_s(attempts: int, delay_s: float) -> None:
    refusal = on_refusal(ArtifactError("HTTP 503"), attempts=attempts, now=T, backoff=Backoff())

    assert (refusal.delay_s, refusal.retry_at) == (delay_s, T + delay_s)


@pytest.mark.parametrize(
    ("state", "draining", "phase"),
    [
        pytest.param(SwapState(), False, SlotPhase.EMPTY, id="empty"),
        pytest.param(SwapState(desired=A, loading=A), False, SlotPhase.LOADING, id="first-load"),
        pytest.param(SERVING_A, False, SlotPhase.SERVING, id="serving"),
        pytest.param(
            replace(SERVING_A, desired=B, loading=B), False, SlotPhase.LOADING, id="swapping"
        ),
        pytest.param(replace(SERVING_A, desired=B, failed=B), False, SlotPhase.FAILED, id="failed"),
        pytest.param(
            replace(SERVING_A, desired=B, failed=B, loading=B),
            False,
            SlotPhase.LOADING,
            id="retrying",
        ),
        pytest.param(
            replace(SERVING_A, desired=C, failed=B), False, SlotPhase.SERVING, id="refusal-replaced"
        ),
        pytest.param(
            SwapState(desired=A, failed=A), False, SlotPhase.FAILED, id="first-model-refused"
        ),
        pytest.param(SERVING_A, True, SlotPhase.DRAINING, id="draining"),
    ],
)
def test_phase_of(state: SwapState, draining: bool, phase: SlotPhase) -> None:
    assert phase_of(state, draining=draining) is phase


@pytest.mark.parametrize(
    ("phase", "reported"),
    [
        pytest.param(SlotPhase.EMPTY, NodePhase.WAITING, id="empty-waits"),
        pytest.param(SlotPhase.LOADING, NodePhase.LOADING, id="loading"),
        pytest.param(SlotPhase.SERVING, NodePhase.SERVING, id="serving"),
        pytest.param(SlotPhase.FAILED, NodePhase.FAILED, id="failed"),
        pytest.param(SlotPhase.DRAINING, NodePhase.DRAINING, id="draining"),
    ],
)
def test_every_slot_phase_has_the_node_phase_reported_in_consul(
    phase: SlotPhase, reported: NodePhase
) -> None:
    assert node_phase(phase) is reported
