"""The bounded pool blocking calls run on: never more threads than its bound, names, cancels."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.waits import until
from yolofleet.consul.aiothread import THREAD_PREFIX, BlockingPool, pools, run_blocking


async def test_concurrent_calls_share_at_most_max_workers_threads() -> None:
    pool = BlockingPool(4, prefix="test-pool")
    gate = threading.Event()
    threads: set[str] = set()

    def call() -> int:
        gate.wait(timeout=10)
        threads.add(threading.current_thread().name)
        return 1

    calls = [asyncio.create_task(pool.run(call, name="c")) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*calls)

    assert results == [1] * 50
    assert pool.workers == 4
    assert len({name.split(":")[0] for name in threads}) <= 4


async def test_a_worker_carries_the_call_name_while_it_runs() -> None:
    pool = BlockingPool(1, prefix="test-named")

    name = await pool.run(lambda: threading.current_thread().name, name="consul-read-k")
    idle = [t.name for t in threading.enumerate() if t.name.startswith("test-named")]

    assert name == "test-named-1:consul-read-k"
    assert idle == ["test-named-1"]


async def test_errors_come_back_to_the_awaiting_coroutine() -> None:
    pool = BlockingPool(2)

    def fail() -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await pool.run(fail, name="fail")


async def test_a_call_cancelled_before_it_starts_is_skipped() -> None:
    pool = BlockingPool(1)
    release = threading.Event()
    ran: list[str] = []

    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(timeout=10)

    first = asyncio.create_task(pool.run(block, name="block"))
    skipped = asyncio.create_task(pool.run(lambda: ran.append("skipped"), name="skip"))
    await until(started.is_set, what="the only worker to be busy")
    skipped.cancel()
    await asyncio.sleep(0)
    release.set()
    await first
    await pool.run(lambda: ran.append("after"), name="after")

    assert ran == ["after"]
    assert skipped.cancelled()


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least 1 worker"):
        BlockingPool(0)


async def test_blocking_queries_never_take_the_threads_of_short_calls() -> None:
    _calls, polls = pools()
    release = threading.Event()
    busy: list[str] = []

    def poll() -> None:
        busy.append(threading.current_thread().name)
        release.wait(10)

    waiting = [
        asyncio.create_task(run_blocking(poll, name="poll", poll=True))
        for _ in range(polls.max_workers + 5)
    ]
    await until(lambda: len(busy) == polls.max_workers, what="every poll thread to be busy")

    name = await asyncio.wait_for(
        run_blocking(lambda: threading.current_thread().name, name="short"), timeout=5
    )
    release.set()
    await asyncio.gather(*waiting)

    assert name.split(":")[0].startswith(THREAD_PREFIX)
    assert polls.workers <= polls.max_workers
