"""The group target a rollout state implies (``target_for``), and when two assign the same."""

from __future__ import annotations

from control_plane.core.errors import RecordCorrupt
from control_plane.core.state import GroupState
from yolofleet.records import GroupTarget, ModelPin


def target_for(state: GroupState, *, generation: int) -> GroupTarget:
    """The group target nodes should read for ``state``: the pins of its stable and canary
    models. Raises ``RecordCorrupt`` when the state names a model it holds no pin for.
    """
    canary = state.canary
    return GroupTarget(
        stable=_pinned(state, state.stable),
        canary=_pinned(state, canary),
        canary_nodes=state.canary_nodes if canary is not None else (),
        generation=generation,
    )


def same_assignment(a: GroupTarget, b: GroupTarget) -> bool:
    """Whether nodes would serve the same models from ``a`` as from ``b`` (generation aside)."""
    return (a.stable, a.canary, a.canary_nodes) == (b.stable, b.canary, b.canary_nodes)


def keeps_target(wanted: GroupTarget, state: GroupState) -> bool:
    """Lost (or no) state: nothing to serve and no history, so nodes keep the target they have
    (``lost_state.py``)."""
    return wanted.stable is None and wanted.canary is None and not state.history


def _pinned(state: GroupState, name: str | None) -> ModelPin | None:
    if name is None:
        return None
    pin = state.pin(name)
    if pin is None:
        raise RecordCorrupt(
            f"group {state.group} names model {name} but holds no pin for it; "
            "its target is left as it is"
        )
    return pin
