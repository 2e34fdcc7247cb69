"""A simulated group for scenario tests: nodes that follow ``GroupState`` the way node agents
follow the group target, steady traffic per model, and a fake clock that ticks ``rollout.step``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from control_plane.core.analysis import Verdict, assess
from control_plane.core.fleet import FleetView, NodeView
from control_plane.core.rollout import begin, step
from control_plane.core.samples import Samples, combine
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import GroupState, Intent, Phase
from tests.unit.control_plane.builders import samples
from yolofleet.records import NodePhase

ANALYSED = (Phase.HOLDING, Phase.ANALYZING, Phase.PAUSED)


@dataclass(frozen=True, kw_only=True)
class Behaviour:
    """How a model serves: its error rate, p99 bucket, detections per image and confidence."""

    error_rate: float = 0.001
    p99: float = 0.02
    per_image: float = 2.0
    confidence: float = 0.8


@dataclass
class SimNode:
    node_id: str
    serving: str | None
    desired: str | None = None
    ready_at: float | None = None
    error: str = ""
    gone: bool = False

    def view(self) -> NodeView:
        if self.error:
            phase = NodePhase.FAILED
        elif self.ready_at is not None:
            phase = NodePhase.LOADING
        else:
            phase = NodePhase.SERVING if self.serving else NodePhase.WAITING
        return NodeView(
            node_id=self.node_id,
            phase=phase,
            model=self.serving,
            desired=self.desired,
            last_error=self.error,
        )


@dataclass
class GroupSim:
    state: GroupState
    nodes: dict[str, SimNode]
    models: Mapping[str, Behaviour] = field(default_factory=dict)
    broken: frozenset[str] = frozenset()
    """Models every node fails to load."""
    slow: frozenset[str] = frozenset()
    """Nodes that never finish loading a new model."""
    rps: float = 10.0
    load_s: float = 5.0
    tick_s: float = 5.0
    now: float = 0.0
    spec: RolloutSpec | None = None
    log: list[tuple[Phase, str]] = field(default_factory=list)

    @classmethod
    def of(cls, state: GroupState, node_ids: Iterable[str], **options: object) -> GroupSim:
        nodes = {node_id: SimNode(node_id, state.stable) for node_id in node_ids}
        return cls(state=state, nodes=nodes, **options)  # type: ignore[arg-type]

    def fleet(self) -> FleetView:
        return FleetView.of(node.view() for node in self.nodes.values() if not node.gone)

    def begin(self, spec: RolloutSpec) -> None:
        self.spec = spec
        self._record(begin(self.state, spec, self.fleet(), self.now))
        self._follow()

    def tick(self, intent: Intent | None = None) -> None:
        self.now += self.tick_s
        verdict = self.verdict() if self.state.phase in ANALYSED else None
        self._record(step(self.state, self.spec, self.fleet(), verdict, intent, self.now))
        self._follow()

    def run(self, until: Callable[[GroupState], bool], *, max_s: float = 3600) -> None:
        while not until(self.state):
            assert self.now < max_s, f"still {self.state.phase} at {self.now}s"
            self.tick()

    def verdict(self) -> Verdict:
        state, spec = self.state, self.spec
        assert spec is not None
        canary = [n for n in state.canary_nodes if n in self.nodes]
        baseline = [n for n in self.nodes if n not in state.canary_nodes]
        return assess(
            self._samples(spec.target, canary),
            self._samples(state.stable, baseline),
            spec.thresholds,
        )

    def phases(self) -> list[Phase]:
        return [phase for phase, _ in self.log]

    def served(self) -> dict[str, str | None]:
        return {n.node_id: n.serving for n in self.nodes.values() if not n.gone}

    def _samples(self, model: str | None, node_ids: list[str]) -> Samples:
        window = self.now - self.state.window_started_at
        requests = int(self.rps * window)
        serving = [n for n in node_ids if self.nodes[n].serving == model and not self.nodes[n].gone]
        if model is None or requests == 0 or not serving:
            return Samples()
        how = self.models.get(model, Behaviour())
        one = samples(
            requests,
            errors=round(requests * how.error_rate),
            p99=how.p99,
            per_image=how.per_image,
            confidence=how.confidence,
        )
        return combine([one] * len(serving))

    def _record(self, new: GroupState) -> None:
        if (new.phase, new.reason) != (self.state.phase, self.state.reason):
            self.log.append((new.phase, new.reason))
        self.state = new

    def _follow(self) -> None:
        """Each node moves towards the model the state gives it, as a node agent would."""
        for node in self.nodes.values():
            want = self.state.model_for(node.node_id)
            if want == node.serving or want is None:
                node.desired, node.ready_at, node.error = node.serving, None, ""
            elif want in self.broken:
                node.desired, node.ready_at, node.error = want, None, f"{want} failed validation"
            elif node.desired != want or node.ready_at is None:
                node.desired, node.ready_at, node.error = want, self.now + self.load_s, ""
            elif self.now >= node.ready_at and node.node_id not in self.slow:
                node.serving, node.ready_at = want, None
