"""Leader election among control-plane replicas: a Consul lock on ``layout.leader``.

Each replica keeps one TTL session (``SessionKeeper``, behavior release) and, every
``check_s``, looks at the lock: held by its session -> leader; free -> try to acquire it
(``put(acquire=session)``); held by another session -> follower. When the session is lost
(expired during an outage) the keeper makes a new one and the next check re-acquires the
lock if it is free. ``close()`` releases the lock and destroys the session, so another
replica takes over on its next check instead of after the TTL. A replica that dies without
closing holds the lock until its session expires: the TTL is Consul's minimum, 10 s.

Leadership here is a hint; the fence is the write. ``fence()`` hands the tick this replica's
session, and the store's commit transaction checks that the lock is still held by it
(``check-session``), so a replica that lost the lock (paused past its TTL, partitioned) can
never land a write, whatever ``is_leader`` last said. The session's lock-delay equals its TTL:
after a session is invalidated, nobody can take the lock for that long, which lets a deposed
leader's in-flight work fail before a new leader starts acting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from control_plane.core.observer import NULL_OBSERVER, Observer
from control_plane.core.store import Fence
from yolofleet.consul import ConsulClient, ConsulError, SessionBehavior, SessionKeeper
from yolofleet.consul.aiothread import run_blocking
from yolofleet.keys import KeyLayout

logger = logging.getLogger(__name__)


class LeaderLock:
    """``await lock.start()``, then read ``is_leader``; ``await lock.close()`` to step down."""

    def __init__(
        self,
        client: ConsulClient,
        layout: KeyLayout | None = None,
        *,
        holder: str,
        ttl: float = 10.0,
        check_s: float = 1.0,
        observer: Observer = NULL_OBSERVER,
    ) -> None:
        self._observer = observer
        self._client = client
        self._key = (layout or KeyLayout()).leader
        self._holder = holder
        self._check_s = check_s
        self._keeper = SessionKeeper(
            client,
            name=f"yolofleet-leader-{holder}",
            ttl=ttl,
            behavior=SessionBehavior.RELEASE,
            lock_delay=ttl,
            on_session=self._on_session,
        )
        self._leader = False
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader

    def fence(self) -> Fence | None:
        """The fence for a write while this replica leads (None: it does not lead now)."""
        session_id = self._keeper.session_id
        if not self._leader or session_id is None:
            return None
        return Fence(key=self._key, session=session_id)

    async def start(self) -> None:
        await self._keeper.start()
        self._task = asyncio.create_task(self._run(), name=f"leader-lock-{self._holder}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        session_id = self._keeper.session_id
        if self._leader and session_id is not None:
            release = functools.partial(
                self._client.put, self._key, self._holder.encode(), release=session_id
            )
            try:
                await run_blocking(release, name="consul-leader-release")
            except ConsulError as exc:
                logger.warning("leader lock not released, the session close frees it: %s", exc)
        self._set(leader=False, why="stepped down")
        await self._keeper.close()

    async def _on_session(self, session_id: str) -> None:
        await self._check(session_id)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._check_s)
            session_id = self._keeper.session_id
            if session_id is None:
                self._set(leader=False, why="no session")
                continue
            try:
                await self._check(session_id)
            except Exception as exc:
                self._observer.consul_checked(exc)
                logger.exception("leader check failed holder=%s", self._holder)
                self._set(leader=False, why="lock could not be checked")
            else:
                self._observer.consul_checked(None)

    async def _check(self, session_id: str) -> None:
        """Leader iff the lock is held by ``session_id``; acquires it when free."""
        read = functools.partial(self._client.get, self._key)
        pair = await run_blocking(read, name="consul-leader-read")
        if pair is not None and pair.session == session_id:
            self._set(leader=True, why="holds the lock")
            return
        if pair is not None and pair.session is not None:
            self._set(leader=False, why=f"lock held by {pair.value.decode(errors='replace')}")
            return
        acquire = functools.partial(
            self._client.put, self._key, self._holder.encode(), acquire=session_id
        )
        won = await run_blocking(acquire, name="consul-leader-acquire")
        self._set(leader=won, why="acquired the lock" if won else "lost the race for the lock")

    def _set(self, *, leader: bool, why: str) -> None:
        if leader != self._leader:
            logger.info("leader holder=%s %s -> %s: %s", self._holder, self._leader, leader, why)
        self._leader = leader
        self._observer.leadership(leader=leader)
