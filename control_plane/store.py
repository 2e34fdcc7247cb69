"""Where the control plane keeps its state: the ``Store`` protocol and ``ConsulStore``.

Keys (from ``yolofleet.keys.KeyLayout``)::

    rollouts/<group>        RolloutDoc: spec, GroupState, pending intent   (control plane)
    groups/<group>/target   GroupTarget: stable, canary, canary_nodes      (control plane)
    nodes/<group>/<id>      NodeState, read into a FleetView               (each node)
    models/<name>           ModelRecord                                    (registry)

The rollout document is written with check-and-set on its ModifyIndex, which is the state's
``revision``: a write that lost to another writer raises ``StoreConflict``. The group target
is written only when what nodes read from it (stable, canary, canary_nodes) changes, and each
such write bumps its ``generation``. Consul errors leave as ``StoreUnavailable``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from control_plane.codec import RolloutDoc, decode_doc, encode_doc
from control_plane.errors import ModelUnknown, StoreConflict, StoreUnavailable
from control_plane.fleet import FleetView, NodeView
from control_plane.state import GroupState
from yolofleet import registry
from yolofleet.consul import ConsulClient, ConsulError
from yolofleet.consul.aiothread import run_blocking
from yolofleet.keys import KeyLayout
from yolofleet.records import (
    GroupTarget,
    ModelRecord,
    NodeState,
    RecordInvalid,
    node_state_from_json,
    target_from_json,
    to_json,
)

__all__ = ["ConsulStore", "RolloutDoc", "Store", "target_for"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

TARGET_ATTEMPTS = 3
"""Reads and writes of the target before a concurrent writer's conflict is raised."""


class Store(Protocol):
    """What the controller reads and writes. Every method may raise ``BackendError``."""

    async def read_rollout(self, group: str) -> RolloutDoc:
        """The group's document; an empty one (IDLE, revision 0) when the group has none."""
        ...

    async def write_rollout(self, doc: RolloutDoc) -> int:
        """Writes ``doc`` if the stored revision is still ``doc.state.revision``; returns the
        new revision. Raises ``StoreConflict`` when another write got there first.
        """
        ...

    async def write_target(self, state: GroupState) -> GroupTarget | None:
        """Writes the group target that ``state`` implies, when it differs from the stored one;
        returns the target written (generation bumped) or None when nothing changed.
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


def target_for(state: GroupState, *, generation: int) -> GroupTarget:
    """The group target nodes should read for ``state``."""
    canary = state.canary
    return GroupTarget(
        stable=state.stable,
        canary=canary,
        canary_nodes=state.canary_nodes if canary is not None else (),
        generation=generation,
    )


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

    async def write_target(self, state: GroupState) -> GroupTarget | None:
        for _ in range(TARGET_ATTEMPTS - 1):
            with contextlib.suppress(StoreConflict):
                return await self._write_target_once(state)
        return await self._write_target_once(state)

    async def _write_target_once(self, state: GroupState) -> GroupTarget | None:
        key = self._layout.group_target(state.group)
        pair = await self._call(f"read {key}", functools.partial(self._client.get, key))
        parsed = _target(pair.value, key) if pair is not None else None
        current = parsed or GroupTarget()
        wanted = target_for(state, generation=current.generation + 1)
        if same_assignment(current, wanted) and (pair is None or parsed is not None):
            return None  # unchanged (an absent key and nothing to serve count as unchanged)
        cas = pair.modify_index if pair is not None else 0
        put = functools.partial(self._client.put, key, to_json(wanted), cas=cas)
        if not await self._call(f"write {key}", put):
            raise StoreConflict(f"group target {key} changed while it was being written")
        logger.info(
            "group=%s target generation=%d stable=%s canary=%s canary_nodes=%s",
            state.group,
            wanted.generation,
            wanted.stable,
            wanted.canary,
            ",".join(wanted.canary_nodes),
        )
        return wanted

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


def _target(value: bytes, key: str) -> GroupTarget | None:
    try:
        return target_from_json(value)
    except RecordInvalid as exc:
        logger.warning("group target unreadable key=%s reason=%s; it will be rewritten", key, exc)
        return None
