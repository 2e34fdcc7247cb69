"""Where the control plane keeps its state: the ``Store`` protocol and ``ConsulStore``.

Keys (from ``yolofleet.keys.KeyLayout``)::

    rollouts/<group>        RolloutDoc: spec, GroupState, pending intent   (control plane)
    groups/<group>/target   GroupTarget: stable, canary, canary_nodes      (control plane)
    nodes/<group>/<id>      NodeState, read into a FleetView               (each node)
    models/<name>           ModelRecord                                    (registry)

The rollout document's ModifyIndex is the state's ``revision``. Intents are recorded with
check-and-set on it (``write_rollout``, any replica). The tick writes through ``commit``: ONE
Consul transaction that checks the leader lock is still held by the tick's session
(``check-session``, the fence), writes the document with ``cas`` on the revision it read (or
``check-index`` when only the target changes), and writes the target with ``cas`` on the index
it read. All or nothing: a deposed leader raises ``Deposed``, a lost race ``StoreConflict``, and
neither lands a byte. The target is written only when what nodes read from it (the stable and
canary pins, canary_nodes) changes; each such write bumps its ``generation``, which is read from
the stored target even when that is unreadable, so it never goes backwards. Consul errors leave
as ``StoreUnavailable``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from control_plane.consul.codec import RolloutDoc, decode_doc, encode_doc
from control_plane.consul.leader import Fence
from control_plane.core.errors import (
    Deposed,
    ModelUnknown,
    RecordCorrupt,
    StoreConflict,
    StoreUnavailable,
)
from control_plane.core.fleet import FleetView, NodeView
from control_plane.core.state import GroupState
from yolofleet import registry
from yolofleet.consul import ConsulClient, ConsulError, TxnOp
from yolofleet.consul.aiothread import run_blocking
from yolofleet.keys import KeyLayout
from yolofleet.records import (
    GroupTarget,
    ModelPin,
    ModelRecord,
    NodeState,
    RecordInvalid,
    node_state_from_json,
    target_from_json,
    target_generation,
    to_json,
)

__all__ = ["Committed", "ConsulStore", "RolloutDoc", "Store", "target_for"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Committed:
    """What ``commit`` wrote: the document's revision now, and the target (None: unchanged)."""

    revision: int
    target: GroupTarget | None = None


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


def same_assignment(a: GroupTarget, b: GroupTarget) -> bool:
    return (a.stable, a.canary, a.canary_nodes) == (b.stable, b.canary, b.canary_nodes)


