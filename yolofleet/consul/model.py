"""Consul's data model as our own frozen values: KV pairs and sessions.

Both sides speak in these types: the client layer turns py-consul's dicts into them where they
enter, and the embedded dev server keeps its state in them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SERF_HEALTH = "serfHealth"
"""The node check every Consul agent registers, and the one sessions are tied to by default."""


class SessionBehavior(StrEnum):
    """What Consul does with a session's locked keys when the session is invalidated."""

    RELEASE = "release"
    DELETE = "delete"


@dataclass(frozen=True, slots=True, kw_only=True)
class KVPair:
    """One KV entry with Consul's indexes. ``value`` is ``b""`` where Consul says ``null``."""

    key: str
    value: bytes = b""
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KVRead:
    """A read of one key: the ``X-Consul-Index`` to block on next and the pair, if present."""

    index: int
    pair: KVPair | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """A session as Consul reports it; ``ttl`` (``None``: none) and ``lock_delay`` in seconds.

    ``node_checks`` and ``service_checks`` are the check ids the session is tied to (invalidated
    when one goes critical); ``checks`` is Consul's older field for the same, kept as sent.
    """

    id: str
    name: str = ""
    node: str = ""
    behavior: SessionBehavior = SessionBehavior.RELEASE
    ttl: float | None = None
    lock_delay: float = 15.0
    node_checks: tuple[str, ...] = (SERF_HEALTH,)
    service_checks: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    create_index: int = 0
    modify_index: int = 0
