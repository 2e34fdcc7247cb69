"""Where the control plane keeps its state: ``ConsulStore``, the ``Store`` (``core/store.py``)
over Consul KV.

Keys (from ``yolofleet.keys.KeyLayout``)::

    rollouts/<group>        RolloutDoc: spec, GroupState, pending intent   (control plane)
    groups/<group>/target   GroupTarget: stable, canary, canary_nodes      (control plane)
    nodes/<group>/<id>      NodeState, read into a FleetView               (each node)
    models/<name>           ModelRecord                                    (registry)

The rollout document's ModifyIndex is the state's ``revision``. Intents are recorded with check-
and-set on it (``write_rollout``, any replica). The tick writes through ``commit``: one fenced
Consul transaction (``commit.py``), all or nothing. The target is written only when what nodes
read from it (the stable and canary pins, canary_nodes) changes; each such write bumps its
``generation``, which is read from the stored target even when that is unreadable, so it never
goes backwards. Consul errors leave as ``StoreUnavailable``. Listings skip unreadable records
and return them apart (``scan_nodes``, ``scan_models``) so one bad record never fails a tick or
a listing."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from control_plane.consul.codec import decode_doc, encode_doc
from control_plane.consul.commit import commit_ops, log_target, refusal
from control_plane.core.document import RolloutDoc
from control_plane.core.errors import ModelUnknown, StoreConflict, StoreUnavailable
from control_plane.core.fleet import FleetView, NodeView
from control_plane.core.state import GroupState
from control_plane.core.store import Committed, Fence, NodeListing
from control_plane.core.target import keeps_target, same_assignment, target_for
from yolofleet import registry
from yolofleet.consul import ConsulClient, ConsulError
from yolofleet.consul.aiothread import run_blocking
from yolofleet.keys import KeyLayout
from yolofleet.records import (
    GroupTarget,
    InvalidRecord,
    ModelRecord,
    NodeState,
    RecordInvalid,
    node_state_from_json,
    target_from_json,
    target_generation,
)

__all__ = ["ConsulStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
        if keeps_target(wanted, state):
            unchanged = True
        # an absent key and nothing to serve count as unchanged; an unreadable one is rewritten
        target = None if unchanged and (pair is None or parsed is not None) else wanted
        index = pair.modify_index if pair is not None else 0
        if not changed and target is None:
            return Committed(revision=state.revision)
        revision = await self._commit(doc if changed else None, state, target, index, fence)
        if target is not None:
            log_target(state.group, target)
        return Committed(revision=revision, target=target)

    async def _commit(
        self,
        doc: RolloutDoc | None,
        state: GroupState,
        target: GroupTarget | None,
        target_index: int,
        fence: Fence | None,
    ) -> int:
        ops = commit_ops(
            self._layout,
            doc=doc,
            state=state,
            target=target,
            target_index=target_index,
            fence=fence,
        )
        txn = functools.partial(self._client.txn, ops)
        result = await self._call(f"commit the rollout of {state.group}", txn)
        if not result.ok:
            raise refusal(result, state=state, fence=fence)
        written = result.pair(self._layout.rollout(state.group)) if doc is not None else None
        return written.modify_index if written is not None else state.revision

    async def list_nodes(self, group: str) -> tuple[NodeState, ...]:
        return (await self.scan_nodes(group)).nodes

    async def scan_nodes(self, group: str) -> NodeListing:
        """The group's node reports by node id; unreadable ones are logged and returned apart
        with their reason.
        """
        prefix = self._layout.nodes(group)
        pairs = await self._call(f"list {prefix}", functools.partial(self._client.list, prefix))
        nodes, invalid = [], []
        for pair in pairs:
            try:
                nodes.append(node_state_from_json(pair.value))
            except RecordInvalid as exc:
                logger.warning(
                    "group=%s node record skipped key=%s reason=%s", group, pair.key, exc
                )
                invalid.append(InvalidRecord(key=pair.key, reason=str(exc)))
        ordered = tuple(sorted(nodes, key=lambda node: node.node_id))
        return NodeListing(nodes=ordered, invalid=tuple(invalid))

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

    async def scan_models(self) -> registry.ModelListing:
        """Every model record; invalid ones are logged and returned apart with their reason."""
        scan = functools.partial(registry.scan_models, self._client, self._layout)
        return await self._call("list models", scan)

    async def register_model(
        self,
        path: Path,
        *,
        name: str,
        uri: str,
        parent: str | None,
        notes: str,
        metadata: Mapping[str, Any],
        now: float,
    ) -> ModelRecord:
        """Registers ``path`` as ``name`` (create-only); raises the ``registry`` errors."""
        register = functools.partial(
            registry.register_model,
            self._client,
            self._layout,
            path=path,
            name=name,
            uri=uri,
            parent=parent,
            notes=notes,
            metadata=metadata,
            now=now,
        )
        return await self._call(f"register model {name}", register)

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
