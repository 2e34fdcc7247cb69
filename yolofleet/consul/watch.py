"""``KeyWatch``: follow one Consul key with blocking queries, as an async iterator of its changes.

The loop follows Consul's rules for blocking queries:

- The first read carries no index; later reads block on the last ``X-Consul-Index``.
- An index that goes backwards (a restored snapshot, a wiped dev server) resets the loop to 0,
  so the next read does not block and the watch starts over from the current state.
- An index below 1 is replaced by 1, which always blocks until the key changes.
- A query returning is not a change: a value is yielded only when the pair differs from the last
  one yielded (value, flags, lock holder or ModifyIndex). The first read is always yielded, and a
  deleted or missing key is yielded as ``None``.
- Successive requests start at least ``min_interval`` apart, so a misbehaving agent cannot turn
  the loop into a busy loop; errors back off with jitter up to a cap, and each distinct error is
  logged once, not on every retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator

from yolofleet.consul.aiothread import run_blocking
from yolofleet.consul.client import ConsulClient
from yolofleet.consul.errors import ConsulError
from yolofleet.consul.model import KVPair, KVRead
from yolofleet.consul.retry import BackoffPolicy, FailureLog

logger = logging.getLogger(__name__)

_NOTHING = object()


def next_index(previous: int, returned: int) -> int:
    """The index for the next blocking query after one that returned ``returned``."""
    if returned < previous:
        return 0
    return max(returned, 1)


class KeyWatch:
    """``async for pair in KeyWatch(client, key)``: the key's value each time it changes."""

    def __init__(
        self,
        client: ConsulClient,
        key: str,
        *,
        wait: float = 30.0,
        min_interval: float = 0.1,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._key = key
        self._wait = wait
        self._min_interval = min_interval
        self._backoff = backoff or BackoffPolicy()
        self._rng = rng or random.Random()
        self._failures = FailureLog(logger, f"watch key={key}")

    def __aiter__(self) -> AsyncIterator[KVPair | None]:
        return self.changes()

    async def changes(self) -> AsyncIterator[KVPair | None]:
        """Yield the current pair (or ``None``), then every change until cancelled."""
        index = 0
        last: object = _NOTHING
        loop = asyncio.get_running_loop()
        started = loop.time() - self._min_interval
        while True:
            await asyncio.sleep(max(0.0, started + self._min_interval - loop.time()))
            started = loop.time()
            read = await self._read(index)
            if read is None:
                continue
            new_index = next_index(index, read.index)
            if new_index == 0:
                logger.info(
                    "watch key=%s index went backwards %d -> %d; starting over",
                    self._key,
                    index,
                    read.index,
                )
            index = new_index
            if read.pair != last:
                last = read.pair
                yield read.pair

    async def _read(self, index: int) -> KVRead | None:
        """One (blocking) read; on failure, log, back off and return ``None``."""
        call = functools.partial(self._client.read, self._key, index=index, wait=self._wait)
        try:
            read = await run_blocking(call, name=f"consul-watch-{self._key}", poll=True)
        except ConsulError as exc:
            self._failures.failed(exc)
            await asyncio.sleep(self._backoff.delay(self._failures.failures - 1, self._rng))
            return None
        self._failures.succeeded()
        return read
