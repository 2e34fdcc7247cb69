"""``ConsulStore`` over real HTTP to the dev Consul: documents, check-and-set, the group target."""

from __future__ import annotations

from dataclasses import replace

import pytest

from control_plane.consul.store import ConsulStore
from control_plane.core.analysis import assess
from control_plane.core.document import RolloutDoc
from control_plane.core.errors import Deposed, ModelUnknown, RecordCorrupt, StoreConflict
from control_plane.core.state import GroupState, HistoryEntry, Intent, IntentRequest, Phase
from control_plane.core.store import Fence
from tests.unit.control_plane.builders import GROUP, NEW, OLD, SPEC, THRESHOLDS, pin, samples
from yolofleet.consul import ConsulClient
from yolofleet.keys import KeyLayout
from yolofleet.records import GroupTarget, ModelRecord, NodePhase, NodeState, to_json

VERDICTS = (
    assess(samples(1000, errors=50), samples(1000), THRESHOLDS).checks
    + assess(samples(10), samples(1000), THRESHOLDS).checks  # inconclusive: None values
)
HISTORY = (
    HistoryEntry(
        target=OLD,
        stable_before=None,
        stable_after=OLD,
        outcome=Phase.COMPLETED,
        reason="first model",
        started_at=1.5,
        ended_at=2.25,
    ),
)


def state_in(phase: Phase) -> GroupState:
    return GroupState(
        group=GROUP,
        stable=OLD,
        previous_stable="shapes-v0",
        canary=NEW if phase.running else None,
        canary_nodes=("n0", "n3") if phase.running else (),
        phase=phase,
        step_index=1,
        step_started_at=10.0,
        phase_since=12.5,
        window_started_at=13.0,
        reason=f"in {phase}",
        verdicts=VERDICTS,
        history=HISTORY,
        pins=(pin(OLD), pin(NEW), pin("shapes-v0")),
    )


@pytest.mark.parametrize("phase", list(Phase), ids=[str(p) for p in Phase])
async def test_every_phase_round_trips(store: ConsulStore, phase: Phase) -> None:
    pending = IntentRequest(id="i-1", intent=Intent.PROMOTE_FULL, requested_at=3.0)
    doc = RolloutDoc(spec=SPEC, state=state_in(phase), pending=pending)

    revision = await store.write_rollout(doc)
    read = await store.read_rollout(GROUP)

    assert revision > 0
    assert read == replace(doc, state=replace(doc.state, revision=revision))


async def test_missing_document_reads_as_idle_revision_zero(store: ConsulStore) -> None:
    doc = await store.read_rollout("empty")

    assert doc == RolloutDoc(spec=None, state=GroupState(group="empty"))


async def test_stale_revision_is_a_conflict(store: ConsulStore) -> None:
    first = await store.write_rollout(RolloutDoc(spec=SPEC, state=state_in(Phase.PROGRESSING)))
    fresh = RolloutDoc(spec=SPEC, state=replace(state_in(Phase.HOLDING), revision=first))
    await store.write_rollout(fresh)

    with pytest.raises(StoreConflict, match="changed since revision"):
        await store.write_rollout(fresh)
    with pytest.raises(StoreConflict):
        await store.write_rollout(RolloutDoc(spec=None, state=state_in(Phase.IDLE)))

    assert (await store.read_rollout(GROUP)).state.phase is Phase.HOLDING


async def test_corrupt_document_is_reported(
    store: ConsulStore, client: ConsulClient, layout: KeyLayout
) -> None:
    client.put(layout.rollout(GROUP), b'{"format": 1, "state": {"group": 3}}')

    with pytest.raises(RecordCorrupt, match="'group' must be a string"):
        await store.read_rollout(GROUP)


async def commit_target(store: ConsulStore, state: GroupState) -> object:
    return (
        await store.commit(RolloutDoc(spec=SPEC, state=state), changed=False, fence=None)
    ).target


async def test_target_is_written_only_when_the_assignment_changes(
    store: ConsulStore, client: ConsulClient, layout: KeyLayout
) -> None:
    canary = state_in(Phase.PROGRESSING)

    first = await commit_target(store, canary)
    index = client.get(layout.group_target(GROUP)).modify_index  # type: ignore[union-attr]
    again = await commit_target(store, replace(canary, reason="other", phase=Phase.HOLDING))
    unchanged = client.get(layout.group_target(GROUP)).modify_index  # type: ignore[union-attr]
    wider = await commit_target(store, replace(canary, canary_nodes=("n0", "n1", "n3")))
    settled = await commit_target(store, replace(canary, canary=None, canary_nodes=()))

    assert isinstance(first, GroupTarget)
    assert (first.stable, first.canary, first.canary_nodes, first.generation) == (
        pin(OLD),
        pin(NEW),
        ("n0", "n3"),
        1,
    )
    assert again is None
    assert unchanged == index
    assert isinstance(wider, GroupTarget)
    assert wider.generation == 2
    assert isinstance(settled, GroupTarget)
    assert (settled.canary, settled.canary_nodes, settled.generation) == (None, (), 3)
    assert await store.read_target(GROUP) == settled


async def test_nothing_to_serve_leaves_the_target_absent(store: ConsulStore) -> None:
    written = await commit_target(store, GroupState(group=GROUP))

    assert written is None
    assert await store.read_target(GROUP) is None