class ConsulStore:
    """``Store`` over Consul KV through one ``ConsulClient`` (calls run on worker threads)."""

    def __init__(self, client: ConsulClient, layout: KeyLayout | None = None) -> None:
        self._client = client
        self._layout = layout or KeyLayout()

    @property
    def layout(self) -> KeyLayout:
        return self._layout

    async def read_rollout(self, group: str) -> RolloutDoc:
        key = self._layout.rollout(group)
        pair = await self._call(f"read {key}", functools.partial(self._client.get, key))
        if pair is None:
            return RolloutDoc(spec=None, state=GroupState(group=group))
        return decode_doc(pair.value, revision=pair.modify_index)

    async def write_rollout(self, doc: RolloutDoc) -> int:
        group, revision = doc.state.group, doc.state.revision
        key = self._layout.rollout(group)
        value = encode_doc(doc)
        put = functools.partial(self._client.put, key, value, cas=revision)
        if not await self._call(f"write {key}", put):
            raise StoreConflict(
                f"rollout of group {group} changed since revision {revision} was read; "
                "read it again and retry"
            )
        pair = await self._call(f"read {key}", functools.partial(self._client.get, key))
        written = pair is not None and pair.value == value
        return pair.modify_index if pair is not None and written else revision

    async def read_target(self, group: str) -> GroupTarget | None:
        key = self._layout.group_target(group)
        pair = await self._call(f"read {key}", functools.partial(self._client.get, key))
        return _target(pair.value, key) if pair is not None else None

    async def commit(self, doc: RolloutDoc, *, changed: bool, fence: Fence | None) -> Committed:
        state = doc.state
        key = self._layout.group_target(state.group)
        pair = await self._call(f"read {key}", functools.partial(self._client.get, key))
        parsed = _target(pair.value, key) if pair is not None else None
        generation = target_generation(pair.value) if pair is not None else 0
        wanted = target_for(state, generation=generation + 1)
        unchanged = same_assignment(parsed or GroupTarget(), wanted)
        if wanted.stable is None and wanted.canary is None and not state.history:
            unchanged = True  # lost (or no) state: nodes keep the target they have (lost_state.py)
        # an absent key and nothing to serve count as unchanged; an unreadable one is rewritten
        target = None if unchanged and (pair is None or parsed is not None) else wanted
        index = pair.modify_index if pair is not None else 0
        if not changed and target is None:
            return Committed(revision=state.revision)
        revision = await self._commit(doc if changed else None, state, target, index, fence)
        if target is not None:
            _log_target(state.group, target)
        return Committed(revision=revision, target=target)

    async def _commit(
        self,
        doc: RolloutDoc | None,
        state: GroupState,
        target: GroupTarget | None,
        target_index: int,
        fence: Fence | None,
    ) -> int:
        """One transaction: [leader lock held by the fence's session], the document written
        (cas) or left as read (check-index), [the target written (cas on the index read)].
        """
        rollout_key = self._layout.rollout(state.group)
        ops = [TxnOp.check_session(fence.key, session=fence.session)] if fence else []
        if doc is not None:
            ops.append(TxnOp.cas(rollout_key, encode_doc(doc), index=state.revision))
        elif state.revision:
            ops.append(TxnOp.check_index(rollout_key, index=state.revision))
        else:
            ops.append(TxnOp.check_not_exists(rollout_key))
        if target is not None:
            target_key = self._layout.group_target(state.group)
            ops.append(TxnOp.cas(target_key, to_json(target), index=target_index))
        txn = functools.partial(self._client.txn, ops)
        result = await self._call(f"commit the rollout of {state.group}", txn)
        if not result.ok:
            if fence is not None and any(e.op_index == 0 for e in result.errors):
                raise Deposed(
                    f"session {fence.session} no longer holds the leader lock {fence.key}; "
                    f"nothing written ({result.describe()})"
                )
            raise StoreConflict(
                f"rollout of group {state.group} changed since revision {state.revision} was "
                f"read; nothing written ({result.describe()})"
            )
        written = result.pair(rollout_key) if doc is not None else None
        return written.modify_index if written is not None else state.revision

    async def list_nodes(self, group: str) -> tuple[NodeState, ...]:
        """The group's node reports by node id; unreadable reports are logged and skipped."""
        prefix = self._layout.nodes(group)
        pairs = await self._call(f"list {prefix}", functools.partial(self._client.list, prefix))
        nodes = []
        for pair in pairs:
            try:
                nodes.append(node_state_from_json(pair.value))
            except RecordInvalid as exc:
                logger.warning(
                    "group=%s node record skipped key=%s reason=%s", group, pair.key, exc
                )
        return tuple(sorted(nodes, key=lambda node: node.node_id))

    async def observe(self, group: str) -> FleetView:
        return FleetView.of(
            NodeView(
                node_id=node.node_id,
                phase=node.phase,
                model=node.model,
                sha256=node.sha256,
                desired=node.desired,
                last_error=node.last_error,
                endpoint=node.endpoint,
            )
            for node in await self.list_nodes(group)
        )

    async def list_groups(self) -> tuple[str, ...]:
        groups: set[str] = set()
        for folder in ("rollouts/", "groups/", "nodes/"):
            prefix = f"{self._layout.prefix}{folder}"
            keys = functools.partial(self._client.keys, prefix, separator="/")
            for key in await self._call(f"list {prefix}", keys):
                name = key.removeprefix(prefix).strip("/")
                if name and "/" not in name:
                    groups.add(name)
        return tuple(sorted(groups))

    async def get_model(self, name: str) -> ModelRecord:
        get = functools.partial(registry.get_model, self._client, self._layout, name)
        try:
            return await self._call(f"read model {name}", get)
        except registry.ModelUnknown as exc:
            raise ModelUnknown(str(exc)) from exc
        except registry.RegistryError as exc:
            raise ModelUnknown(f"model {name!r} cannot be used: {exc}") from exc

    async def _call(self, action: str, fn: Callable[[], T]) -> T:
        with _unavailable(action):
            return await run_blocking(fn, name=f"consul-store-{action[:40]}")


@contextmanager
def _unavailable(action: str) -> Iterator[None]:
    try:
        yield
    except ConsulError as exc:
        raise StoreUnavailable(f"could not {action} in Consul: {exc}") from exc


def _log_target(group: str, target: GroupTarget) -> None:
    logger.info(
        "group=%s target generation=%d stable=%s canary=%s canary_nodes=%s",
        group,
        target.generation,
        _pin_name(target.stable),
        _pin_name(target.canary),
        ",".join(target.canary_nodes),
    )


def _pin_name(pin: ModelPin | None) -> str:
    return f"{pin.name}@{pin.version}" if pin is not None else "none"


def _target(value: bytes, key: str) -> GroupTarget | None:
    try:
        return target_from_json(value)
    except RecordInvalid as exc:
        logger.warning("group target unreadable key=%s reason=%s; it will be rewritten", key, exc)
        return None
