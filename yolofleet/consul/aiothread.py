"""Run blocking calls on a bounded pool of named daemon threads and await them from asyncio.

Two process-wide :class:`BlockingPool` s (``configure`` sizes them) run every Consul call,
registry read and file hash, so a thousand awaiting coroutines never make a thousand OS
threads: calls beyond a pool's bound queue until one of its workers is free. Blocking queries
(``KeyWatch``), which hold a thread until a key changes or their ``wait`` ends, run on a pool
of their own (``poll=True``), so a process watching many keys still has threads for its short
calls (a leader-lock check, a store write).

The workers are daemon threads, not ``concurrent.futures`` ones: a blocking query left running
when its task is cancelled would otherwise hold up interpreter exit (and ``asyncio.run``'s
executor shutdown) for up to the query's ``wait``. A cancelled call that has not started is
skipped; one that has started finishes on its own and its result is dropped. While a call runs,
its worker thread carries the call's ``name`` (``yolofleet-poll-3:consul-watch-KEY``), so a
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
DEFAULT_MAX_POLLS = 64
THREAD_PREFIX = "yolofleet-blocking"
POLL_THREAD_PREFIX = "yolofleet-poll"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Job:
    fn: Callable[[], Any]
    name: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class BlockingPool:
    """At most ``max_workers`` daemon threads, started as calls need them and kept idle after."""

    def __init__(
        self, max_workers: int = DEFAULT_MAX_WORKERS, *, prefix: str = THREAD_PREFIX
    ) -> None:
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
                settle, outcome = _run(job)
                thread.name = name
                _call_soon(job.loop, settle, job.future, outcome)
            self._idle.release()


def _run(job: _Job) -> tuple[Callable[[asyncio.Future[Any], Any], None], object]:
    """Calls the job's function: (how to settle its future, with what)."""
    try:
        return _settle_result, job.fn()
    except BaseException as exc:
        return _settle_error, exc


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


_calls = BlockingPool()
_polls = BlockingPool(DEFAULT_MAX_POLLS, prefix=POLL_THREAD_PREFIX)


def configure(
    max_workers: int, *, max_polls: int | None = None
) -> tuple[BlockingPool, BlockingPool]:
    """Bound the process-wide pools (wiring calls it at start): ``max_workers`` threads for
    calls, ``max_polls`` for blocking queries (unchanged when None). Returns (calls, polls).
    """
    _calls.resize(max_workers)
    if max_polls is not None:
        _polls.resize(max_polls)
    return _calls, _polls


def pools() -> tuple[BlockingPool, BlockingPool]:
    """The process-wide pools: (calls, blocking queries)."""
    return _calls, _polls


async def run_blocking(fn: Callable[[], T], *, name: str, poll: bool = False) -> T:
    """Await ``fn()`` on a process-wide bounded pool, the worker named after ``name``.

    ``poll=True`` for a call that may block for long by design (a Consul blocking query): it
    runs on a pool of its own, so queries waiting on changes never starve short calls.
    """
    return await (_polls if poll else _calls).run(fn, name=name)
