"""``Waiters``: the futures of swap requests not answered yet, settled by model."""

from __future__ import annotations

import asyncio

from inference_node.errors import Superseded
from inference_node.model import ModelRef
from inference_node.swapping.policy import same_model
from inference_node.swapping.slot import Active


class Waiters:
    """Who asked for which model; each future gets the ``Active`` it went live as, or why not."""

    def __init__(self) -> None:
        self._waiting: list[tuple[ModelRef, asyncio.Future[Active]]] = []

    def add(self, ref: ModelRef) -> asyncio.Future[Active]:
        """A future for ``ref``; a refusal nobody awaits is not logged by asyncio."""
        future: asyncio.Future[Active] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_outcome)
        self._waiting.append((ref, future))
        return future

    def supersede_all_but(self, ref: ModelRef) -> None:
        for wanted, future in self._waiting:
            if not same_model(wanted, ref) and not future.done():
                future.set_exception(Superseded(f"model {wanted} was superseded by {ref}"))
        self._prune()

    def went_live(self, active: Active) -> None:
        for wanted, future in self._waiting:
            if same_model(wanted, active.ref) and not future.done():
                future.set_result(active)
        self._prune()

    def refused(self, ref: ModelRef, error: Exception) -> None:
        for wanted, future in self._waiting:
            if same_model(wanted, ref) and not future.done():
                future.set_exception(error)
        self._prune()

    def fail_all(self, error: Exception) -> None:
        for _, future in self._waiting:
            if not future.done():
                future.set_exception(error)
        self._prune()

    def _prune(self) -> None:
        self._waiting = [(ref, future) for ref, future in self._waiting if not future.done()]


def _consume_outcome(future: asyncio.Future[Active]) -> None:
    """Callers may ignore the outcome; mark a refusal as seen so asyncio does not log it."""
    if not future.cancelled():
        future.exception()
