"""The seam between the controller and where its state lives: the ``Store`` protocol.

``consul/store.py``'s ``ConsulStore`` is the real one; ``MemoryStore``
(``tests/unit/control_plane/memory_store.py``) stands in for cheap controller scenario tests.
The tick's writes are fenced: ``Fence`` is what a leader's write must prove.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from control_plane.core.document import RolloutDoc
from control_plane.core.fleet import FleetView
from yolofleet.records import GroupTarget, InvalidRecord, ModelRecord, NodeState


@dataclass(frozen=True, slots=True, kw_only=True)
class Fence:
    """What a leader's write must prove: ``key`` (the leader lock) is held by ``session``."""

    key: str
    session: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Committed:
    """What ``commit`` wrote: the document's revision now, and the target (None: unchanged)."""

    revision: int
    target: GroupTarget | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeListing:
    """A group's node reports: the readable ones by node id, and the skipped ones with why."""

    nodes: tuple[NodeState, ...] = ()
    invalid: tuple[InvalidRecord, ...] = ()


class Store(Protocol):
    """What the controller reads and writes. Every method may raise ``BackendError``."""

    async def read_rollout(self, group: str) -> RolloutDoc:
        """The group's document; an empty one (IDLE, revision 0) when the group has none."""
        ...

    async def write_rollout(self, doc: RolloutDoc) -> int:
        """Writes ``doc`` if the stored revision is still ``doc.state.revision``; returns the
        new revision. Raises ``StoreConflict`` when another write got there first. Used to
        record intents (any replica); the tick writes through ``commit``.
        """
        ...

    async def commit(self, doc: RolloutDoc, *, changed: bool, fence: Fence | None) -> Committed:
        """The tick's one write: ``doc`` when ``changed`` (if the stored revision is still
        ``doc.state.revision``) and the group target its state implies (if it differs from the
        stored one, generation bumped), together, while ``fence`` (when given) still holds the
        leader lock. Raises ``StoreConflict`` or ``Deposed`` when nothing was written.
        """
        ...

    async def read_target(self, group: str) -> GroupTarget | None: ...

    async def list_nodes(self, group: str) -> tuple[NodeState, ...]:
        """The group's node reports, sorted by node id; unreadable reports are skipped."""
        ...

    async def observe(self, group: str) -> FleetView:
        """The group's nodes as they last reported; unreadable reports are skipped."""
        ...

    async def list_groups(self) -> tuple[str, ...]:
        """Every group with a rollout document, a target or a reporting node, sorted."""
        ...

    async def get_model(self, name: str) -> ModelRecord:
        """The registered model; raises ``ModelUnknown``."""
        ...
