"""The ``yolofleet.v1.ControlPlane`` gRPC servicer: protobuf in, our types through, protobuf out.

Every RPC runs inside ``_refusals``, the one place exceptions become status codes
(``to_status``). Mutations (StartRollout, Undo and the other intents) go through the
``Controller``, which validates them and records an intent with an id (check-and-set); only the
leader's next tick acts on them and records the outcome, so any replica can answer. The reply
carries the intent's id (``Rollout.intent_id``) for ``ctl`` to wait on. Registry calls block
(Consul, hashing, opening the model), so they run on a worker thread.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc

from control_plane.consul.store import ConsulStore, RolloutDoc
from control_plane.consul.watches import GroupWatches, StreamLimit, WatchLimitReached
from control_plane.controller import Controller
from control_plane.core.errors import (
    AdoptRefused,
    BackendError,
    GroupLost,
    GroupUnknown,
    ModelUnknown,
    NodeUnreachable,
    NothingToDo,
    RolloutConflict,
    SpecInvalid,
    StoreConflict,
)
from control_plane.core.spec import DEFAULT_HOLD_S
from control_plane.core.state import Intent
from control_plane.service.messages import (
    history_pb,
    model_pb,
    node_pb,
    rollout_pb,
    thresholds_from_pb,
)
from yolofleet import registry
from yolofleet.consul import ConsulClient, ConsulError
from yolofleet.consul.aiothread import run_blocking
from yolofleet.v1 import control_pb2, control_pb2_grpc

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchedRollout:
    """What every WatchRollout stream of a group gets on a change: the document as read and,
    when Consul's state is lost, why (read once per change, however many streams follow).
    """

    doc: RolloutDoc
    lost: str


def watched_rollout(
    store: ConsulStore, controller: Controller
) -> Callable[[str], Awaitable[WatchedRollout]]:
    """The read a group's shared watch runs on every change of its rollout document."""

    async def read(group: str) -> WatchedRollout:
        doc = await store.read_rollout(group)
        return WatchedRollout(doc=doc, lost=await controller.lost(doc))

    return read


class Artifacts(Protocol):
    def publish(self, sha256: str, path: Path) -> str:
        """Makes ``path`` fetchable as ``sha256``; returns the URI nodes fetch it from."""
        ...


