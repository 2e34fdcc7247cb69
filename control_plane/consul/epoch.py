"""The cluster epoch: one key, ``<prefix>cluster/epoch``, written once, so a wiped Consul shows.

The first control plane to find no epoch writes one (a random id and the time) in a transaction
that checks the key does not exist, so two replicas bootstrapping at once agree on one epoch.
Every rollout document records the epoch it was written under; a Consul that was wiped (or
restored from another cluster's snapshot) has no epoch, or a new one, and ``lost_state`` holds
every group whose nodes serve something until the operator adopts it.

``EpochKeeper.ensure`` reads the epoch and writes one when there is none (the leader calls it
every round, so a wipe under a running control plane gets a fresh epoch at once); it remembers
the first epoch it saw and logs a warning when the cluster's changes. The key's JSON is read and
written only here.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from control_plane.core.errors import RecordCorrupt, StoreUnavailable
from yolofleet import strictjson
from yolofleet.consul import ConsulClient, ConsulError, TxnOp
from yolofleet.consul.aiothread import run_blocking
from yolofleet.keys import KeyLayout

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Epoch:
    """One life of the cluster's Consul state: a random ``id`` and when it began."""

    id: str
    created: float


def encode_epoch(epoch: Epoch) -> bytes:
    return json.dumps(asdict(epoch), sort_keys=True).encode()


def decode_epoch(data: bytes, *, key: str) -> Epoch:
    """The epoch ``key`` holds; ``RecordCorrupt`` (naming the key and the fix) otherwise."""
    try:
        epoch = strictjson.build(
            Epoch, strictjson.load_object(data, what="cluster epoch"), what="cluster epoch"
        )
    except strictjson.ShapeError as exc:
        raise RecordCorrupt(
            f"{key} holds no valid cluster epoch ({exc}); delete it to begin a new epoch "
            "(every group whose nodes serve a model then needs `ctl adopt`)"
        ) from exc
    if not epoch.id:
        raise RecordCorrupt(f"{key} holds a cluster epoch with an empty id; delete it")
    return epoch


class EpochKeeper:
    """Reads and bootstraps the cluster epoch; ``seen`` is the first one this process saw."""

    def __init__(
        self,
        client: ConsulClient,
        layout: KeyLayout | None = None,
        *,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._client = client
        self._key = (layout or KeyLayout()).epoch
        self._new_id = new_id
        self.seen: Epoch | None = None

    @property
    def key(self) -> str:
        return self._key

    async def current(self) -> Epoch | None:
        """The cluster's epoch now (None: none was written, or Consul was wiped)."""
        pair = await self._call("read", functools.partial(self._client.get, self._key))
        return decode_epoch(pair.value, key=self._key) if pair is not None else None

    async def ensure(self, now: float) -> Epoch:
        """The cluster's epoch, written first (check-not-exists) when there is none."""
        epoch = await self.current()
        if epoch is None:
            epoch = await self._bootstrap(now)
        self._remember(epoch)
        return epoch

    async def _bootstrap(self, now: float) -> Epoch:
        fresh = Epoch(id=self._new_id(), created=now)
        ops = [TxnOp.check_not_exists(self._key), TxnOp.set(self._key, encode_epoch(fresh))]
        result = await self._call("write", functools.partial(self._client.txn, ops))
        if result.ok:
            logger.warning(
                "cluster epoch begun epoch=%s key=%s: a Consul without one is new or was wiped; "
                "groups whose nodes serve models no rollout document explains wait for "
                "`ctl adopt`",
                fresh.id,
                self._key,
            )
            return fresh
        epoch = await self.current()  # another replica wrote it first
        if epoch is None:
            raise StoreUnavailable(
                f"could not write the cluster epoch {self._key}: {result.describe()}"
            )
        return epoch

    def _remember(self, epoch: Epoch) -> None:
        if self.seen is None:
            self.seen = epoch
            logger.info("cluster epoch=%s created=%.0f", epoch.id, epoch.created)
        elif self.seen.id != epoch.id:
            logger.warning(
                "cluster epoch changed from %s to %s: Consul state was lost or replaced; "
                "rollouts into groups it no longer explains are refused until `ctl adopt`",
                self.seen.id,
                epoch.id,
            )
            self.seen = epoch

    async def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return await run_blocking(fn, name=f"consul-epoch-{action}")
        except ConsulError as exc:
            raise StoreUnavailable(
                f"could not {action} the cluster epoch {self._key}: {exc}"
            ) from exc
