"""The Consul layer shared by the inference node and the control plane.

Client side (py-consul underneath, our own types and errors on top):

- :class:`ConsulSettings` and :func:`make_consul` (``settings.py``): where Consul is, from the
  environment or a ``HOST:PORT`` string; py-consul clients whose requests always time out.
- :class:`ConsulClient` (``client.py``): KV and session calls returning :class:`KVPair`,
  :class:`KVRead` and :class:`SessionInfo`, raising the :mod:`yolofleet.consul.errors` tree.
- :class:`TxnOp`, :class:`TxnResult`, :class:`TxnError` (``txn.py``): typed KV transactions for
  :meth:`ConsulClient.txn` (``/v1/txn``, all or nothing; a rollback is ``ok=False``).
- :class:`KeyWatch` (``watch.py``): an async iterator over one key's changes (blocking queries).
- :func:`update_key` (``cas.py``): read-modify-write with check-and-set and bounded retries.
- :class:`SessionKeeper` (``session.py``): one TTL session kept alive and re-created when lost.

Server side, for tests, demos and single machines: :class:`~yolofleet.consul.devserver.DevConsul`
(import it from ``yolofleet.consul.devserver``), an embedded agent speaking the same HTTP API.
"""

from __future__ import annotations

from yolofleet.consul.cas import update_key
from yolofleet.consul.client import ConsulClient
from yolofleet.consul.errors import (
    CASConflict,
    ConsulConfigError,
    ConsulError,
    ConsulRejected,
    ConsulUnavailable,
    SessionNotFound,
)
from yolofleet.consul.model import KVPair, KVRead, SessionBehavior, SessionInfo
from yolofleet.consul.session import SessionKeeper
from yolofleet.consul.settings import ConsulSettings, make_consul
from yolofleet.consul.txn import TxnError, TxnOp, TxnResult, TxnVerb
from yolofleet.consul.watch import KeyWatch

__all__ = [
    "CASConflict",
    "ConsulClient",
    "ConsulConfigError",
    "ConsulError",
    "ConsulRejected",
    "ConsulSettings",
    "ConsulUnavailable",
    "KVPair",
    "KVRead",
    "KeyWatch",
    "SessionBehavior",
    "SessionInfo",
    "SessionKeeper",
    "SessionNotFound",
    "TxnError",
    "TxnOp",
    "TxnResult",
    "TxnVerb",
    "make_consul",
    "update_key",
]
