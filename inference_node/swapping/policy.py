"""The swap agent's decisions, as pure functions: what to do next, and what a refusal means.

No I/O and no clock: ``now`` is passed in. ``SwapState`` is everything the decisions read; the
agent keeps one and replaces it as things happen. The lifecycle the agent reports::

    EMPTY ──request──▶ LOADING ──gates pass, swap──▶ SERVING ──request──▶ LOADING ...
                          │                             ▲
                          │ refused                     │ a later request goes live
                          ▼                             │
                        FAILED ──transient: retry_at──▶ LOADING
    any ──shutdown──▶ DRAINING

    state                           next_action
    nothing desired                 NOTHING
    a load of another model runs    CANCEL it (the newer one loads as soon as it stops)
    a load of the desired one runs  NOTHING (wait for it)
    desired is live                 NOTHING
    desired refused for good        NOTHING (until it is requested again)
    desired refused, may pass later RETRY at retry_at, then LOAD
    inside the min swap interval    HOLD until it ends (never for a return to the previous)
    otherwise                       LOAD desired
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from inference_node.errors import ArtifactError, SwapError, ValidationFailed
from inference_node.model import ModelRef

RETRY_FIRST_S = 5.0
RETRY_MAX_S = 300.0
TRANSIENT_GATES = frozenset({"latency"})
"""Gates whose verdict depends on the moment (a busy device), not on the model file."""


class SlotPhase(StrEnum):
    """The one lifecycle of the node's model slot (reported as ``NodeStatus.phase``)."""

    EMPTY = "empty"
    """No model has gone live and none is loading."""
    LOADING = "loading"
    """A candidate is being fetched, built, warmed up or validated."""
    SERVING = "serving"
    """A model is live and the last change went through (or was superseded)."""
    FAILED = "failed"
    """The desired model was refused; the old one (if any) keeps serving."""
    DRAINING = "draining"
    """The node is shutting down."""


class Move(StrEnum):
    NOTHING = "nothing"
    LOAD = "load"
    HOLD = "hold"
    RETRY = "retry"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True, kw_only=True)
class SwapState:
    """What the agent knows: the decisions read nothing else."""

    desired: ModelRef | None = None
    active: ModelRef | None = None
    loading: ModelRef | None = None
    failed: ModelRef | None = None
    """The desired model's last refusal (cleared by a new request or a swap)."""
    retry_at: float | None = None
    """When a transiently refused ``failed`` is tried again; None: it is not."""
    attempts: int = 0
    """Refusals of ``failed`` in a row (the backoff's exponent)."""
    last_swap_at: float = float("-inf")
    previous: ModelRef | None = None
    """The model the last swap replaced: a return to it is never held back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    move: Move
    ref: ModelRef | None = None
    """The model to load, or the load to cancel."""
    at: float | None = None
    """For HOLD and RETRY: when to decide again."""
    reason: str


class RefusalKind(StrEnum):
    PERMANENT = "permanent"
    """The same model fails the same way every time: not retried."""
    TRANSIENT = "transient"
    """Trying the same model again later may work: retried with backoff."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    kind: RefusalKind
    retry_at: float | None = None
    delay_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    first_s: float = RETRY_FIRST_S
    max_s: float = RETRY_MAX_S

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th refusal in a row (1 for the first)."""
        return min(self.max_s, self.first_s * 2.0 ** max(0, attempts - 1))


def same_model(a: ModelRef | None, b: ModelRef | None) -> bool:
    """Same name and digest (the version string is only a label)."""
    return a is not None and b is not None and a.name == b.name and a.sha256 == b.sha256


def next_action(state: SwapState, *, now: float, min_interval_s: float) -> Action:
    """What the agent should do now; see the table in the module docstring."""
    desired = state.desired
    if desired is None:
        return Action(move=Move.NOTHING, reason="no model is desired yet")
    if state.loading is not None:
        if same_model(state.loading, desired):
            return Action(move=Move.NOTHING, reason=f"{desired} is loading")
        return Action(
            move=Move.CANCEL, ref=state.loading, reason=f"{desired} replaced {state.loading}"
        )
    if same_model(state.active, desired):
        return Action(move=Move.NOTHING, reason=f"{desired} is live")
    if same_model(state.failed, desired):
        if state.retry_at is None:
            return Action(move=Move.NOTHING, reason=f"{desired} was refused for good")
        if now < state.retry_at:
            return Action(
                move=Move.RETRY, ref=desired, at=state.retry_at, reason=f"{desired} backs off"
            )
    held_until = state.last_swap_at + min_interval_s
    if now < held_until and not same_model(state.previous, desired):
        return Action(
            move=Move.HOLD,
            ref=desired,
            at=held_until,
            reason=f"{desired} held {held_until - now:.1f}s by the minimum swap interval",
        )
    return Action(move=Move.LOAD, ref=desired, reason=f"{desired} differs from the live model")


def is_transient(exc: SwapError) -> bool:
    """Whether trying the same model again later may work.

    A refusal says so with a ``transient`` attribute (of its class, or of the error itself)
    where it has one; a validation gate is transient only when its verdict depends on the
    moment (latency on a busy device). Without the attribute, a fetch that failed
    (``ArtifactError``: the artifact server restarting, a network blip) is transient and
    everything else is not.
    """
    if isinstance(exc, ValidationFailed):
        return exc.gate in TRANSIENT_GATES
    flag = getattr(exc, "transient", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(exc, ArtifactError)


def on_refusal(
    exc: SwapError, *, attempts: int, now: float, backoff: Backoff | None = None
) -> Refusal:
    """What the ``attempts``-th refusal in a row (1 for the first) of one model means."""
    if not is_transient(exc):
        return Refusal(kind=RefusalKind.PERMANENT)
    delay = (backoff or Backoff()).delay(attempts)
    return Refusal(kind=RefusalKind.TRANSIENT, retry_at=now + delay, delay_s=delay)


def phase_of(state: SwapState, *, draining: bool) -> SlotPhase:
    """The phase to report for ``state``."""
    if draining:
        return SlotPhase.DRAINING
    if state.loading is not None:
        return SlotPhase.LOADING
    if state.failed is not None and same_model(state.failed, state.desired):
        return SlotPhase.FAILED
    return SlotPhase.SERVING if state.active is not None else SlotPhase.EMPTY
