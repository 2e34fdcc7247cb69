"""Shutting thread pools down from a coroutine without ever blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Executor

logger = logging.getLogger(__name__)


async def shut_down_executors(executors: Sequence[Executor], *, timeout_s: float) -> bool:
    """Stop ``executors`` taking work, drop queued work, and wait up to ``timeout_s`` for their
    threads on a helper thread; True when every thread finished in time.

    The event loop keeps running meanwhile. A thread still busy when the time is up (a load
    stuck in the kernel) is left to finish on its own and logged; nothing waits for it here.
    """
    for executor in executors:
        executor.shutdown(wait=False, cancel_futures=True)
    loop = asyncio.get_running_loop()
    joined: asyncio.Future[None] = loop.create_future()

    def join() -> None:
        for executor in executors:
            executor.shutdown(wait=True)
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody is waiting
            loop.call_soon_threadsafe(_settle, joined)

    threading.Thread(target=join, name="executor-shutdown", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(joined), timeout_s)
    except TimeoutError:
        logger.warning("worker threads still busy after %.1fs; not waiting for them", timeout_s)
        return False
    return True


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
