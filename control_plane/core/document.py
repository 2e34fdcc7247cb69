"""What ``rollouts/<group>`` holds: ``RolloutDoc``. Its JSON is ``consul/codec.py``'s."""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.core.spec import RolloutSpec
from control_plane.core.state import GroupState, IntentOutcome, IntentRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutDoc:
    """What ``rollouts/<group>`` holds: the spec (None before the first rollout), the state
    (its ``revision`` is the key's ModifyIndex, 0 when absent), the operator's pending intent
    and the outcomes of the latest intents (newest last).
    """

    spec: RolloutSpec | None
    state: GroupState
    pending: IntentRequest | None = None
    outcomes: tuple[IntentOutcome, ...] = ()
    epoch: str | None = None
    """The cluster epoch the leader's tick last wrote the document under (``epoch.py``); None
    for a document written before epochs, or only recorded into (intents do not stamp it)."""

    def outcome(self, intent_id: str) -> IntentOutcome | None:
        return next((o for o in self.outcomes if o.id == intent_id), None)
