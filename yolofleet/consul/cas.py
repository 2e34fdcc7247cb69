"""Check-and-set read-modify-write of one key, retried when another writer gets there first.

Blocking, like :class:`~yolofleet.consul.client.ConsulClient`; asyncio callers run it with
``asyncio.to_thread``. Transport errors are not retried here: they surface as
:class:`~yolofleet.consul.errors.ConsulUnavailable` for the caller's own loop to handle.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from yolofleet.consul.client import ConsulClient
from yolofleet.consul.errors import CASConflict
from yolofleet.consul.model import KVPair
from yolofleet.consul.retry import BackoffPolicy

logger = logging.getLogger(__name__)

CAS_BACKOFF = BackoffPolicy(initial=0.005, maximum=0.2)


def update_key(
    client: ConsulClient,
    key: str,
    mutate: Callable[[KVPair | None], bytes],
    *,
    attempts: int = 10,
    backoff: BackoffPolicy = CAS_BACKOFF,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """Write ``mutate(current)`` to ``key`` unless another write lands between read and write.

    ``current`` is the pair as read (``None`` when the key is absent); the write is a CAS on its
    ModifyIndex (0, "create only", when absent). On a conflict the key is read again and
    ``mutate`` called again, up to ``attempts`` times, with a short jittered pause in between.
    When ``mutate`` returns the value already stored nothing is written. Returns the value now
    stored; raises :class:`CASConflict` on giving up. Exceptions from ``mutate`` propagate.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    rng = rng or random.Random()
    for attempt in range(attempts):
        current = client.get(key)
        value = mutate(current)
        if current is not None and value == current.value:
            return value
        if client.put(key, value, cas=current.modify_index if current else 0):
            return value
        logger.debug("cas conflict key=%s attempt=%d", key, attempt + 1)
        if attempt + 1 < attempts:
            sleep(backoff.delay(attempt, rng))
    raise CASConflict(
        f"gave up updating {key} after {attempts} attempts: another writer changed it "
        "between our read and our write every time"
    )
