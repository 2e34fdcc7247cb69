"""``FleetLink``: drives a node from its group's target in Consul and reports its state back.

For each assignment the watcher yields: turn its pin into a ``ModelRef`` (no registry read:
the target carries everything) and hand it to the swap agent (which verifies, validates and
swaps), and report every phase change under ``nodes/<group>/<node-id>``. Whatever goes wrong
here (Consul down, a malformed key, a target without pins, a refused candidate) is reported
and the node keeps serving what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from inference_node.config import FleetConfig
from inference_node.errors import ModelLoadFailed, ModelNotFound, Superseded, SwapError
from inference_node.link.reporter import StateReporter
from inference_node.link.watcher import GroupAssignment, assignments
from inference_node.model import ModelRef
from inference_node.node import InferenceNode
from inference_node.swapping.slot import Active
from yolofleet.consul import ConsulClient, ConsulError
from yolofleet.consul.aiothread import run_blocking
from yolofleet.keys import KeyLayout
from yolofleet.records import ModelPin, ModelRecord, NodePhase, NodeState
from yolofleet.registry import ModelUnknown, get_model

logger = logging.getLogger(__name__)


def ref_for_record(record: ModelRecord) -> ModelRef:
    return ModelRef(name=record.name, version=record.version, uri=record.uri, sha256=record.sha256)


def ref_for_pin(pin: ModelPin) -> ModelRef:
    return ModelRef(name=pin.name, version=pin.version, uri=pin.uri, sha256=pin.sha256)


class ConsulCatalog:
    """The fleet's model catalog: the registry records under ``models/`` in Consul."""

    def __init__(self, client: ConsulClient, layout: KeyLayout) -> None:
        self._client = client
        self._layout = layout

    async def lookup(self, name: str) -> ModelRef:
        try:
            record = await run_blocking(
                lambda: get_model(self._client, self._layout, name), name="catalog-lookup"
            )
        except (ModelUnknown, ValueError) as exc:
            raise ModelNotFound(f"model {name!r} is not registered: {exc}") from exc
        except ConsulError as exc:
            raise ModelLoadFailed(f"model {name!r} cannot be looked up: {exc}") from exc
        return ref_for_record(record)


class FleetLink:
    def __init__(self, node: InferenceNode, client: ConsulClient, fleet: FleetConfig) -> None:
        self._node = node
        self._client = client
        self._fleet = fleet
        self._layout = KeyLayout(fleet.key_prefix)
        endpoint = fleet.advertise or f"{node.config.host}:{node.port}"
        initial = NodeState(
            node_id=fleet.node_id,
            group=fleet.group,
            phase=NodePhase.WAITING,
            endpoint=endpoint,
            device=node.device,
            started=time.time(),
            last_error="waiting for the group's target",
        )
        self.reporter = StateReporter(
            client, self._layout, initial=initial, ttl_s=fleet.session_ttl_s
        )
        self._follow_task: asyncio.Task[None] | None = None
        self._outcomes: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.reporter.start()
        # A refused model the agent tries again (a failed fetch, a latency probe on a busy
        # device) goes live without a new request: report it from the swap itself.
        self._node.agent.add_listener(self._report_serving)
        self._follow_task = asyncio.create_task(self._follow(), name="fleet-follow")

    async def close(self) -> None:
        for task in (self._follow_task, *self._outcomes):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.reporter.update(phase=NodePhase.DRAINING)
        await self.reporter.close()

    async def _follow(self) -> None:
        async for assignment in assignments(
            self._client, self._layout, group=self._fleet.group, node_id=self._fleet.node_id
        ):
            try:
                await self._apply(assignment)
            except Exception as exc:  # loop boundary: report, keep serving, keep watching
                logger.error("node=%s assignment failed", self._fleet.node_id, exc_info=True)
                self._report_failure(f"could not apply the group target: {exc}")

    async def _apply(self, assignment: GroupAssignment) -> None:
        if assignment.problem:
            self._report_failure(assignment.problem)
            return
        if assignment.pin is None:
            self._report_idle()
            return
        ref = ref_for_pin(assignment.pin)
        self.reporter.update(phase=NodePhase.LOADING, desired=ref.name, last_error="")
        task = asyncio.create_task(self._await_swap(ref), name=f"swap-{ref}")
        self._outcomes.add(task)
        task.add_done_callback(self._outcomes.discard)

    async def _await_swap(self, ref: ModelRef) -> None:
        try:
            active = await self._node.agent.request(ref)
        except Superseded:
            return
        except SwapError as exc:
            # the agent's last_error is the refusal plus when it tries again, if it will
            self._report_failure(self._node.agent.status.last_error or str(exc))
            return
        self._report_serving(active)

    def _report_serving(self, active: Active) -> None:
        self.reporter.update(
            phase=NodePhase.SERVING,
            model=active.ref.name,
            sha256=active.ref.sha256,
            generation=active.generation,
            last_error="",
        )

    def _report_idle(self) -> None:
        active = self._node.slot.active
        if active is None:
            self.reporter.update(
                phase=NodePhase.WAITING, desired=None, last_error="group has no target yet"
            )
        else:
            self.reporter.update(desired=None, last_error="")

    def _report_failure(self, reason: str) -> None:
        active = self._node.slot.active
        self.reporter.update(
            phase=NodePhase.FAILED,
            model=active.ref.name if active else None,
            sha256=active.ref.sha256 if active else None,
            generation=active.generation if active else 0,
            last_error=reason,
        )
