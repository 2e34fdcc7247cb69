"""Run blocking calls on a bounded pool of named daemon threads and await them from asyncio.

One process-wide :class:`BlockingPool` (``configure(max_workers)`` sizes it before first use)
runs every Consul call, registry read and file hash, so a thousand awaiting coroutines never
make a thousand OS threads: calls beyond ``max_workers`` queue until a worker is free.

The workers are daemon threads, not ``concurrent.futures`` ones: a blocking query left running
when its task is cancelled would otherwise hold up interpreter exit (and ``asyncio.run``'s
executor shutdown) for up to the query's ``wait``. A cancelled call that has not started is
skipped; one that has started finishes on its own and its result is dropped. While a call runs,
its worker thread carries the call's ``name`` (``yolofleet-blocking-3:consul-watch-k``), so a
thread dump says what each worker is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_MAX_WORKERS = 32
THREAD_PREFIX = "yolofleet-blocking"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Job:
    fn: Callable[[], Any]
    name: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class BlockingPool:
    """At most ``max_workers`` daemon threads, started as calls need them and kept idle after."""

    def __init__(self, max_workers: int = DEFAULT_MAX_WORKERS, *, prefix: str = THREAD_PREFIX):
        self._prefix = prefix
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._workers = 0
        self._numbers = itertools.count(1)
        self.max_workers = max_workers
        self.resize(max_workers)

    @property
    def workers(self) -> int:
        """Threads started so far (never more than ``max_workers`` was when each started)."""
        return self._workers

    def resize(self, max_workers: int) -> None:
        """New bound on threads; threads above a lowered bound stay, idle, until exit."""
        if max_workers < 1:
            raise ValueError(f"a blocking pool needs at least 1 worker, not {max_workers}")
        self.max_workers = max_workers

    async def run(self, fn: Callable[[], T], *, name: str) -> T:
        """Await ``fn()`` run on one of the pool's threads."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn=fn, name=name, loop=loop, future=future))
        self._grow()
        return await future

    def _grow(self) -> None:
        """A thread for the job just queued, unless one is idle or the pool is full."""
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if self._workers >= self.max_workers:
                return
            self._workers += 1
            name = f"{self._prefix}-{next(self._numbers)}"
        threading.Thread(target=self._work, args=(name,), name=name, daemon=True).start()

    def _work(self, name: str) -> None:
        thread = threading.current_thread()
        while True:
            job = self._jobs.get()
            if not job.future.cancelled():
                thread.name = f"{name}:{job.name}"
                _run(job)
                thread.name = name
            self._idle.release()


def _run(job: _Job) -> None:
    try:
        value = job.fn()
    except BaseException as exc:
        _call_soon(job.loop, _settle_error, job.future, exc)
    else:
        _call_soon(job.loop, _settle_result, job.future, value)


def _settle_result(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


def _settle_error(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    # RuntimeError: the loop closed while the call ran, so nobody is waiting for it any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


_pool = BlockingPool()


def configure(max_workers: int) -> BlockingPool:
    """Bound the process-wide pool to ``max_workers`` threads (wiring calls it at start)."""
    _pool.resize(max_workers)
    return _pool


def pool() -> BlockingPool:
    """The process-wide pool ``run_blocking`` uses."""
    return _pool


async def run_blocking(fn: Callable[[], T], *, name: str) -> T:
    """Await ``fn()`` run on the process-wide bounded pool, the worker named after ``name``."""
    return await _pool.run(fn, name=name)
