"""One model in the ``ModelCache``: what was loaded (``CachedModel``), its entry with the
leases on it (``CacheEntry``), one open use of it (``CacheHold``), and closing one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from inference_node.model import Detector, ModelRef
from inference_node.telemetry.device import release_device_memory


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


def close_and_release(detector: Detector) -> None:
    device = detector.device
    detector.close()
    release_device_memory(device)


def close_if_loaded(load: Future[tuple[Detector, int]]) -> None:
    """Done callback of a load nobody awaits any more: close the model it produced, if any.

    It runs on the loader thread as the load returns (or at once, if it already had).
    """
    if not load.cancelled() and load.exception() is None:
        close_and_release(load.result()[0])


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
