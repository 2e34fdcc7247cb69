"""The dev server's state store: the KV table and sessions behind one raft-like index.

Pure state, no HTTP. One lock guards everything and its condition wakes blocking queries on
every write. Every write that changes something takes the next value of a single global index;
writes that change nothing (a PUT of the same value, a failed CAS, a refused lock) take none.

Blocking reads follow Consul's loop: answer at once when the reported index already exceeds
``min_index``; otherwise wait until the key (or something under the prefix) is written or
deleted and answer if the index now exceeds ``min_index``, or answer as things stand when the
timeout runs out. Reported indexes are never below 1.

Sessions live in a :class:`~yolofleet.consul.sessiontable.SessionTable` (TTLs, refusals, lock
delays). Invalidation (expiry or destroy) releases or deletes the session's keys at one new index
and arms each key's lock-delay, during which acquires of that key are refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from yolofleet.consul.catalog import Catalog
from yolofleet.consul.devsession import SessionRequest
from yolofleet.consul.kvtable import KVTable
from yolofleet.consul.kvtxn import KVOp, TxnContext, TxnOutcome, run_txn
from yolofleet.consul.model import KVPair, SessionBehavior, SessionInfo
from yolofleet.consul.sessiontable import SessionTable

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_INDEX = 1
"""The index of a fresh store; its first write takes 2 (Consul never hands out index 1)."""


class StoreError(Exception):
    """A write the store refuses; the HTTP layer answers 500 with it, as Consul does for RPCs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreImage:
    """Everything the store persists: indexes, entries, tombstones and sessions."""

    index: int
    kv_index: int
    session_index: int
    entries: tuple[KVPair, ...]
    tombstones: tuple[tuple[str, int], ...]
    sessions: tuple[SessionInfo, ...]


