"""One model in the ``ModelCache``: what was loaded (``CachedModel``), its entry with the
leases on it (``CacheEntry``), and one open use of it (``CacheHold``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from inference_node.model import Detector, ModelRef


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedModel:
    """A model loaded on demand: what it is, and the bytes its weights were measured at."""

    name: str
    ref: ModelRef
    detector: Detector
    weight_bytes: int
    load_s: float


class CacheHold:
    """One open use of a cached model; ``release()`` ends it (a second call does nothing)."""

    __slots__ = ("_entry", "_release", "_released")

    def __init__(self, entry: CacheEntry, *, release: Callable[[CacheEntry], None]) -> None:
        entry.leases += 1
        self._entry = entry
        self._release = release
        self._released = False

    @property
    def model(self) -> CachedModel:
        return self._entry.model

    def share(self) -> CacheHold:
        """Another use of the same model, open until its own release (the worker's lease)."""
        return CacheHold(self._entry, release=self._release)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._release(self._entry)


@dataclass(slots=True, kw_only=True)
class CacheEntry:
    model: CachedModel
    leases: int = 0
    evicted: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)
