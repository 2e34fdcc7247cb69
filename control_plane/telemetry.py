"""Prometheus metrics of the control plane itself, on a registry of its own (``--metrics-port``).

Not to be confused with ``metrics.py``, the ``MetricSource`` canary analysis reads nodes'
figures through. ``ControlPlaneMetrics`` is the ``observer.Observer`` the controller and the
leader lock report to; the watch hub, the stream cap and the blocking pool are read when scraped.

Per-group rollout series (phase, step, canary weight, phase entry time) come from the leader's
ticks only, and a replica that stops leading drops them, so ``max by (group)`` over replicas is
the leader's view. Counters (verdicts, checks, rollbacks, intents, tick failures, Consul errors)
only grow. Every name is listed in ``FAMILIES``; the dashboard and alert test checks
``deploy/k8s`` against what a live control plane exports.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from control_plane.core.analysis import Outcome, Verdict
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import GroupState, Phase
from yolofleet.consul import ConsulError

TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RollbackReason(StrEnum):
    """Why a rollout was rolled back, as a label (the full sentence is in its history)."""

    ANALYSIS = "analysis"
    """The verdict was FAIL or ERROR as many times in a row as the spec allows."""
    LOAD_FAILED = "load_failed"
    """A canary (or, deploying, any node) failed to load the target."""
    DEADLINE = "deadline"
    """Nodes did not report the target within the report deadline."""
    UNDO = "undo"
    """The operator undid a finished rollout."""
    OTHER = "other"


def rollback_reason(old: GroupState, new: GroupState, verdict: Verdict | None) -> RollbackReason:
    if not old.phase.running:
        return RollbackReason.UNDO
    if verdict is not None and verdict.outcome in (Outcome.FAIL, Outcome.ERROR):
        return RollbackReason.ANALYSIS
    if "failed to load" in new.reason:
        return RollbackReason.LOAD_FAILED
    if "did not report" in new.reason or "within" in new.reason:
        return RollbackReason.DEADLINE
    return RollbackReason.OTHER


class ControlPlaneMetrics:
    """Every control-plane metric, and the ``Observer`` methods that record them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self._leading = False
        group = ["group"]
        self.phase = Gauge(
            "yolofleet_rollout_phase", "1 for the phase each group's rollout is in",
            ["group", "phase"], registry=r,
        )  # fmt: skip
        self.step = Gauge(
            "yolofleet_rollout_step", "Current step of the rollout, from 1 (0: none)", group,
            registry=r,
        )  # fmt: skip
        self.canary_weight = Gauge(
            "yolofleet_rollout_canary_weight_percent",
            "Percentage of the group's nodes the current step gives the canary (0: no canary)",
            group, registry=r,
        )  # fmt: skip
        self.canary_nodes = Gauge(
            "yolofleet_rollout_canary_nodes", "Nodes serving the canary model", group, registry=r
        )
        self.phase_entered = Gauge(
            "yolofleet_rollout_phase_entered_timestamp_seconds",
            "Unix time the group's rollout entered its current phase", group, registry=r,
        )  # fmt: skip
        self._counters(r)
        self._process(r)

    def _counters(self, r: CollectorRegistry) -> None:
        self.verdicts = Counter(
            "yolofleet_rollout_verdicts", "Analysis verdicts by outcome", ["group", "outcome"],
            registry=r,
        )  # fmt: skip
        self.checks = Counter(
            "yolofleet_rollout_checks", "Analysis check results by check and outcome",
            ["group", "check", "outcome"], registry=r,
        )  # fmt: skip
        self.rollbacks = Counter(
            "yolofleet_rollout_rollbacks", "Rollouts rolled back, by reason", ["group", "reason"],
            registry=r,
        )  # fmt: skip
        self.intents = Counter(
            "yolofleet_rollout_intents", "Operator requests recorded, by kind",
            ["group", "intent"], registry=r,
        )  # fmt: skip

    def _process(self, r: CollectorRegistry) -> None:
        self.is_leader = Gauge(
            "yolofleet_control_plane_is_leader", "1 while this replica holds the leader lock",
            registry=r,
        )  # fmt: skip
        self.consul_up = Gauge(
            "yolofleet_control_plane_consul_up",
            "1 when this replica's last leader-lock check reached Consul", registry=r,
        )  # fmt: skip
        self.consul_errors = Counter(
            "yolofleet_control_plane_consul_errors", "Consul calls that failed, by caller",
            ["source"], registry=r,
        )  # fmt: skip
        self.ticks = Histogram(
            "yolofleet_control_plane_tick_seconds", "Duration of one group's controller tick",
            buckets=TICK_BUCKETS, registry=r,
        )  # fmt: skip
        self.tick_failures = Counter(
            "yolofleet_control_plane_tick_failures", "Ticks that raised, state left as it was",
            ["group"], registry=r,
        )  # fmt: skip
        self.watch_streams = Gauge(
            "yolofleet_control_plane_watch_streams", "Open WatchRollout streams", registry=r
        )
        self.watched_groups = Gauge(
            "yolofleet_control_plane_watched_groups", "Groups with a shared watch running",
            registry=r,
        )  # fmt: skip
        self.blocking_threads = Gauge(
            "yolofleet_control_plane_blocking_threads",
            "Threads of the bounded pools for blocking calls and Consul blocking queries",
            registry=r,
        )  # fmt: skip
        for source in ("controller", "leader", "watch"):
            self.consul_errors.labels(source)

    def track(
        self,
        *,
        streams: Callable[[], int],
        groups: Callable[[], int],
        threads: Callable[[], int],
    ) -> None:
        """Read the open streams, watched groups and pool threads when scraped."""
        self.watch_streams.set_function(streams)
        self.watched_groups.set_function(groups)
        self.blocking_threads.set_function(threads)

    # --- observer.Observer ------------------------------------------------------------------

    def tick_done(
        self,
        old: GroupState,
        new: GroupState,
        verdict: Verdict | None,
        *,
        spec: RolloutSpec | None,
        duration_s: float,
    ) -> None:
        group = new.group
        self.ticks.observe(duration_s)
        for reason in RollbackReason:  # at 0 before the first: increase() sees the first one
            self.rollbacks.labels(group, reason.value)
        for phase in Phase:
            self.phase.labels(group, phase.value).set(1 if phase is new.phase else 0)
        running = new.canary is not None and spec is not None
        self.step.labels(group).set(new.step_index + 1 if new.phase.running else 0)
        weight = 0
        if running and spec is not None and 0 <= new.step_index < len(spec.steps):
            weight = spec.steps[new.step_index].canary_percent
        self.canary_weight.labels(group).set(weight)
        self.canary_nodes.labels(group).set(len(new.canary_nodes))
        self.phase_entered.labels(group).set(new.phase_since)
        if verdict is not None:
            self.verdicts.labels(group, verdict.outcome.value).inc()
            for check in verdict.checks:
                self.checks.labels(group, str(check.name), check.outcome.value).inc()
        if new.phase is Phase.ROLLED_BACK and old.phase is not Phase.ROLLED_BACK:
            self.rollbacks.labels(group, rollback_reason(old, new, verdict).value).inc()

    def tick_failed(self, group: str, error: Exception) -> None:
        self.tick_failures.labels(group).inc()
        if _from_consul(error):
            self.consul_errors.labels("controller").inc()

    def intent_recorded(self, group: str, intent: str) -> None:
        self.intents.labels(group, str(intent)).inc()

    def leadership(self, *, leader: bool) -> None:
        was, self._leading = self._leading, leader
        self.is_leader.set(1 if leader else 0)
        if was and not leader:
            self._forget_groups()

    def consul_checked(self, error: Exception | None) -> None:
        reached = error is None or not _from_consul(error)
        self.consul_up.set(1 if reached else 0)
        if not reached:
            self.consul_errors.labels("leader").inc()

    def watch_failed(self, error: BaseException) -> None:
        """A shared rollout watch ended on ``error`` (``GroupWatches(on_error=...)``)."""
        if isinstance(error, Exception) and _from_consul(error):
            self.consul_errors.labels("watch").inc()

    def _forget_groups(self) -> None:
        """A replica that stopped leading no longer knows the groups' state."""
        for gauge in (self.phase, self.step, self.canary_weight, self.canary_nodes):
            gauge.clear()
        self.phase_entered.clear()


def _from_consul(error: BaseException) -> bool:
    """True when ``error`` is Consul failing, or caused by it (the store wraps it)."""
    seen: BaseException | None = error
    for _depth in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConsulError):
            return True
        seen = seen.__cause__
    return False
