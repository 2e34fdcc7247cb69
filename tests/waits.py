"""Waiting on conditions with deadlines (never a fixed sleep and hope).

``wait_for`` polls a plain condition from synchronous code, ``until`` from a coroutine, and
``eventually`` awaits an asynchronous check (an RPC, a store read). Each returns the condition's
first truthy value and fails with an ``AssertionError`` naming what it waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout_s: float, what: str) -> T:
    """Poll ``condition`` until truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.01)
    return value


async def until(
    condition: Callable[[], T], timeout_s: float = 5.0, what: str = "the condition"
) -> T:
    """Poll ``condition`` on the running loop until truthy; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (value := condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(0.005)
    return value


async def eventually(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout_s: float = 20.0
) -> None:
    """Await ``check`` until it returns true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(0.01)
