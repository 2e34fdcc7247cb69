from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from inference_node.errors import StreamIdle
from inference_node.serving.frames import Frame, FrameWindow
from tests.waits import until
from yolofleet.v1 import inference_pb2 as pb


class Client:
    """A stream's sender: ``count`` frames, then the end (or, with ``hang``, silence)."""

    def __init__(self, count: int, *, hang: bool = False) -> None:
        self.count = count
        self.hang = hang
        self.read = 0

    async def frames(self) -> AsyncIterator[Frame]:
        for index in range(self.count):
            self.read += 1
            yield pb.DetectRequest(request_id=str(index))
        if self.hang:
            await asyncio.Event().wait()


class Answers:
    """Answers each frame once the test releases it; counts how many are in flight."""

    def __init__(self) -> None:
        self.released: dict[str, asyncio.Event] = {}
        self.in_flight = 0
        self.most_in_flight = 0

    def release(self, request_id: str) -> None:
        self.released.setdefault(request_id, asyncio.Event()).set()

    async def answer(self, frame: Frame) -> pb.DetectResponse:
        assert isinstance(frame, pb.DetectRequest)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.released.setdefault(frame.request_id, asyncio.Event()).wait()
        finally:
            self.in_flight -= 1
        return pb.DetectResponse(request_id=frame.request_id)


async def collect(window: FrameWindow) -> list[str]:
    return [response.request_id async for response in window.answers()]


async def test_answers_come_back_in_frame_order_whatever_finishes_first() -> None:
    answers = Answers()
    window = FrameWindow(Client(3).frames(), answers.answer, window=4, idle_s=5)
    collected = asyncio.ensure_future(collect(window))
    await until(lambda: answers.in_flight == 3)

    for request_id in ("2", "1", "0"):
        answers.release(request_id)

    assert await asyncio.wait_for(collected, 5) == ["0", "1", "2"]


@pytest.mark.parametrize("size", [pytest.param(1, id="one"), pytest.param(3, id="three")])
async def test_at_most_window_frames_are_read_and_in_flight(size: int) -> None:
    client, answers = Client(10), Answers()
    window = FrameWindow(client.frames(), answers.answer, window=size, idle_s=5)
    collected = asyncio.ensure_future(collect(window))
    await until(lambda: answers.in_flight == size)

    read_while_full = client.read
    for index in range(10):
        answers.release(str(index))
    result = await asyncio.wait_for(collected, 5)

    assert read_while_full == size
    assert answers.most_in_flight == size
    assert result == [str(i) for i in range(10)]


async def test_silent_stream_with_nothing_in_flight_is_ended() -> None:
    answers = Answers()
    answers.release("0")
    window = FrameWindow(Client(1, hang=True).frames(), answers.answer, window=2, idle_s=0.05)
    received: list[str] = []

    async def receive() -> None:
        async for response in window.answers():
            received.append(response.request_id)

    with pytest.raises(StreamIdle, match=r"no frame for 0\.05s"):
        await asyncio.wait_for(receive(), 5)
    window.cancel()

    assert received == ["0"]


async def test_a_slow_frame_in_flight_is_not_idleness() -> None:
    answers = Answers()
    window = FrameWindow(Client(1).frames(), answers.answer, window=2, idle_s=0.01)
    collected = asyncio.ensure_future(collect(window))
    await until(lambda: answers.in_flight == 1)
    await asyncio.sleep(0.05)  # five idle timeouts pass while the frame is in flight

    answers.release("0")

    assert await asyncio.wait_for(collected, 5) == ["0"]
