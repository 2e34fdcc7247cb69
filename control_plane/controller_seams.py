"""What the controller is given and makes that is not rollout state: its clock, the leadership
it checks before each round, new intent ids, and the log line of a group's change."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Protocol

from control_plane.core.state import GroupState, IntentOutcome
from control_plane.core.store import Fence

logger = logging.getLogger("control_plane.controller")


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds; stored in the rollout document, so it must survive restarts."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class Leadership(Protocol):
    def fence(self) -> Fence | None:
        """This replica's fence while it leads; None when it does not."""
        ...


def new_intent_id() -> str:
    return uuid.uuid4().hex[:12]


def log_change(old: GroupState, new: GroupState, outcome: IntentOutcome | None) -> None:
    if new.phase is not old.phase:
        logger.info(
            "group=%s phase %s -> %s step=%d reason=%s",
            new.group,
            old.phase,
            new.phase,
            new.step_index + 1,
            new.reason,
        )
    else:
        logger.debug("group=%s phase=%s reason=%s", new.group, new.phase, new.reason)
    if outcome is not None:
        logger.info(
            "group=%s intent=%s id=%s %s: %s",
            new.group,
            outcome.intent,
            outcome.id,
            outcome.result,
            outcome.detail,
        )
