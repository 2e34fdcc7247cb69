"""Retiring a swapped-out model, off the hot path.

A model that stopped being the slot's active one is closed and its memory given back (the
garbage collector for its reference cycles, the C heap's free pages, CUDA's cached blocks) on
the loader thread, never on the device thread or the event loop; and not at once: first its
last batch must have finished, then the new model gets ``delay_s`` to serve its first batches
(the ones a swap most easily slows) before the collection and the heap trim compete with
them for the interpreter and the cores. A load that begins, or the agent stopping, cuts the
delay short: the old model goes before the next one is built.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from inference_node.model import Detector
from inference_node.swapping.slot import Active, ModelSlot
from inference_node.telemetry.device import release_device_memory

logger = logging.getLogger(__name__)

RETIRE_DELAY_S = 0.25
"""How long a new model serves before its predecessor is freed (a few batches at 4 clients)."""


class Retirer:
    """Closes each swapped-out model once it is drained and the new one has settled."""

    def __init__(
        self,
        slot: ModelSlot,
        *,
        executor: Executor,
        sleep: Callable[[float], Awaitable[None]],
        delay_s: float = RETIRE_DELAY_S,
    ) -> None:
        self._slot = slot
        self._executor = executor
        self._sleep = sleep
        self._delay_s = delay_s
        self._hurry = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def retire(self, old: Active) -> None:
        """Start retiring ``old`` (the model a swap replaced); one retire runs at a time."""
        assert self._task is None or self._task.done(), "the previous retire is still running"
        self._hurry.clear()
        self._task = asyncio.get_running_loop().create_task(self._retire(old), name="retire")

    async def finish(self) -> None:
        """Cut the delay short and return once the model being retired (if any) is closed."""
        self._hurry.set()
        if self._task is not None:
            await self._task

    async def close(self, detector: Detector) -> None:
        """Close ``detector`` and release its memory on the loader thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, close_and_release, detector)

    async def _retire(self, old: Active) -> None:
        await self._slot.drained(old)
        await self._settle()
        try:
            await self.close(old.detector)
        except Exception:  # task boundary: the next load must not inherit a close's failure
            logger.error(
                "slot generation=%d %s close failed", old.generation, old.ref, exc_info=True
            )
            return
        logger.info("slot generation=%d %s closed", old.generation, old.ref)

    async def _settle(self) -> None:
        """Wait ``delay_s`` on the injected clock, or until ``finish`` is called."""
        if self._delay_s <= 0 or self._hurry.is_set():
            return
        waits = [
            asyncio.ensure_future(self._sleep(self._delay_s)),
            asyncio.ensure_future(self._hurry.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


def close_and_release(detector: Detector) -> None:
    device = detector.device
    detector.close()
    release_device_memory(device)
