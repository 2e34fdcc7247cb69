"""The KV table of the dev server's state: entries, tombstones and Consul's index rules for them.

Not thread-safe on its own: :class:`~yolofleet.consul.kvstore.KVStore` calls it under its lock and
hands it the function that takes the next global index.

- A single-key read reports the key's ModifyIndex, or, for a missing key, the table's index (the
  index of the latest KV write or delete anywhere).
- A prefix read reports the highest ModifyIndex or tombstone under the prefix, else the table index.
- Deletes leave tombstones, so a deleted key's index never slides backwards.
- A write that changes nothing (same value, flags, session and lock index) takes no index.
- A transaction writes every key at one index it passes in (``at``), and undoes its writes with
  :meth:`KVTable.checkpoint` / :meth:`KVTable.rollback` when one of its operations fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from yolofleet.consul.model import KVPair

_KEEP = object()

Checkpoint = tuple[dict[str, KVPair], dict[str, int], int]
"""What :meth:`KVTable.rollback` restores: entries, tombstones and the table index."""


class KVTable:
    """Consul's ``kvs`` and ``tombstones`` tables."""

    def __init__(
        self,
        next_index: Callable[[], int],
        *,
        entries: Iterable[KVPair] = (),
        tombstones: Iterable[tuple[str, int]] = (),
        index: int = 0,
    ) -> None:
        self._next_index = next_index
        self._entries = {entry.key: entry for entry in entries}
        self._tombstones = dict(tombstones)
        self.index = index
        """The table index: the global index of the latest write or delete in the table."""

    def snapshot(self) -> tuple[tuple[KVPair, ...], tuple[tuple[str, int], ...]]:
        """Entries and tombstones, sorted by key."""
        entries = tuple(self._entries[key] for key in sorted(self._entries))
        return entries, tuple(sorted(self._tombstones.items()))

    def checkpoint(self) -> Checkpoint:
        """The table as it stands, for :meth:`rollback` (cheap: entries are immutable)."""
        return dict(self._entries), dict(self._tombstones), self.index

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Put the table back as it was at ``checkpoint``."""
        entries, tombstones, index = checkpoint
        self._entries, self._tombstones, self.index = dict(entries), dict(tombstones), index

    # ---- reads -------------------------------------------------------------------------

    def get(self, key: str) -> KVPair | None:
        return self._entries.get(key)

    def key_index(self, key: str) -> int:
        """The index a read of ``key`` reports."""
        entry = self._entries.get(key)
        return entry.modify_index if entry else self.index

    def key_version(self, key: str) -> int:
        """Changes exactly when ``key`` is written or deleted (what a blocking read waits on)."""
        entry = self._entries.get(key)
        return entry.modify_index if entry else self._tombstones.get(key, 0)

    def under(self, prefix: str) -> tuple[KVPair, ...]:
        """The entries under ``prefix``, sorted by key."""
        keys = sorted(key for key in self._entries if key.startswith(prefix))
        return tuple(self._entries[key] for key in keys)

    def prefix_index(self, prefix: str) -> int:
        """The index a read of everything under ``prefix`` reports."""
        return self.prefix_version(prefix) or self.index

    def prefix_version(self, prefix: str) -> int:
        """Changes exactly when something under ``prefix`` is written or deleted."""
        if not prefix:
            return self.index
        live = [e.modify_index for k, e in self._entries.items() if k.startswith(prefix)]
        dead = [i for k, i in self._tombstones.items() if k.startswith(prefix)]
        return max(live + dead, default=0)

    def held_by(self, session_id: str) -> tuple[str, ...]:
        """The keys locked by ``session_id``."""
        return tuple(key for key, entry in self._entries.items() if entry.session == session_id)

    # ---- writes ------------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: bytes,
        *,
        flags: int,
        session: str | object | None = _KEEP,
        lock_index: int | None = None,
        at: int | None = None,
    ) -> bool:
        """Write a key, keeping its lock holder and lock index unless given; ``True`` if changed.

        The write takes the next global index, or ``at`` when given (a transaction's one index).
        """
        existing = self._entries.get(key)
        if session is _KEEP:
            session = existing.session if existing else None
        assert session is None or isinstance(session, str)
        if lock_index is None:
            lock_index = existing.lock_index if existing else 0
        if existing is not None and (
            existing.value,
            existing.flags,
            existing.session,
            existing.lock_index,
        ) == (value, flags, session, lock_index):
            return False
        index = self._next_index() if at is None else at
        self._entries[key] = KVPair(
            key=key,
            value=value,
            flags=flags,
            create_index=existing.create_index if existing else index,
            modify_index=index,
            lock_index=lock_index,
            session=session,
        )
        self._tombstones.pop(key, None)
        self.index = index
        return True

    def remove(self, keys: Iterable[str], index: int) -> bool:
        """Delete ``keys`` at ``index``, leaving tombstones; ``True`` if any existed."""
        doomed = [key for key in keys if key in self._entries]
        for key in doomed:
            del self._entries[key]
            self._tombstones[key] = index
        if doomed:
            self.index = index
        return bool(doomed)

    def unlock(self, keys: Iterable[str], index: int) -> bool:
        """Clear the lock holder of ``keys`` at ``index`` (values stay); ``True`` if any existed."""
        released = [key for key in keys if key in self._entries]
        for key in released:
            self._entries[key] = replace(self._entries[key], session=None, modify_index=index)
        if released:
            self.index = index
        return bool(released)
