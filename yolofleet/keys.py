"""The Consul key layout, the one place both node and control plane learn it from."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "yolofleet/"


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Every key the product reads or writes, under a configurable prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if self.prefix and not self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix + "/")

    @property
    def models(self) -> str:
        return f"{self.prefix}models/"

    def model(self, name: str) -> str:
        return f"{self.models}{_segment(name)}"

    def group_target(self, group: str) -> str:
        return f"{self.prefix}groups/{_segment(group)}/target"

    def rollout(self, group: str) -> str:
        return f"{self.prefix}rollouts/{_segment(group)}"

    def nodes(self, group: str) -> str:
        return f"{self.prefix}nodes/{_segment(group)}/"

    def node(self, group: str, node_id: str) -> str:
        return f"{self.nodes(group)}{_segment(node_id)}"

    @property
    def leader(self) -> str:
        return f"{self.prefix}leader"

    @property
    def epoch(self) -> str:
        """The cluster epoch: written once, when the control plane first finds none."""
        return f"{self.prefix}cluster/epoch"


def _segment(value: str) -> str:
    if not value or "/" in value or value in {".", ".."} or not value.isprintable():
        raise ValueError(f"{value!r} cannot be a key segment (empty, '/', '.' or unprintable)")
    return value
