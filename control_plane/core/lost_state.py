"""Lost Consul state, told apart from a group that never had a model: ``assess`` and ``adopt``.

Pure: no I/O, ``now`` passed in. A group's first model goes to every node at once, so calling a
group *new* when it is not would move every node without analysis. ``assess`` compares what
Consul still holds for a group (its rollout document, the cluster epoch that document was
written under, its target) with what the nodes report they serve:

- ``NEW``: nothing is recorded and no node serves anything; the first model may go everywhere;
- ``CONSISTENT``: the document explains every model a live node serves (by name, and by digest
  where it holds the model's pin) and was written under this cluster's epoch;
- ``LOST``: nodes serve models nothing recorded explains, the target names models with no
  document behind it, or the document comes from another epoch (Consul was wiped, or restored
  from another cluster's snapshot). No rollout may start until the operator adopts the group.

``adopt`` turns what the nodes serve back into a plan: stable is the model most live nodes
serve (a tie is refused, naming the choices, unless the operator names one); nodes serving
anything else are stranded canaries, sent back to stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from control_plane.core.errors import AdoptRefused
from control_plane.core.fleet import FleetView
from control_plane.core.state import HISTORY_LIMIT, GroupState, HistoryEntry, Phase
from yolofleet.records import ModelPin


class GroupHistory(StrEnum):
    NEW = "new"
    """No model was ever recorded and no node serves one: the first model goes everywhere."""
    CONSISTENT = "consistent"
    """What Consul holds explains what the nodes serve."""
    LOST = "lost"
    """Nodes serve what nothing recorded explains; rollouts wait for ``ctl adopt``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """A model as nodes report it: its name and the digest of the bytes they loaded."""

    model: str
    sha256: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model} (sha256 {self.sha256[:12]}…)" if self.sha256 else self.model


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """What Consul holds for a group. ``state`` is None without a rollout document;
    ``doc_epoch`` is the cluster epoch the document was written under (None: written before
    epochs existed, not checked); ``target_models`` the models the group target names.
    """

    state: GroupState | None = None
    doc_epoch: str | None = None
    target_models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    history: GroupHistory
    reason: str = ""

    @property
    def lost(self) -> bool:
        return self.history is GroupHistory.LOST


@dataclass(frozen=True, slots=True, kw_only=True)
class AdoptPlan:
    """What ``ctl adopt`` does: ``stable`` everywhere; ``stranded`` nodes (serving something
    else) and ``joining`` ones (serving nothing yet) go to it; ``reason`` says all of it.
    """

    group: str
    stable: Served
    keeping: tuple[str, ...]
    stranded: tuple[tuple[str, Served], ...] = ()
    joining: tuple[str, ...] = ()
    reason: str


def served_by(fleet: FleetView) -> dict[Served, tuple[str, ...]]:
    """Which live nodes serve which model, most-served first (then by name)."""
    served: dict[Served, tuple[str, ...]] = {}
    for node in fleet.nodes:
        if node.live and node.model is not None:
            key = Served(model=node.model, sha256=node.sha256)
            served[key] = (*served.get(key, ()), node.node_id)
    return dict(
        sorted(served.items(), key=lambda kv: (-len(kv[1]), kv[0].model, kv[0].sha256 or ""))
    )


def assess(group: str, recorded: Recorded, fleet: FleetView, *, epoch: str | None) -> Assessment:
    """Whether ``group`` is new, consistent, or lost (with the sentence saying why)."""
    served = served_by(fleet)
    state = recorded.state
    if state is None:
        return _undocumented(group, served, recorded.target_models)
    if not served and not _names(state):
        return Assessment(history=GroupHistory.NEW)
    if recorded.doc_epoch is not None and recorded.doc_epoch != epoch:
        current = f"the cluster's epoch is {epoch}" if epoch else "the cluster has no epoch"
        return _lost(
            group,
            f"its rollout document was written under cluster epoch {recorded.doc_epoch} but "
            f"{current}: Consul was wiped or restored from another cluster's snapshot",
        )
    unexplained = {s: ids for s, ids in served.items() if not _explains(state, s)}
    if unexplained:
        names = _names(state)
        named = f"names only {', '.join(names)}" if names else "names no model"
        return _lost(
            group,
            f"{_census(unexplained)} but its rollout document {named}: "
            "Consul state was lost or partly restored",
        )
    return Assessment(history=GroupHistory.CONSISTENT)


def adopt(group: str, fleet: FleetView, *, stable: str | None = None) -> AdoptPlan:
    """The plan that makes ``group`` consistent again from what its live nodes serve; raises
    ``AdoptRefused`` when nothing is served, on a tie without ``stable``, or when ``stable``
    names a model no live node serves (or two builds of it).
    """
    served = served_by(fleet)
    if not served:
        raise AdoptRefused(
            f"no live node of group {group} serves a model, so there is nothing to adopt; "
            "its first rollout goes to every node"
        )
    chosen = _choose(group, served, stable)
    stranded = tuple(
        (node_id, other) for other, ids in served.items() if other != chosen for node_id in ids
    )
    joining = tuple(n.node_id for n in fleet.nodes if n.live and n.model is None)
    return AdoptPlan(
        group=group,
        stable=chosen,
        keeping=served[chosen],
        stranded=tuple(sorted(stranded)),
        joining=joining,
        reason=_adopt_reason(group, chosen, served, stranded, joining, picked=stable is not None),
    )


