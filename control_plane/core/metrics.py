"""Where canary analysis gets its numbers: the ``MetricSource`` protocol, and the two sides.

A source answers, for a window ``[since, until]``, what each node did per model it served,
keyed by node id and then by the model's sha256 (a node that swapped inside the window has two
entries). The controller folds them into the canary side (canary nodes, target digest) and the
baseline side (every other live node, stable digest) with ``sides``.

The real source, a node's ``GetStats`` RPC, is written elsewhere (``control_plane/nodes.py``);
it plugs in here by implementing ``MetricSource``. Any ``BackendError`` it raises (e.g.
``NodeUnreachable``) ends the tick with the state untouched, so a blip never rolls back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from control_plane.core.fleet import FleetView
from control_plane.core.samples import Samples, combine

NodeSamples = Mapping[str, Mapping[str, Samples]]
"""node id -> model sha256 -> what that node did with that model over the window."""


class MetricSource(Protocol):
    async def sample(
        self, group: str, fleet: FleetView, *, since: float, until: float
    ) -> NodeSamples:
        """Per node and model digest, the samples for ``[since, until]`` (wall-clock seconds).
        Nodes it could not ask are left out; it raises ``NodeUnreachable`` only when it learned
        nothing at all.
        """
        ...


def sides(
    per_node: NodeSamples,
    fleet: FleetView,
    *,
    canary_nodes: tuple[str, ...],
    canary_sha256: str,
    stable_sha256: str | None,
) -> tuple[Samples, Samples]:
    """(canary, baseline): the canary nodes on the target's digest, against every other live
    node on the stable digest. A side with no node is empty, which analysis calls inconclusive.
    """
    canary = combine(per_node.get(n, {}).get(canary_sha256, Samples()) for n in canary_nodes)
    baseline_ids = [n for n in fleet.live_ids if n not in canary_nodes]
    baseline = (
        combine(per_node.get(n, {}).get(stable_sha256, Samples()) for n in baseline_ids)
        if stable_sha256 is not None
        else Samples()
    )
    return canary, baseline
