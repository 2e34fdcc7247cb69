"""Small builders for control-plane values, so test tables read as the situation they describe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from control_plane.core.analysis import Outcome, Verdict
from control_plane.core.fleet import FleetView, NodeView
from control_plane.core.samples import LatencyHistogram, Samples
from control_plane.core.spec import RolloutSpec, Thresholds, build_spec
from control_plane.core.state import GroupState, Phase
from yolofleet.records import ModelPin, NodePhase

GROUP = "zone-a"
OLD = "shapes-v1"
NEW = "shapes-v2"
TEN = tuple(f"n{i}" for i in range(10))
BOUNDS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def pin(name: str) -> ModelPin:
    """The pin ``name`` resolves to in these tests: its digest is ``digest(name)``."""
    return ModelPin(name=name, sha256=digest(name), uri=f"http://artifacts/{name}", size=1000)


def digest(name: str) -> str:
    return (name.encode().hex() * 64)[:64]


PINS = (pin(OLD), pin(NEW))
"""The pins of a state that names both models."""

THRESHOLDS = Thresholds(
    min_samples=100, report_deadline_s=120, analysis_deadline_s=300, consecutive_failures=1
)
"""Acts on the first failing verdict, so each table row shows one tick's whole effect."""
SPEC = build_spec(GROUP, NEW, created=0.0, steps="10,50,100", hold_s=60, thresholds=THRESHOLDS)


def spec(*, steps: str = "10,50,100", hold_s: float = 60, target: str = NEW) -> RolloutSpec:
    return build_spec(GROUP, target, created=0.0, steps=steps, hold_s=hold_s, thresholds=THRESHOLDS)


def node(
    node_id: str,
    model: str | None = OLD,
    *,
    phase: NodePhase = NodePhase.SERVING,
    desired: str | None = None,
    error: str = "",
) -> NodeView:
    return NodeView(
        node_id=node_id,
        phase=phase,
        model=model,
        sha256=digest(model) if model is not None else None,
        desired=desired if desired is not None else model,
        last_error=error,
        endpoint=f"{node_id}:50051",
    )


def fleet(
    ids: Iterable[str] = TEN,
    *,
    new: Iterable[str] = (),
    loading: Iterable[str] = (),
    failed: Iterable[str] = (),
    draining: Iterable[str] = (),
) -> FleetView:
    """``ids`` serve the old model, except: ``new`` serve the new one, ``loading`` are loading
    it, ``failed`` failed to load it (still serving the old one), ``draining`` are shutting down.
    """
    new, loading, failed, draining = set(new), set(loading), set(failed), set(draining)
    nodes = []
    for node_id in ids:
        if node_id in draining:
            nodes.append(node(node_id, NEW if node_id in new else OLD, phase=NodePhase.DRAINING))
        elif node_id in new:
            nodes.append(node(node_id, NEW))
        elif node_id in loading:
            nodes.append(node(node_id, OLD, phase=NodePhase.LOADING, desired=NEW))
        elif node_id in failed:
            nodes.append(
                node(node_id, OLD, phase=NodePhase.FAILED, desired=NEW, error="digest mismatch")
            )
        else:
            nodes.append(node(node_id, OLD))
    return FleetView.of(nodes)


def settled(
    phase: Phase = Phase.IDLE, *, stable: str | None = OLD, **changes: object
) -> GroupState:
    pins = tuple(p for p in PINS if p.name == stable)
    state = GroupState(group=GROUP, stable=stable, phase=phase, pins=pins)
    return replace(state, **changes)  # type: ignore[arg-type]


def running(
    phase: Phase,
    *,
    step: int = 0,
    canaries: tuple[str, ...] = ("n0",),
    since: float = 1000.0,
    **changes: object,
) -> GroupState:
    state = GroupState(
        group=GROUP,
        stable=OLD,
        canary=NEW,
        canary_nodes=canaries,
        phase=phase,
        step_index=step,
        step_started_at=since,
        phase_since=since,
        window_started_at=since,
        reason=f"in {phase}",
        pins=PINS,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def deploying(*, since: float = 1000.0) -> GroupState:
    return GroupState(
        group=GROUP,
        stable=NEW,
        phase=Phase.DEPLOYING,
        phase_since=since,
        reason="deploying",
        pins=(pin(NEW),),
    )


def verdict(outcome: Outcome, reason: str = "") -> Verdict:
    return Verdict(outcome=outcome, checks=(), reason=reason or f"verdict {outcome}")


def latency(seconds: float, count: int) -> LatencyHistogram:
    """``count`` observations all in the bucket whose upper bound is ``seconds``."""
    counts = [0] * (len(BOUNDS) + 1)
    counts[BOUNDS.index(seconds) if seconds in BOUNDS else len(BOUNDS)] = count
    return LatencyHistogram(bounds=BOUNDS, counts=tuple(counts))


def samples(
    requests: int = 1000,
    *,
    errors: int = 0,
    p99: float = 0.02,
    per_image: float = 2.0,
    confidence: float = 0.8,
    mix: dict[str, float] | None = None,
) -> Samples:
    """Plausible samples of ``requests`` requests; every answered image gives ``per_image``
    detections of mean ``confidence``, split between classes by ``mix``.
    """
    images = requests - errors
    detections = round(images * per_image)
    shares = mix if mix is not None else {"circle": 0.5, "square": 0.3, "triangle": 0.2}
    return Samples(
        requests=requests,
        errors=errors,
        latency=latency(p99, requests),
        images=images,
        detections=detections,
        confidence_sum=detections * confidence,
        class_counts=tuple(sorted((c, round(detections * s)) for c, s in shares.items())),
    )
