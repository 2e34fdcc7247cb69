"""Run one blocking call on its own daemon thread and await it from asyncio.

``asyncio.to_thread`` would do, except that a blocking query left running when its task is
cancelled holds up ``asyncio.run``'s executor shutdown for up to the query's ``wait``. A daemon
thread per call lets the loop shut down at once; the abandoned call finishes (or dies with the
process) on its own and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_blocking(fn: Callable[[], T], *, name: str) -> T:
    """Await ``fn()`` run on a new daemon thread called ``name``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle_result(value: T) -> None:
        if not future.done():
            future.set_result(value)

    def settle_error(exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)

    def target() -> None:
        try:
            value = fn()
        except BaseException as exc:
            _call_soon(loop, settle_error, exc)
        else:
            _call_soon(loop, settle_result, value)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[T], None], arg: T) -> None:
    # RuntimeError: the loop closed while the call ran, so nobody is waiting for it any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, arg)
