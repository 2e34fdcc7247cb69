"""Long-polls the group's target in Consul and yields this node's assignment when it changes.

The target carries pins (name, sha256, artifact URI, format, size), so the assignment is all the
node needs: it never reads the registry to act on a target. A target without pins (written by
an older control plane) is reported as a problem and the node keeps its model until the
control plane rewrites it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from yolofleet.consul import ConsulClient, KeyWatch
from yolofleet.keys import KeyLayout
from yolofleet.records import GroupTarget, ModelPin, RecordInvalid, target_from_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupAssignment:
    """The model this node should serve (its pin), or why the target could not be read."""

    pin: ModelPin | None
    generation: int = 0
    problem: str = ""

    @property
    def desired(self) -> str | None:
        return self.pin.name if self.pin is not None else None


async def assignments(
    client: ConsulClient, layout: KeyLayout, *, group: str, node_id: str, wait_s: float = 30.0
) -> AsyncIterator[GroupAssignment]:
    """Yield the first assignment, then each one that differs from the last."""
    key = layout.group_target(group)
    last: GroupAssignment | None = None
    async for pair in KeyWatch(client, key, wait=wait_s):
        assignment = _assignment(pair.value if pair else None, node_id=node_id, key=key)
        if assignment != last:
            last = assignment
            yield assignment


def _assignment(value: bytes | None, *, node_id: str, key: str) -> GroupAssignment:
    if value is None:
        return GroupAssignment(pin=None)
    try:
        target: GroupTarget = target_from_json(value)
    except RecordInvalid as exc:
        logger.error("key=%s unreadable, keeping the current model: %s", key, exc)
        return GroupAssignment(pin=None, problem=f"{key}: {exc}")
    return GroupAssignment(pin=target.model_for(node_id), generation=target.generation)
