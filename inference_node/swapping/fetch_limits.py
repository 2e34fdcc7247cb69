"""The limits one artifact copy must keep, and the pure judgement of whether it broke one.

A copy is *connecting* until the source is open (for HTTP: connected, request sent, response
headers received) and *receiving* after. ``broken_limit`` looks at a snapshot of its progress
and the time now (both passed in) and names the limit it broke, if any:

- the whole copy took longer than ``deadline_s`` (a server trickling bytes trips this one);
- connecting took longer than ``connect_s`` (a slow DNS lookup, a SYN never answered, headers
  sent a byte at a time);
- receiving, no byte arrived for ``idle_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Cancellation(Protocol):
    """Asked between steps whether to give up (a ``threading.Event`` is one)."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchLimits:
    """Bounds on one artifact copy: connect, idle-read and total deadlines, and its size."""

    connect_s: float = 10.0
    idle_s: float = 30.0
    deadline_s: float = 900.0
    max_bytes: int = 2 << 30

    def __post_init__(self) -> None:
        if min(self.connect_s, self.idle_s, self.deadline_s) <= 0:
            raise ValueError(
                f"fetch timeouts must be positive, got connect_s={self.connect_s} "
                f"idle_s={self.idle_s} deadline_s={self.deadline_s}"
            )
        if self.max_bytes <= 0:
            raise ValueError(f"fetch max_bytes must be positive, got {self.max_bytes}")


class CopyPhase(StrEnum):
    CONNECTING = "connecting"
    RECEIVING = "receiving"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressView:
    """A copy's progress at one moment (clock readings from the same clock as ``now``)."""

    phase: CopyPhase
    started_at: float
    last_byte_at: float
    received: int


def broken_limit(progress: ProgressView, *, now: float, limits: FetchLimits) -> str | None:
    """The limit ``progress`` has broken by ``now``, as the end of a sentence; else None."""
    if now - progress.started_at > limits.deadline_s:
        return f"it took longer than the deadline of {limits.deadline_s:g}s"
    if progress.phase is CopyPhase.CONNECTING and now - progress.started_at > limits.connect_s:
        return f"no response within {limits.connect_s:g}s (connect timed out)"
    if progress.phase is CopyPhase.RECEIVING and now - progress.last_byte_at > limits.idle_s:
        return f"no data for {limits.idle_s:g}s (timed out)"
    return None
