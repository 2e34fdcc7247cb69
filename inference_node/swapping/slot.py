"""``ModelSlot``: one immutable active model, replaced in a single assignment.

The slot lives on the node's event loop thread, so it needs no lock: ``lease()`` counts the
batches (and probes) using a generation, ``swap()`` replaces the active model in one step, and
``drained(old)`` waits until the last lease on the old generation has been returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from inference_node.errors import NoModelLoaded
from inference_node.model import Detector, ModelRef
from inference_node.swapping.loader import LoadReport

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Active:
    """The model that answers requests, and when it went live."""

    ref: ModelRef
    detector: Detector
    generation: int
    load: LoadReport
    live_since: float
    swap_duration_s: float


class ModelSlot:
    """Holds the active model; swaps it atomically and tracks leases per generation."""

    def __init__(self) -> None:
        self._active: Active | None = None
        self._generation = 0
        self._leases: Counter[int] = Counter()
        self._drained: dict[int, asyncio.Event] = {}

    @property
    def active(self) -> Active | None:
        return self._active

    @property
    def generation(self) -> int:
        return self._generation

    @contextmanager
    def lease(self) -> Iterator[Active]:
        """Use the active model for one batch; it stays open until the lease is returned."""
        active = self._active
        if active is None:
            raise NoModelLoaded("no model is live on this node yet")
        self._leases[active.generation] += 1
        try:
            yield active
        finally:
            self._release(active.generation)

    def swap(
        self,
        ref: ModelRef,
        detector: Detector,
        *,
        load: LoadReport,
        started_at: float,
        finished_at: float | None = None,
    ) -> Active | None:
        """Make ``detector`` live in one assignment; returns the model it replaced.

        ``started_at`` and ``finished_at`` (default: ``time.monotonic()`` now) come from the
        caller's clock and give the swap's duration; ``live_since`` is wall-clock time.
        """
        self._generation += 1
        finished = time.monotonic() if finished_at is None else finished_at
        new = Active(
            ref=ref,
            detector=detector,
            generation=self._generation,
            load=load,
            live_since=time.time(),
            swap_duration_s=finished - started_at,
        )
        old, self._active = self._active, new
        if old is not None and self._leases[old.generation]:
            self._drained[old.generation] = asyncio.Event()
        logger.info("slot generation=%d %s -> %s", new.generation, old.ref if old else "empty", ref)
        return old

    def retire_all(self) -> Active | None:
        """Take the active model out of the slot (at shutdown); returns it for closing."""
        old, self._active = self._active, None
        if old is not None and self._leases[old.generation]:
            self._drained[old.generation] = asyncio.Event()
        return old

    async def drained(self, old: Active) -> None:
        """Return once no lease on ``old`` is outstanding."""
        event = self._drained.get(old.generation)
        if event is not None:
            await event.wait()

    def leases_on(self, generation: int) -> int:
        return self._leases[generation]

    def _release(self, generation: int) -> None:
        self._leases[generation] -= 1
        if self._leases[generation] == 0:
            del self._leases[generation]
            event = self._drained.pop(generation, None)
            if event is not None:
                event.set()
