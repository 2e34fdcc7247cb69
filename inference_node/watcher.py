"""Long-polls the group's target in Consul and yields this node's assignment when it changes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from yolofleet.consul import ConsulClient, KeyWatch
from yolofleet.keys import KeyLayout
from yolofleet.records import GroupTarget, RecordInvalid, target_from_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupAssignment:
    """The model this node should serve, or why the target could not be read."""

    desired: str | None
    generation: int = 0
    problem: str = ""


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
        return GroupAssignment(desired=None)
    try:
        target: GroupTarget = target_from_json(value)
    except RecordInvalid as exc:
        logger.error("key=%s unreadable, keeping the current model: %s", key, exc)
        return GroupAssignment(desired=None, problem=f"{key}: {exc}")
    return GroupAssignment(desired=target.model_for(node_id), generation=target.generation)
