from __future__ import annotations

import pytest

from control_plane.core.fleet import FleetView, pick_canaries
from tests.unit.control_plane.builders import NEW, OLD, TEN, fleet, node

ABC = ("a", "b", "c")


@pytest.mark.parametrize(
    ("live", "percent", "current", "expected"),
    [
        pytest.param(TEN, 10, (), ("n0",), id="10pct-of-10"),
        pytest.param(TEN, 11, (), ("n0", "n1"), id="rounds-up"),
        pytest.param(TEN, 50, (), ("n0", "n1", "n2", "n3", "n4"), id="50pct-of-10"),
        pytest.param(TEN, 100, (), TEN[:9], id="100pct-leaves-one-baseline"),
        pytest.param(ABC, 1, (), ("a",), id="at-least-one"),
        pytest.param(("a", "b"), 100, (), ("a",), id="two-nodes-keep-a-baseline"),
        pytest.param(("solo",), 100, (), ("solo",), id="one-node-is-all-canary"),
        pytest.param((), 50, (), (), id="no-live-nodes"),
        pytest.param(("c", "a", "b", "a"), 34, (), ("a", "b"), id="sorted-and-deduplicated"),
        pytest.param(TEN, 10, ("n7",), ("n7",), id="keeps-the-chosen-canary"),
        pytest.param(TEN, 50, ("n7",), ("n0", "n1", "n2", "n3", "n7"), id="grows-around-chosen"),
        pytest.param(TEN, 10, ("gone", "n5"), ("n5",), id="drops-dead-canaries"),
        pytest.param(TEN, 10, ("gone",), ("n0",), id="replaces-dead-canaries"),
        pytest.param(TEN, 10, ("n8", "n3"), ("n3",), id="trims-to-the-count"),
    ],
)
def test_pick_canaries(
    live: tuple[str, ...], percent: int, current: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert pick_canaries(live, percent, current=current) == expected


def test_fleet_view_helpers() -> None:
    view = fleet(("n2", "n1", "n0", "n3"), new=("n0",), loading=("n1",), draining=("n3",))

    assert [n.node_id for n in view.nodes] == ["n0", "n1", "n2", "n3"]
    assert view.live_ids == ("n0", "n1", "n2")
    assert view.serving(NEW) == ("n0",)
    assert view.serving(OLD) == ("n1", "n2")
    assert view.models() == {NEW: ("n0",), OLD: ("n1", "n2")}
    assert view.node("n9") is None
    assert view.node("n1") is not None


def test_failed_to_load_names_only_the_model_the_node_tried() -> None:
    view = fleet(TEN[:3], failed=("n1",))

    assert [n.node_id for n in view.failed_to_load(NEW, TEN)] == ["n1"]
    assert view.failed_to_load(OLD, TEN) == ()
    assert view.failed_to_load(NEW, ("n0",)) == ()


def test_node_without_a_model_serves_nothing() -> None:
    view = FleetView.of([node("n0", None)])

    assert view.serving(OLD) == ()
    assert view.models() == {None: ("n0",)}