def to_status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message an exception leaves the service as."""
    code = grpc.StatusCode
    match exc:
        case SpecInvalid() | registry.ModelUnreadable():
            return code.INVALID_ARGUMENT, str(exc)
        case ModelUnknown() | GroupUnknown() | registry.ModelUnknown():
            return code.NOT_FOUND, str(exc)
        case RolloutConflict() | NothingToDo() | GroupLost() | AdoptRefused():
            return code.FAILED_PRECONDITION, str(exc)
        case registry.RegistryConflict():
            return code.ALREADY_EXISTS, str(exc)
        case StoreConflict():
            return code.ABORTED, str(exc)
        case NodeUnreachable() | BackendError() | ConsulError():
            return code.UNAVAILABLE, str(exc)
        case _:
            return code.INTERNAL, "internal error in the control plane; see its log"


@contextlib.asynccontextmanager
async def _refusals(context: grpc.aio.ServicerContext[Any, Any], rpc: str) -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:
        status, message = to_status(exc)
        if status is grpc.StatusCode.INTERNAL:
            logger.error("rpc=%s failed unexpectedly", rpc, exc_info=True)
        else:
            logger.info("rpc=%s refused code=%s: %s", rpc, status.name, message)
        await context.abort(status, message)


class ControlPlaneService(control_pb2_grpc.ControlPlaneServicer):
    """Answers every ControlPlane RPC from the store, the registry and the controller."""

    def __init__(
        self,
        *,
        client: ConsulClient,
        store: ConsulStore,
        controller: Controller,
        artifacts: Artifacts | None = None,
        watches: GroupWatches[WatchedRollout] | None = None,
        streams: StreamLimit | None = None,
    ) -> None:
        self._watches = watches or GroupWatches(
            client, key=store.layout.rollout, read=watched_rollout(store, controller)
        )
        self._streams = streams or StreamLimit()
        self._client = client
        self._store = store
        self._layout = store.layout
        self._controller = controller
        self._artifacts = artifacts

    # Model registry.

    async def RegisterModel(
        self, request: control_pb2.RegisterModelRequest, context: Any
    ) -> control_pb2.ModelRecord:
        async with _refusals(context, "RegisterModel"):
            path = Path(request.path)
            name = _segment(request.name, "model name")
            metadata = _metadata(request.metadata_json)
            uri = request.uri or await self._publish(path)
            register = functools.partial(
                registry.register_model,
                self._client,
                self._layout,
                path=path,
                name=name,
                uri=uri,
                parent=request.parent or None,
                notes=request.notes,
                metadata=metadata,
                now=time.time(),
            )
            return model_pb(await run_blocking(register, name=f"register-{name}"[:40]))
        raise AssertionError("unreachable")

    async def ListModels(
        self, request: control_pb2.ListModelsRequest, context: Any
    ) -> control_pb2.ListModelsResponse:
        async with _refusals(context, "ListModels"):
            listed = functools.partial(registry.list_models, self._client, self._layout)
            records = await run_blocking(listed, name="list-models")
            return control_pb2.ListModelsResponse(models=[model_pb(r) for r in records])
        raise AssertionError("unreachable")

    async def GetModel(
        self, request: control_pb2.GetModelRequest, context: Any
    ) -> control_pb2.ModelRecord:
        async with _refusals(context, "GetModel"):
            return model_pb(await self._store.get_model(_segment(request.name, "model name")))
        raise AssertionError("unreachable")

    # Rollouts.

    async def StartRollout(
        self, request: control_pb2.StartRolloutRequest, context: Any
    ) -> control_pb2.Rollout:
        async with _refusals(context, "StartRollout"):
            group = await self._known_group(request.group)
            steps = list(request.steps) or None
            if steps is None and request.canary_percent == 0:
                raise SpecInvalid("give canary_percent (1-100) or the steps of the rollout")
            doc, intent_id = await self._controller.start_rollout(
                group,
                _segment(request.model, "model name"),
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
        async with _refusals(context, "Adopt"):
            group = await self._known_group(request.group)
            stable = _segment(request.stable, "model name") if request.stable else None
            doc, intent_id = await self._controller.adopt(group, stable=stable)
            return rollout_pb(doc, intent_id=intent_id)
        raise AssertionError("unreachable")

    async def GetRollout(
        self, request: control_pb2.GroupRequest, context: Any
    ) -> control_pb2.Rollout:
        async with _refusals(context, "GetRollout"):
            group = _segment(request.group, "group name")
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
            async with _refusals(context, "WatchRollout"):
                group = _segment(request.group, "group name")
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
        async with _refusals(context, "History"):
            state = (await self._store.read_rollout(_segment(request.group, "group name"))).state
            return history_pb(state.history)
        raise AssertionError("unreachable")

    # Fleet.

    async def ListNodes(
        self, request: control_pb2.ListNodesRequest, context: Any
    ) -> control_pb2.ListNodesResponse:
        async with _refusals(context, "ListNodes"):
            groups = (
                (_segment(request.group, "group name"),)
                if request.group
                else await self._store.list_groups()
            )
            nodes = [node for group in groups for node in await self._store.list_nodes(group)]
            return control_pb2.ListNodesResponse(nodes=[node_pb(n) for n in nodes])
        raise AssertionError("unreachable")

    async def ListGroups(
        self, request: control_pb2.ListGroupsRequest, context: Any
    ) -> control_pb2.ListGroupsResponse:
        async with _refusals(context, "ListGroups"):
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
        async with _refusals(context, intent.value.capitalize()):
            group = _segment(group_name, "group name")
            if undo_to is not None:
                undo_to = _segment(undo_to, "model name")
            doc, intent_id = await self._controller.record_intent(group, intent, undo_to=undo_to)
            return rollout_pb(doc, intent_id=intent_id)
        raise AssertionError("unreachable")

    async def _known_group(self, name: str) -> str:
        group = _segment(name, "group name")
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


def _segment(value: str, what: str) -> str:
    if not value or "/" in value or value in {".", ".."} or not value.isprintable():
        raise SpecInvalid(f"{what} {value!r} is not valid: give a non-empty name without '/'")
    return value


def _metadata(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecInvalid(f"metadata_json is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SpecInvalid("metadata_json must be a JSON object")
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise registry.ModelUnreadable(f"cannot read model file {path}: {exc.strerror}") from exc
    return digest.hexdigest()
