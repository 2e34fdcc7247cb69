"""``ModelCatalog``: where a node finds the ``ModelRef`` behind a model name asked for on demand.

The fleet's catalog reads the control plane's model records; ``StaticCatalog`` serves a fixed
mapping (a standalone node's ``--allow-model NAME=PATH`` files, and tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from inference_node.errors import ModelNotFound
from inference_node.model import ModelRef


class ModelCatalog(Protocol):
    """Resolves a model name to the artifact to load."""

    async def lookup(self, name: str) -> ModelRef:
        """The model registered as ``name``; raises ``ModelNotFound`` when there is none."""
        ...


class StaticCatalog:
    """A catalog fixed at start-up."""

    def __init__(self, mapping: Mapping[str, ModelRef]) -> None:
        self._refs = MappingProxyType(dict(mapping))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._refs)

    async def lookup(self, name: str) -> ModelRef:
        ref = self._refs.get(name)
        if ref is None:
            known = ", ".join(sorted(self._refs)) or "none"
            raise ModelNotFound(f"model {name!r} is not registered on this node (known: {known})")
        return ref