async def test_a_target_without_pins_is_rewritten_with_its_generation_moving_on(
    store: ConsulStore, client: ConsulClient, layout: KeyLayout
) -> None:
    old = b'{"stable": "shapes-v1", "canary": null, "canary_nodes": [], "generation": 7}'
    client.put(layout.group_target(GROUP), old)

    written = await commit_target(store, state_in(Phase.COMPLETED))

    assert isinstance(written, GroupTarget)
    assert (written.stable, written.generation) == (pin(OLD), 8)
    assert await store.read_target(GROUP) == written


async def test_a_state_naming_a_model_without_its_pin_writes_nothing(
    store: ConsulStore,
) -> None:
    unpinned = replace(state_in(Phase.COMPLETED), pins=())

    with pytest.raises(RecordCorrupt, match="holds no pin"):
        await commit_target(store, unpinned)

    assert await store.read_target(GROUP) is None


async def test_observe_skips_malformed_node_records(
    store: ConsulStore, client: ConsulClient, layout: KeyLayout, caplog: pytest.LogCaptureFixture
) -> None:
    good = NodeState(node_id="n1", group=GROUP, phase=NodePhase.SERVING, model=OLD, sha256="ab")
    client.put(layout.node(GROUP, "n1"), to_json(good))
    client.put(layout.node(GROUP, "n0"), b"not json")
    client.put(layout.node(GROUP, "n2"), b'{"node_id": "n2", "group": "g", "phase": "dancing"}')

    fleet = await store.observe(GROUP)

    assert [(n.node_id, n.phase, n.model, n.sha256) for n in fleet.nodes] == [
        ("n1", NodePhase.SERVING, OLD, "ab")
    ]
    assert sum("node record skipped" in r.getMessage() for r in caplog.records) == 2


async def test_list_groups_and_models(
    store: ConsulStore, client: ConsulClient, layout: KeyLayout
) -> None:
    await store.write_rollout(RolloutDoc(spec=None, state=GroupState(group="a")))
    await commit_target(store, GroupState(group="b", stable=OLD, pins=(pin(OLD),)))
    client.put(layout.node("c", "n0"), b"{}")
    record = ModelRecord(
        name=OLD,
        uri="file:///m.pt",
        sha256="f" * 64,
        size=1,
        input_size=160,
        class_names=("circle",),
    )
    client.put(layout.model(OLD), to_json(record))

    groups = await store.list_groups()
    model = await store.get_model(OLD)

    assert groups == ("a", "b", "c")
    assert model.sha256 == "f" * 64
    with pytest.raises(ModelUnknown, match="not registered"):
        await store.get_model(NEW)


# --- the tick's one fenced transaction ----------------------------------------------------


def lock(client: ConsulClient, layout: KeyLayout, holder: str) -> Fence:
    session = client.create_session(name=holder, ttl=None, lock_delay=0.0)
    assert client.put(layout.leader, holder.encode(), acquire=session)
    return Fence(key=layout.leader, session=session)


async def test_commit_writes_document_and_target_together_under_the_fence(
    store: ConsulStore, client: ConsulClient, layout: KeyLayout
) -> None:
    fence = lock(client, layout, "cp-a")
    doc = RolloutDoc(spec=SPEC, state=state_in(Phase.PROGRESSING))

    committed = await store.commit(doc, changed=True, fence=fence)

    read = await store.read_rollout(GROUP)
    assert read.state == replace(doc.state, revision=committed.revision)
    assert committed.target is not None
    assert await store.read_target(GROUP) == committed.target


async def test_a_deposed_leader_lands_no_write(
    store: ConsulStore, client: ConsulClient, layout: KeyLayout
) -> None:
    old = lock(client, layout, "cp-a")
    revision = await store.write_rollout(RolloutDoc(spec=SPEC, state=state_in(Phase.HOLDING)))
    client.destroy_session(old.session)  # its lock is released: cp-a is deposed
    lock(client, layout, "cp-b")
    before = snapshot(client, layout)
    stale = RolloutDoc(spec=SPEC, state=replace(state_in(Phase.PROGRESSING), revision=revision))

    with pytest.raises(Deposed, match="no longer holds the leader lock"):
        await store.commit(stale, changed=True, fence=old)

    assert snapshot(client, layout) == before


async def test_a_stale_document_lands_neither_document_nor_target(
    store: ConsulStore, client: ConsulClient, layout: KeyLayout
) -> None:
    fence = lock(client, layout, "cp-a")
    first = await store.write_rollout(RolloutDoc(spec=SPEC, state=state_in(Phase.HOLDING)))
    newer = replace(state_in(Phase.ANALYZING), revision=first)
    second = await store.write_rollout(RolloutDoc(spec=SPEC, state=newer))
    assert second > first
    before = snapshot(client, layout)
    stale = RolloutDoc(spec=SPEC, state=replace(state_in(Phase.PROGRESSING), revision=first))

    with pytest.raises(StoreConflict, match="nothing written"):
        await store.commit(stale, changed=True, fence=fence)

    assert snapshot(client, layout) == before


def snapshot(client: ConsulClient, layout: KeyLayout) -> dict[str, tuple[bytes, int]]:
    return {pair.key: (pair.value, pair.modify_index) for pair in client.list(layout.prefix)}
