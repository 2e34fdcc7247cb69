"""``MemoryStore``: the ``Store`` protocol in memory, for cheap controller scenario tests.

It keeps what ``ConsulStore`` keeps, with the same rules that matter to the controller: one
modify index for every write (a document's revision), check-and-set on it for intents, and a
commit that writes the document and the target together or not at all, fenced by the leader
lock it is told is held (``leader``). The real store over the dev Consul is tested on its own
(``tests/integration/control_plane/test_store.py``); this one lets a scenario run many ticks in
milliseconds. Nodes obey the target when told to (``converge``), as node agents would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from control_plane.core.document import RolloutDoc
from control_plane.core.errors import Deposed, ModelUnknown, StoreConflict
from control_plane.core.fleet import FleetView, NodeView
from control_plane.core.state import GroupState
from control_plane.core.store import Committed, Fence
from control_plane.core.target import keeps_target, same_assignment, target_for
from tests.unit.control_plane.builders import digest
from yolofleet.records import GroupTarget, ModelRecord, NodePhase, NodeState


@dataclass(frozen=True, slots=True)
class _Stored:
    doc: RolloutDoc
    index: int


class MemoryStore:
    """``Store`` over dicts. ``leader`` is the fence a commit must carry (None: any fence)."""

    def __init__(self) -> None:
        self.leader: Fence | None = None
        self.writes = 0
        """How many writes landed (intents and commits that wrote anything)."""
        self._index = 0
        self._docs: dict[str, _Stored] = {}
        self._targets: dict[str, GroupTarget] = {}
        self._nodes: dict[str, dict[str, NodeState]] = {}
        self._models: dict[str, ModelRecord] = {}

    # Test set-up and inspection.

    def register(self, *names: str) -> None:
        for name in names:
            self._models[name] = ModelRecord(
                name=name,
                uri=f"http://artifacts/{name}",
                sha256=digest(name),
                size=1000,
                class_names=("circle",),
                input_size=160,
            )

    def report(self, group: str, node_id: str, model: str | None) -> None:
        """``node_id`` reports serving ``model`` (None: waiting for its first)."""
        phase = NodePhase.SERVING if model is not None else NodePhase.WAITING
        self._nodes.setdefault(group, {})[node_id] = NodeState(
            node_id=node_id,
            group=group,
            phase=phase,
            model=model,
            sha256=digest(model) if model is not None else None,
            desired=model,
            endpoint=f"{node_id}:50051",
        )

    def converge(self, group: str) -> None:
        """Every node of ``group`` now serves what the group's target tells it to."""
        target = self._targets.get(group)
        if target is None:
            return
        for node_id in self._nodes.get(group, {}):
            pin = target.model_for(node_id)
            if pin is not None:
                self.report(group, node_id, pin.name)

    def target(self, group: str) -> GroupTarget | None:
        return self._targets.get(group)

    def serving(self, group: str) -> dict[str, str | None]:
        return {n.node_id: n.model for n in self._nodes.get(group, {}).values()}

    # The Store protocol.

    async def read_rollout(self, group: str) -> RolloutDoc:
        stored = self._docs.get(group)
        if stored is None:
            return RolloutDoc(spec=None, state=GroupState(group=group))
        return replace(stored.doc, state=replace(stored.doc.state, revision=stored.index))

    async def write_rollout(self, doc: RolloutDoc) -> int:
        self._check_revision(doc.state)
        self.writes += 1
        return self._put(doc)

    async def commit(self, doc: RolloutDoc, *, changed: bool, fence: Fence | None) -> Committed:
        state = doc.state
        current = self._targets.get(state.group)
        generation = current.generation if current is not None else 0
        wanted = target_for(state, generation=generation + 1)
        unchanged = keeps_target(wanted, state) or same_assignment(current or GroupTarget(), wanted)
        target = None if unchanged else wanted
        if not changed and target is None:
            return Committed(revision=state.revision)
        if fence is not None and self.leader is not None and fence != self.leader:
            raise Deposed(f"session {fence.session} no longer holds the leader lock")
        self._check_revision(state)
        revision = self._put(doc) if changed else state.revision
        if target is not None:
            self._targets[state.group] = target
        self.writes += 1
        return Committed(revision=revision, target=target)

    async def read_target(self, group: str) -> GroupTarget | None:
        return self._targets.get(group)

    async def list_nodes(self, group: str) -> tuple[NodeState, ...]:
        return tuple(sorted(self._nodes.get(group, {}).values(), key=lambda n: n.node_id))

    async def observe(self, group: str) -> FleetView:
        return FleetView.of(
            NodeView(
                node_id=n.node_id,
                phase=n.phase,
                model=n.model,
                sha256=n.sha256,
                desired=n.desired,
                last_error=n.last_error,
                endpoint=n.endpoint,
            )
            for n in await self.list_nodes(group)
        )

    async def list_groups(self) -> tuple[str, ...]:
        return tuple(sorted({*self._docs, *self._targets, *self._nodes}))

    async def get_model(self, name: str) -> ModelRecord:
        try:
            return self._models[name]
        except KeyError:
            raise ModelUnknown(f"model {name!r} is not registered") from None

    def _check_revision(self, state: GroupState) -> None:
        stored = self._docs.get(state.group)
        if (stored.index if stored is not None else 0) != state.revision:
            raise StoreConflict(
                f"rollout of group {state.group} changed since revision {state.revision} was "
                "read; read it again and retry"
            )

    def _put(self, doc: RolloutDoc) -> int:
        self._index += 1
        self._docs[doc.state.group] = _Stored(doc=doc, index=self._index)
        return self._index
