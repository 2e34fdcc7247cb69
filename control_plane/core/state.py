"""A group's rollout state (``GroupState``), its ``Phase``s and the operator's ``Intent``s.

Phases, and the moves ``rollout.begin`` / ``rollout.step`` make between them::

              begin (no stable yet)
    IDLE ─────────────────────────▶ DEPLOYING ──every live node serves it──▶ COMPLETED
      │  begin                                                                  ▲
      ▼                                                       PASS, last step   │
    PROGRESSING ──every canary serves target──▶ HOLDING ──hold_s──▶ ANALYZING ──┘
      ▲                                                              │  PASS: next step
      └──────────────────────────────────────────────────────────────┘

    from                         on                                   to
    settled (IDLE, COMPLETED,    START (begin), no stable model yet   DEPLOYING
      ROLLED_BACK, ABORTED,      START (begin)                        PROGRESSING, step 1
      ADOPTED)
                                 UNDO                                 ROLLED_BACK to the previous
    DEPLOYING                    every live node serves the target    COMPLETED
                                 a node failed to load it / deadline  ROLLED_BACK to no model
    PROGRESSING                  every canary serves the target       HOLDING; analysis window opens
                                 report deadline                      ROLLED_BACK
    HOLDING                      hold over and PASS                   next step, or COMPLETED
                                 hold over, no baseline node live     PAUSED
                                 hold over otherwise                  ANALYZING
    ANALYZING                    PASS                                 next step, or COMPLETED
                                 still inconclusive at the deadline   PAUSED
    HOLDING, ANALYZING           canary left or stopped serving       PROGRESSING; lost replaced
    running, except DEPLOYING    a canary failed to load the target   ROLLED_BACK
                                 FAIL/ERROR verdict, consecutive_failures
                                   times in a row                     ROLLED_BACK
    running                      PAUSE (not DEPLOYING)                PAUSED
                                 RESUME (from PAUSED)                 PROGRESSING, same step
                                 PROMOTE                              next step, or COMPLETED
                                 PROMOTE_FULL                         COMPLETED
                                 ABORT                                ABORTED
                                 stored spec missing or mismatched    ABORTED
    any, the group LOST (nodes   ADOPT (``lost_state``)               ADOPTED, stable = what most
      serve what no document                                            nodes serve, stranded
      explains)                                                         canaries back to it

"Next step" is PROGRESSING at the next step's share. ROLLED_BACK and ABORTED clear the canary;
COMPLETED makes the target stable and remembers the old stable for UNDO.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from control_plane.core.analysis import CheckResult
from control_plane.core.spec import RolloutSpec
from yolofleet.records import ModelPin

HISTORY_LIMIT = 20
OUTCOME_LIMIT = 20
"""Intent outcomes the rollout document keeps, newest last."""


class Phase(StrEnum):
    IDLE = "idle"
    """No rollout has run; ``stable`` (if any) serves everywhere."""
    DEPLOYING = "deploying"
    """The group's first model goes to every node at once; waiting for them to report it."""
    PROGRESSING = "progressing"
    """The step's canary nodes are set; waiting for each of them to report the target."""
    HOLDING = "holding"
    """Every canary serves the target; letting traffic build up for the step's ``hold_s``."""
    ANALYZING = "analyzing"
    """The hold is over; waiting for a conclusive verdict until the analysis deadline."""
    PAUSED = "paused"
    """Stopped by the operator or an inconclusive analysis; canaries keep serving."""
    COMPLETED = "completed"
    """The target became stable."""
    ROLLED_BACK = "rolled_back"
    """A failure (or an undo) sent every node back to ``stable``."""
    ABORTED = "aborted"
    """The operator stopped the rollout; every node went back to ``stable``."""
    ADOPTED = "adopted"
    """After lost Consul state, ``stable`` was rebuilt from what the nodes serve (``ctl adopt``)."""

    @property
    def running(self) -> bool:
        """True while a rollout is under way (a second ``begin`` is a conflict)."""
        match self:
            case Phase.IDLE | Phase.COMPLETED | Phase.ROLLED_BACK | Phase.ABORTED | Phase.ADOPTED:
                return False
            case (
                Phase.DEPLOYING | Phase.PROGRESSING | Phase.HOLDING | Phase.ANALYZING | Phase.PAUSED
            ):
                return True
            case _:
                assert_never(self)


