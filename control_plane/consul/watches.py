"""One shared watch per group behind every ``WatchRollout`` stream, and a cap on the streams.

``GroupWatches.subscribe(group)`` joins the group's watch: the first subscriber starts one
blocking-query loop on the group's key (``KeyWatch``), which reads the group's document once per
change and hands it to every subscriber; the last one to leave stops it. Each subscriber keeps
only the newest value it has not taken yet, so a slow stream costs one slot, never a queue: it
skips states it was too slow to see and always ends on the latest. A subscriber joining a
running watch gets the value the others saw last at once.

A read that fails ends the watch: every subscriber receives the error (its stream ends with the
error's status) and the next subscriber starts a fresh watch. ``StreamLimit`` refuses streams
beyond ``max_streams`` with ``WatchLimitReached`` before any watch is joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from control_plane.core.errors import StoreUnavailable
from yolofleet.consul import ConsulClient, ConsulError, KeyWatch

logger = logging.getLogger(__name__)

T = TypeVar("T")
WATCH_WAIT_S = 10.0
DEFAULT_MAX_STREAMS = 1000


class WatchLimitReached(Exception):
    """This replica already serves as many watch streams as it was allowed."""


class StreamLimit:
    """Counts open streams: ``acquire()`` (``WatchLimitReached`` when full), ``release()``."""

    def __init__(self, max_streams: int = DEFAULT_MAX_STREAMS) -> None:
        if max_streams < 1:
            raise ValueError(f"the stream cap must be 1 or more, not {max_streams}")
        self.max_streams = max_streams
        self.open = 0

    def acquire(self) -> None:
        if self.open >= self.max_streams:
            raise WatchLimitReached(
                f"this control plane already serves {self.open} watch streams, its limit "
                f"(--max-watch-streams {self.max_streams}); retry later, watch through another "
                "replica, or raise the limit"
            )
        self.open += 1

    def release(self) -> None:
        self.open -= 1


class _Subscriber(Generic[T]):
    """The newest value (or error) not yet taken by one stream."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def offer(self, value: T) -> None:
        self._value = value
        self._ready.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._ready.set()

    async def take(self) -> T:
        await self._ready.wait()
        self._ready.clear()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class _GroupWatch(Generic[T]):
    """One blocking-query loop on one group's key, fanned out to its subscribers."""

    def __init__(
        self, group: str, loop_: Callable[[_GroupWatch[T]], Coroutine[Any, Any, None]]
    ) -> None:
        self.group = group
        self.subscribers: set[_Subscriber[T]] = set()
        self.latest: T | None = None
        name = f"rollout-watch-{group}"
        self.task: asyncio.Task[None] = asyncio.create_task(loop_(self), name=name)

    def publish(self, value: T) -> None:
        self.latest = value
        for subscriber in self.subscribers:
            subscriber.offer(value)

    def fail(self, error: BaseException) -> None:
        for subscriber in self.subscribers:
            subscriber.fail(error)


class GroupWatches(Generic[T]):
    """``async with watches.subscribe(group) as changes: async for value in changes: ...``"""

    def __init__(
        self,
        client: ConsulClient,
        *,
        key: Callable[[str], str],
        read: Callable[[str], Awaitable[T]],
        wait_s: float = WATCH_WAIT_S,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._client = client
        self._key = key
        self._read = read
        self._wait_s = wait_s
        self._on_error = on_error
        self._watches: dict[str, _GroupWatch[T]] = {}

    @property
    def watching(self) -> tuple[str, ...]:
        """Groups with a watch running now."""
        return tuple(sorted(self._watches))

    @contextlib.asynccontextmanager
    async def subscribe(self, group: str) -> AsyncIterator[AsyncIterator[T]]:
        watch = self._watches.get(group)
        if watch is None:
            watch = self._watches[group] = _GroupWatch(group, self._follow)
            logger.debug("group=%s rollout watch started", group)
        subscriber: _Subscriber[T] = _Subscriber()
        if watch.latest is not None:
            subscriber.offer(watch.latest)
        watch.subscribers.add(subscriber)
        try:
            yield _values(subscriber)
        finally:
            watch.subscribers.discard(subscriber)
            if not watch.subscribers:
                await self._stop(watch)

    async def close(self) -> None:
        """Stops every watch (their subscribers wait for values that never come)."""
        for watch in list(self._watches.values()):
            await self._stop(watch)

    async def _stop(self, watch: _GroupWatch[T]) -> None:
        if self._watches.get(watch.group) is watch:
            del self._watches[watch.group]
        watch.task.cancel()
        try:
            await watch.task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled too: never swallow that
        logger.debug("group=%s rollout watch stopped", watch.group)

    async def _follow(self, watch: _GroupWatch[T]) -> None:
        key = self._key(watch.group)
        try:
            async for _ in KeyWatch(self._client, key, wait=self._wait_s, min_interval=0.05):
                watch.publish(await self._read(watch.group))
        except Exception as exc:
            logger.info("group=%s rollout watch ended: %s", watch.group, exc)
            if self._watches.get(watch.group) is watch:
                del self._watches[watch.group]
            watch.fail(_as_backend_error(exc, watch.group))  # before on_error: a failing hook
            # must not leave streams hanging
            if self._on_error is not None:
                try:
                    self._on_error(exc)
                except Exception:  # the hook is not the watch: log it, never raise it
                    logger.exception("group=%s rollout watch error hook failed", watch.group)


async def _values(subscriber: _Subscriber[T]) -> AsyncIterator[T]:
    while True:
        yield await subscriber.take()


def _as_backend_error(exc: Exception, group: str) -> Exception:
    """What a stream sees when its watch ends: Consul's failure as ``StoreUnavailable``."""
    if isinstance(exc, ConsulError):
        failed = StoreUnavailable(f"could not watch the rollout of {group} in Consul: {exc}")
        failed.__cause__ = exc
        return failed
    return exc
