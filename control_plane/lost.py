"""Lost state: nodes serving models no rollout document explains, and ``adopt``. Pure.

A group whose document names no model and has no history (it was never written, or Consul lost
it) while live nodes serve models is *unexplained*: starting a rollout there would treat it as a
group's first model and send it to every node at once, and canaries of the lost rollout would
stay on their model with nobody tracking them. ``check_explained`` refuses that (the service
answers FAILED_PRECONDITION naming ``ctl adopt``); a group that never had a model (no node
serves anything) still gets its first model on every node.

``adopt`` (the ADOPT intent, applied by the leader's tick) rebuilds the state from what the nodes
serve: stable := the model most live nodes serve (pinned when the operator asked), every other
node (a stranded canary) goes back to it through the target, and one history entry records it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from control_plane import moves
from control_plane.errors import NothingToDo, RolloutConflict
from control_plane.fleet import FleetView, NodeView
from control_plane.state import GroupState, Phase
from yolofleet.records import ModelPin


class StateLost(RolloutConflict):
    """Nodes serve models the group's rollout document does not explain; adopt them first."""


def unexplained(state: GroupState, fleet: FleetView) -> tuple[NodeView, ...]:
    """Live nodes serving a model while the state names none and has no history."""
    if state.stable is not None or state.canary is not None or state.history:
        return ()
    return tuple(n for n in fleet.nodes if n.live and n.model is not None)


def check_explained(state: GroupState, fleet: FleetView) -> None:
    """Raises ``StateLost`` when ``unexplained`` finds nodes."""
    found = unexplained(state, fleet)
    if found:
        raise StateLost(
            f"group {state.group} has no rollout state, yet {_serving(found)}: its Consul state "
            f"was lost or never written; run `ctl adopt {state.group}` to take what the nodes "
            "serve as stable before starting a rollout"
        )


def adoptable(state: GroupState, fleet: FleetView) -> str:
    """The model ``adopt`` would make stable; raises ``NothingToDo`` when nothing is lost."""
    found = unexplained(state, fleet)
    if not found:
        raise NothingToDo(
            f"group {state.group} has nothing to adopt: its rollout state explains what every "
            "node serves"
        )
    counts = Counter(n.model for n in found if n.model is not None)
    return sorted(counts, key=lambda model: (-counts[model], model))[0]


def adopt(state: GroupState, fleet: FleetView, pin: ModelPin, now: float) -> GroupState:
    """Stable := ``pin`` (what the nodes serve); stranded nodes go back to it. Returns
    ``state`` unchanged when nothing is unexplained any more.
    """
    found = unexplained(state, fleet)
    if not found:
        return state
    stranded = [n for n in found if n.model != pin.name]
    back = f"; {_serving(stranded)} and go back to it" if stranded else ""
    why = f"adopted by the operator after lost state: {_serving(found)}; {pin.name} is stable{back}"
    pinned = replace(state, pins=(*(p for p in state.pins if p.name != pin.name), pin))
    return moves.finish(
        pinned,
        target=pin.name,
        started_at=now,
        phase=Phase.COMPLETED,
        stable=pin.name,
        reason=why,
        now=now,
    )


def _serving(nodes: tuple[NodeView, ...] | list[NodeView]) -> str:
    return ", ".join(f"{n.node_id} serves {n.model}" for n in nodes) or "no node serves a model"
