"""Standalone hot reload: swap in a model file whenever its *content* changes.

A change is noticed by size/mtime, but acted on only when the file has stayed the same for
one more poll (so a file still being written is not read half-way) and its sha256 differs
from the last one requested. The loader then verifies that digest again before unpickling,
so a file rewritten between the two reads is refused, never loaded half-way. Every look at the
file (stat and hashing) runs on a worker thread, never on the event loop that serves requests.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from inference_node.model import ModelRef
from yolofleet.digests import file_sha256

logger = logging.getLogger(__name__)


class SwapRequester(Protocol):
    """Where a changed file's model is asked for (``SwapAgent`` in production)."""

    def request(self, ref: ModelRef) -> object: ...


class FileWatcher:
    def __init__(self, path: Path, agent: SwapRequester, *, name: str, interval_s: float) -> None:
        self._path = path
        self._agent = agent
        self._name = name
        self._interval_s = interval_s
        self._last_seen: tuple[int, int] | None = None
        self._last_digest: str | None = None

    def remember(self, ref: ModelRef) -> None:
        """The digest already requested at start-up; only a different one triggers a swap."""
        self._last_digest = ref.sha256
        self._last_seen = self._stat()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                ref = await asyncio.to_thread(self._poll)
            except OSError as exc:
                logger.warning("path=%s cannot be read, keeping current model: %s", self._path, exc)
                continue
            if ref is not None:
                logger.info("path=%s content changed, requesting model=%s", self._path, ref)
                self._agent.request(ref)

    def _poll(self) -> ModelRef | None:
        """On a worker thread (one poll at a time): the model to request, if the file changed."""
        seen = self._stat()
        if seen is None or seen != self._last_seen:
            self._last_seen = seen  # changed since the last poll: wait for it to settle
            return None
        digest = file_sha256(self._path)
        if digest == self._last_digest:
            return None
        self._last_digest = digest
        return ModelRef(
            name=self._name, version=digest[:12], uri=self._path.resolve().as_uri(), sha256=digest
        )

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return stat.st_size, stat.st_mtime_ns
