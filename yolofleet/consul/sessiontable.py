"""The session table of the dev server's state: live sessions, TTL deadlines and lock delays.

Not thread-safe on its own: :class:`~yolofleet.consul.kvstore.KVStore` calls it under its lock,
hands it the index of each change and releases or deletes the keys of the sessions it removes.

- A TTL session is due at TTL plus a grace of TTL/10 (at most 1 s) after its last renew. Consul
  promises only "not before TTL" and may take up to 2x TTL; the short grace keeps tests quick
  while a client renewing at TTL/2 never loses its session. Restored sessions get a full TTL,
  as after a Consul leader election.
- A session is refused, with Consul's message, for a TTL outside ``[min_ttl, 24h]``, a lock
  delay over 60 s, or a node or check the :class:`~yolofleet.consul.catalog.Catalog` lacks.
- Keys a session held when it was invalidated are lock-delayed for its ``lock_delay``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from yolofleet.consul.catalog import Catalog
from yolofleet.consul.devsession import SessionRequest
from yolofleet.consul.model import SessionInfo

MAX_SESSION_TTL = 86400.0
MAX_LOCK_DELAY = 60.0


def ttl_grace(ttl: float) -> float:
    """How long past its TTL an unrenewed session lives on."""
    return min(ttl / 10, 1.0)


class SessionTable:
    """Consul's ``sessions`` table with the TTL timers and lock delays the leader keeps."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        catalog: Catalog,
        min_ttl: float,
        sessions: Iterable[SessionInfo] = (),
        index: int = 0,
    ) -> None:
        self._clock = clock
        self._catalog = catalog
        self._min_ttl = min_ttl
        self._sessions: dict[str, SessionInfo] = {}
        self._deadlines: dict[str, float] = {}
        self._lock_delays: dict[str, float] = {}
        self.index = index
        """The global index of the latest session created or invalidated."""
        for info in sessions:
            self._sessions[info.id] = info
            self._arm(info)

    def values(self) -> tuple[SessionInfo, ...]:
        """Every live session, oldest first."""
        return tuple(self._sessions.values())

    def get(self, session_id: str) -> SessionInfo | None:
        return self._sessions.get(session_id)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def refusal(self, request: SessionRequest) -> str | None:
        """Why Consul would refuse to create ``request``; ``None`` when it would not."""
        ttl = request.ttl
        if ttl is not None and not self._min_ttl <= ttl <= MAX_SESSION_TTL:
            return (
                f"Invalid Session TTL '{ttl:g}s', must be between "
                f"[{self._min_ttl:g}s={MAX_SESSION_TTL:g}s]"
            )
        if not 0 <= request.lock_delay <= MAX_LOCK_DELAY:
            return f"Lock delay must be between 0s and {MAX_LOCK_DELAY:g}s"
        return self._catalog.session_refusal(request.node, request.check_ids)

    def add(self, request: SessionRequest, *, index: int) -> SessionInfo:
        """Create the session ``request`` asks for (already checked with :meth:`refusal`)."""
        info = SessionInfo(
            id=str(uuid.uuid4()),
            name=request.name,
            node=request.node,
            behavior=request.behavior,
            ttl=request.ttl,
            lock_delay=request.lock_delay,
            node_checks=request.node_checks,
            service_checks=request.service_checks,
            checks=request.checks,
            create_index=index,
            modify_index=index,
        )
        self._sessions[info.id] = info
        self._arm(info)
        self.index = index
        return info

    def renew(self, session_id: str) -> SessionInfo | None:
        """Restart a session's TTL; ``None`` when it does not exist."""
        info = self._sessions.get(session_id)
        if info is not None:
            self._arm(info)
        return info

    def remove(self, session_id: str, *, index: int) -> SessionInfo:
        """Drop a live session at ``index``; the caller frees its keys."""
        info = self._sessions.pop(session_id)
        self._deadlines.pop(session_id, None)
        self.index = index
        return info

    def due(self) -> list[str]:
        """Sessions whose TTL has run out (and forget lock delays that have ended)."""
        now = self._clock()
        for key in [key for key, until in self._lock_delays.items() if until <= now]:
            del self._lock_delays[key]
        return [sid for sid, deadline in self._deadlines.items() if deadline <= now]

    def delay(self, keys: Iterable[str], seconds: float) -> None:
        """Refuse acquires of ``keys`` for ``seconds`` from now."""
        if seconds > 0:
            self._lock_delays.update(dict.fromkeys(keys, self._clock() + seconds))

    def lock_delayed(self, key: str) -> bool:
        """Whether ``key`` is still in a lock delay."""
        return self._lock_delays.get(key, 0.0) > self._clock()

    def _arm(self, info: SessionInfo) -> None:
        if info.ttl:
            self._deadlines[info.id] = self._clock() + info.ttl + ttl_grace(info.ttl)
