"""``StateReporter``: keeps ``nodes/<group>/<node-id>`` equal to the node's actual state.

The key is held under an ephemeral session (behavior ``delete``), so it disappears when the
node dies and its session expires. Writes are coalesced: the newest state is written, retried
with backoff while Consul is unreachable, and rewritten whenever a new session is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from typing import Any

from yolofleet.consul import ConsulClient, ConsulError, SessionBehavior, SessionKeeper
from yolofleet.consul.aiothread import run_blocking
from yolofleet.consul.retry import BackoffPolicy, FailureLog
from yolofleet.keys import KeyLayout
from yolofleet.records import NodeState, to_json

logger = logging.getLogger(__name__)


class StateReporter:
    def __init__(
        self, client: ConsulClient, layout: KeyLayout, *, initial: NodeState, ttl_s: float
    ) -> None:
        self._client = client
        self._key = layout.node(initial.group, initial.node_id)
        self._state = initial
        self._keeper = SessionKeeper(
            client,
            name=f"yolofleet-node-{initial.group}-{initial.node_id}",
            ttl=ttl_s,
            behavior=SessionBehavior.DELETE,
            on_session=self._on_session,
        )
        self._dirty = asyncio.Event()
        self._dirty.set()
        self._backoff = BackoffPolicy()
        self._rng = random.Random()
        self._failures = FailureLog(logger, f"node state key={self._key}")
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def state(self) -> NodeState:
        return self._state

    def start(self) -> None:
        """Create the session (retrying in the background) and start writing."""
        self._tasks = [
            asyncio.create_task(self._keeper.start(), name="node-session"),
            asyncio.create_task(self._run(), name="node-state-writer"),
        ]

    def update(self, **changes: Any) -> None:
        """Change the reported state; it is written as soon as Consul takes it."""
        new = dataclasses.replace(self._state, **changes, updated=time.time())
        if new.phase != self._state.phase:
            logger.info(
                "node=%s phase %s -> %s model=%s reason=%s",
                new.node_id, self._state.phase, new.phase, new.model, new.last_error or "-",
            )  # fmt: skip
        self._state = new
        self._dirty.set()

    async def close(self) -> None:
        """Stop writing and destroy the session, which deletes the state key at once."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ConsulError):
                await task
        with contextlib.suppress(ConsulError):
            await self._keeper.close()

    async def _on_session(self, session_id: str) -> None:
        del session_id
        self._dirty.set()

    async def _run(self) -> None:
        attempt = 0
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            session = self._keeper.session_id
            if session is None:
                continue  # no session yet: _on_session sets dirty once there is one
            try:
                await self._write(session)
            except ConsulError as exc:
                self._failures.failed(exc)
                await asyncio.sleep(self._backoff.delay(attempt, self._rng))
                attempt += 1
                self._dirty.set()
                continue
            if attempt:
                self._failures.succeeded()
            attempt = 0

    async def _write(self, session: str) -> None:
        body = to_json(self._state)
        held = await run_blocking(
            lambda: self._client.put(self._key, body, acquire=session), name="node-state-put"
        )
        if not held:
            raise ConsulError(f"key {self._key} is locked by another session")