class Intent(StrEnum):
    """What an operator asked the running rollout to do; applied on the controller's next tick."""

    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    """Skip the rest of this step: go to the next step (the last one completes)."""
    PROMOTE_FULL = "promote_full"
    """Skip every remaining step: the target becomes stable now."""
    ABORT = "abort"
    UNDO = "undo"
    """With no rollout running: make the previous stable model stable again."""
    START = "start"
    """Begin the rollout the request carries (its spec and the target's pin)."""
    ADOPT = "adopt"
    """After lost state: make the model the request pins (what the nodes serve) stable."""


class Result(StrEnum):
    """What became of an intent, recorded in the rollout document for ``ctl`` to report."""

    APPLIED = "applied"
    SUPERSEDED = "superseded"
    """Another move won: an abort recorded over it, or the tick rolled the rollout back first."""
    REFUSED = "refused"
    """By the time the leader's tick saw it, it no longer applied (the detail says why)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentRequest:
    """One recorded intent, waiting for the leader's tick. ``id`` is unique per request;
    ``spec`` and ``pin`` go with ``START``, ``undo_to`` with ``UNDO``.
    """

    id: str
    intent: Intent
    requested_at: float
    undo_to: str | None = None
    spec: RolloutSpec | None = None
    pin: ModelPin | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentOutcome:
    """What the tick (or a superseding request) did with intent ``id``, and why."""

    id: str
    intent: Intent
    result: Result
    detail: str
    at: float
    by: str | None = None
    """The id of the intent that superseded this one, if one did."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One finished rollout (or undo): what stable was before and after, and why it ended."""

    target: str
    stable_before: str | None
    stable_after: str | None
    outcome: Phase
    reason: str
    started_at: float
    ended_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupState:
    """Where a group's rollout stands. Nodes in ``canary_nodes`` serve ``canary``; every other
    node serves ``stable``. Times are the ``now`` values passed in: ``step_started_at`` is when the
    step's canary set was chosen, ``phase_since`` when the phase was entered, and
    ``window_started_at`` when every canary last began serving the target, which is where the
    analysis window (canary and baseline samples) starts. ``revision`` is the store's: the pure
    functions never change it.
    """

    group: str
    stable: str | None = None
    previous_stable: str | None = None
    canary: str | None = None
    canary_nodes: tuple[str, ...] = ()
    phase: Phase = Phase.IDLE
    step_index: int = 0
    step_started_at: float = 0.0
    phase_since: float = 0.0
    window_started_at: float = 0.0
    reason: str = ""
    revision: int = 0
    verdicts: tuple[CheckResult, ...] = ()
    failing_assessments: int = 0
    """FAIL or ERROR verdicts in a row so far at this step; any other verdict resets it."""
    history: tuple[HistoryEntry, ...] = ()
    pins: tuple[ModelPin, ...] = ()
    """The pin of every model this state names (stable, canary, earlier stables), resolved once
    when the rollout was requested: targets and digest comparisons come from here."""
    stranded: tuple[str, ...] = ()
    """Models nodes served when the group was last adopted (``lost_state``), sent back to
    stable then: a node still on one is explained, not lost. Not pinned, so not ``named``."""

    def pin(self, name: str | None) -> ModelPin | None:
        """The pin of model ``name``, None when the state holds none for it."""
        return next((p for p in self.pins if p.name == name), None) if name else None

    def named(self) -> tuple[str, ...]:
        """Every model this state names: the ones whose pins it must keep."""
        names = [self.stable, self.previous_stable, self.canary]
        for entry in self.history:
            names += [entry.stable_before, entry.stable_after]
        return tuple(dict.fromkeys(n for n in names if n is not None))

    def model_for(self, node_id: str) -> str | None:
        """The model this node should serve."""
        if self.canary is not None and node_id in self.canary_nodes:
            return self.canary
        return self.stable
