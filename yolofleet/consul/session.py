"""``SessionKeeper``: keep one Consul session alive for as long as its owner runs (asyncio).

The keeper creates a session with a TTL and a behavior, renews it every TTL/2 in a background
task, and, when a renew says the session is gone (it expired during an outage, or the agent lost
its state), creates a new one. ``on_session(session_id)`` is awaited for every session it
creates, the first included, so the owner (re)acquires or rewrites its keys in one place.
Renewals that fail because Consul is unreachable are retried with jittered backoff, at least
twice per TTL; each distinct failure is logged once. ``close()`` destroys the session, so keys
held with behavior ``delete`` disappear at once instead of after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from types import TracebackType

from yolofleet.consul.aiothread import run_blocking
from yolofleet.consul.client import ConsulClient
from yolofleet.consul.errors import ConsulError, ConsulUnavailable, SessionNotFound
from yolofleet.consul.model import SessionBehavior
from yolofleet.consul.retry import BackoffPolicy, FailureLog

logger = logging.getLogger(__name__)

OnSession = Callable[[str], Awaitable[None]]


class SessionKeeper:
    """Owns one TTL session: ``await keeper.start()``, read ``session_id``, ``await close()``."""

    def __init__(
        self,
        client: ConsulClient,
        *,
        name: str,
        ttl: float,
        behavior: SessionBehavior = SessionBehavior.DELETE,
        lock_delay: float = 0.0,
        on_session: OnSession | None = None,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
        self._client = client
        self._name = name
        self._ttl = ttl
        self._behavior = behavior
        self._lock_delay = lock_delay
        self._on_session = on_session
        self._backoff = backoff or BackoffPolicy()
        self._rng = rng or random.Random()
        self._failures = FailureLog(logger, f"session keeper name={name}")
        self._session_id: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def session_id(self) -> str | None:
        """The current session's id (``None`` before ``start()`` and after ``close()``)."""
        return self._session_id

    async def start(self) -> str:
        """Create the first session, retrying while Consul is unreachable, and start renewing."""
        if self._task is not None:
            raise RuntimeError(f"session keeper {self._name} is already running")
        session_id = await self._establish()
        self._task = asyncio.create_task(self._run(), name=f"session-keeper-{self._name}")
        return session_id

    async def close(self) -> None:
        """Stop renewing and destroy the session (best effort: it expires by TTL otherwise)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        session_id, self._session_id = self._session_id, None
        if session_id is None:
            return
        try:
            await run_blocking(
                functools.partial(self._client.destroy_session, session_id),
                name=f"consul-session-{self._name}",
            )
        except ConsulError as exc:
            logger.warning(
                "session name=%s id=%s not destroyed, it will expire by TTL: %s",
                self._name,
                session_id,
                exc,
            )
        else:
            logger.info("session name=%s id=%s destroyed", self._name, session_id)

    async def __aenter__(self) -> SessionKeeper:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 2)
            try:
                await self._renew_or_replace()
            except Exception:
                logger.exception("session keeper name=%s renewal round failed", self._name)

    async def _renew_or_replace(self) -> None:
        """Renew, retrying through outages; replace the session when Consul says it is gone."""
        while self._session_id is not None:
            renew = functools.partial(self._client.renew_session, self._session_id)
            try:
                await run_blocking(renew, name=f"consul-session-{self._name}")
            except SessionNotFound:
                logger.warning(
                    "session name=%s id=%s lost; creating a new one", self._name, self._session_id
                )
                await self._establish()
                return
            except ConsulUnavailable as exc:
                await self._pause_after(exc)
                continue
            self._failures.succeeded()
            return

    async def _establish(self) -> str:
        """Create a session (retrying while Consul is unreachable) and tell the owner."""
        create = functools.partial(
            self._client.create_session,
            name=self._name,
            ttl=self._ttl,
            behavior=self._behavior,
            lock_delay=self._lock_delay,
        )
        while True:
            try:
                session_id = await run_blocking(create, name=f"consul-session-{self._name}")
                break
            except ConsulUnavailable as exc:
                await self._pause_after(exc)
        self._failures.succeeded()
        self._session_id = session_id
        logger.info(
            "session name=%s id=%s created ttl=%gs behavior=%s",
            self._name,
            session_id,
            self._ttl,
            self._behavior,
        )
        if self._on_session is not None:
            try:
                await self._on_session(session_id)
            except Exception:
                logger.exception("session name=%s id=%s on_session failed", self._name, session_id)
        return session_id

    async def _pause_after(self, exc: ConsulError) -> None:
        self._failures.failed(exc)
        delay = self._backoff.delay(self._failures.failures - 1, self._rng)
        await asyncio.sleep(min(delay, self._ttl / 2))
