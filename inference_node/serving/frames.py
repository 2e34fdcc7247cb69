"""``FrameWindow``: one DetectStream's frames in flight, answered in the order they came.

At most ``window`` frames are in flight: the next frame is read only when there is room, so a
fast sender is pushed back by gRPC's flow control. A stream with nothing in flight that sends
nothing for ``idle_s`` ends with ``StreamIdle``. How a frame is answered (its detections or its
own error) is the caller's ``answer``; a frame's failure never ends the stream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from inference_node.errors import StreamIdle
from inference_node.serving.guard import Malformed
from yolofleet.v1 import inference_pb2 as pb

Frame = pb.DetectRequest | Malformed
"""A stream's message as received: a request, or bytes that did not parse."""


class FrameWindow:
    """One stream's frames in flight (at most ``window``), answered in the order they came."""

    def __init__(
        self,
        requests: AsyncIterator[Frame],
        answer: Callable[[Frame], Awaitable[pb.DetectResponse]],
        *,
        window: int,
        idle_s: float,
    ) -> None:
        self._requests = requests
        self._answer = answer
        self._size = window
        self._idle_s = idle_s
        self._window: deque[asyncio.Task[pb.DetectResponse]] = deque()
        self._reading: asyncio.Task[Frame | None] | None = None
        self._ended = False

    async def answers(self) -> AsyncIterator[pb.DetectResponse]:
        while not (self._ended and not self._window):
            self._read_more()
            await self._next_event()
            while self._window and self._window[0].done():
                yield self._window.popleft().result()
            self._take_frame()

    def cancel(self) -> None:
        for task in (self._reading, *self._window):
            if task is not None:
                task.cancel()

    def _read_more(self) -> None:
        if self._reading is None and not self._ended and len(self._window) < self._size:
            self._reading = asyncio.ensure_future(_next_frame(self._requests))

    async def _next_event(self) -> None:
        """Wait for the next frame or the oldest answer; idle (nothing in flight) too long is
        the end of the stream."""
        head = self._window[0] if self._window else None
        waiting = {task for task in (self._reading, head) if task is not None}
        idle_s = None if self._window else self._idle_s
        done, _ = await asyncio.wait(waiting, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise StreamIdle(
                f"stream sent no frame for {self._idle_s:g}s with none in flight: closed"
            )

    def _take_frame(self) -> None:
        if self._reading is None or not self._reading.done():
            return
        frame = self._reading.result()
        self._reading = None
        if frame is None:
            self._ended = True
        else:
            self._window.append(asyncio.ensure_future(self._answer(frame)))


async def _next_frame(frames: AsyncIterator[Frame]) -> Frame | None:
    """The stream's next frame, or None once the client has sent its last."""
    try:
        return await anext(frames)
    except StopAsyncIteration:
        return None
