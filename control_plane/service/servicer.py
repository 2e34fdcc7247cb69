"""The ``yolofleet.v1.ControlPlane`` gRPC servicer: protobuf in, our types through, protobuf out.

Every RPC runs inside ``refusals`` (``refusals.py``), the one place exceptions become status
codes. Mutations (StartRollout, Undo and the other intents) go through the
``Controller``, which validates them and records an intent with an id (check-and-set); only the
leader's next tick acts on them and records the outcome, so any replica can answer. The reply
carries the intent's id (``Rollout.intent_id``) for ``ctl`` to wait on. The service talks to
the store and the controller, never to Consul itself; hashing a published file runs on a worker
thread. Listings carry the records they skipped, with the reason.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import grpc

from control_plane.consul.store import ConsulStore
from control_plane.consul.watches import GroupWatches, StreamLimit, WatchLimitReached
from control_plane.controller import Controller
from control_plane.core.errors import GroupUnknown, SpecInvalid
from control_plane.core.spec import DEFAULT_HOLD_S
from control_plane.core.state import Intent
from control_plane.service.messages import (
    history_pb,
    invalid_pb,
    model_pb,
    node_pb,
    rollout_pb,
    thresholds_from_pb,
)
from control_plane.service.refusals import metadata, refusals, segment
from control_plane.service.watched import WatchedRollout
from yolofleet import registry
from yolofleet.consul.aiothread import run_blocking
from yolofleet.v1 import control_pb2, control_pb2_grpc

logger = logging.getLogger(__name__)


class Artifacts(Protocol):
    def publish(self, sha256: str, path: Path) -> str:
        """Makes ``path`` fetchable as ``sha256``; returns the URI nodes fetch it from."""
        ...


class ControlPlaneService(control_pb2_grpc.ControlPlaneServicer):
    """Answers every ControlPlane RPC from the store, the registry and the controller."""

    def __init__(
        self,
        *,
        store: ConsulStore,
        controller: Controller,
        watches: GroupWatches[WatchedRollout],
        artifacts: Artifacts | None = None,
        streams: StreamLimit | None = None,
    ) -> None:
        self._watches = watches
        self._streams = streams or StreamLimit()
        self._store = store
        self._controller = controller
        self._artifacts = artifacts

    # Model registry.

    async def RegisterModel(
        self, request: control_pb2.RegisterModelRequest, context: Any
    ) -> control_pb2.ModelRecord:
        async with refusals(context, "RegisterModel"):
            path = Path(request.path)
            name = segment(request.name, "model name")
            fields = metadata(request.metadata_json)
            uri = request.uri or await self._publish(path)
            record = await self._store.register_model(
                path,
                name=name,
                uri=uri,
                parent=request.parent or None,
                notes=request.notes,
                metadata=fields,
                now=time.time(),
            )
            return model_pb(record)
        raise AssertionError("unreachable")

    async def ListModels(
        self, request: control_pb2.ListModelsRequest, context: Any
    ) -> control_pb2.ListModelsResponse:
        async with refusals(context, "ListModels"):
            listing = await self._store.scan_models()
            return control_pb2.ListModelsResponse(
                models=[model_pb(r) for r in listing.records],
                invalid=[invalid_pb(r) for r in listing.invalid],
            )
        raise AssertionError("unreachable")

    async def GetModel(
        self, request: control_pb2.GetModelRequest, context: Any
    ) -> control_pb2.ModelRecord:
        async with refusals(context, "GetModel"):
            return model_pb(await self._store.get_model(segment(request.name, "model name")))
        raise AssertionError("unreachable")

    # Rollouts.

    async def StartRollout(
        self, request: control_pb2.StartRolloutRequest, context: Any
    ) -> control_pb2.Rollout:
        async with refusals(context, "StartRollout"):
            group = await self._known_group(request.group)
            steps = list(request.steps) or None
            if steps is None and request.canary_percent == 0:
                raise SpecInvalid("give canary_percent (1-100) or the steps of the rollout")
            doc, intent_id = await self._controller.start_rollout(
                group,
                segment(request.model, "model name"),
                canary=request.canary_percent or None,
                steps=steps,
                hold_s=request.hold_s if request.HasField("hold_s") else DEFAULT_HOLD_S,
                thresholds=thresholds_from_pb(request.thresholds),
            )
            return rollout_pb(doc, intent_id=intent_id)
        raise AssertionError("unreachable")

    async def Pause(self, request: control_pb2.GroupRequest, context: Any) -> control_pb2.Rollout:
        return await self._intent(request.group, Intent.PAUSE, context)

    async def Resume(self, request: control_pb2.GroupRequest, context: Any) -> control_pb2.Rollout:
        return await self._intent(request.group, Intent.RESUME, context)

    async def Promote(
        self, request: control_pb2.PromoteRequest, context: Any
    ) -> control_pb2.Rollout:
        intent = Intent.PROMOTE_FULL if request.full else Intent.PROMOTE
        return await self._intent(request.group, intent, context)

    async def Abort(self, request: control_pb2.GroupRequest, context: Any) -> control_pb2.Rollout:
        return await self._intent(request.group, Intent.ABORT, context)

    async def Undo(self, request: control_pb2.UndoRequest, context: Any) -> control_pb2.Rollout:
        undo_to = request.to_model or None
        return await self._intent(request.group, Intent.UNDO, context, undo_to=undo_to)

    async def Adopt(self, request: control_pb2.AdoptRequest, context: Any) -> control_pb2.Rollout:
        async with refusals(context, "Adopt"):
            group = await self._known_group(request.group)
            stable = segment(request.stable, "model name") if request.stable else None
            doc, intent_id = await self._controller.adopt(group, stable=stable)
            return rollout_pb(doc, intent_id=intent_id)
        raise AssertionError("unreachable")

    async def GetRollout(
        self, request: control_pb2.GroupRequest, context: Any
    ) -> control_pb2.Rollout:
        async with refusals(context, "GetRollout"):
            group = segment(request.group, "group name")
            return await self._rollout(group)
        raise AssertionError("unreachable")

    async def WatchRollout(
        self, request: control_pb2.GroupRequest, context: Any
    ) -> AsyncIterator[control_pb2.Rollout]:
        try:
            self._streams.acquire()
        except WatchLimitReached as exc:
            logger.info("rpc=WatchRollout refused code=RESOURCE_EXHAUSTED: %s", exc)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            return
        try:
            async with refusals(context, "WatchRollout"):
                group = segment(request.group, "group name")
                last: control_pb2.Rollout | None = None
                async with self._watches.subscribe(group) as changes:
                    async for watched in changes:
                        current = rollout_pb(watched.doc, lost=watched.lost)
                        if current != last:
                            last = current
                            yield current
        finally:
            self._streams.release()

    async def History(
        self, request: control_pb2.GroupRequest, context: Any
    ) -> control_pb2.HistoryResponse:
        async with refusals(context, "History"):
            state = (await self._store.read_rollout(segment(request.group, "group name"))).state
            return history_pb(state.history)
        raise AssertionError("unreachable")

    # Fleet.

    async def ListNodes(
        self, request: control_pb2.ListNodesRequest, context: Any
    ) -> control_pb2.ListNodesResponse:
        async with refusals(context, "ListNodes"):
            groups = (
                (segment(request.group, "group name"),)
                if request.group
                else await self._store.list_groups()
            )
            reply = control_pb2.ListNodesResponse()
            for group in groups:
                listing = await self._store.scan_nodes(group)
                reply.nodes.extend(node_pb(n) for n in listing.nodes)
                reply.invalid.extend(invalid_pb(r) for r in listing.invalid)
            return reply
        raise AssertionError("unreachable")

    async def ListGroups(
        self, request: control_pb2.ListGroupsRequest, context: Any
    ) -> control_pb2.ListGroupsResponse:
        async with refusals(context, "ListGroups"):
            return control_pb2.ListGroupsResponse(groups=list(await self._store.list_groups()))
        raise AssertionError("unreachable")

    # Helpers.

    async def _rollout(self, group: str) -> control_pb2.Rollout:
        """The group's rollout with, when Consul's state is lost, the reason."""
        doc = await self._store.read_rollout(group)
        return rollout_pb(doc, lost=await self._controller.lost(doc))

    async def _intent(
        self,
        group_name: str,
        intent: Intent,
        context: Any,
        *,
        undo_to: str | None = None,
    ) -> control_pb2.Rollout:
        async with refusals(context, intent.value.capitalize()):
            group = segment(group_name, "group name")
            if undo_to is not None:
                undo_to = segment(undo_to, "model name")
            doc, intent_id = await self._controller.record_intent(group, intent, undo_to=undo_to)
            return rollout_pb(doc, intent_id=intent_id)
        raise AssertionError("unreachable")

    async def _known_group(self, name: str) -> str:
        group = segment(name, "group name")
        if group not in await self._store.list_groups():
            raise GroupUnknown(
                f"group {group} is unknown: no node has reported in it and no rollout ran; "
                "start its nodes first"
            )
        return group

    async def _publish(self, path: Path) -> str:
        if self._artifacts is None:
            raise SpecInvalid("this control plane serves no artifacts; give the model's uri")
        artifacts = self._artifacts
        digest = await run_blocking(functools.partial(_sha256, path), name="hash-artifact")
        publish = functools.partial(artifacts.publish, digest, path)
        return await run_blocking(publish, name="publish-artifact")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise registry.ModelUnreadable(f"cannot read model file {path}: {exc.strerror}") from exc
    return digest.hexdigest()
