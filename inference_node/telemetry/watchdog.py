"""The device thread's heartbeat and the watchdog that turns a stalled one into NOT_SERVING.

Every job on the device thread (a served batch, a warm-up or a latency probe) goes through
``WatchedExecutor``, which stamps the ``DeviceHeartbeat`` when the job starts and when it ends.
``stall`` (pure) says whether the job running now has run longer than the slowest batch the
node allows; ``Watchdog`` checks it a few times per timeout and tells its listeners when the
verdict changes, so health goes NOT_SERVING while the worker is stuck and SERVING again when
it comes back.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

MIN_TIMEOUT_S = 5.0
"""A derived timeout is never shorter: a loaded host can pause a healthy thread for seconds."""
SAFETY_FACTOR = 4.0
RECENT_JOBS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Beat:
    """What the heartbeat shows: when the running job began (``None``: idle), typical job time."""

    busy_since: float | None
    typical_job_s: float


class DeviceHeartbeat:
    """Stamped by the device thread around each job; read by the watchdog from the loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self._recent: deque[float] = deque(maxlen=RECENT_JOBS)

    def wrap(self, function: Callable[P, T]) -> Callable[P, T]:
        def beating(*args: P.args, **kwargs: P.kwargs) -> T:
            started = self._clock()
            with self._lock:
                self._busy_since = started
            try:
                return function(*args, **kwargs)
            finally:
                ended = self._clock()
                with self._lock:
                    self._busy_since = None
                    self._recent.append(ended - started)

        return beating

    def read(self) -> Beat:
        with self._lock:
            typical = statistics.median(self._recent) if self._recent else 0.0
            return Beat(busy_since=self._busy_since, typical_job_s=typical)


class WatchedExecutor(Executor):
    """An executor (the single device thread) whose every job stamps ``heartbeat``."""

    def __init__(self, inner: Executor, heartbeat: DeviceHeartbeat) -> None:
        self._inner = inner
        self._heartbeat = heartbeat

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._inner.submit(self._heartbeat.wrap(fn), *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait, cancel_futures=cancel_futures)


def timeout_for(beat: Beat, *, max_batch: int, configured_s: float | None) -> float:
    """The slowest allowed job: the configured one, else ``SAFETY_FACTOR`` full batches of the
    typical job's length (a job holds at least one image), at least ``MIN_TIMEOUT_S``.
    """
    if configured_s is not None:
        return configured_s
    return max(MIN_TIMEOUT_S, SAFETY_FACTOR * max_batch * beat.typical_job_s)


def stall(beat: Beat, *, now: float, timeout_s: float) -> str:
    """Why the device thread counts as stalled at ``now``, or ``""`` when it does not."""
    if beat.busy_since is None:
        return ""
    running_s = now - beat.busy_since
    if running_s <= timeout_s:
        return ""
    return (
        f"device thread stalled: one job has run for {running_s:.1f}s "
        f"(watchdog timeout {timeout_s:.1f}s)"
    )


StallListener = Callable[[str], None]
"""Called with the stall reason when the device stalls, and with ``""`` when it recovers."""


class Watchdog:
    """Checks the heartbeat on the event loop and reports each change of verdict."""

    def __init__(
        self,
        heartbeat: DeviceHeartbeat,
        *,
        max_batch: int,
        configured_s: float | None,
        listeners: tuple[StallListener, ...],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._heartbeat = heartbeat
        self._max_batch = max_batch
        self._configured_s = configured_s
        self._listeners = listeners
        self._clock = clock
        self.reason = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def check(self) -> float:
        """Judge the heartbeat now and tell the listeners when it trips or clears (``reason``
        keeps the latest figures meanwhile); return the timeout it was judged by."""
        beat = self._heartbeat.read()
        timeout_s = timeout_for(beat, max_batch=self._max_batch, configured_s=self._configured_s)
        reason = stall(beat, now=self._clock(), timeout_s=timeout_s)
        changed = bool(reason) != bool(self.reason)  # not each new "has run for" figure
        self.reason = reason
        if changed:
            if reason:
                logger.warning("watchdog tripped: %s", reason)
            else:
                logger.info("watchdog cleared: the device thread finished its job")
            for listener in self._listeners:
                listener(reason)
        return timeout_s

    async def _run(self) -> None:
        while True:
            timeout_s = self.check()
            await asyncio.sleep(min(0.5, timeout_s / 4))
