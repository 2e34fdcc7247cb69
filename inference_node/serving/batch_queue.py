"""The batcher's queue of decoded requests, and how it is cut into batches of one model.

The oldest queued request picks the batch's model; later requests for that model join it (up
to ``max_size``), requests for other models keep their place. While more requests are known
to be on their way (admitted, still decoding) the cut waits up to ``max_wait_s`` for them;
otherwise it returns at once, so a lone request pays no batching delay.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from inference_node.serving.requests import BatchLimits, DetectRequest, DetectResult
from inference_node.serving.routing import Booking, Group, Leased


@dataclass(slots=True, kw_only=True)
class Pending:
    request: DetectRequest
    booking: Booking
    future: asyncio.Future[DetectResult]
    enqueued_at: float = field(default_factory=time.perf_counter)
    leased: Leased | None = None
    """The model the worker leased for this request's batch, once it has."""


class BatchQueue:
    """Requests waiting for the worker, oldest first."""

    def __init__(self, limits: BatchLimits) -> None:
        self._limits = limits
        self._queue: deque[Pending] = deque()
        self._has_work = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def append(self, pending: Pending) -> None:
        self._queue.append(pending)
        self._has_work.set()

    def fail_all(self, exc: Exception) -> None:
        """Fail every queued request with ``exc`` and empty the queue (the batcher stopped)."""
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._queue.clear()

    async def next_batch(self, arriving: Callable[[], int]) -> tuple[Group, list[Pending]]:
        """Wait for a request, then cut the next batch; ``arriving()`` counts the requests
        admitted and still decoding (worth waiting ``max_wait_s`` for)."""
        while not self._queue:
            self._has_work.clear()
            await self._has_work.wait()
        group = self._queue[0].booking.group
        batch = self._take_ready([], group)
        deadline = time.perf_counter() + self._limits.max_wait_s
        while len(batch) < self._limits.max_size and arriving():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._has_work.clear()
            try:
                await asyncio.wait_for(self._has_work.wait(), remaining)
            except TimeoutError:
                break
            batch = self._take_ready(batch, group)
        return group, [pending for pending in batch if not pending.future.done()]

    def _take_ready(self, batch: list[Pending], group: Group) -> list[Pending]:
        """Move queued requests for ``group`` into ``batch``; the others keep their order."""
        others: deque[Pending] = deque()
        while self._queue and len(batch) < self._limits.max_size:
            pending = self._queue.popleft()
            same = pending.booking.group == group
            (batch if same else others).append(pending)
        others.extend(self._queue)
        self._queue = others
        return batch
