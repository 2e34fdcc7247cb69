"""The seam the controller and the leader lock report through: ``Observer``, and a no-op one.

The loops call it at their boundaries (a tick done or failed, an intent recorded, leadership
won or lost, the lock check reaching Consul or not); ``telemetry.ControlPlaneMetrics`` turns the
calls into Prometheus metrics. Nothing here does I/O, so the loops stay what they were.
"""

from __future__ import annotations

import logging
from typing import Protocol

from control_plane.core.analysis import Verdict
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import GroupState


class Observer(Protocol):
    def tick_done(
        self,
        old: GroupState,
        new: GroupState,
        verdict: Verdict | None,
        *,
        spec: RolloutSpec | None,
        duration_s: float,
    ) -> None:
        """One tick of ``new.group`` went from ``old`` to ``new`` (stored) in ``duration_s``."""
        ...

    def tick_failed(self, group: str, error: Exception) -> None:
        """A tick of ``group`` raised ``error``; the state was left as it was."""
        ...

    def intent_recorded(self, group: str, intent: str) -> None:
        """An operator's request (``start`` or an ``Intent``) was recorded for ``group``."""
        ...

    def leadership(self, *, leader: bool) -> None:
        """This replica leads (or not) as of now; called on every lock check."""
        ...

    def consul_checked(self, error: Exception | None) -> None:
        """The periodic leader-lock check reached Consul (``None``) or failed with ``error``."""
        ...


class NullObserver:
    """Observes nothing: the default when no metrics are wanted."""

    def tick_done(
        self,
        old: GroupState,
        new: GroupState,
        verdict: Verdict | None,
        *,
        spec: RolloutSpec | None,
        duration_s: float,
    ) -> None:
        pass

    def tick_failed(self, group: str, error: Exception) -> None:
        pass

    def intent_recorded(self, group: str, intent: str) -> None:
        pass

    def leadership(self, *, leader: bool) -> None:
        pass

    def consul_checked(self, error: Exception | None) -> None:
        pass


NULL_OBSERVER: Observer = NullObserver()

logger = logging.getLogger(__name__)


class GuardedObserver:
    """Passes every call on to ``inner`` and logs what it raises instead of raising it: the
    loops call their observer at their boundaries, where an escaping error would stop them (the
    leader lock would stop checking).
    """

    def __init__(self, inner: Observer) -> None:
        self._inner = inner

    def tick_done(
        self,
        old: GroupState,
        new: GroupState,
        verdict: Verdict | None,
        *,
        spec: RolloutSpec | None,
        duration_s: float,
    ) -> None:
        try:
            self._inner.tick_done(old, new, verdict, spec=spec, duration_s=duration_s)
        except Exception:
            logger.warning("observer failed call=tick_done group=%s", new.group, exc_info=True)

    def tick_failed(self, group: str, error: Exception) -> None:
        try:
            self._inner.tick_failed(group, error)
        except Exception:
            logger.warning("observer failed call=tick_failed group=%s", group, exc_info=True)

    def intent_recorded(self, group: str, intent: str) -> None:
        try:
            self._inner.intent_recorded(group, intent)
        except Exception:
            logger.warning("observer failed call=intent_recorded group=%s", group, exc_info=True)

    def leadership(self, *, leader: bool) -> None:
        try:
            self._inner.leadership(leader=leader)
        except Exception:
            logger.warning("observer failed call=leadership", exc_info=True)

    def consul_checked(self, error: Exception | None) -> None:
        try:
            self._inner.consul_checked(error)
        except Exception:
            logger.warning("observer failed call=consul_checked", exc_info=True)
