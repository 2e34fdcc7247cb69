"""The controller loop: per group, read, observe, sample, assess, decide, commit on change.

``tick(group)`` is one pass; ``run(groups, interval_s)`` repeats it while this replica leads.
The tick is the only writer of ``GroupState`` and of the group target nodes read, and it writes
both in one ``Store.commit`` fenced by the leader's session. The operator's requests
(``start_rollout``, ``record_intent``) only validate and record an intent in the rollout
document (check-and-set, any replica); the leader's next tick applies it and records what became
of it (``decide``).

Lost state (``lost_state``, ``lost_guard``): a group whose nodes serve what Consul no longer
explains (wiped, partly restored, another cluster epoch) is left alone by the tick, and every
request into it but ``adopt`` is refused with the reason, until an ADOPT intent makes what most
nodes serve stable again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from control_plane.controller_seams import Clock, Leadership, SystemClock, log_change, new_intent_id
from control_plane.core import intents, rollout
from control_plane.core.analysis import Verdict, assess
from control_plane.core.decide import decide
from control_plane.core.document import RolloutDoc
from control_plane.core.errors import Deposed, StoreConflict
from control_plane.core.fleet import FleetView
from control_plane.core.metrics import MetricSource, sides
from control_plane.core.observer import NULL_OBSERVER, Observer
from control_plane.core.spec import RolloutSpec, Thresholds, build_spec
from control_plane.core.state import (
    OUTCOME_LIMIT,
    GroupState,
    Intent,
    IntentRequest,
    Phase,
)
from control_plane.core.store import Fence, Store
from control_plane.lost_guard import Adoption, Epochs, LostStateGuard, adopt_pending
from yolofleet.records import ModelPin

logger = logging.getLogger(__name__)

ANALYSED = frozenset({Phase.HOLDING, Phase.ANALYZING, Phase.PAUSED})
"""Phases whose tick samples metrics: the analysis window is open."""

RECORD_ATTEMPTS = 3
"""Tries to record an intent when another write to the document got there first."""


class Controller:
    """Drives every group's rollout from what the store and the metric source say."""

    def __init__(
        self,
        store: Store,
        metrics: MetricSource,
        clock: Clock | None = None,
        *,
        observer: Observer = NULL_OBSERVER,
        epochs: Epochs | None = None,
    ) -> None:
        self._observer = observer
        self._store = store
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._guard = LostStateGuard(store, epochs)

    async def tick(self, group: str, *, fence: Fence | None = None) -> GroupState:
        """One pass over ``group``; returns the state now stored. Raises what went wrong
        (``Deposed`` when ``fence`` no longer holds the leader lock: nothing was written).
        """
        started = time.monotonic()
        read = await self._store.read_rollout(group)
        doc = await self._migrate(read)
        fleet = await self._store.observe(group)
        now = self._clock.now()
        epoch = await self._guard.epoch(begin_at=now)
        found = await self._guard.assess(doc, fleet, epoch=epoch)
        if doc.pending is not None and doc.pending.intent is Intent.ADOPT:
            adoption = adopt_pending(read, doc, fleet, found, epoch=epoch, now=now)
            return await self._adopt(read, adoption, fence=fence)
        if found.lost:
            return doc.state  # nothing moves in a lost group until it is adopted
        verdict = await self._verdict(doc.state, doc.spec, fleet, now)
        decision = decide(doc.state, doc.spec, fleet, verdict, doc.pending, now)
        outcomes = doc.outcomes
        if decision.outcome is not None:
            outcomes = (*outcomes, decision.outcome)[-OUTCOME_LIMIT:]
        new = RolloutDoc(
            spec=decision.spec, state=decision.state, outcomes=outcomes, epoch=read.epoch
        )
        if new != read or (read.state.revision and read.epoch != epoch):
            new = replace(new, epoch=epoch or read.epoch)  # stamped when written
        changed = new != read
        committed = await self._store.commit(new, changed=changed, fence=fence)
        if changed:
            log_change(doc.state, decision.state, decision.outcome)
        stored = replace(decision.state, revision=committed.revision)
        self._observer.tick_done(
            doc.state, stored, verdict, spec=decision.spec, duration_s=time.monotonic() - started
        )
        return stored

    async def run(
        self,
        groups: Sequence[str] | None = None,
        *,
        interval_s: float = 2.0,
        leader: Leadership | None = None,
    ) -> None:
        """Ticks ``groups`` (None: every group the store knows) every ``interval_s`` while
        ``leader`` (if given) gives a fence, checked before each group. Runs until cancelled.
        """
        while True:
            await self._round(groups, leader)
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
    ) -> tuple[RolloutDoc, str]:
        """Resolves ``target`` into a pin, builds the spec, checks the rollout could begin now,
        and records it as a START intent (CAS). Returns the document recorded and the intent's
        id. Raises ``RequestRefused`` errors for the operator; writes nothing then.
        """
        pin = ModelPin.of(await self._store.get_model(target))
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
        request = IntentRequest(
            id=new_intent_id(), intent=Intent.START, requested_at=at, spec=spec, pin=pin
        )
        return await self._record(group, request, check=True)

    async def record_intent(
        self, group: str, intent: Intent, *, undo_to: str | None = None
    ) -> tuple[RolloutDoc, str]:
        """Records ``intent`` (and the model ``undo_to`` names) for the next tick (CAS); returns
        the document recorded and the intent's id. Raises ``NothingToDo`` / ``RolloutConflict``
        when the phase would ignore it or another intent is pending, and ``ModelUnknown`` when
        ``undo_to`` is no longer registered.
        """
        if undo_to is not None:
            intents.check_intent(
                (await self._store.read_rollout(group)).state, intent, undo_to=undo_to
            )
            await self._store.get_model(undo_to)
        request = IntentRequest(
            id=new_intent_id(), intent=intent, requested_at=self._clock.now(), undo_to=undo_to
        )
        return await self._record(group, request, check=False)

    async def adopt(self, group: str, *, stable: str | None = None) -> tuple[RolloutDoc, str]:
        """Records an ADOPT intent for a lost group: ``stable`` (default: what most live nodes
        serve) pinned from the registry. Raises ``NothingToDo`` when the group is not lost and
        ``AdoptRefused`` when it cannot be adopted as asked; writes nothing then.
        """
        pin = await self._guard.adopt_pin(group, stable=stable)
        request = IntentRequest(
            id=new_intent_id(), intent=Intent.ADOPT, requested_at=self._clock.now(), pin=pin
        )
        return await self._record(group, request, check=False)

    async def lost(self, doc: RolloutDoc) -> str:
        """Why the group of ``doc`` (as just read) is lost ("": it is not), for status."""
        fleet = await self._store.observe(doc.state.group)
        return (await self._guard.assess(doc, fleet, epoch=await self._guard.epoch())).reason

    async def _adopt(
        self, read: RolloutDoc, adoption: Adoption, *, fence: Fence | None
    ) -> GroupState:
        """Writes what the pending ADOPT led to: the adopted state and its target in one
        commit, or the refusal in the document alone (a lost group's target is left as it is).
        """
        if adoption.applied:
            revision = (await self._store.commit(adoption.doc, changed=True, fence=fence)).revision
        else:
            revision = await self._store.write_rollout(adoption.doc)
        log_change(read.state, adoption.doc.state, adoption.outcome)
        return replace(adoption.doc.state, revision=revision)

    async def _record(
        self, group: str, request: IntentRequest, *, check: bool
    ) -> tuple[RolloutDoc, str]:
        for attempt in range(RECORD_ATTEMPTS):
            doc = await self._store.read_rollout(group)
            fleet = await self._store.observe(group)
            if request.intent is not Intent.ADOPT:
                await self._guard.refuse_if_lost(doc, fleet)
            if check and request.spec is not None:
                rollout.begin(doc.state, request.spec, fleet, request.requested_at, pin=request.pin)
            pending, outcomes = intents.admit(doc.state, doc.pending, request, self._clock.now())
            recorded = replace(
                doc, pending=pending, outcomes=(*doc.outcomes, *outcomes)[-OUTCOME_LIMIT:]
            )
            try:
                revision = await self._store.write_rollout(recorded)
            except StoreConflict:
                if attempt + 1 == RECORD_ATTEMPTS:
                    raise
                continue
            logger.info(
                "group=%s intent=%s id=%s recorded revision=%d",
                group,
                request.intent,
                request.id,
                revision,
            )
            self._observer.intent_recorded(group, request.intent)
            return replace(recorded, state=replace(doc.state, revision=revision)), request.id
        raise AssertionError("unreachable")

    async def _round(self, groups: Sequence[str] | None, leader: Leadership | None) -> None:
        """One tick of each group while this replica leads; this is the loop boundary, so
        nothing escapes it. Leadership is checked before every group.
        """
        if leader is not None and leader.fence() is None:
            return
        try:
            names = groups if groups is not None else await self._store.list_groups()
        except Exception:
            logger.exception("listing groups failed; retrying next round")
            return
        for group in names:
            fence = leader.fence() if leader is not None else None
            if leader is not None and fence is None:
                logger.info("group=%s tick skipped: this replica no longer leads", group)
                return
            try:
                await self.tick(group, fence=fence)
            except Deposed as exc:
                logger.warning("group=%s tick fenced off, nothing written: %s", group, exc)
                return
            except StoreConflict as exc:
                logger.info("group=%s tick skipped, state changed under it: %s", group, exc)
            except Exception as exc:
                self._observer.tick_failed(group, exc)
                logger.exception("group=%s tick failed; state left as it was", group)

    async def _migrate(self, doc: RolloutDoc) -> RolloutDoc:
        """A document written before pins names models it holds no pin for: resolve those once
        from the registry (they are written back with this tick's commit). Raises
        ``ModelUnknown`` when one is no longer registered: the tick is refused, nothing moves.
        """
        state = doc.state
        names = [*state.named()]
        if doc.spec is not None and state.phase.running:
            names.append(doc.spec.target)
        if doc.pending is not None and doc.pending.undo_to is not None:
            names.append(doc.pending.undo_to)
        missing = [n for n in dict.fromkeys(names) if state.pin(n) is None]
        if not missing:
            return doc
        pins = [ModelPin.of(await self._store.get_model(name)) for name in missing]
        logger.info(
            "group=%s migration: pinned %s from the registry (document had no pins)",
            state.group,
            ",".join(f"{p.name}@{p.version}" for p in pins),
        )
        return replace(doc, state=replace(state, pins=(*state.pins, *pins)))

    async def _verdict(
        self, state: GroupState, spec: RolloutSpec | None, fleet: FleetView, now: float
    ) -> Verdict | None:
        if state.phase not in ANALYSED or spec is None or state.canary != spec.target:
            return None
        target, stable = state.pin(spec.target), state.pin(state.stable)
        if target is None:
            return None
        per_node = await self._metrics.sample(
            state.group, fleet, since=state.window_started_at, until=now
        )
        canary, baseline = sides(
            per_node,
            fleet,
            canary_nodes=state.canary_nodes,
            canary_sha256=target.sha256,
            stable_sha256=stable.sha256 if stable is not None else None,
        )
        return assess(canary, baseline, spec.thresholds)
