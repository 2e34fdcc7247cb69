"""lost_state: new, consistent or lost, and the adopt plan, from what Consul and nodes say."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from control_plane.consul.codec import decode_doc, encode_doc
from control_plane.core import intents
from control_plane.core.document import RolloutDoc
from control_plane.core.errors import AdoptRefused
from control_plane.core.fleet import FleetView, NodeView
from control_plane.core.lost_state import (
    Assessment,
    GroupHistory,
    Recorded,
    Served,
    adopt,
    adopted,
    assess,
    served_by,
)
from control_plane.core.state import GroupState, HistoryEntry, Intent, IntentRequest, Phase, Result
from control_plane.lost_guard import adopt_pending
from tests.unit.control_plane.builders import (
    GROUP,
    NEW,
    OLD,
    digest,
    fleet,
    node,
    pin,
    running,
    settled,
)
from yolofleet.records import ModelPin, NodePhase

EPOCH = "epoch-a"
FOUR_OLD_ONE_NEW = fleet(("n1", "n2", "n3", "n4", "n5"), new=("n5",))
NOBODY = FleetView.of([node("n1", None, phase=NodePhase.WAITING)])
ROGUE = FleetView.of([node("n1", OLD), node("n2", "shapes-v9")])
OTHER_BUILD = FleetView.of(
    [node("n1", OLD), NodeView(node_id="n2", phase=NodePhase.SERVING, model=OLD, sha256="f" * 64)]
)
UNDONE = GroupState(
    group=GROUP,
    stable=OLD,
    phase=Phase.ROLLED_BACK,
    history=(
        HistoryEntry(
            target=NEW,
            stable_before=OLD,
            stable_after=OLD,
            outcome=Phase.ROLLED_BACK,
            reason="analysis failed",
            started_at=0.0,
            ended_at=1.0,
        ),
    ),
    pins=(pin(OLD), pin(NEW)),
)


def doc(
    state: GroupState | None, epoch: str | None = EPOCH, target: tuple[str, ...] = ()
) -> Recorded:
    return Recorded(state=state, doc_epoch=epoch, target_models=target)


@pytest.mark.parametrize(
    ("recorded", "view", "epoch", "history", "says"),
    [
        pytest.param(doc(None), FleetView(), EPOCH, GroupHistory.NEW, "", id="nothing-at-all"),
        pytest.param(doc(None), NOBODY, EPOCH, GroupHistory.NEW, "", id="nodes-serving-nothing"),
        pytest.param(
            doc(None), NOBODY, None, GroupHistory.NEW, "", id="wiped-but-nothing-served-is-new"
        ),
        pytest.param(
            doc(None),
            FOUR_OLD_ONE_NEW,
            EPOCH,
            GroupHistory.LOST,
            f"group {GROUP}: has 4 nodes serving {OLD} (sha256 {digest(OLD)[:12]}…) and 1 "
            f"serving {NEW} (sha256 {digest(NEW)[:12]}…) but no rollout document explains "
            f"them: Consul state was lost or wiped; run `ctl adopt {GROUP}` before any rollout",
            id="no-document-nodes-serving",
        ),
        pytest.param(
            doc(None, target=(OLD,)),
            NOBODY,
            EPOCH,
            GroupHistory.LOST,
            f"its target assigns {OLD} but no rollout document explains it",
            id="target-without-document",
        ),
        pytest.param(
            doc(GroupState(group=GROUP)),
            FOUR_OLD_ONE_NEW,
            EPOCH,
            GroupHistory.LOST,
            "but its rollout document names no model: Consul state was lost",
            id="fresh-idle-document-nodes-serving",
        ),
        pytest.param(
            doc(settled()),
            fleet(("n1", "n2")),
            EPOCH,
            GroupHistory.CONSISTENT,
            "",
            id="stable-everywhere",
        ),
        pytest.param(
            doc(running(Phase.HOLDING, canaries=("n5",))),
            FOUR_OLD_ONE_NEW,
            EPOCH,
            GroupHistory.CONSISTENT,
            "",
            id="mid-canary",
        ),
        pytest.param(
            doc(UNDONE),
            FOUR_OLD_ONE_NEW,
            EPOCH,
            GroupHistory.CONSISTENT,
            "",
            id="rolled-back-canary-not-yet-back",
        ),
        pytest.param(
            doc(settled(), epoch=None),
            fleet(("n1",)),
            EPOCH,
            GroupHistory.CONSISTENT,
            "",
            id="document-from-before-epochs",
        ),
        pytest.param(
            doc(settled()),
            NOBODY,
            EPOCH,
            GroupHistory.CONSISTENT,
            "",
            id="stable-recorded-nodes-not-up-yet",
        ),
        pytest.param(
            doc(settled()),
            ROGUE,
            EPOCH,
            GroupHistory.LOST,
            f"has 1 node serving shapes-v9 (sha256 {digest('shapes-v9')[:12]}…) but its rollout "
            "document names only shapes-v1: Consul state was lost or partly restored",
            id="unnamed-model",
        ),
        pytest.param(
            doc(settled()),
            OTHER_BUILD,
            EPOCH,
            GroupHistory.LOST,
            f"{OLD} (sha256 ffffffffffff…)",
            id="same-name-other-digest",
        ),
        pytest.param(
            doc(settled(), epoch="epoch-old"),
            fleet(("n1",)),
            EPOCH,
            GroupHistory.LOST,
            "written under cluster epoch epoch-old but the cluster's epoch is epoch-a: Consul "
            "was wiped or restored from another cluster's snapshot",
            id="restored-from-another-epoch",
        ),
        pytest.param(
            doc(settled()),
            fleet(("n1",)),
            None,
            GroupHistory.LOST,
            "but the cluster has no epoch",
            id="epoch-key-gone",
        ),
        pytest.param(
            doc(GroupState(group=GROUP), epoch="epoch-old"),
            NOBODY,
            EPOCH,
            GroupHistory.NEW,
            "",
            id="empty-document-other-epoch-nothing-served",
        ),
    ],
)
def test_assess(
    recorded: Recorded, view: FleetView, epoch: str | None, history: GroupHistory, says: str
) -> None:
    found = assess(GROUP, recorded, view, epoch=epoch)

    assert found.history is history
    assert found.lost is (history is GroupHistory.LOST)
    assert says in found.reason
    if found.lost:
        assert found.reason.endswith(f"run `ctl adopt {GROUP}` before any rollout")
    else:
        assert found.reason == ""


def test_draining_nodes_do_not_count() -> None:
    view = fleet(("n1", "n2"), draining=("n2",))

    assert served_by(view) == {Served(model=OLD, sha256=digest(OLD)): ("n1",)}


@pytest.mark.parametrize(
    ("view", "stable", "chosen", "stranded", "joining", "says"),
    [
        pytest.param(
            FOUR_OLD_ONE_NEW,
            None,
            OLD,
            (("n5", NEW),),
            (),
            f"adopted group {GROUP} after lost state: stable {OLD} (sha256 {digest(OLD)[:12]}…), "
            f"served by most nodes (4 of 5 serving); stranded canaries back to {OLD}: n5 ({NEW})",
            id="majority-stable-canary-stranded",
        ),
        pytest.param(
            FleetView.of([node("n1", OLD), node("n2", NEW), node("n3", None)]),
            NEW,
            NEW,
            (("n1", OLD),),
            ("n3",),
            f"named by the operator (1 of 2 serving); stranded canaries back to {NEW}: n1 "
            f"({OLD}); joining with {NEW}: n3",
            id="tie-broken-by-operator",
        ),
        pytest.param(
            fleet(("n1", "n2")),
            None,
            OLD,
            (),
            (),
            "(2 of 2 serving)",
            id="all-agree",
        ),
    ],
)
def test_adopt_plans(
    view: FleetView,
    stable: str | None,
    chosen: str,
    stranded: tuple[tuple[str, str], ...],
    joining: tuple[str, ...],
    says: str,
) -> None:
    plan = adopt(GROUP, view, stable=stable)

    assert plan.stable == Served(model=chosen, sha256=digest(chosen))
    assert [(n, s.model) for n, s in plan.stranded] == list(stranded)
    assert plan.joining == joining
    assert set(plan.keeping) == {n.node_id for n in view.nodes if n.model == chosen}
    assert says in plan.reason


@pytest.mark.parametrize(
    ("view", "stable", "says"),
    [
        pytest.param(
            NOBODY,
            None,
            f"no live node of group {GROUP} serves a model, so there is nothing to adopt",
            id="nothing-served",
        ),
        pytest.param(
            FleetView.of([node("n1", OLD), node("n2", NEW)]),
            None,
            f"group {GROUP} is split evenly (1 node serving {OLD} (sha256 {digest(OLD)[:12]}…) "
            f"and 1 serving {NEW} (sha256 {digest(NEW)[:12]}…)); name the stable model: "
            f"`ctl adopt {GROUP} --stable {OLD} | {NEW}`",
            id="tie",
        ),
        pytest.param(
            FOUR_OLD_ONE_NEW,
            "shapes-v9",
            f"no live node of group {GROUP} serves shapes-v9; adopt keeps what nodes serve: "
            f"{OLD} and {NEW}",
            id="operator-names-unserved-model",
        ),
        pytest.param(
            OTHER_BUILD,
            OLD,
            f"serve 2 different builds of {OLD}",
            id="two-builds-of-the-named-model",
        ),
    ],
)
def test_adopt_refusals(view: FleetView, stable: str | None, says: str) -> None:
    with pytest.raises(AdoptRefused) as refused:
        adopt(GROUP, view, stable=stable)

    assert says in str(refused.value)


LOST = assess(GROUP, doc(None), FOUR_OLD_ONE_NEW, epoch=EPOCH)


def test_adopted_makes_the_majority_stable_everywhere_and_records_it() -> None:
    state = adopted(GroupState(group=GROUP), LOST, FOUR_OLD_ONE_NEW, pin(OLD), now=50.0)

    assert state.phase is Phase.ADOPTED
    assert not state.phase.running
    assert (state.stable, state.canary, state.canary_nodes) == (OLD, None, ())
    assert state.model_for("n5") == OLD
    assert state.pin(OLD) == pin(OLD)
    (entry,) = state.history
    assert (entry.target, entry.stable_before, entry.outcome) == (OLD, None, Phase.ADOPTED)
    assert entry.reason == state.reason
    assert f"stranded canaries back to {OLD}: n5 ({NEW})" in state.reason
    assert entry.started_at == entry.ended_at == state.phase_since == 50.0
    assert state.stranded == (NEW,)
    still_back = assess(GROUP, doc(state), FOUR_OLD_ONE_NEW, epoch=EPOCH)
    assert still_back.history is GroupHistory.CONSISTENT  # n5 is on its way back


@pytest.mark.parametrize(
    ("found", "view", "stable", "says"),
    [
        pytest.param(
            assess(GROUP, doc(settled()), fleet(("n1",)), epoch=EPOCH),
            fleet(("n1",)),
            pin(OLD),
            f"group {GROUP} is consistent, not lost: nothing to adopt",
            id="not-lost",
        ),
        pytest.param(
            LOST,
            FOUR_OLD_ONE_NEW,
            ModelPin(name=OLD, sha256="e" * 64, uri="http://artifacts/other"),
            "not the build the adopt request pinned (sha256 eeeeeeeeeeee…)",
            id="nodes-serve-another-build",
        ),
        pytest.param(
            LOST,
            FOUR_OLD_ONE_NEW,
            pin("shapes-v9"),
            "serves shapes-v9",
            id="nodes-no-longer-serve-it",
        ),
    ],
)
def test_adopted_refusals(found: Assessment, view: FleetView, stable: ModelPin, says: str) -> None:
    with pytest.raises(AdoptRefused) as refused:
        adopted(GroupState(group=GROUP), found, view, stable, now=1.0)

    assert says in str(refused.value)


def test_the_document_keeps_its_epoch_and_what_an_adopt_stranded() -> None:
    state = adopted(GroupState(group=GROUP), LOST, FOUR_OLD_ONE_NEW, pin(OLD), now=50.0)
    doc_ = RolloutDoc(spec=None, state=state, epoch=EPOCH)

    back = decode_doc(encode_doc(doc_), revision=7)

    assert back == replace(doc_, state=replace(state, revision=7))
    older = json.loads(encode_doc(doc_))
    del older["epoch"], older["state"]["stranded"]
    legacy = decode_doc(json.dumps(older).encode(), revision=7)
    assert (legacy.epoch, legacy.state.stranded) == (None, ())


@pytest.mark.parametrize("pending", [Intent.START, Intent.PAUSE, Intent.UNDO], ids=str)
def test_an_adopt_supersedes_whatever_is_pending(pending: Intent) -> None:
    waiting = IntentRequest(id="i-1", intent=pending, requested_at=1.0)
    adopt_ = IntentRequest(id="i-2", intent=Intent.ADOPT, requested_at=2.0, pin=pin(OLD))

    now_pending, outcomes = intents.admit(running(Phase.HOLDING), waiting, adopt_, 3.0)

    assert now_pending == adopt_
    (superseded,) = outcomes
    assert (superseded.id, superseded.result, superseded.by) == ("i-1", Result.SUPERSEDED, "i-2")
    assert "Consul state was lost" in superseded.detail
    assert intents.describe(adopt_) == f"adopt of {OLD} (id i-2)"


def test_a_pending_adopt_is_applied_under_the_epoch_or_refused_leaving_the_rest() -> None:
    request = IntentRequest(id="i-7", intent=Intent.ADOPT, requested_at=1.0, pin=pin(OLD))
    wiped = RolloutDoc(spec=None, state=GroupState(group=GROUP, revision=3), pending=request)
    consistent = replace(wiped, state=settled(revision=3), epoch=EPOCH)
    found = assess(GROUP, doc(consistent.state), fleet(("n1",)), epoch=EPOCH)

    applied = adopt_pending(wiped, wiped, FOUR_OLD_ONE_NEW, LOST, epoch=EPOCH, now=9.0)
    refused = adopt_pending(consistent, consistent, fleet(("n1",)), found, epoch=EPOCH, now=9.0)

    assert applied.applied
    assert (applied.doc.epoch, applied.doc.pending, applied.doc.state.revision) == (EPOCH, None, 3)
    assert applied.doc.state.phase is Phase.ADOPTED
    assert (applied.outcome.id, applied.outcome.result) == ("i-7", Result.APPLIED)
    assert not refused.applied
    assert refused.doc == replace(consistent, pending=None, outcomes=(refused.outcome,))
    assert refused.outcome.result is Result.REFUSED
    assert "is consistent, not lost: nothing to adopt" in refused.outcome.detail
