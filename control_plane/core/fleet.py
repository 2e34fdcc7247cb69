"""What the group's nodes report about themselves (``FleetView``), and canary selection."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from yolofleet.records import NodePhase


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """One node as last reported: the model it serves and the one it was asked to load."""

    node_id: str
    phase: NodePhase
    model: str | None = None
    sha256: str | None = None
    desired: str | None = None
    last_error: str = ""
    endpoint: str = ""

    @property
    def live(self) -> bool:
        """Reporting and not shutting down, so it can serve either side of a comparison."""
        return self.phase is not NodePhase.DRAINING

    def serves(self, model: str, *, sha256: str | None = None) -> bool:
        """Live and serving ``model`` (with digest ``sha256``, when given)."""
        return self.live and self.model == model and (sha256 is None or self.sha256 == sha256)

    def failed_to_load(self, model: str) -> bool:
        """The node tried to load ``model`` and gave up (it keeps serving its old model)."""
        return self.phase is NodePhase.FAILED and self.desired == model


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetView:
    """Every node of one group that currently reports, sorted by id."""

    nodes: tuple[NodeView, ...] = ()

    @classmethod
    def of(cls, nodes: Iterable[NodeView]) -> FleetView:
        return cls(nodes=tuple(sorted(nodes, key=lambda node: node.node_id)))

    @property
    def live_ids(self) -> tuple[str, ...]:
        return tuple(node.node_id for node in self.nodes if node.live)

    def node(self, node_id: str) -> NodeView | None:
        return next((node for node in self.nodes if node.node_id == node_id), None)

    def serving(self, model: str, *, sha256: str | None = None) -> tuple[str, ...]:
        """Ids of the live nodes that serve ``model`` (with digest ``sha256``, when given)."""
        return tuple(node.node_id for node in self.nodes if node.serves(model, sha256=sha256))

    def failed_to_load(self, model: str, among: Iterable[str]) -> tuple[NodeView, ...]:
        """Nodes (of ``among``) that report they failed to load ``model``."""
        wanted = set(among)
        return tuple(n for n in self.nodes if n.node_id in wanted and n.failed_to_load(model))

    def models(self) -> dict[str | None, tuple[str, ...]]:
        """Which live nodes serve which model (``None``: nothing yet)."""
        served: dict[str | None, tuple[str, ...]] = {}
        for node in self.nodes:
            if node.live:
                served[node.model] = (*served.get(node.model, ()), node.node_id)
        return served


def canary_count(live: int, percent: int) -> int:
    """ceil(percent% of live), at least 1, leaving one baseline node when there are two or more."""
    if live == 0:
        return 0
    wanted = max(1, -(-percent * live // 100))
    return min(wanted, live - 1) if live >= 2 else 1


def pick_canaries(
    live_node_ids: Iterable[str], percent: int, *, current: Iterable[str] = ()
) -> tuple[str, ...]:
    """The canary nodes for a step: live nodes already chosen stay first, the rest are taken in
    id order, so the choice is stable from tick to tick and step to step.
    """
    live = sorted(set(live_node_ids))
    count = canary_count(len(live), percent)
    kept = sorted(set(current) & set(live))
    fresh = [node_id for node_id in live if node_id not in kept]
    return tuple(sorted((kept + fresh)[:count]))
