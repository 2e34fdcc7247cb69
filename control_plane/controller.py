"""The controller loop: per group, read, observe, sample, assess, step, write only on change.

``tick(group)`` is one pass; ``run(groups, interval_s)`` repeats it while this replica leads.
The controller is the only writer of ``GroupState`` and of the group target nodes read; the
operator's commands go through ``start_rollout`` and ``record_intent``, which write the rollout
document with check-and-set, and the next tick acts on them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from control_plane import rollout
from control_plane.analysis import Verdict, assess
from control_plane.errors import StoreConflict
from control_plane.fleet import FleetView
from control_plane.intents import check_intent
from control_plane.metrics import MetricSource, sides
from control_plane.observer import NULL_OBSERVER, Observer
from control_plane.spec import RolloutSpec, Thresholds, build_spec
from control_plane.state import GroupState, Intent, Phase
from control_plane.store import RolloutDoc, Store

logger = logging.getLogger(__name__)

ANALYSED = frozenset({Phase.HOLDING, Phase.ANALYZING, Phase.PAUSED})
"""Phases whose tick samples metrics: the analysis window is open."""


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds; stored in the rollout document, so it must survive restarts."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool: ...


class Controller:
    """Drives every group's rollout from what the store and the metric source say."""

    def __init__(
        self,
        store: Store,
        metrics: MetricSource,
        clock: Clock | None = None,
        *,
        observer: Observer = NULL_OBSERVER,
    ) -> None:
        self._observer = observer
        self._store = store
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._digests: dict[str, str] = {}

    async def tick(self, group: str) -> GroupState:
        """One pass over ``group``; returns the state now stored. Raises what went wrong."""
        started = time.monotonic()
        doc = await self._store.read_rollout(group)
        state, spec = doc.state, doc.spec
        fleet = await self._store.observe(group)
        now = self._clock.now()
        verdict = await self._verdict(state, spec, fleet, now)
        new = rollout.step(state, spec, fleet, verdict, doc.intent, now, undo_to=doc.undo_to)
        if new != state or doc.intent is not None:
            revision = await self._store.write_rollout(RolloutDoc(spec=spec, state=new))
            _log_change(state, new, doc.intent)
            new = replace(new, revision=revision)
        await self._store.write_target(new)
        self._observer.tick_done(
            state, new, verdict, spec=spec, duration_s=time.monotonic() - started
        )
        return new

    async def run(
        self,
        groups: Sequence[str] | None = None,
        *,
        interval_s: float = 2.0,
        leader: Leadership | None = None,
    ) -> None:
        """Ticks ``groups`` (None: every group the store knows) every ``interval_s`` while
        ``leader`` (if given) says this replica leads. Runs until cancelled.
        """
        while True:
            if leader is None or leader.is_leader:
                await self._round(groups)
            await asyncio.sleep(interval_s)

    async def start_rollout(
        self,
        group: str,
        target: str,
        *,
        canary: int | None = None,
        steps: str | Sequence[int] | None = None,
        hold_s: float = 60.0,
        thresholds: Thresholds | None = None,
        now: float | None = None,
    ) -> GroupState:
        """Checks ``target`` is registered, builds the spec, begins and records it (CAS), and
        writes the group target. Raises ``RequestRefused`` errors for the operator.
        """
        await self._store.get_model(target)
        at = self._clock.now() if now is None else now
        spec = build_spec(
            group,
            target,
            created=at,
            canary=canary,
            steps=steps,
            hold_s=hold_s,
            thresholds=thresholds,
        )
        doc = await self._store.read_rollout(group)
        fleet = await self._store.observe(group)
        new = rollout.begin(doc.state, spec, fleet, at)
        revision = await self._store.write_rollout(RolloutDoc(spec=spec, state=new))
        _log_change(doc.state, new, None)
        await self._store.write_target(new)
        self._observer.intent_recorded(group, "start")
        return replace(new, revision=revision)

    async def record_intent(self, group: str, intent: Intent, *, undo_to: str | None = None) -> int:
        """Records ``intent`` (and the model ``undo_to`` names) for the next tick (CAS); returns
        the new revision. Raises ``NothingToDo`` / ``RolloutConflict`` when the rollout's phase
        would ignore it, and ``ModelUnknown`` when ``undo_to`` is no longer registered.
        """
        doc = await self._store.read_rollout(group)
        check_intent(doc.state, intent, undo_to=undo_to)
        if undo_to is not None:
            await self._store.get_model(undo_to)
        revision = await self._store.write_rollout(replace(doc, intent=intent, undo_to=undo_to))
        logger.info("group=%s intent=%s recorded revision=%d", group, intent, revision)
        self._observer.intent_recorded(group, intent)
        return revision

    async def _round(self, groups: Sequence[str] | None) -> None:
        """One tick of each group; this is the loop boundary, so nothing escapes it."""
        try:
            names = groups if groups is not None else await self._store.list_groups()
        except Exception:
            logger.exception("listing groups failed; retrying next round")
            return
        for group in names:
            try:
                await self.tick(group)
            except StoreConflict as exc:
                logger.info("group=%s tick skipped, state changed under it: %s", group, exc)
            except Exception as exc:
                self._observer.tick_failed(group, exc)
                logger.exception("group=%s tick failed; state left as it was", group)

    async def _verdict(
        self, state: GroupState, spec: RolloutSpec | None, fleet: FleetView, now: float
    ) -> Verdict | None:
        if state.phase not in ANALYSED or spec is None or state.canary != spec.target:
            return None
        per_node = await self._metrics.sample(
            state.group, fleet, since=state.window_started_at, until=now
        )
        stable = await self._digest(state.stable) if state.stable is not None else None
        canary, baseline = sides(
            per_node,
            fleet,
            canary_nodes=state.canary_nodes,
            canary_sha256=await self._digest(spec.target),
            stable_sha256=stable,
        )
        return assess(canary, baseline, spec.thresholds)

    async def _digest(self, model: str) -> str:
        """The model's sha256 from the registry; records do not change, so it is cached."""
        if model not in self._digests:
            self._digests[model] = (await self._store.get_model(model)).sha256
        return self._digests[model]


def _log_change(old: GroupState, new: GroupState, intent: Intent | None) -> None:
    if new.phase is not old.phase:
        logger.info(
            "group=%s phase %s -> %s step=%d reason=%s",
            new.group,
            old.phase,
            new.phase,
            new.step_index + 1,
            new.reason,
        )
    elif intent is not None and new == old:
        logger.info("group=%s intent=%s ignored in phase %s", new.group, intent, new.phase)
    else:
        logger.debug("group=%s phase=%s reason=%s", new.group, new.phase, new.reason)
