"""What every WatchRollout stream of a group is fed: ``WatchedRollout``, read once per change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from control_plane.core.document import RolloutDoc


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchedRollout:
    """What every WatchRollout stream of a group gets on a change: the document as read and,
    when Consul's state is lost, why (read once per change, however many streams follow).
    """

    doc: RolloutDoc
    lost: str


class RolloutReader(Protocol):
    async def read_rollout(self, group: str) -> RolloutDoc: ...


class LostJudge(Protocol):
    async def lost(self, doc: RolloutDoc) -> str: ...


def watched_rollout(
    store: RolloutReader, controller: LostJudge
) -> Callable[[str], Awaitable[WatchedRollout]]:
    """The read a group's shared watch runs on every change of its rollout document."""

    async def read(group: str) -> WatchedRollout:
        doc = await store.read_rollout(group)
        return WatchedRollout(doc=doc, lost=await controller.lost(doc))

    return read
