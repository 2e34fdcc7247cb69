from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from inference_node.swapping.executors import shut_down_executors


async def test_shutdown_waits_for_finished_threads() -> None:
    executor = ThreadPoolExecutor(1)
    executor.submit(lambda: None).result()

    finished = await shut_down_executors([executor], timeout_s=5)

    assert finished


async def test_a_stuck_thread_does_not_block_the_loop_or_the_shutdown() -> None:
    release = threading.Event()
    stuck = ThreadPoolExecutor(1)
    stuck.submit(release.wait, 30)
    queued = stuck.submit(lambda: None)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    try:
        finished = await asyncio.wait_for(shut_down_executors([stuck], timeout_s=0.3), 5)
    finally:
        ticker.cancel()
        release.set()

    assert not finished
    assert queued.cancelled()  # queued work is dropped, not run after the stop
    assert ticks >= 5  # the loop kept running while the thread was stuck
