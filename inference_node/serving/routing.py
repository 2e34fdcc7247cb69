"""``Router``: the one seam over the slot and the on-demand cache that decides what answers.

A request's path through it goes one way:

- ``route(name)`` names what the request asks for, reading nothing: the assigned model (no
  name) or a model by name.
- ``await prepare(route)`` books it, before the request is queued and off the worker: a named
  request is checked against the slot's model *under a lease*; when the slot serves another
  model the request is held on the on-demand cache, which loads it here if needed (the only
  place a catalog lookup can happen). A held model stays open until the booking is released.
- ``lease(booking)`` is the worker's one lease per batch: the slot's current model, or the
  booked cached model. The batch is cut per ``Booking.group`` (the slot, or one cached load)
  and which of its requests run is read from the lease (``Leased.takes``), never from the
  slot beside it.

A request naming the slot's model runs on whatever the slot serves when its batch starts, as
an unnamed one does; if the slot went on to a model of *another name* meanwhile, that request
fails with UNAVAILABLE (retry) instead of being moved (the batcher fails it). ``blame`` says
which model a failure counts against (``ledger``): the model leased, else the slot's, for
requests aimed at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from inference_node.errors import ModelNotFound, Unavailable
from inference_node.model import Detector, ModelRef
from inference_node.serving.cache_entry import CacheHold
from inference_node.serving.model_cache import ModelCache
from inference_node.swapping.slot import ModelSlot


class Target(StrEnum):
    ASSIGNED = "assigned"
    """No model named: whatever the slot serves."""
    NAMED = "named"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """What a request asks for, before anything is read."""

    target: Target
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """Which model a batch is cut for. Two loads of one name (one evicted but still held) are
    two groups: ``model_id`` is the cached model's identity, held alive by its bookings."""

    name: str
    model_id: int = 0

    def __str__(self) -> str:
        return self.name or "assigned"


SLOT = Group(name="")
"""The group of requests answered by the slot's model."""


class Booking:
    """A prepared route: on the slot, or holding a cached model until ``release()``."""

    __slots__ = ("_hold", "route")

    def __init__(self, route: Route, hold: CacheHold | None = None) -> None:
        self.route = route
        self._hold = hold

    @property
    def cached(self) -> CacheHold | None:
        return self._hold

    @property
    def group(self) -> Group:
        """Bookings of one group may share a batch: the slot's, or one cached model's."""
        if self._hold is None:
            return SLOT
        model = self._hold.model
        return Group(name=model.name, model_id=id(model))

    def release(self) -> None:
        if self._hold is not None:
            self._hold.release()


@dataclass(frozen=True, slots=True, kw_only=True)
class Leased:
    """The model one batch runs on. ``generation`` is the slot's, or 0 for a cached model."""

    ref: ModelRef
    detector: Detector
    generation: int
    hold: CacheHold | None = None

    def takes(self, booking: Booking) -> bool:
        """Whether ``booking`` runs on this model (read from the lease, not from the slot)."""
        if self.hold is not None:
            return booking.cached is not None and booking.cached.model is self.hold.model
        return booking.cached is None and booking.route.name in ("", self.ref.name)


class Router:
    """Routes, books and leases models for requests; reads the slot only under a lease."""

    def __init__(self, slot: ModelSlot, cache: ModelCache | None = None) -> None:
        self._slot = slot
        self._cache = cache

    def route(self, name: str) -> Route:
        return Route(target=Target.NAMED if name else Target.ASSIGNED, name=name)

    def check_live(self) -> None:
        """Raise ``NoModelLoaded`` unless the slot serves a model."""
        with self._slot.lease():
            pass

    async def prepare(self, route: Route) -> Booking:
        """Book ``route``: the slot, or the cached model (loaded now if needed) it names."""
        with self._slot.lease() as active:
            if route.target is Target.ASSIGNED or route.name == active.ref.name:
                return Booking(route)
            serving = active.ref.name
        if self._cache is None:
            raise ModelNotFound(f"model {route.name!r} is not served here (serving {serving})")
        return Booking(route, await self._cache.hold(route.name))

    @contextmanager
    def lease(self, booking: Booking) -> Iterator[Leased]:
        """The worker's one lease for a batch headed by ``booking``: its cached model (held
        again, so the batch keeps it open whoever lets go meanwhile), or the slot's model."""
        hold = booking.cached
        if hold is not None:
            mine = hold.share()
            try:
                model = mine.model
                yield Leased(ref=model.ref, detector=model.detector, generation=0, hold=mine)
            finally:
                mine.release()
            return
        with self._slot.lease() as active:
            yield Leased(ref=active.ref, detector=active.detector, generation=active.generation)

    def blame(self, route: Route, leased: Leased | None = None) -> ModelRef | None:
        """The model a failed request counts against: the slot model it ran on, else the
        slot's model if the request was aimed at it; failures on cached models are not counted.
        """
        if leased is not None:
            return leased.ref if leased.hold is None else None
        try:
            with self._slot.lease() as active:
                aimed = route.name in ("", active.ref.name)
                return active.ref if aimed else None
        except Unavailable:  # no model is live: nothing to count against
            return None
