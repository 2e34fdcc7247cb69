"""The dev server's catalog: the one node it registers (itself) and that node's checks.

A Consul agent registers its own node with the ``serfHealth`` check, and sessions are tied to a
node and to checks on it: creating a session for a node the catalog does not know, or naming a
check that node does not have, is refused with Consul's messages. The dev server has one node,
:data:`DEV_NODE`, with one passing check, ``serfHealth``, and no services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from yolofleet.consul.model import SERF_HEALTH

DEV_NODE = "yolofleet-dev"
"""The dev server's node name: what sessions created without ``Node`` belong to."""


class Catalog:
    """Registered nodes and the check ids each has; read-only once built."""

    def __init__(self, nodes: Mapping[str, Iterable[str]] | None = None) -> None:
        registered = nodes if nodes is not None else {DEV_NODE: (SERF_HEALTH,)}
        self._nodes = MappingProxyType(
            {name: frozenset(checks) for name, checks in registered.items()}
        )

    @property
    def nodes(self) -> Mapping[str, frozenset[str]]:
        return self._nodes

    def session_refusal(self, node: str, check_ids: Iterable[str]) -> str | None:
        """Why Consul would refuse a session on ``node`` with ``check_ids``; ``None`` if not."""
        checks = self._nodes.get(node)
        if checks is None:
            return "Missing node registration"
        for check_id in check_ids:
            if check_id not in checks:
                return f"Missing check '{check_id}' registration"
        return None
