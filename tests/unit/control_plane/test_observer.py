"""GuardedObserver: an observer that raises never stops the loop that calls it."""

from __future__ import annotations

import logging

import pytest

from control_plane.core.analysis import Verdict
from control_plane.core.observer import GuardedObserver
from control_plane.core.spec import RolloutSpec
from control_plane.core.state import GroupState


class Raising:
    """An observer whose every call fails, and that remembers which calls it got."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _fail(self, call: str) -> None:
        self.calls.append(call)
        raise RuntimeError(f"{call} is broken")

    def tick_done(
        self,
        old: GroupState,
        new: GroupState,
        verdict: Verdict | None,
        *,
        spec: RolloutSpec | None,
        duration_s: float,
    ) -> None:
        self._fail("tick_done")

    def tick_failed(self, group: str, error: Exception) -> None:
        self._fail("tick_failed")

    def intent_recorded(self, group: str, intent: str) -> None:
        self._fail("intent_recorded")

    def leadership(self, *, leader: bool) -> None:
        self._fail("leadership")

    def consul_checked(self, error: Exception | None) -> None:
        self._fail("consul_checked")


def test_every_call_reaches_the_observer_and_none_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = Raising()
    guarded = GuardedObserver(inner)
    state = GroupState(group="zone-a")

    with caplog.at_level(logging.WARNING, logger="control_plane.core.observer"):
        guarded.tick_done(state, state, None, spec=None, duration_s=0.1)
        guarded.tick_failed("zone-a", ValueError("tick"))
        guarded.intent_recorded("zone-a", "abort")
        guarded.leadership(leader=True)
        guarded.consul_checked(None)

    expected = ["tick_done", "tick_failed", "intent_recorded", "leadership", "consul_checked"]
    assert inner.calls == expected
    logged = [r.getMessage() for r in caplog.records if r.name == "control_plane.core.observer"]
    assert [message.split("call=")[1].split()[0] for message in logged] == expected
