"""``NodeSnapshot``: what a node reports about itself, gathered from slot, agent and device.

The phase is the one ``SlotPhase`` of ``policy`` (the agent's, or DRAINING at shutdown);
``node_phase`` maps it to the ``NodePhase`` a fleet node reports in Consul.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

from inference_node.model import ModelRef
from inference_node.swapping.agent import SwapAgent
from inference_node.swapping.policy import SlotPhase as SlotPhase
from inference_node.swapping.slot import ModelSlot
from inference_node.telemetry.device import DeviceMemory, GpuTelemetry
from yolofleet.records import NodePhase


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSnapshot:
    active: ModelRef | None
    phase: SlotPhase
    generation: int
    device: str
    last_swap_unix: float
    last_swap_duration_s: float
    last_error: str
    memory: DeviceMemory
    pending: int
    loading: ModelRef | None


class StatusSource:
    """Reads the node's parts into one snapshot; holds no state of its own but ``draining``."""

    def __init__(
        self,
        slot: ModelSlot,
        agent: SwapAgent,
        telemetry: GpuTelemetry,
        *,
        device: str,
        pending: Callable[[], int],
        stalled: Callable[[], str] = str,
    ) -> None:
        self._slot = slot
        self._agent = agent
        self._telemetry = telemetry
        self._device = device
        self._pending = pending
        self._stalled = stalled
        self.draining = False

    def snapshot(self) -> NodeSnapshot:
        active = self._slot.active
        agent = self._agent.status
        return NodeSnapshot(
            active=active.ref if active else None,
            phase=SlotPhase.DRAINING if self.draining else agent.phase,
            generation=active.generation if active else 0,
            device=self._device,
            last_swap_unix=active.live_since if active else 0.0,
            last_swap_duration_s=active.swap_duration_s if active else 0.0,
            last_error=_errors(self._stalled(), agent.last_error),
            memory=self._telemetry.sample(),
            pending=self._pending(),
            loading=agent.loading,
        )


def node_phase(phase: SlotPhase) -> NodePhase:
    """The phase a fleet node reports in Consul for its slot's ``phase``."""
    match phase:
        case SlotPhase.EMPTY:
            return NodePhase.WAITING
        case SlotPhase.LOADING:
            return NodePhase.LOADING
        case SlotPhase.SERVING:
            return NodePhase.SERVING
        case SlotPhase.FAILED:
            return NodePhase.FAILED
        case SlotPhase.DRAINING:
            return NodePhase.DRAINING
        case _:
            assert_never(phase)


def _errors(stalled: str, swap_error: str) -> str:
    """The watchdog's reason comes first while the device is stalled."""
    return "; ".join(part for part in (stalled, swap_error) if part)