class KVStore:
    """Consul's KV and session state for one dev server process; safe to share across threads."""

    def __init__(
        self,
        *,
        image: StoreImage | None = None,
        catalog: Catalog | None = None,
        min_session_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._clock = clock
        self._on_change = on_change
        self._closed = False
        self._index = max(image.index, FIRST_INDEX) if image else FIRST_INDEX
        self._kv = KVTable(
            self._next_index,
            entries=image.entries if image else (),
            tombstones=image.tombstones if image else (),
            index=image.kv_index if image else 0,
        )
        self._sessions = SessionTable(
            clock=clock,
            catalog=catalog or Catalog(),
            min_ttl=min_session_ttl,
            sessions=image.sessions if image else (),
            index=image.session_index if image else 0,
        )

    def dump(self) -> StoreImage:
        """A consistent copy of the persistent state (lock delays and TTL timers are not)."""
        with self._cond:
            entries, tombstones = self._kv.snapshot()
            return StoreImage(
                index=self._index,
                kv_index=self._kv.index,
                session_index=self._sessions.index,
                entries=entries,
                tombstones=tombstones,
                sessions=self._sessions.values(),
            )

    def close(self) -> None:
        """Make every blocking query answer now; used when the server stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ---- KV reads ----------------------------------------------------------------------

    def get(
        self, key: str, *, min_index: int = 0, timeout: float = 0.0
    ) -> tuple[int, KVPair | None]:
        """Read one key, blocking while its index is <= ``min_index`` (up to ``timeout``)."""
        return self._blocking(
            lambda: (self._kv.key_index(key), self._kv.get(key)),
            lambda: self._kv.key_version(key),
            min_index=min_index,
            timeout=timeout,
        )

    def list(
        self, prefix: str, *, min_index: int = 0, timeout: float = 0.0
    ) -> tuple[int, tuple[KVPair, ...]]:
        """Read every entry under ``prefix``, sorted by key, blocking like :meth:`get`."""
        return self._blocking(
            lambda: (self._kv.prefix_index(prefix), self._kv.under(prefix)),
            lambda: self._kv.prefix_version(prefix),
            min_index=min_index,
            timeout=timeout,
        )

    def keys(
        self, prefix: str, *, separator: str = "", min_index: int = 0, timeout: float = 0.0
    ) -> tuple[int, tuple[str, ...]]:
        """List keys under ``prefix``, each cut after the first ``separator`` past the prefix."""
        index, entries = self.list(prefix, min_index=min_index, timeout=timeout)
        folded: list[str] = []
        for entry in entries:
            cut = entry.key.find(separator, len(prefix)) if separator else -1
            key = entry.key if cut < 0 else entry.key[: cut + len(separator)]
            if not folded or folded[-1] != key:
                folded.append(key)
        return index, tuple(folded)

    def _blocking(
        self,
        query: Callable[[], tuple[int, T]],
        version: Callable[[], int],
        *,
        min_index: int,
        timeout: float,
    ) -> tuple[int, T]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._expire_due()
                index, result = query()
                if min_index <= 0 or max(index, 1) > min_index or self._closed:
                    return max(index, 1), result
                seen = version()
                while version() == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        index, result = query()
                        return max(index, 1), result
                    self._cond.wait(remaining)

    # ---- KV writes ---------------------------------------------------------------------

    def put(self, key: str, value: bytes, *, flags: int = 0) -> bool:
        """Set a key, keeping any lock on it; always succeeds."""
        with self._cond:
            self._wrote(self._kv.set(key, value, flags=flags))
            return True

    def cas(self, key: str, value: bytes, *, index: int, flags: int = 0) -> bool:
        """Set a key only if its ModifyIndex equals ``index`` (0: only if it does not exist)."""
        with self._cond:
            existing = self._kv.get(key)
            if (existing.modify_index if existing else 0) != index:
                return False
            self._wrote(self._kv.set(key, value, flags=flags))
            return True

    def acquire(self, key: str, value: bytes, *, session: str, flags: int = 0) -> bool:
        """Lock and write a key for ``session``; ``False`` if held by another or lock-delayed."""
        with self._cond:
            self._expire_due()
            if self._sessions.lock_delayed(key):
                logger.debug("acquire refused key=%s reason=lock-delay", key)
                return False
            if not session:
                raise StoreError("missing session")
            if session not in self._sessions:
                raise StoreError(f'invalid session "{session}"')
            existing = self._kv.get(key)
            if existing is not None and existing.session not in (None, session):
                return False
            lock_index = existing.lock_index if existing else 0
            if existing is None or existing.session is None:
                lock_index += 1
            changed = self._kv.set(key, value, flags=flags, session=session, lock_index=lock_index)
            self._wrote(changed)
            return True

    def release(self, key: str, value: bytes, *, session: str, flags: int = 0) -> bool:
        """Unlock and write a key held by ``session``; ``False`` if it is not the holder."""
        with self._cond:
            if not session:
                raise StoreError("missing session")
            existing = self._kv.get(key)
            if existing is None or existing.session != session:
                return False
            self._wrote(self._kv.set(key, value, flags=flags, session=None))
            return True

    def delete(self, key: str) -> bool:
        """Delete one key, locked or not (as Consul does); always succeeds."""
        with self._cond:
            self._delete((key,))
            return True

    def delete_cas(self, key: str, *, index: int) -> bool:
        """Delete a key only if its ModifyIndex equals ``index``; a missing key counts as done."""
        with self._cond:
            existing = self._kv.get(key)
            if existing is not None and existing.modify_index != index:
                return False
            self._delete((key,))
            return True

    def delete_tree(self, prefix: str) -> bool:
        """Delete every key under ``prefix`` at one index; always succeeds."""
        with self._cond:
            self._delete(tuple(entry.key for entry in self._kv.under(prefix)))
            return True

    def txn(self, ops: Sequence[KVOp]) -> TxnOutcome:
        """Apply ``ops`` all or nothing (see :mod:`yolofleet.consul.kvtxn`), at one new index."""
        with self._cond:
            self._expire_due()
            index = self._index + 1
            outcome = run_txn(
                ops,
                TxnContext(
                    table=self._kv,
                    index=index,
                    session_exists=self._sessions.__contains__,
                    lock_delayed=self._sessions.lock_delayed,
                ),
            )
            if outcome.ok and self._kv.index == index:
                self._index = index
                self._wrote(True)
            return outcome

    def _delete(self, keys: tuple[str, ...]) -> None:
        if any(self._kv.get(key) for key in keys):
            self._wrote(self._kv.remove(keys, self._next_index()))

    def _next_index(self) -> int:
        self._index += 1
        return self._index

    def _wrote(self, changed: bool) -> None:
        if changed:
            self._cond.notify_all()
            if self._on_change is not None:
                self._on_change()

    # ---- sessions ----------------------------------------------------------------------

    def create_session(self, request: SessionRequest) -> SessionInfo:
        """Create a session; refuse a TTL, lock delay, node or check as Consul would."""
        with self._cond:
            refusal = self._sessions.refusal(request)
            if refusal is not None:
                raise StoreError(refusal)
            info = self._sessions.add(request, index=self._next_index())
            self._wrote(True)
            return info

    def renew_session(self, session_id: str) -> SessionInfo | None:
        """Restart a session's TTL; ``None`` when the session does not exist (any more)."""
        with self._cond:
            self._expire_due()
            return self._sessions.renew(session_id)

    def destroy_session(self, session_id: str) -> None:
        """Invalidate a session now; destroying an unknown session is not an error."""
        with self._cond:
            self._expire_due()
            if session_id in self._sessions:
                self._invalidate(session_id, reason="destroyed")

    def session_info(
        self, session_id: str, *, min_index: int = 0, timeout: float = 0.0
    ) -> tuple[int, SessionInfo | None]:
        """One session (``None`` if unknown), blocking on the sessions table's index."""
        return self._blocking(
            lambda: (self._sessions.index, self._sessions.get(session_id)),
            lambda: self._sessions.index,
            min_index=min_index,
            timeout=timeout,
        )

    def list_sessions(
        self, *, min_index: int = 0, timeout: float = 0.0
    ) -> tuple[int, tuple[SessionInfo, ...]]:
        """Every live session, oldest first, blocking on the sessions table's index."""
        return self._blocking(
            lambda: (self._sessions.index, self._sessions.values()),
            lambda: self._sessions.index,
            min_index=min_index,
            timeout=timeout,
        )

    def node_sessions(
        self, node: str, *, min_index: int = 0, timeout: float = 0.0
    ) -> tuple[int, tuple[SessionInfo, ...]]:
        """The live sessions of ``node``, oldest first, blocking like :meth:`list_sessions`."""
        index, infos = self.list_sessions(min_index=min_index, timeout=timeout)
        return index, tuple(info for info in infos if info.node == node)

    def expire_sessions(self) -> int:
        """Invalidate every session whose TTL has run out; returns how many."""
        with self._cond:
            return self._expire_due()

    def _expire_due(self) -> int:
        expired = self._sessions.due()
        for session_id in expired:
            self._invalidate(session_id, reason="ttl expired")
        return len(expired)

    def _invalidate(self, session_id: str, *, reason: str) -> None:
        index = self._next_index()
        info = self._sessions.remove(session_id, index=index)
        held = self._kv.held_by(session_id)
        if info.behavior is SessionBehavior.DELETE:
            self._kv.remove(held, index)
        else:
            self._kv.unlock(held, index)
        self._sessions.delay(held, info.lock_delay)
        logger.info(
            "session id=%s name=%s invalidated reason=%s behavior=%s keys=%d",
            session_id,
            info.name,
            reason,
            info.behavior,
            len(held),
        )
        self._wrote(True)
