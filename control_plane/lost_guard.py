"""The controller's side of lost state: what ``lost_state.assess`` needs, read from the store.

``LostStateGuard`` gathers the inputs (the rollout document or its absence, the target's models
when there is no document, the cluster epoch now) and answers: the assessment for a tick, a
``GroupLost`` refusal for an operator's request into a lost group, and the pin an adopt request
carries (the model the nodes serve, resolved once from the registry and checked against the
digest they report). Without an ``Epochs`` source (tests, tools) the epoch is not compared.
``adopt_pending`` (pure) is what the tick writes for a pending ADOPT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol

from control_plane.consul.epoch import Epoch
from control_plane.core import intents, lost_state
from control_plane.core.document import RolloutDoc
from control_plane.core.errors import (
    AdoptRefused,
    GroupLost,
    ModelUnknown,
    NothingToDo,
    RequestRefused,
)
from control_plane.core.fleet import FleetView
from control_plane.core.lost_state import Assessment, Recorded
from control_plane.core.state import OUTCOME_LIMIT, IntentOutcome
from control_plane.core.store import Store
from yolofleet.records import ModelPin

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Adoption:
    """What a pending ADOPT led to: the document to write, and whether it was applied (then
    the target goes with it) or refused (the document alone, the target left as it is)."""

    doc: RolloutDoc
    applied: bool
    outcome: IntentOutcome


def adopt_pending(
    read: RolloutDoc,
    doc: RolloutDoc,
    fleet: FleetView,
    found: Assessment,
    *,
    epoch: str | None,
    now: float,
) -> Adoption:
    """The document after ``doc``'s pending ADOPT (``read`` is it as stored, before pins were
    migrated): the adopted state under ``epoch``, or the refusal recorded in ``read``."""
    pending = doc.pending
    if pending is None:
        raise ValueError("adopt_pending needs a document with a pending ADOPT")
    try:
        if pending.pin is None:
            raise RequestRefused("the adopt request carries no model pin")
        state = lost_state.adopted(doc.state, found, fleet, pending.pin, now)
    except RequestRefused as exc:
        outcome = intents.refused(pending, str(exc), now)
        outcomes = (*read.outcomes, outcome)[-OUTCOME_LIMIT:]
        return Adoption(
            doc=replace(read, pending=None, outcomes=outcomes), applied=False, outcome=outcome
        )
    outcome = intents.applied(pending, state.reason, now)
    adopted = RolloutDoc(
        spec=None,
        state=replace(state, revision=read.state.revision),
        outcomes=(*doc.outcomes, outcome)[-OUTCOME_LIMIT:],
        epoch=epoch,
    )
    return Adoption(doc=adopted, applied=True, outcome=outcome)


class Epochs(Protocol):
    async def current(self) -> Epoch | None:
        """The cluster's epoch now (None: there is none)."""
        ...

    async def ensure(self, now: float) -> Epoch:
        """The cluster's epoch, begun now when there is none."""
        ...


class LostStateGuard:
    """Assesses groups against what Consul still holds; logs each group's lost reason once."""

    def __init__(self, store: Store, epochs: Epochs | None = None) -> None:
        self._store = store
        self._epochs = epochs
        self._reported: dict[str, str] = {}

    async def epoch(self, *, begin_at: float | None = None) -> str | None:
        """The cluster epoch's id (with ``begin_at``: one begun then when there is none, as
        the leader does); None without an epoch source, or when the cluster has none."""
        if self._epochs is None:
            return None
        epochs = self._epochs
        epoch = await (epochs.current() if begin_at is None else epochs.ensure(begin_at))
        return epoch.id if epoch is not None else None

    async def assess(self, doc: RolloutDoc, fleet: FleetView, *, epoch: str | None) -> Assessment:
        group = doc.state.group
        stored = doc.state.revision != 0
        targets: tuple[str, ...] = ()
        if not stored:
            target = await self._store.read_target(group)
            if target is not None:
                pins = (target.stable, target.canary)
                targets = tuple(dict.fromkeys(p.name for p in pins if p is not None))
        recorded = Recorded(
            state=doc.state if stored else None, doc_epoch=doc.epoch, target_models=targets
        )
        now_epoch = epoch if self._epochs is not None else doc.epoch
        found = lost_state.assess(group, recorded, fleet, epoch=now_epoch)
        self._report(group, found)
        return found

    async def refuse_if_lost(self, doc: RolloutDoc, fleet: FleetView) -> None:
        """Raises ``GroupLost`` (with the reason) when the group is lost."""
        found = await self.assess(doc, fleet, epoch=await self.epoch())
        if found.lost:
            raise GroupLost(found.reason)

    async def adopt_pin(self, group: str, *, stable: str | None) -> ModelPin:
        """The pin an adopt of ``group`` records: the model ``lost_state.adopt`` picks, from the
        registry, with the digest nodes serve. Raises ``NothingToDo`` when the group is not
        lost, ``AdoptRefused`` when it cannot be adopted as asked.
        """
        doc = await self._store.read_rollout(group)
        fleet = await self._store.observe(group)
        found = await self.assess(doc, fleet, epoch=await self.epoch())
        if not found.lost:
            raise NothingToDo(f"group {group} is {found.history}, not lost: nothing to adopt")
        plan = lost_state.adopt(group, fleet, stable=stable)
        name, served = plan.stable.model, plan.stable.sha256
        try:
            pin = ModelPin.of(await self._store.get_model(name))
        except ModelUnknown as exc:
            raise AdoptRefused(
                f"{plan.stable.label}, which nodes of group {group} serve, cannot be pinned "
                f"({exc}); register the file they serve (`ctl models register PATH --name "
                f"{name}`), then adopt again"
            ) from exc
        if served is not None and pin.sha256 != served:
            raise AdoptRefused(
                f"the registry's {name} is sha256 {pin.version}… but nodes of group {group} "
                f"serve {plan.stable.label}; register the file they serve, then adopt again"
            )
        return pin

    def _report(self, group: str, found: Assessment) -> None:
        if found.reason == self._reported.get(group, ""):
            return
        if found.lost:
            logger.warning(
                "group=%s lost state; nothing moves until adopted: %s", group, found.reason
            )
        else:
            logger.info("group=%s state is %s again", group, found.history)
        self._reported[group] = found.reason