def adopted(
    prior: GroupState, found: Assessment, fleet: FleetView, pin: ModelPin, now: float
) -> GroupState:
    """The state ``ctl adopt`` leaves: ``pin`` stable on every node (stranded canaries back),
    phase ADOPTED, one history entry saying what was adopted. ``found`` must say LOST and the
    nodes must still serve ``pin`` (its digest) most (or as asked); ``AdoptRefused`` otherwise.
    """
    group = prior.group
    if not found.lost:
        raise AdoptRefused(f"group {group} is {found.history}, not lost: nothing to adopt")
    plan = adopt(group, fleet, stable=pin.name)
    if plan.stable.sha256 is not None and plan.stable.sha256 != pin.sha256:
        raise AdoptRefused(
            f"nodes of group {group} serve {plan.stable.label}, not the build the adopt request "
            f"pinned (sha256 {pin.version}…); run `ctl adopt {group}` again"
        )
    entry = HistoryEntry(
        target=pin.name,
        stable_before=prior.stable,
        stable_after=pin.name,
        outcome=Phase.ADOPTED,
        reason=plan.reason,
        started_at=now,
        ended_at=now,
    )
    return GroupState(
        group=group,
        stable=pin.name,
        previous_stable=prior.stable if prior.stable != pin.name else prior.previous_stable,
        phase=Phase.ADOPTED,
        step_started_at=now,
        phase_since=now,
        reason=plan.reason,
        history=(*prior.history, entry)[-HISTORY_LIMIT:],
        pins=(pin, *(p for p in prior.pins if p.name != pin.name)),
        stranded=tuple(dict.fromkeys(served.model for _, served in plan.stranded)),
    )


def _undocumented(
    group: str, served: Mapping[Served, tuple[str, ...]], target_models: tuple[str, ...]
) -> Assessment:
    if served:
        return _lost(
            group,
            f"{_census(served)} but no rollout document explains them: "
            "Consul state was lost or wiped",
        )
    if target_models:
        return _lost(
            group,
            f"its target assigns {', '.join(target_models)} but no rollout document explains "
            "it: Consul state was partly lost",
        )
    return Assessment(history=GroupHistory.NEW)


def _lost(group: str, why: str) -> Assessment:
    return Assessment(
        history=GroupHistory.LOST,
        reason=f"group {group}: {why}; run `ctl adopt {group}` before any rollout",
    )


def _names(state: GroupState) -> tuple[str, ...]:
    """Every model the document names, including the targets of finished rollouts (a rolled
    back canary may still serve its target for a moment) and the models an adopt stranded."""
    targets = (entry.target for entry in state.history)
    return tuple(dict.fromkeys((*state.named(), *targets, *state.stranded)))


def _explains(state: GroupState, served: Served) -> bool:
    """The document names the model, and pins it to the digest served (when it pins it)."""
    if served.model not in _names(state):
        return False
    pin = state.pin(served.model)
    return pin is None or served.sha256 is None or pin.sha256 == served.sha256


def _census(served: Mapping[Served, tuple[str, ...]]) -> str:
    """'has 4 nodes serving shapes-v1 (sha256 ab12…) and 1 serving shapes-v2 (…)'."""
    parts = []
    for i, (model, ids) in enumerate(served.items()):
        count = f"{len(ids)} node{'s' if len(ids) != 1 else ''}" if i == 0 else f"{len(ids)}"
        parts.append(f"{count} serving {model.label}")
    return "has " + _join(parts)


def _choose(group: str, served: Mapping[Served, tuple[str, ...]], stable: str | None) -> Served:
    if stable is not None:
        builds = [s for s in served if s.model == stable]
        if len(builds) == 1:
            return builds[0]
        if builds:
            raise AdoptRefused(
                f"nodes of group {group} serve {len(builds)} different builds of {stable} "
                f"({_join(s.label for s in builds)}); register one under another name first"
            )
        raise AdoptRefused(
            f"no live node of group {group} serves {stable}; adopt keeps what nodes serve: "
            f"{_join(s.model for s in served)}"
        )
    top = max(len(ids) for ids in served.values())
    leaders = [s for s, ids in served.items() if len(ids) == top]
    if len(leaders) > 1:
        raise AdoptRefused(
            f"group {group} is split evenly ({_census(served).removeprefix('has ')}); "
            f"name the stable model: `ctl adopt {group} --stable "
            f"{' | '.join(dict.fromkeys(s.model for s in leaders))}`"
        )
    return leaders[0]


def _adopt_reason(
    group: str,
    chosen: Served,
    served: Mapping[Served, tuple[str, ...]],
    stranded: Iterable[tuple[str, Served]],
    joining: tuple[str, ...],
    *,
    picked: bool,
) -> str:
    how = "named by the operator" if picked else "served by most nodes"
    parts = [
        f"adopted group {group} after lost state: stable {chosen.label}, {how} "
        f"({len(served[chosen])} of {sum(len(ids) for ids in served.values())} serving)"
    ]
    back = [f"{node_id} ({other.model})" for node_id, other in stranded]
    if back:
        parts.append(f"stranded canaries back to {chosen.model}: {', '.join(back)}")
    if joining:
        parts.append(f"joining with {chosen.model}: {', '.join(joining)}")
    return "; ".join(parts)


def _join(items: Iterable[str]) -> str:
    words = list(items)
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"
